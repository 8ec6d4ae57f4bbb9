"""Where durable jobs live: the ``pixelcnn_jobs`` table, how a ``JobRecord`` maps to its row,
and how to connect to a job-store URL (SQLite or PostgreSQL, through SQLAlchemy Core).

SQLite connections run in WAL mode (readers never wait for the writer) with a busy timeout, and
a transaction marked as a writer (the ``WRITER`` execution option) starts with
``BEGIN IMMEDIATE``: it takes the write lock up front, so it never fails half-way through
for want of it.

Times are Unix seconds; sizes are bytes.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Connection,
    Double,
    Engine,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    RowMapping,
    String,
    Table,
    Text,
    create_engine,
    event,
)
from sqlalchemy.engine import URL, make_url

from app.durable.records import JobRecord, StoredRequest, StoredResponse

# How long a SQLite connection waits for another one's write lock before it gives up, in ms.
BUSY_TIMEOUT_MS = 10_000
# The execution option that marks a SQLite transaction as a writer (BEGIN IMMEDIATE).
WRITER = "pixelcnn_writer"

metadata = MetaData()
jobs = Table(
    "pixelcnn_jobs",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("route", Text, nullable=False),
    Column("method", Text, nullable=False),
    Column("path", Text, nullable=False),
    Column("query", Text, nullable=False),
    Column("request_headers", Text, nullable=False),  # JSON: [[name, value], ...] in order
    Column("request_body", LargeBinary, nullable=False),
    Column("seed", BigInteger),
    Column("client", Text, nullable=False),
    Column("callback_url", Text),
    Column("status", String(16), nullable=False),
    Column("created", Double, nullable=False),
    Column("started", Double),
    Column("finished", Double),
    Column("rows", Integer, nullable=False),
    Column("of_rows", Integer, nullable=False),
    Column("result_status", Integer),  # NULL: no result
    Column("result_headers", Text),  # JSON, as request_headers
    Column("result_body", LargeBinary),
    Column("error", Text),
    Column("cancel_requested", Boolean, nullable=False),
    Column("owner", Text),
    Column("heartbeat", Double),
    Column("size_bytes", BigInteger, nullable=False),  # JobRecord.size_bytes, summed by the limit
    Index("pixelcnn_jobs_status_created", "status", "created"),
)


def _headers_json(headers: list[tuple[str, str]]) -> str:
    return json.dumps([[name, value] for name, value in headers])


def _headers(text_: str) -> list[tuple[str, str]]:
    return [(name, value) for name, value in json.loads(text_)]


def row_of(record: JobRecord) -> dict[str, Any]:
    """The table row of ``record``."""
    result = record.result
    return {
        "id": record.id,
        "route": record.route,
        "method": record.request.method,
        "path": record.request.path,
        "query": record.request.query,
        "request_headers": _headers_json(record.request.headers),
        "request_body": record.request.body,
        "seed": record.seed,
        "client": record.client,
        "callback_url": record.callback_url,
        "status": record.status,
        "created": record.created,
        "started": record.started,
        "finished": record.finished,
        "rows": record.rows,
        "of_rows": record.of_rows,
        "result_status": result.status if result is not None else None,
        "result_headers": _headers_json(result.headers) if result is not None else None,
        "result_body": result.body if result is not None else None,
        "error": record.error,
        "cancel_requested": record.cancel_requested,
        "owner": record.owner,
        "heartbeat": record.heartbeat,
        "size_bytes": record.size_bytes,
    }


def record_of(row: RowMapping) -> JobRecord:
    """The job a table row holds."""
    request = StoredRequest(
        row["method"], row["path"], row["query"], _headers(row["request_headers"]), bytes(row["request_body"])
    )
    result = None
    if row["result_status"] is not None:
        result = StoredResponse(
            row["result_status"], _headers(row["result_headers"]), bytes(row["result_body"])
        )
    return JobRecord(
        id=row["id"],
        route=row["route"],
        request=request,
        seed=row["seed"],
        client=row["client"],
        callback_url=row["callback_url"],
        status=row["status"],
        created=row["created"],
        started=row["started"],
        finished=row["finished"],
        rows=row["rows"],
        of_rows=row["of_rows"],
        result=result,
        error=row["error"],
        cancel_requested=bool(row["cancel_requested"]),
        owner=row["owner"],
        heartbeat=row["heartbeat"],
    )


def _sqlite_engine(url: URL) -> Engine:
    database = url.database or ""
    if database in ("", ":memory:") or database.startswith("file:"):
        raise ValueError("a SQLite job store needs a file: sqlite:///relative/path or sqlite:////abs/path")
    Path(database).parent.mkdir(parents=True, exist_ok=True)
    # check_same_thread off: the pool hands a connection to whichever thread asks next.
    engine = create_engine(url, connect_args={"check_same_thread": False})

    def on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Python's sqlite3 would begin transactions itself, always DEFERRED; on_begin does it.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA journal_mode = WAL")
        cursor.close()

    def on_begin(connection: Connection) -> None:
        # A writer takes the write lock at BEGIN: a DEFERRED one that reads first and writes
        # later fails at once (SQLITE_BUSY, no retry) if another writer committed in between.
        writer = connection.get_execution_options().get(WRITER, False)
        connection.exec_driver_sql("BEGIN IMMEDIATE" if writer else "BEGIN DEFERRED")

    event.listen(engine, "connect", on_connect)
    event.listen(engine, "begin", on_begin)
    return engine


def make_engine(url: str) -> Engine:
    """A SQLAlchemy engine for a job-store URL: ``sqlite:///relative/path.sqlite3`` (relative to
    the working directory), ``sqlite:////abs/path.sqlite3`` or ``postgresql://user@host:port/db``
    (run with the psycopg 3 driver)."""
    parsed = make_url(url)
    if parsed.drivername in ("sqlite", "sqlite+pysqlite"):
        return _sqlite_engine(parsed)
    if parsed.drivername in ("postgresql", "postgres", "postgresql+psycopg"):
        # pre_ping: a pooled connection may have been cut by a database restart.
        return create_engine(parsed.set(drivername="postgresql+psycopg"), pool_pre_ping=True)
    raise ValueError(
        f"unsupported job store URL scheme {parsed.drivername!r}: use sqlite:/// or postgresql://"
    )


def without_password(url: str) -> str:
    """``url`` as logs and errors may show it: a password in it is masked."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # not a URL at all: it has no password field to mask
        return url
