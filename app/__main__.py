"""``python -m app``: check the models (the default one loads, with its label classifier) and
the API keys file, then serve with uvicorn. ``kill -HUP`` reloads changed weights files
without a restart. ``python -m app keys new NAME [--admin]`` makes an API key.

Refuses to start with one line naming the file and what is wrong with it, and, without API
keys, on any address but loopback unless ``--allow-anonymous`` says that is meant.
"""

from __future__ import annotations

import argparse
import sys

import uvicorn
from sqlalchemy.exc import SQLAlchemyError

from app.durable.database import without_password
from app.durable.store import JobStore
from app.metrics import Metrics
from app.models.registry import ModelRegistry
from app.models.repository import RepositoryError
from app.security.access import is_loopback
from app.security.keys import KeysFileError, new_key, read_keys
from app.settings import get_settings
from app.timeouts import header_timeout_protocol
from app.worker import InferenceWorker
from model.checkpoint import CheckpointError


def keys_command(argv: list[str]) -> int:
    p = argparse.ArgumentParser(allow_abbrev=False, prog="python -m app keys", description="API keys")
    commands = p.add_subparsers(dest="command", required=True)
    new = commands.add_parser("new", help="print a new random key and the line that grants it")
    new.add_argument("name", help="the key's name, shown in metrics and logs instead of the key")
    new.add_argument("--admin", action="store_true", help="may also use /admin routes")
    args = p.parse_args(argv)
    try:
        key, line = new_key(args.name, args.admin)
    except KeysFileError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"key (give it to the client; it is not stored anywhere): {key}")
    print(f"line for PIXELCNN_API_KEYS_FILE: {line}")
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["keys"]:
        return keys_command(argv[1:])
    p = argparse.ArgumentParser(allow_abbrev=False, prog="python -m app", description=__doc__)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--log-level", default="info")
    p.add_argument(
        "--allow-anonymous",
        action="store_true",
        help="serve without API keys on an address other than loopback (anyone who reaches it may use it)",
    )
    args = p.parse_args(argv)
    settings = get_settings()
    try:
        if settings.api_keys_file is not None:
            read_keys(settings.api_keys_file)
    except KeysFileError as exc:
        print(f"error: cannot start: {exc}", file=sys.stderr)
        return 1
    if settings.api_keys_file is None and not is_loopback(args.host) and not args.allow_anonymous:
        print(
            f"error: refusing to serve {args.host} without API keys: set PIXELCNN_API_KEYS_FILE "
            "(python -m app keys new NAME), or pass --allow-anonymous to let anyone use it",
            file=sys.stderr,
        )
        return 1
    try:
        ModelRegistry(settings, InferenceWorker(settings, Metrics())).load_default()
    except (CheckpointError, RepositoryError) as exc:
        print(f"error: cannot start: {exc} (set PIXELCNN_WEIGHTS to weights files)", file=sys.stderr)
        return 1
    try:
        JobStore(settings.job_store, settings.max_stored_jobs, settings.max_stored_bytes).close()
    except (ValueError, SQLAlchemyError, OSError) as exc:
        why = str(exc).splitlines()[0]
        print(
            f"error: cannot start: the job store {without_password(settings.job_store)} "
            f"cannot be opened: {why}",
            file=sys.stderr,
        )
        return 1
    # Request headers are timed by the protocol, bodies by the app's middleware (app.timeouts).
    uvicorn.run(
        "app.main:app",
        host=args.host,
        port=args.port,
        log_level=args.log_level,
        http=header_timeout_protocol(settings.header_timeout_s),
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
