"""Peer 2: the obvious Ray Serve build of the benchmark's two routes.

One deployment per service: a FastAPI ingress (``Gateway``: verifies the token, then calls the users
deployment by handle) and ``Users`` (an asyncpg pool, reads the profile row). Serve's defaults
everywhere (one replica each, ``max_ongoing_requests``, the power-of-two router) and Serve's Python
proxy: no tuning, as a team would first write it.

``python -m benchmarks.peer.serve_app --port P --temp-dir DIR`` starts a private local Ray (small
object store, no dashboard), deploys the app, prints ``READY`` and serves until SIGTERM or SIGINT,
then shuts Serve and Ray down.
"""

import argparse
import asyncio
import logging
import os
import signal
import sys
import threading
from typing import Any

import asyncpg
from fastapi import FastAPI, HTTPException, Request
from ray import serve
from ray.serve.handle import DeploymentHandle

from benchmarks.peer._common import PROFILE_SQL, PeerConfig, TokenVerifier, Unauthorized, public_profile

api = FastAPI()


@serve.deployment
class Users:
    def __init__(self) -> None:
        self._config = PeerConfig.from_env()
        self._pool: asyncpg.Pool | None = None
        self._lock = asyncio.Lock()

    async def _get_pool(self) -> asyncpg.Pool:
        if self._pool is None:
            async with self._lock:
                if self._pool is None:
                    self._pool = await asyncpg.create_pool(
                        self._config.dsn, min_size=2, max_size=self._config.pool_size
                    )
        return self._pool

    async def get_profile(self, user_id: str) -> dict[str, Any] | None:
        pool = await self._get_pool()
        row = await pool.fetchrow(PROFILE_SQL, user_id)
        return None if row is None else public_profile(row)


@serve.deployment
@serve.ingress(api)
class Gateway:
    def __init__(self, users: DeploymentHandle[Any]) -> None:
        self._users = users
        self._verifier = TokenVerifier(PeerConfig.from_env().public_key_pem)

    @api.get("/healthz")
    async def healthz(self) -> dict[str, str]:
        return {"status": "ok"}

    @api.get("/v1/users/me")
    async def me(self, request: Request) -> dict[str, Any]:
        try:
            user_id = self._verifier.subject(request.headers.get("authorization"))
        except Unauthorized as exc:
            raise HTTPException(status_code=401, detail=f"invalid token: {exc}") from exc
        profile: dict[str, Any] | None = await self._users.get_profile.remote(user_id)
        if profile is None:
            raise HTTPException(status_code=404, detail="no such user")
        return profile


app = Gateway.bind(Users.bind())  # type: ignore[attr-defined]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--temp-dir", required=True)
    parser.add_argument("--object-store-mb", type=int, default=128)
    args = parser.parse_args()

    import ray

    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    ray.init(
        num_cpus=os.cpu_count(),
        object_store_memory=args.object_store_mb * 1024 * 1024,
        include_dashboard=False,
        _temp_dir=args.temp_dir,
        logging_level=logging.WARNING,
    )
    try:
        serve.start(http_options={"host": "127.0.0.1", "port": args.port})
        serve.run(app, name="peer", route_prefix="/")
        print("READY", flush=True)
        while not stop.wait(1.0):
            pass
    finally:
        try:
            serve.shutdown()  # type: ignore[no-untyped-call]
        finally:
            ray.shutdown()
    sys.exit(0)


if __name__ == "__main__":
    main()
