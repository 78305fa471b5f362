"""The base of every typed service client: one deployment handle, one hop, typed answers and errors.

Each service package exposes a small client (``UsersClient``, ``AuthClient``, ...) with one typed
method per call of its deployment. The gateway, the CLI and scripts reach a service only through
it, so the contract between processes is written down once, checked by mypy on both sides, and
checked again at run time: an answer of the wrong type is a :class:`ServiceContractError` (a bug),
never a dict passed along.

Errors keep their types across the hop. A :class:`~strata.schemas.DomainError` raised in a replica
reaches the caller as the same class with the same detail (Ray wraps it; the client unwraps it),
a call Serve refuses (queue full, no replica) is :class:`~strata.schemas.ServiceUnavailable`, so is a call whose
service cannot reach PostgreSQL (:class:`~strata.actors.postgres.DatabaseUnavailable` in the replica: a 503 with
``Retry-After`` at the gateway, not a 500), and anything else propagates as Ray raised it.
"""

from __future__ import annotations

from typing import Any, ClassVar, TypeVar

from ray.serve.handle import DeploymentHandle

from strata.actors.postgres import DatabaseUnavailable, ReadScope, current_scope
from strata.schemas import DomainError, ServiceReadiness, ServiceUnavailable
from strata.serve_apps._consistency import CONSISTENCY_ARGUMENT, Consistent, ReadAfter
from strata.serve_apps._entry import service_handle
from strata.serve_apps._router import refused_as_unavailable

T = TypeVar("T")


PROCESS_SCOPE = ReadScope()
"""The scope of calls made outside any request's (a script, the CLI, a test): every typed client of the process
carries the newest commit position it has seen, so a script reads its own writes whichever client made them."""


class ServiceContractError(TypeError):
    """A service answered something other than its client's declared type: the two sides disagree (a bug)."""


class ServiceClient:
    """Calls one service's deployment through its handle (least-connection routed, one hop).

    A subclass names its application in ``app`` and writes one method per call::

        class UsersClient(ServiceClient):
            app = "users"

            async def get_profile(self, user_id: str) -> Profile:
                return await self._call(Profile, "get_profile", user_id)

    Make one client per process (a gateway replica keeps one per service) and share it. Its handle is
    looked up on the first call and kept: a client can be made before its service is deployed (a
    gateway replica may start before the services' applications are).

    What every service replica answers (:meth:`readiness`) is here, so a plain ``ServiceClient(app="auth")``
    reaches any service application by name for those calls.
    """

    app: ClassVar[str]
    deployment: ClassVar[str | None] = None
    """The deployment it calls, when not its application's service deployment (one of the spec's ``workers``)."""
    __slots__ = ("_app", "_handle")

    def __init__(self, handle: DeploymentHandle[Any] | None = None, *, app: str | None = None) -> None:
        named: str | None = getattr(type(self), "app", None)
        if named is not None and app not in (None, named):
            raise ValueError(f"{type(self).__name__} calls the {named} service, not {app!r}")
        resolved = app if app is not None else named
        if resolved is None:
            raise TypeError("ServiceClient needs the service's app name: ServiceClient(app='users')")
        self._app = resolved
        self._handle: DeploymentHandle[Any] | None = handle

    @property
    def service(self) -> str:
        """The Serve application this client calls (``users``, ``data``, ...)."""
        return self._app

    async def readiness(self) -> ServiceReadiness:
        """The service's readiness: its path to PostgreSQL and, with an outbox, its backlog (every replica answers)."""
        # Asked of the replica's base class, outside any read scope (it is not one of the service's own calls).
        return self._checked(ServiceReadiness, "readiness", await self._send("readiness", (), {}))

    async def _call(self, answer: type[T], method: str, /, *args: Any, **kwargs: Any) -> T:
        """``method(*args, **kwargs)`` on a replica; its answer, checked to be an ``answer``."""
        return self._checked(answer, method, await self._remote(method, *args, **kwargs))

    def _checked(self, answer: type[T], method: str, result: object) -> T:
        if not isinstance(result, answer):
            raise ServiceContractError(
                f"{self._app}.{method} answered {type(result).__name__}, its client expects {answer.__name__}"
            )
        return result

    async def _call_none(self, method: str, /, *args: Any, **kwargs: Any) -> None:
        """A call that answers nothing."""
        result = await self._remote(method, *args, **kwargs)
        if result is not None:
            raise ServiceContractError(f"{self._app}.{method} answered {type(result).__name__}, expected nothing")

    async def _remote(self, method: str, /, *args: Any, **kwargs: Any) -> Any:
        """The call, inside the caller's read scope (the request's, else the process's: see
        :mod:`~strata.serve_apps._consistency`)."""
        scope = current_scope() or PROCESS_SCOPE
        kwargs[CONSISTENCY_ARGUMENT] = ReadAfter(scope.position)
        answer = await self._send(method, args, kwargs)
        if not isinstance(answer, Consistent):
            raise ServiceContractError(f"{self._app}.{method} answered without its read scope")
        scope.merge(answer.committed, answer.staleness_s, answer.clamped)
        return answer.value

    async def _send(self, method: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        if self._handle is None:
            self._handle = service_handle(self._app, type(self).deployment)
        async with refused_as_unavailable(self._app):
            try:
                return await getattr(self._handle, method).remote(*args, **kwargs)
            except DomainError as exc:
                # Ray raises a subclass of both RayTaskError and the service's error; the caller gets the error itself.
                cause = getattr(exc, "cause", None)
                raise (cause if isinstance(cause, DomainError) else exc) from None
            except DatabaseUnavailable:
                # Not the request's fault, and not a bug: the service's database does not answer (down, restarting,
                # or a command that timed out). The caller may retry; a retried POST is safe with an Idempotency-Key.
                raise ServiceUnavailable(f"the {self._app} service cannot reach its database", retry_after=2) from None
