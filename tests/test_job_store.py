"""The durable job store against real databases: a SQLite file and a PostgreSQL server."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import text

from app.durable.database import BUSY_TIMEOUT_MS, make_engine
from app.durable.records import (
    CANCELLED,
    DONE,
    FAILED,
    QUEUED,
    RUNNING,
    JobRecord,
    StoredRequest,
    StoredResponse,
    new_job_id,
    valid_job_id,
)
from app.durable.store import JobStore, StoreFull
from tests.databases import postgres_url  # noqa: F401  (a fixture, asked for by name below)

PNG = bytes(range(256)) * 4  # every byte value, as a binary body would have
BIG = 1 << 30


def job(created: float, body: bytes = b'{"n": 1}', seed: int | None = 7) -> JobRecord:
    """A queued /generate job created at ``created`` (Unix seconds)."""
    request = StoredRequest(
        "POST",
        "/generate",
        "model=gated&x=1",
        [("content-type", "application/json"), ("x-repeat", "a"), ("x-repeat", "b")],
        body,
    )
    return JobRecord(new_job_id(), "/generate", request, seed, "client-1", None, created=created)


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """An empty job store's URL, on each backend."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/jobs.sqlite3"
    server: str = request.getfixturevalue("postgres_url")
    # One server serves the whole module: start each test from an empty table.
    engine = make_engine(server)
    with engine.begin() as conn:
        conn.execute(text("DROP TABLE IF EXISTS pixelcnn_jobs"))
    engine.dispose()
    return server


@pytest.fixture
def store(url: str) -> Iterator[JobStore]:
    s = JobStore(url, max_jobs=1000, max_bytes=BIG)
    yield s
    s.close()


def test_job_ids_are_128_random_bits_in_hex() -> None:
    ids = {new_job_id() for _ in range(100)}
    assert len(ids) == 100 and all(valid_job_id(i) for i in ids)
    for bad in ("", "0" * 31, "0" * 33, "A" * 32, "g" * 32, "../" + "0" * 29):
        assert not valid_job_id(bad)


def test_url_schemes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert make_engine("postgresql://u@127.0.0.1:5/db").dialect.driver == "psycopg"
    with pytest.raises(ValueError, match="unsupported"):
        make_engine("redis://127.0.0.1:6379/0")
    with pytest.raises(ValueError, match="needs a file"):
        make_engine("sqlite://")
    # A relative SQLite path is relative to the working directory; its folder is created.
    monkeypatch.chdir(tmp_path)
    JobStore("sqlite:///state/jobs.sqlite3", max_jobs=10, max_bytes=BIG).close()
    engine = make_engine("sqlite:///state/jobs.sqlite3")
    with engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() == BUSY_TIMEOUT_MS
    engine.dispose()
    assert (tmp_path / "state" / "jobs.sqlite3").is_file()


def test_add_and_get_round_trip_bytes_and_header_order(store: JobStore) -> None:
    record = job(10.5, body=PNG, seed=2**32 - 1)
    record.callback_url = "http://127.0.0.1:9/hook"
    store.add(record)
    assert store.get(record.id) == record
    assert store.get(new_job_id()) is None
    result = StoredResponse(200, [("content-type", "image/png"), ("x-seeds", "1,2"), ("x-seeds", "3")], PNG)
    store.claim("runner-a", now=11.0)
    ended = store.finish(record.id, DONE, now=12.25, result=result)
    assert ended is not None and ended.result == result
    assert store.get(record.id) == ended
    assert store.stats() == (1, ended.size_bytes)


def test_claim_takes_the_oldest_queued_job_and_marks_it_running(store: JobStore) -> None:
    late, early, tie_a, tie_b = job(3.0), job(1.0), job(2.0), job(2.0)
    tie_a.id, tie_b.id = "a" * 32, "b" * 32
    for record in (late, tie_b, early, tie_a):
        store.add(record)
    claimed = store.claim("runner-a", now=50.0)
    assert claimed is not None and claimed.id == early.id
    assert (claimed.status, claimed.owner, claimed.started) == (RUNNING, "runner-a", 50.0)
    assert claimed.heartbeat == 50.0
    assert store.get(early.id) == claimed
    order = [store.claim("runner-a", now=51.0) for _ in range(3)]
    assert [r.id for r in order if r is not None] == [tie_a.id, tie_b.id, late.id]
    assert store.claim("runner-a", now=52.0) is None


