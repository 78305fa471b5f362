"""The base of every typed service client: one deployment handle, one hop, typed answers and errors.

Each service package exposes a small client (``UsersClient``, ``AuthClient``, ...) with one typed
method per call of its deployment. The gateway, the CLI and scripts reach a service only through
it, so the contract between processes is written down once, checked by mypy on both sides, and
checked again at run time: an answer of the wrong type is a :class:`ServiceContractError` (a bug),
never a dict passed along.

Errors keep their types across the hop. A :class:`~strata.schemas.DomainError` raised in a replica
reaches the caller as the same class with the same detail (Ray wraps it; the client unwraps it),
a call Serve refuses (queue full, no replica) is :class:`~strata.schemas.ServiceUnavailable`, and
anything else propagates as Ray raised it.
"""

from __future__ import annotations

from typing import Any, ClassVar, TypeVar

from ray.serve.handle import DeploymentHandle

from strata.schemas import DomainError
from strata.serve_apps._entry import service_handle
from strata.serve_apps._router import refused_as_unavailable

T = TypeVar("T")


class ServiceContractError(TypeError):
    """A service answered something other than its client's declared type: the two sides disagree (a bug)."""


class ServiceClient:
    """Calls one service's deployment through its handle (least-connection routed, one hop).

    A subclass names its application in ``app`` and writes one method per call::

        class UsersClient(ServiceClient):
            app = "users"

            async def get_profile(self, user_id: str) -> Profile:
                return await self._call(Profile, "get_profile", user_id)

    The handle is looked up once, at the first call: making a client touches no Ray, so a gateway replica
    may make its clients before the services' applications are deployed (Serve deploys them all at once,
    and looking up a deployment not there yet fails). Make one client per process (a gateway replica keeps
    one per service) and share it.
    """

    app: ClassVar[str]
    __slots__ = ("_handle",)

    def __init__(self, handle: DeploymentHandle[Any] | None = None) -> None:
        self._handle: DeploymentHandle[Any] | None = handle

    async def _call(self, answer: type[T], method: str, /, *args: Any, **kwargs: Any) -> T:
        """``method(*args, **kwargs)`` on a replica; its answer, checked to be an ``answer``."""
        result = await self._remote(method, *args, **kwargs)
        if not isinstance(result, answer):
            raise ServiceContractError(
                f"{self.app}.{method} answered {type(result).__name__}, its client expects {answer.__name__}"
            )
        return result

    async def _call_none(self, method: str, /, *args: Any, **kwargs: Any) -> None:
        """A call that answers nothing."""
        result = await self._remote(method, *args, **kwargs)
        if result is not None:
            raise ServiceContractError(f"{self.app}.{method} answered {type(result).__name__}, expected nothing")

    async def _remote(self, method: str, /, *args: Any, **kwargs: Any) -> Any:
        if self._handle is None:
            self._handle = service_handle(self.app)
        async with refused_as_unavailable(self.app):
            try:
                return await getattr(self._handle, method).remote(*args, **kwargs)
            except DomainError as exc:
                # Ray raises a subclass of both RayTaskError and the service's error; the caller gets the error itself.
                cause = getattr(exc, "cause", None)
                raise (cause if isinstance(cause, DomainError) else exc) from None
