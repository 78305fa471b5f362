"""Named, detached, self-healing actors: how every long-lived strata actor is found or created."""

from __future__ import annotations

from typing import Any, cast

from ray.actor import ActorClass, ActorHandle

NAMESPACE = "strata"


def ensure_detached(actor_class: ActorClass[Any], name: str, *args: Any, **options: Any) -> ActorHandle[Any]:
    """The actor ``name`` in namespace ``strata``, created with ``args`` if it does not exist yet.

    Detached (it outlives its creator), restarted by Ray whenever it dies, and
    asking for no CPU of its own (it waits on I/O); ``options`` add to these.
    """
    handle = actor_class.options(
        name=name,
        namespace=NAMESPACE,
        lifetime="detached",
        get_if_exists=True,
        num_cpus=0,
        max_restarts=-1,
        max_task_retries=0,
        **options,
    ).remote(*args)
    return cast("ActorHandle[Any]", handle)