def test_concurrent_claims_take_each_job_exactly_once(store: JobStore, url: str) -> None:
    records = [job(float(i)) for i in range(20)]
    for record in records:
        store.add(record)
    # Half the threads go through a second store: another process's connections.
    other = JobStore(url, max_jobs=1000, max_bytes=BIG)
    claimed: list[str] = []
    lock = threading.Lock()
    start = threading.Barrier(8)

    def worker(n: int) -> None:
        s = store if n % 2 else other
        start.wait()
        while (got := s.claim(f"runner-{n}", now=100.0)) is not None:
            with lock:
                claimed.append(got.id)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    other.close()
    assert sorted(claimed) == sorted(r.id for r in records)
    assert all(r is not None and r.status == RUNNING for r in map(store.get, claimed))


def test_progress_and_cancel_of_a_running_job(store: JobStore) -> None:
    record = job(1.0)
    store.add(record)
    store.claim("runner-a", now=2.0)
    assert store.progress(record.id, 3, 28, now=3.0) is True
    seen = store.get(record.id)
    assert seen is not None and (seen.rows, seen.of_rows, seen.heartbeat) == (3, 28, 3.0)
    asked = store.cancel(record.id, now=4.0)
    assert asked is not None and asked.status == RUNNING and asked.cancel_requested
    assert store.progress(record.id, 4, 28, now=5.0) is False
    # The runner finished the last row before it noticed: the job still ends cancelled.
    ended = store.finish(record.id, DONE, now=6.0, result=StoredResponse(200, [], b"png"))
    assert ended is not None and (ended.status, ended.result, ended.finished) == (CANCELLED, None, 6.0)
    assert store.get(record.id) == ended
    assert store.finish(record.id, DONE, now=7.0) is None
    assert store.progress(record.id, 5, 28, now=7.0) is False


def test_cancel_of_a_queued_job_is_immediate_and_final(store: JobStore) -> None:
    record = job(1.0)
    store.add(record)
    cancelled = store.cancel(record.id, now=2.0)
    assert cancelled is not None and (cancelled.status, cancelled.finished) == (CANCELLED, 2.0)
    assert store.claim("runner-a", now=3.0) is None
    assert store.finish(record.id, DONE, now=3.0) is None
    assert store.cancel(record.id, now=4.0) == cancelled  # an ended job is left as it is
    assert store.cancel(new_job_id(), now=4.0) is None


def test_finish_failed_keeps_the_error_and_rejects_unfinished_states(store: JobStore) -> None:
    record = job(1.0)
    store.add(record)
    store.claim("runner-a", now=2.0)
    with pytest.raises(ValueError):
        store.finish(record.id, QUEUED, now=3.0)
    failed = store.finish(record.id, FAILED, now=3.0, error="out of memory")
    assert failed is not None and (failed.status, failed.finished) == (FAILED, 3.0)
    assert failed.error == "out of memory"
    assert store.cancel(record.id, now=4.0) == failed
    assert store.finish(new_job_id(), DONE, now=4.0) is None


def test_position_counts_the_queued_jobs_ahead(store: JobStore) -> None:
    records = [job(float(i)) for i in range(4)]
    for record in records:
        store.add(record)
    assert [store.position(r.id) for r in records] == [0, 1, 2, 3]
    store.claim("runner-a", now=10.0)
    store.cancel(records[2].id, now=10.0)
    assert [store.position(r.id) for r in records] == [None, 0, None, 1]
    assert store.position(new_job_id()) is None


