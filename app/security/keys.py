"""API keys: a file of ``name:scope:sha256-hex-of-key`` lines (``#`` starts a comment), so the
file holds no secret; scope ``use`` (every model and job route, ``/metrics``) or ``admin``
(those and ``/admin/*``). ``python -m app keys new NAME [--admin]`` makes a key."""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

Scope = Literal["use", "admin"]
SCOPES: tuple[Scope, ...] = ("use", "admin")
NAME = re.compile(r"[A-Za-z0-9_.-]{1,64}")
HEX = re.compile(r"[0-9a-f]{64}")
KEY_PREFIX = "pcnn_"  # makes a leaked key easy to recognise (and to scan for)


class KeysFileError(ValueError):
    """The keys file cannot be read, or a line of it is malformed (the message names the line)."""


@dataclass(frozen=True)
class ApiKey:
    name: str  # shown in metrics and logs instead of the key
    scope: Scope
    sha256: str  # of the key's UTF-8 bytes, lowercase hex

    @property
    def admin(self) -> bool:
        return self.scope == "admin"


def digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def new_key(name: str, admin: bool = False) -> tuple[str, str]:
    """A new random key (256 bits) and the line that grants it, for the keys file."""
    if not NAME.fullmatch(name):
        raise KeysFileError(f"a key's name is 1 to 64 of A-Z a-z 0-9 _ . - (got {name!r})")
    key = KEY_PREFIX + secrets.token_urlsafe(32)
    return key, f"{name}:{'admin' if admin else 'use'}:{digest(key)}"


def read_keys(path: Path) -> list[ApiKey]:
    """The keys the file grants (KeysFileError naming the line that is wrong)."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise KeysFileError(f"{path}: cannot read the keys file ({exc})") from None
    keys: list[ApiKey] = []
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        parts = [part.strip() for part in line.split(":")]
        if len(parts) != 3:
            raise KeysFileError(
                f"{path}, line {number}: expected name:scope:sha256-hex, got {len(parts)} fields"
            )
        name, scope, sha = parts
        if not NAME.fullmatch(name):
            raise KeysFileError(f"{path}, line {number}: a name is 1 to 64 of A-Z a-z 0-9 _ . -")
        if scope not in SCOPES:
            raise KeysFileError(f"{path}, line {number}: scope must be 'use' or 'admin', got {scope!r}")
        if not HEX.fullmatch(sha.lower()):
            raise KeysFileError(f"{path}, line {number}: the hash must be 64 hex digits (sha256 of the key)")
        if any(key.name == name for key in keys):
            raise KeysFileError(f"{path}, line {number}: the name {name!r} is given twice")
        keys.append(ApiKey(name, scope, sha.lower()))
    if not keys:
        raise KeysFileError(f"{path}: the keys file grants no key (make one: python -m app keys new NAME)")
    return keys


def match(keys: list[ApiKey], presented: str) -> ApiKey | None:
    """The key ``presented`` is, compared in constant time against every key (no early exit)."""
    wanted = digest(presented)
    found = None
    for key in keys:
        if hmac.compare_digest(key.sha256, wanted):
            found = key
    return found
