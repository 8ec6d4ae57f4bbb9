"""``python -m app``: check the weights and the classifier, then serve with uvicorn.

Refuses to start with one line naming the file and what is wrong with it.
"""

from __future__ import annotations

import argparse
import sys

import uvicorn

from app.main import label_classifier
from app.settings import get_settings
from app.timeouts import header_timeout_protocol
from model.checkpoint import CheckpointError, load


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(allow_abbrev=False, prog="python -m app", description=__doc__)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--log-level", default="info")
    args = p.parse_args(argv)
    settings = get_settings()
    try:
        model = load(settings.weights)
    except CheckpointError as exc:
        print(f"error: cannot start: {exc} (set PIXELCNN_WEIGHTS to a weights file)", file=sys.stderr)
        return 1
    try:
        label_classifier(model, settings)
    except CheckpointError as exc:
        print(f"error: cannot start: {exc}", file=sys.stderr)
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
