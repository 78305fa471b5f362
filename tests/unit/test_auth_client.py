"""AuthClient against the deployment's own signatures, through a fake handle (no Ray)."""

from __future__ import annotations

import inspect
from typing import Any

import pytest

from strata.contracts import CONSISTENCY_ARGUMENT, AuthClient, Consistent, ServiceClient, ServiceContractError
from strata.schemas import (
    InvalidCredentials,
    Jwks,
    KeyRotation,
    PasswordChanged,
    Registered,
    RevokedSessions,
    TokenPair,
    TooManyRequests,
)
from strata.serve_apps._entry import public_methods
from strata.serve_apps._replica import ServiceReplica
from strata.serve_apps.auth import AuthService

SERVICE_CLASS = AuthService.func_or_class
PAIR = TokenPair(access_token="a.b.c", expires_in=300, refresh_token="r" * 43, refresh_expires_in=3600)


class FakeHandle:
    """Binds each call's arguments to the deployment method's signature, as the replica would, and answers
    ``answers[method]`` (or raises it)."""

    def __init__(self, answers: dict[str, Any]) -> None:
        self.answers = answers
        self.calls: dict[str, dict[str, Any]] = {}

    def __getattr__(self, method: str) -> Any:
        handle = self

        class Method:
            async def remote(self, *args: Any, **kwargs: Any) -> Any:
                # The read scope's argument is the `consistent` wrapper's, not the method's: it wraps the answer.
                asked = kwargs.pop(CONSISTENCY_ARGUMENT, None)
                bound = inspect.signature(getattr(SERVICE_CLASS, method)).bind(None, *args, **kwargs)
                handle.calls[method] = {k: v for k, v in bound.arguments.items() if k != "self"}
                answer = handle.answers[method]
                if isinstance(answer, Exception):
                    raise answer
                return answer if asked is None else Consistent(answer, committed=None, staleness_s=None)

        return Method()


def client_with(**answers: Any) -> tuple[AuthClient, FakeHandle]:
    handle = FakeHandle(answers)
    return AuthClient(handle), handle  # type: ignore[arg-type]


def test_the_client_has_one_method_per_call_of_the_auth_service() -> None:
    # The calls every replica answers (readiness, database check, fault injection) are not the auth service's.
    service_calls = set(public_methods(SERVICE_CLASS)) - set(public_methods(ServiceReplica))
    # ...nor are the calls every client inherits (readiness).
    inherited = {name for name, _ in inspect.getmembers(ServiceClient, inspect.iscoroutinefunction)}
    client_calls = {
        name
        for name, _ in inspect.getmembers(AuthClient, inspect.iscoroutinefunction)
        if not name.startswith("_") and name not in inherited
    }
    assert client_calls == service_calls


async def test_each_call_hands_its_arguments_to_the_deployment_by_their_names() -> None:
    registered = Registered(user_id="u-1", email="a@example.org")
    ended = RevokedSessions(revoked_sessions=1)
    changed = PasswordChanged(user_id="u-1", revoked_sessions=2)
    rotation = KeyRotation(kid="new", previous_kid="old")
    document = Jwks(keys=[{"kty": "OKP", "kid": "new"}])
    auth, handle = client_with(
        register=registered,
        login=PAIR,
        refresh=PAIR,
        logout=ended,
        logout_all=ended,
        change_password=changed,
        jwks=document,
        rotate_keys=rotation,
    )

    assert await auth.register("a@example.org", "pw", request_id="r1") == registered
    assert await auth.login("a@example.org", "pw", client="198.51.100.7", request_id="r2") == PAIR
    assert await auth.refresh("tok", request_id="r3") == PAIR
    assert await auth.logout("tok", request_id="r4") == ended
    assert await auth.logout_all("u-1", request_id="r5") == ended
    assert await auth.change_password("u-1", "old-pw", "new-pw", request_id="r6") == changed
    assert await auth.jwks() == document
    assert await auth.rotate_keys() == rotation

    assert handle.calls == {
        "register": {"email": "a@example.org", "password": "pw", "request_id": "r1"},
        "login": {"email": "a@example.org", "password": "pw", "client": "198.51.100.7", "request_id": "r2"},
        "refresh": {"refresh_token": "tok", "request_id": "r3"},
        "logout": {"refresh_token": "tok", "request_id": "r4"},
        "logout_all": {"user_id": "u-1", "request_id": "r5"},
        "change_password": {
            "user_id": "u-1",
            "current_password": "old-pw",
            "new_password": "new-pw",
            "request_id": "r6",
        },
        "jwks": {},
        "rotate_keys": {},
    }


async def test_an_answer_of_another_type_is_a_contract_error() -> None:
    auth, _ = client_with(refresh={"access_token": "a.b.c"})  # a dict, as the service answered before its models
    with pytest.raises(ServiceContractError, match=r"auth\.refresh answered dict, its client expects TokenPair"):
        await auth.refresh("tok")


async def test_a_domain_error_keeps_its_class_and_retry_after() -> None:
    auth, _ = client_with(login=TooManyRequests("too many failed attempts", retry_after=4.0))
    with pytest.raises(TooManyRequests) as caught:
        await auth.login("a@example.org", "pw")
    assert caught.value.status == 429 and caught.value.retry_after == 4.0

    auth, _ = client_with(login=InvalidCredentials("wrong email or password"))
    with pytest.raises(InvalidCredentials):
        await auth.login("a@example.org", "pw")
