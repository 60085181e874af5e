"""Service URLs (PostgreSQL, Redis) as greenroom shows them: without their passwords."""

from __future__ import annotations

import re

__all__ = ["shown_url"]

_PASSWORD = re.compile(r"(://[^:/@]*):[^@/]*@")


def shown_url(url: str) -> str:
    """`url` with any password replaced by `***`, for messages, logs and `Store.path`."""
    return _PASSWORD.sub(r"\1:***@", url)
