"""The base of every typed service client: one deployment handle, one hop, typed answers and errors.

Each service's contract (:mod:`strata.contracts.users`, ``.auth``, ...) holds a Protocol of its operations
(``UsersOperations``) and a small client (``UsersClient``) with one typed method per operation. The gateway, the CLI
and scripts reach a service only through it. A client method names the Protocol's function, never a string::

    async def get_profile(self, user_id: str) -> Profile:
        return await self._call(UsersOperations.get_profile, user_id)

so the method called on the replica is the operation's name, the arguments are checked by mypy against the
operation's parameters (``ParamSpec``), the answer's type is the operation's return annotation, and the replica's
deployment is checked by mypy to implement the same Protocol. The contract is written down once, checked on both
sides, and checked again at run time: an answer of the wrong type is a :class:`ServiceContractError` (a bug), never a
dict passed along.

Errors keep their types across the hop. A :class:`~strata.schemas.DomainError` raised in a replica reaches the caller
as the same class with the same detail (Ray wraps it; the client unwraps it), and a call Serve refuses (queue full, no
replica) is :class:`~strata.schemas.ServiceUnavailable`. So is a call whose service cannot reach PostgreSQL: the
replica turns its :class:`~strata.actors.postgres.DatabaseUnavailable` into ``ServiceUnavailable`` before the hop
(``ServiceReplica``), so a caller needs no database module to recognise it (a 503 with ``Retry-After`` at the gateway,
not a 500). Anything else propagates as Ray raised it.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from typing import Any, ClassVar, Concatenate, ParamSpec, Protocol, TypeVar, cast, get_type_hints

from ray.serve.handle import DeploymentHandle

from strata.actors import ReadScope, current_scope
from strata.contracts._hop import CONSISTENCY_ARGUMENT, Consistent, ReadAfter, refused_as_unavailable, service_handle
from strata.schemas import DomainError, ServiceReadiness

P = ParamSpec("P")
R = TypeVar("R")

Operation = Callable[Concatenate[Any, P], Awaitable[R]]
"""A Protocol's operation as its class holds it (``UsersOperations.get_profile``): its first parameter is ``self``."""


PROCESS_SCOPE = ReadScope()
"""The scope of calls made outside any request's (a script, the CLI, a test): every typed client of the process
carries the newest commit position it has seen, so a script reads its own writes whichever client made them."""


class ServiceContractError(TypeError):
    """A service answered something other than its client's declared type: the two sides disagree (a bug)."""


class ReplicaOperations(Protocol):
    """What every service replica answers, whatever its service (``ServiceReplica`` implements it)."""

    async def readiness(self) -> ServiceReadiness:
        """Its path to PostgreSQL and, with an outbox, its backlog."""
        ...


@functools.cache
def answer_type(operation: Callable[..., Any]) -> type:
    """The class an operation's answer must be an instance of: its return annotation (``NoneType`` for ``None``)."""
    answer = get_type_hints(operation).get("return")
    if not isinstance(answer, type):
        raise TypeError(f"{operation.__qualname__} must name a class as its answer, not {answer!r}")
    return answer


class ServiceClient:
    """Calls one service's deployment through its handle (least-connection routed, one hop).

    A subclass names its application in ``app`` and writes one method per operation of its Protocol::

        class UsersClient(ServiceClient):
            app = "users"

            async def get_profile(self, user_id: str) -> Profile:
                return await self._call(UsersOperations.get_profile, user_id)

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
        method = ReplicaOperations.readiness.__name__
        return self._checked(ServiceReadiness, method, await self._send(method, (), {}))

    async def _call(self, operation: Operation[P, R], /, *args: P.args, **kwargs: P.kwargs) -> R:
        """``operation(*args, **kwargs)`` on a replica (the method of the operation's name); its answer, checked to be
        what the operation declares."""
        method = operation.__name__
        return cast(R, self._checked(answer_type(operation), method, await self._remote(method, *args, **kwargs)))

    def _checked(self, answer: type[R], method: str, result: object) -> R:
        if not isinstance(result, answer):
            if answer is type(None):
                raise ServiceContractError(f"{self._app}.{method} answered {type(result).__name__}, expected nothing")
            raise ServiceContractError(
                f"{self._app}.{method} answered {type(result).__name__}, its client expects {answer.__name__}"
            )
        return result

    async def _remote(self, method: str, /, *args: Any, **kwargs: Any) -> Any:
        """The call, inside the caller's read scope (the request's, else the process's: see
        :mod:`~strata.contracts._hop`)."""
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
