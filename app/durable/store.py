"""The durable job store: one table of jobs in SQLite (one machine) or PostgreSQL (replicas).

Built on SQLAlchemy Core, so both databases run the same statements. Every method is one short
transaction and safe to call from several threads and several processes at once:

- SQLite runs in WAL mode (readers never wait for the writer) and every writing transaction
  starts with ``BEGIN IMMEDIATE``, which takes the database's write lock up front, so no two
  writers interleave and none fails half-way to upgrade its lock; waits are bounded by a busy
  timeout.
- PostgreSQL locks the rows a transaction changes (``FOR UPDATE``); ``claim`` skips rows that
  another process is claiming (``SKIP LOCKED``), and writes that touch many rows or check the
  store's limits also take one advisory lock, so they run one at a time and cannot deadlock.

Times are Unix seconds (``time.time()``); sizes are bytes.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace

from sqlalchemy import ColumnElement, Connection, and_, delete, func, insert, or_, select, text, update

from app.durable.database import WRITER, jobs, make_engine, metadata, record_of, row_of
from app.durable.records import CANCELLED, FINISHED_STATES, QUEUED, RUNNING, JobRecord, StoredResponse

# The PostgreSQL advisory lock that serialises table creation, limit checks and many-row writes
# (any fixed 64-bit number that no other program on the same database uses).
ADVISORY_LOCK = 0x5049_5845_4C4A_4F42  # "PIXELJOB"


class StoreFull(Exception):
    """Storing one more job would pass the store's limit on jobs or on bytes."""


