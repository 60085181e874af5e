"""Service URLs (PostgreSQL, Redis): which is which, and as greenroom shows them
(without their passwords)."""

from __future__ import annotations

import re

__all__ = ["is_postgres_url", "shown_url"]

_PASSWORD = re.compile(r"(://[^:/@]*):[^@/]*@")
_POSTGRES = re.compile(r"^postgres(ql)?://")


def is_postgres_url(target: object) -> bool:
    """Whether `target` names a PostgreSQL database (`postgresql://` or `postgres://`)."""
    return isinstance(target, str) and _POSTGRES.match(target) is not None


def shown_url(url: str) -> str:
    """`url` with any password replaced by `***`, for messages, logs and `Store.path`."""
    return _PASSWORD.sub(r"\1:***@", url)
