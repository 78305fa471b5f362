"""Short, bounded checks that a server answers: used before starting (preflight) and while waiting for readiness."""

from __future__ import annotations

import ssl
import time
from collections.abc import Callable

import asyncpg
import httpx

from strata.cluster._state import answers

Check = Callable[[], str | None]


async def postgres_error(dsn: str, timeout: float = 5.0) -> str | None:
    """``None`` when ``dsn`` accepts a connection and ``SELECT 1``, else why not (one line, no secret)."""
    try:
        conn = await asyncpg.connect(dsn, timeout=timeout)
    except Exception as exc:  # noqa: BLE001 - every failure becomes a one-line reason
        return f"{type(exc).__name__}: {exc}".splitlines()[0]
    try:
        await conn.fetchval("SELECT 1", timeout=timeout)
    finally:
        await conn.close()
    return None


def wait_until(check: Check, timeout: float, interval: float = 0.5) -> str | None:
    """Run ``check`` until it returns ``None`` or ``timeout`` passes; returns the last reason."""
    deadline = time.monotonic() + timeout
    reason: str | None = "not checked"
    while time.monotonic() < deadline:
        reason = check()
        if reason is None:
            return None
        time.sleep(interval)
    return reason


def http_ready(url: str, timeout: float = 5.0, verify: ssl.SSLContext | bool = True) -> str | None:
    try:
        response = httpx.get(url, timeout=timeout, verify=verify)
    except httpx.HTTPError as exc:
        return f"{type(exc).__name__}"
    if response.status_code != 200:
        return f"HTTP {response.status_code}: {response.text[:200]}"
    return None


def ray_answers(address: str) -> bool:
    """Whether the Ray cluster at ``address`` (its GCS's ``host:port``, or ``ray://host:port``) accepts a connection."""
    host, _, port = address.removeprefix("ray://").rpartition(":")
    return port.isdigit() and answers(host or "127.0.0.1", int(port))
