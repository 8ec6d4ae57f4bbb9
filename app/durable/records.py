"""What one durable job is made of: the request to replay, the response it produced, and the
job's state. Plain dataclasses with no database in them, so the HTTP side and the runner can
build and read them without knowing where they are stored.

Times are Unix seconds (``time.time()``); sizes are bytes.
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass
from typing import ClassVar

QUEUED = "queued"
RUNNING = "running"
DONE = "done"
FAILED = "failed"
CANCELLED = "cancelled"
STATUSES = (QUEUED, RUNNING, DONE, FAILED, CANCELLED)
# A job in one of these states never changes again (it only expires).
FINISHED_STATES = frozenset({DONE, FAILED, CANCELLED})

# What a stored row costs beyond its variable-length fields (id, times, counters, index
# entries), in bytes: a rough figure, so that a store of empty requests is still bounded.
RECORD_OVERHEAD_BYTES = 256

_JOB_ID = re.compile(r"[0-9a-f]{32}")


def new_job_id() -> str:
    """A fresh job id: 32 lowercase hex characters, 128 random bits, so ids cannot be guessed."""
    return secrets.token_hex(16)


def valid_job_id(text: str) -> bool:
    """Whether ``text`` has the form of a job id (exactly 32 lowercase hex characters)."""
    return _JOB_ID.fullmatch(text) is not None


def headers_bytes(headers: list[tuple[str, str]]) -> int:
    """The size of header names and values, in bytes of UTF-8."""
    return sum(len(name.encode()) + len(value.encode()) for name, value in headers)


@dataclass
class StoredRequest:
    """An accepted HTTP request, kept so that it can be replayed in-process.

    ``query`` is the raw query string without ``?``; ``headers`` keep their order and
    repeats; ``body`` is the exact bytes received.
    """

    method: str
    path: str
    query: str
    headers: list[tuple[str, str]]
    body: bytes

    @property
    def size_bytes(self) -> int:
        """Roughly what the request takes in the store, in bytes."""
        text = len(self.method.encode()) + len(self.path.encode()) + len(self.query.encode())
        return text + headers_bytes(self.headers) + len(self.body)


@dataclass
class StoredResponse:
    """The response a replayed request produced: exactly what the synchronous route returns."""

    status: int
    headers: list[tuple[str, str]]
    body: bytes

    @property
    def size_bytes(self) -> int:
        """Roughly what the response takes in the store, in bytes."""
        return headers_bytes(self.headers) + len(self.body)


@dataclass
class JobRecord:
    """One durable job and its state.

    ``status`` is one of ``STATUSES``. ``created``, ``started``, ``finished`` and
    ``heartbeat`` are Unix seconds; ``started`` is set each time a runner claims the job.
    ``rows`` of ``of_rows`` is the sampling progress. ``seed`` is the seed the job was
    accepted with, so a job run again after a crash makes the same bytes. ``client`` is the
    caller's identity (for limits and logs); ``owner`` is the runner that holds a running job,
    and ``heartbeat`` the last time that runner said it is alive.
    """

    # The states a job never leaves, for callers that hold only a record.
    finished_states: ClassVar[frozenset[str]] = FINISHED_STATES

    id: str
    route: str
    request: StoredRequest
    seed: int | None
    client: str
    callback_url: str | None
    status: str = QUEUED
    created: float = 0.0
    started: float | None = None
    finished: float | None = None
    rows: int = 0
    of_rows: int = 0
    result: StoredResponse | None = None
    error: str | None = None
    cancel_requested: bool = False
    owner: str | None = None
    heartbeat: float | None = None

    @property
    def is_finished(self) -> bool:
        """Whether the job is done, failed or cancelled."""
        return self.status in FINISHED_STATES

    @property
    def size_bytes(self) -> int:
        """Roughly what the job takes in the store, in bytes: request, result, the short text
        fields and a fixed overhead per row (``RECORD_OVERHEAD_BYTES``)."""
        text = sum(
            len(field.encode())
            for field in (self.route, self.client, self.callback_url or "", self.error or "")
        )
        result = self.result.size_bytes if self.result is not None else 0
        return RECORD_OVERHEAD_BYTES + text + self.request.size_bytes + result
