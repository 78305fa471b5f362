"""Peer 1: a plain FastAPI + uvicorn + asyncpg monolith serving the benchmark's two routes.

Run with ``uvicorn benchmarks.peer.monolith:app --workers <cores>``; each worker process holds its
own asyncpg pool and verifies tokens locally (no call to another service).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import asyncpg
from fastapi import FastAPI, HTTPException, Request

from benchmarks.peer._common import PROFILE_SQL, PeerConfig, TokenVerifier, Unauthorized, public_profile


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    config = PeerConfig.from_env()
    app.state.verifier = TokenVerifier(config.public_key_pem)
    app.state.pool = await asyncpg.create_pool(config.dsn, min_size=2, max_size=config.pool_size)
    try:
        yield
    finally:
        await app.state.pool.close()


app = FastAPI(lifespan=lifespan)


@app.get("/healthz")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@app.get("/v1/users/me")
async def me(request: Request) -> dict[str, Any]:
    try:
        user_id = request.app.state.verifier.subject(request.headers.get("authorization"))
    except Unauthorized as exc:
        raise HTTPException(status_code=401, detail=f"invalid token: {exc}") from exc
    row = await request.app.state.pool.fetchrow(PROFILE_SQL, user_id)
    if row is None:
        raise HTTPException(status_code=404, detail="no such user")
    return public_profile(row)
