"""The ``strata`` console script: Ray's token authentication first, then the CLI.

Ray reads its authentication mode once, when it is first imported, and the CLI imports Ray with its first module.
Commands that act through the services (``strata keys``, ``strata users``) join the cluster as a Ray driver, so the
cluster's token must be in this process's environment before that import: here it is taken from the settings
(``STRATA_RAY_AUTH_TOKEN``) or, for the local head, from the data dir, where ``strata up`` keeps it.
"""

from __future__ import annotations

import json
import os


def _cluster_token() -> str | None:
    from strata.schemas import Settings

    try:
        settings = Settings()
    except ValueError:  # invalid settings: the CLI says which, as one line
        return None
    if settings.ray_auth_token is not None:
        return settings.ray_auth_token.get_secret_value() or None
    if not settings.local_ray:
        return None  # an external cluster's token comes as RAY_AUTH_TOKEN, if it uses one
    try:
        stored = json.loads((settings.data_dir / "secrets.json").read_text())
    except (OSError, ValueError):
        return None  # nothing started yet: `strata up` makes the token
    token = stored.get("ray_auth_token") if isinstance(stored, dict) else None
    return token if isinstance(token, str) and token else None


def main() -> None:
    if "RAY_AUTH_TOKEN" not in os.environ:
        token = _cluster_token()
        if token is not None:
            os.environ.update(RAY_AUTH_MODE="token", RAY_AUTH_TOKEN=token)

    from strata.cluster.cli import main as run_cli

    run_cli()