class JobStore:
    """Durable jobs in a database named by URL (see ``make_engine``), bounded by ``max_jobs``
    stored jobs and ``max_bytes`` stored bytes (``JobRecord.size_bytes`` summed)."""

    def __init__(self, url: str, max_jobs: int, max_bytes: int) -> None:
        self.max_jobs = max_jobs
        self.max_bytes = max_bytes
        self._engine = make_engine(url)
        self._postgres = self._engine.dialect.name == "postgresql"
        self._writer = self._engine.execution_options(**{WRITER: True})
        with self._write(serialise=True) as conn:
            metadata.create_all(conn)

    @contextmanager
    def _write(self, serialise: bool = False) -> Iterator[Connection]:
        """A writing transaction; ``serialise``: one at a time across processes."""
        with self._writer.begin() as conn:
            if serialise and self._postgres:
                conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": ADVISORY_LOCK})
            yield conn

    @contextmanager
    def _read(self) -> Iterator[Connection]:
        with self._engine.connect() as conn:
            yield conn

    @staticmethod
    def _fetch(conn: Connection, job_id: str, lock: bool = False) -> JobRecord | None:
        query = select(jobs).where(jobs.c.id == job_id)
        row = conn.execute(query.with_for_update() if lock else query).mappings().first()
        return record_of(row) if row is not None else None

    @staticmethod
    def _totals(conn: Connection) -> tuple[int, int]:
        count, total = conn.execute(select(func.count(), func.coalesce(func.sum(jobs.c.size_bytes), 0))).one()
        return int(count), int(total)

    def add(self, record: JobRecord) -> None:
        """Store a new job; ``StoreFull`` if that would pass ``max_jobs`` or ``max_bytes``."""
        size = record.size_bytes
        with self._write(serialise=True) as conn:
            count, total = self._totals(conn)
            if count + 1 > self.max_jobs:
                raise StoreFull(f"the job store is full: it holds its limit of {self.max_jobs} jobs")
            if total + size > self.max_bytes:
                raise StoreFull(
                    f"the job store is full: this job ({size} bytes) would pass its limit of "
                    f"{self.max_bytes} stored bytes ({total} in use)"
                )
            conn.execute(insert(jobs).values(row_of(record)))

    def get(self, job_id: str) -> JobRecord | None:
        """The job with this id, or None."""
        with self._read() as conn:
            return self._fetch(conn, job_id)

    def claim(self, owner: str, now: float) -> JobRecord | None:
        """Take the oldest queued job (by created, then id) and mark it running for ``owner``;
        None when none is queued. Two callers never get the same job."""
        oldest = (
            select(jobs.c.id)
            .where(jobs.c.status == QUEUED)
            .order_by(jobs.c.created, jobs.c.id)
            .limit(1)
            .with_for_update(skip_locked=True)
        )
        with self._write() as conn:
            job_id = conn.execute(oldest).scalar()
            if job_id is None:
                return None
            values = {"status": RUNNING, "owner": owner, "started": now, "heartbeat": now}
            conn.execute(update(jobs).where(jobs.c.id == job_id).values(values))
            return self._fetch(conn, job_id)

    def progress(self, job_id: str, rows: int, of_rows: int, now: float, owner: str | None = None) -> bool:
        """Record ``rows`` of ``of_rows`` done and a heartbeat. False means stop: the job was
        asked to cancel, or it is no longer running (missing, finished, or requeued), or, with
        ``owner``, another process holds it now."""
        held = [jobs.c.owner == owner] if owner is not None else []
        statement = (
            update(jobs)
            .where(jobs.c.id == job_id, jobs.c.status == RUNNING, *held)
            .values(rows=rows, of_rows=of_rows, heartbeat=now)
            .returning(jobs.c.cancel_requested)
        )
        with self._write() as conn:
            cancel = conn.execute(statement).scalar()
        return cancel is not None and not cancel

    def heartbeat(self, owner: str, now: float) -> None:
        """Mark every running job of ``owner`` alive at ``now``."""
        with self._write(serialise=True) as conn:
            mine = and_(jobs.c.owner == owner, jobs.c.status == RUNNING)
            conn.execute(update(jobs).where(mine).values(heartbeat=now))

    def finish(
        self,
        job_id: str,
        status: str,
        now: float,
        result: StoredResponse | None = None,
        error: str | None = None,
        owner: str | None = None,
    ) -> JobRecord | None:
        """End a job with ``status`` (done, failed or cancelled); the record after the change,
        or None when the job is missing or already ended. A job asked to cancel ends
        ``cancelled`` whatever ``status`` says, and keeps no result."""
        if status not in FINISHED_STATES:
            raise ValueError(f"a job cannot finish as {status!r}")
        with self._write() as conn:
            current = self._fetch(conn, job_id, lock=True)
            if current is None or current.is_finished or (owner is not None and current.owner != owner):
                return None  # missing, ended, or taken over by another process (its lease ran out)
            if current.cancel_requested:
                status, result = CANCELLED, None
            ended = replace(current, status=status, finished=now, result=result, error=error)
            row = row_of(ended)
            keys = (
                "status",
                "finished",
                "error",
                "result_status",
                "result_headers",
                "result_body",
                "size_bytes",
            )
            conn.execute(update(jobs).where(jobs.c.id == job_id).values({key: row[key] for key in keys}))
            return ended

    def cancel(self, job_id: str, now: float) -> JobRecord | None:
        """Cancel a job: a queued one ends ``cancelled`` at once; a running one is asked to stop
        (``cancel_requested``; its runner then calls ``finish``); an ended one is left as it is.
        The record after the change, or None when the job is missing."""
        with self._write() as conn:
            current = self._fetch(conn, job_id, lock=True)
            if current is None or current.is_finished:
                return current
            if current.status == QUEUED:
                changed = replace(current, status=CANCELLED, finished=now, cancel_requested=True)
            else:
                changed = replace(current, cancel_requested=True)
            values = {"status": changed.status, "finished": changed.finished, "cancel_requested": True}
            conn.execute(update(jobs).where(jobs.c.id == job_id).values(values))
            return changed

    def position(self, job_id: str) -> int | None:
        """How many queued jobs run before this one (0: it is next); None when it is not queued."""
        with self._read() as conn:
            row = conn.execute(select(jobs.c.status, jobs.c.created).where(jobs.c.id == job_id)).first()
            if row is None or row.status != QUEUED:
                return None
            # Claim order: by created, then by id.
            before = or_(
                jobs.c.created < row.created, and_(jobs.c.created == row.created, jobs.c.id < job_id)
            )
            ahead = select(func.count()).where(jobs.c.status == QUEUED, before)
            return int(conn.execute(ahead).scalar_one())

    def _requeue(self, running: ColumnElement[bool], now: float) -> int:
        """Send the running jobs that match ``running`` back to the queue (their seed and
        request kept, so they make the same bytes); those asked to cancel end cancelled."""
        with self._write(serialise=True) as conn:
            cancelled = and_(running, jobs.c.cancel_requested.is_(True))
            conn.execute(update(jobs).where(cancelled).values(status=CANCELLED, finished=now))
            again = {"status": QUEUED, "owner": None, "rows": 0, "of_rows": 0, "heartbeat": None}
            return conn.execute(update(jobs).where(running).values(again)).rowcount

    def requeue_stale(self, lease_s: float, now: float) -> int:
        """Queue again the running jobs whose heartbeat is older than ``now - lease_s`` (their
        runner died); returns how many went back to the queue."""
        stale = or_(jobs.c.heartbeat.is_(None), jobs.c.heartbeat < now - lease_s)
        return self._requeue(and_(jobs.c.status == RUNNING, stale), now)

    def requeue_owner(self, owner: str, now: float | None = None) -> int:
        """Queue again the running jobs of ``owner`` (a restarted process taking back its own
        jobs); returns how many. ``now`` (default: the clock) ends those asked to cancel."""
        mine = and_(jobs.c.status == RUNNING, jobs.c.owner == owner)
        return self._requeue(mine, time.time() if now is None else now)

    def release(self, job_id: str, now: float | None = None) -> bool:
        """Queue one running job again (its runner gives it back unfinished, to retry later);
        whether it went back. ``now`` (default: the clock) ends it if it was asked to cancel."""
        one = and_(jobs.c.status == RUNNING, jobs.c.id == job_id)
        return self._requeue(one, time.time() if now is None else now) > 0

    def expire(self, ttl_s: float, now: float) -> int:
        """Delete the ended jobs that ended before ``now - ttl_s``; returns how many."""
        old = and_(jobs.c.status.in_(sorted(FINISHED_STATES)), jobs.c.finished < now - ttl_s)
        with self._write(serialise=True) as conn:
            return conn.execute(delete(jobs).where(old)).rowcount

    def stats(self) -> tuple[int, int]:
        """Stored jobs and stored bytes."""
        with self._read() as conn:
            return self._totals(conn)

    def close(self) -> None:
        """Close the database connections."""
        self._engine.dispose()