def test_requeue_stale_recovers_the_jobs_of_a_dead_runner(store: JobStore) -> None:
    alive, dead, dead_cancelled = job(1.0, seed=11), job(2.0, body=PNG, seed=12), job(3.0)
    for record in (alive, dead, dead_cancelled):
        store.add(record)
    store.claim("alive", now=10.0)
    store.claim("dead", now=10.0)
    store.claim("dead", now=10.0)
    store.progress(dead.id, 5, 28, now=20.0)
    store.cancel(dead_cancelled.id, now=20.0)
    store.heartbeat("alive", now=45.0)
    assert store.requeue_stale(lease_s=30.0, now=55.0) == 1  # dead's heartbeat (20) is older than 25
    again = store.get(dead.id)
    assert again is not None and (again.status, again.owner, again.heartbeat) == (QUEUED, None, None)
    assert again.rows == 0
    assert (again.seed, again.request) == (dead.seed, dead.request)
    gone = store.get(dead_cancelled.id)
    assert gone is not None and (gone.status, gone.finished) == (CANCELLED, 55.0)
    kept = store.get(alive.id)
    assert kept is not None and (kept.status, kept.owner, kept.heartbeat) == (RUNNING, "alive", 45.0)
    reclaimed = store.claim("new", now=60.0)
    assert reclaimed is not None and reclaimed.id == dead.id
    assert (reclaimed.started, reclaimed.owner) == (60.0, "new")


def test_requeue_owner_takes_back_only_that_owners_jobs(store: JobStore) -> None:
    mine, theirs = job(1.0), job(2.0)
    store.add(mine)
    store.add(theirs)
    store.claim("me", now=5.0)
    store.claim("them", now=5.0)
    assert store.requeue_owner("me") == 1
    assert [store.get(j.id).status for j in (mine, theirs)] == [QUEUED, RUNNING]  # type: ignore[union-attr]
    assert store.position(mine.id) == 0
    assert store.requeue_owner("nobody") == 0


def test_release_gives_one_running_job_back_to_the_queue(store: JobStore) -> None:
    kept, given_back, asked = job(1.0), job(2.0), job(3.0)
    for record in (kept, given_back, asked):
        store.add(record)
        store.claim("me", now=5.0)
    store.cancel(asked.id, now=6.0)
    assert store.release(given_back.id, now=7.0) is True
    assert store.release(given_back.id, now=7.0) is False  # queued now, not running
    assert store.release(asked.id, now=7.0) is False  # asked to cancel: it ends instead
    statuses = [
        (r.status, r.owner) for r in map(store.get, (kept.id, given_back.id, asked.id)) if r is not None
    ]
    assert statuses == [(RUNNING, "me"), (QUEUED, None), (CANCELLED, "me")]


def test_expire_deletes_only_jobs_that_ended_before_the_ttl(store: JobStore) -> None:
    old, recent, queued = job(1.0), job(2.0), job(0.0)
    for record in (old, recent):
        store.add(record)
        store.cancel(record.id, now=100.0 if record is old else 200.0)
    store.add(queued)
    assert store.expire(ttl_s=50.0, now=220.0) == 1
    assert store.get(old.id) is None
    assert store.get(recent.id) is not None and store.get(queued.id) is not None
    assert store.stats()[0] == 2


def test_store_full_on_the_job_limit(url: str) -> None:
    s = JobStore(url, max_jobs=2, max_bytes=BIG)
    first = job(1.0)
    s.add(first)
    s.add(job(2.0))
    with pytest.raises(StoreFull, match=r"\b2 jobs"):
        s.add(job(3.0))
    assert s.stats()[0] == 2
    s.cancel(first.id, now=5.0)
    s.expire(ttl_s=0.0, now=6.0)
    s.add(job(3.0))  # room again
    s.close()


def test_store_full_on_the_byte_limit(url: str) -> None:
    size = job(1.0, body=PNG).size_bytes
    s = JobStore(url, max_jobs=100, max_bytes=2 * size + 10)
    s.add(job(1.0, body=PNG))
    s.add(job(2.0, body=PNG))
    with pytest.raises(StoreFull, match=rf"limit of {2 * size + 10} stored bytes"):
        s.add(job(3.0, body=PNG))
    assert s.stats() == (2, 2 * size)
    s.close()


def test_a_second_store_on_the_same_url_sees_and_cancels_its_jobs(store: JobStore, url: str) -> None:
    other = JobStore(url, max_jobs=1000, max_bytes=BIG)
    record = job(1.0, body=PNG)
    store.add(record)
    assert other.get(record.id) == record
    store.claim("runner-a", now=2.0)
    asked = other.cancel(record.id, now=3.0)
    assert asked is not None and asked.cancel_requested
    assert store.progress(record.id, 1, 28, now=4.0) is False
    other.close()
