"""What the `strata keys` and `strata users` commands share: the running strata's services, through their clients.

They act through the services' typed clients, as the gateway does (never on the services' tables): for the length
of one command this process joins strata's Ray cluster as a driver, in namespace ``strata``, with the cluster's
token. A strata that is not running is one clear error.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Callable, Coroutine, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

from ray.serve.exceptions import RayServeException

from strata.actors import NAMESPACE
from strata.cluster._errors import ClusterError, Unreachable
from strata.cluster._probes import ray_answers
from strata.cluster._runtime import Runtime, resolve
from strata.cluster._state import State
from strata.schemas import DomainError, ServiceUnavailable, Settings

T = TypeVar("T")


def running_strata() -> Runtime:
    """Where the configured strata runs (its data dir's state and secrets; nothing is created)."""
    settings = Settings()
    return resolve(settings, State.load(settings.data_dir.resolve()), create=False)


@contextmanager
def ray_driver(runtime: Runtime) -> Iterator[None]:
    """This process as a Ray driver of ``runtime``'s cluster, until the block ends.

    A process that is a driver of that cluster already (a script, a notebook) stays one, connection and all.
    """
    import ray

    if ray.is_initialized():
        # The GCS names itself by the node's address, which may differ from the one strata dials: compare ports.
        connected = ray.get_runtime_context().gcs_address
        if connected.rpartition(":")[2] != runtime.ray_address.rpartition(":")[2]:
            raise ClusterError(f"this process is a Ray driver of {connected}, not of strata's {runtime.ray_address}")
        yield
        return
    if not ray_answers(runtime.ray_address):
        raise Unreachable(f"strata is not running: no Ray cluster answers at {runtime.ray_address} (run `strata up`)")
    # Ray reads its authentication mode when it is first imported: the console script (strata/_console.py) puts
    # the cluster's token in the environment before that, so only a token that differs is an error here.
    wanted = runtime.ray_client_env().get("RAY_AUTH_TOKEN")
    if wanted and os.environ.get("RAY_AUTH_TOKEN") != wanted:
        raise ClusterError("this process holds another Ray token than the running strata's: unset RAY_AUTH_TOKEN")
    ray.init(address=runtime.ray_address, namespace=NAMESPACE, logging_level=logging.WARNING, log_to_driver=False)
    # A command prints its own result: Serve's handle machinery in this driver says nothing below a warning.
    logging.getLogger("ray.serve").setLevel(logging.WARNING)
    try:
        yield
    finally:
        ray.shutdown()


def with_services(work: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """Run ``work`` (which calls services through their typed clients) against the running strata.

    A client error of a service (a policy refusal, say) and a service that is not deployed become one
    :class:`ClusterError` line.
    """
    with ray_driver(running_strata()):
        try:
            return asyncio.run(work())
        except ServiceUnavailable as exc:
            raise ClusterError(f"{exc.detail or exc.title}; is every app RUNNING (`strata status`)?") from exc
        except DomainError as exc:
            raise ClusterError(exc.detail or exc.title) from exc
        except RayServeException as exc:  # Serve itself is not running on the cluster
            raise ClusterError(f"strata's Serve applications are not running ({exc}); run `strata up`") from exc
