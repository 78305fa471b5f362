"""The typed service clients over a fake deployment handle (no Ray): calls, answers, errors, and their surface."""

from __future__ import annotations

import inspect
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any

import pytest
from ray.exceptions import RayTaskError
from ray.serve.exceptions import BackPressureError

from strata.actors.postgres import CommandTimedOut, DatabaseUnavailable
from strata.contracts import (
    CONSISTENCY_ARGUMENT,
    AuditClient,
    Consistent,
    DataClient,
    ServiceClient,
    ServiceContractError,
    UsersClient,
)
from strata.schemas import (
    AuditPage,
    Collection,
    CollectionCreate,
    CreatedCollection,
    CreatedItem,
    DatabaseCheck,
    DataCaller,
    DeletedUser,
    IfMatch,
    Item,
    ItemCreate,
    ItemNotFound,
    ItemReplace,
    Profile,
    RolePermissions,
    ServiceReadiness,
    ServiceUnavailable,
    UserNotFound,
    UserPage,
)
from strata.serve_apps._entry import public_methods
from strata.serve_apps._replica import ServiceReplica
from strata.serve_apps.audit import AuditService
from strata.serve_apps.data import DataService
from strata.serve_apps.users import UsersService


class FakeHandle:
    """Answers ``handle.<method>.remote(*args, **kwargs)`` from a table, recording each call."""

    def __init__(self, answers: dict[str, Any]) -> None:
        self.answers = answers
        self.calls: list[tuple[str, tuple[Any, ...], dict[str, Any]]] = []

    def __getattr__(self, method: str) -> Any:
        handle = self

        class Method:
            @staticmethod
            async def remote(*args: Any, **kwargs: Any) -> Any:
                # As a replica's `consistent` wrapper does: the read scope's argument in, the answer wrapped out.
                asked = kwargs.pop(CONSISTENCY_ARGUMENT, None)
                handle.calls.append((method, args, kwargs))
                answer = handle.answers[method]
                if isinstance(answer, BaseException):
                    raise answer
                return answer if asked is None else Consistent(answer, committed=None, staleness_s=None)

        return Method()


def _as_handle(fake: FakeHandle) -> Any:
    return fake


NOW = datetime(2026, 5, 6, 7, 8, 9, tzinfo=UTC).isoformat()
PROFILE = Profile(
    user_id="0b0f6a1e-33a7-4c55-9b5e-6f1d2a3b4c5d",
    email="ada@example.org",
    display_name="Ada",
    roles=["member"],
    disabled=False,
    perm_version=1,
    version=2,
    created_at=NOW,
    updated_at=NOW,
)
CALLER = DataCaller(user_id="7a0c3d4e-1f2b-4c5d-8e9f-0a1b2c3d4e5f")
COLLECTION = Collection(
    id="c0ffee00-0000-4000-8000-000000000001",
    owner_id=CALLER.user_id,
    name="Notes",
    description="",
    item_schema=None,
    version=1,
    created_at=NOW,
    updated_at=NOW,
)
ITEM = Item(
    id="5c1d0000-0000-4000-8000-000000000002",
    collection_id=COLLECTION.id,
    title="A note",
    attributes={"n": [1, 2.5, None]},
    tags=["a"],
    version=1,
    created_by=CALLER.user_id,
    updated_by=CALLER.user_id,
    created_at=NOW,
    updated_at=NOW,
)


async def test_a_users_call_sends_options_by_keyword_and_answers_the_model() -> None:
    fake = FakeHandle({"set_roles": PROFILE, "list_users": UserPage(items=[PROFILE], next_cursor=None)})
    users = UsersClient(_as_handle(fake))

    profile = await users.set_roles(PROFILE.user_id, ("member",), request_id="req-1", actor="admin-1")
    page = await users.list_users(limit=2, role="member")

    assert profile == PROFILE and page.items == [PROFILE]
    assert fake.calls == [
        ("set_roles", (PROFILE.user_id, ["member"]), {"request_id": "req-1", "actor": "admin-1"}),
        ("list_users", (), {"cursor": None, "limit": 2, "role": "member", "email_prefix": None}),
    ]


async def test_every_client_method_answers_its_declared_model() -> None:
    since = datetime(2026, 1, 1, tzinfo=UTC)
    users = UsersClient(
        _as_handle(
            FakeHandle(
                {
                    "get_profile": PROFILE,
                    "update_profile": PROFILE,
                    "get_user": PROFILE,
                    "disable": PROFILE,
                    "delete_user": DeletedUser(user_id=PROFILE.user_id),
                    "role_permissions": RolePermissions(roles={"member": ["profile:read"]}),
                }
            )
        )
    )
    data_handle = FakeHandle(
        {
            "create_collection": CreatedCollection(collection=COLLECTION),
            "create_item": CreatedItem(item=ITEM),
            "get_item": ITEM,
            "replace_item": ITEM,
            "delete_item": None,
        }
    )
    data = DataClient(_as_handle(data_handle))
    audit_handle = FakeHandle({"query": AuditPage(items=[], next_cursor=None)})
    audit = AuditClient(_as_handle(audit_handle))

    assert await users.get_profile(PROFILE.user_id) == PROFILE
    assert await users.update_profile(PROFILE.user_id, None) == PROFILE
    assert await users.get_user(PROFILE.user_id) == PROFILE
    assert await users.disable(PROFILE.user_id, actor="a") == PROFILE
    assert await users.delete_user(PROFILE.user_id) == DeletedUser(user_id=PROFILE.user_id)
    assert (await users.role_permissions()).granted(("member", "nobody")) == {"profile:read"}
    new_item = ItemCreate(title="A note", attributes={"n": 1})
    assert (await data.create_collection(CALLER, CollectionCreate(name="Notes"))).collection == COLLECTION
    assert (await data.create_item(CALLER, COLLECTION.id, new_item, request_id="r")).item == ITEM
    assert await data.get_item(CALLER, COLLECTION.id, ITEM.id) == ITEM
    replaced = await data.replace_item(
        CALLER, COLLECTION.id, ITEM.id, ItemReplace(title="B", attributes={"x": [1, "two"]}), if_match=IfMatch(any=True)
    )
    assert replaced == ITEM
    assert (
        await data.delete_item(CALLER, COLLECTION.id, ITEM.id, if_match=IfMatch(versions=(1,)), request_id="r") is None
    )
    assert await audit.query(actor="a", event_type="t", since=since) == AuditPage(items=[], next_cursor=None)
    assert data_handle.calls[1] == (
        "create_item",
        (CALLER, COLLECTION.id, new_item),
        {"idempotency_key": None, "request_id": "r"},
    )
    assert data_handle.calls[-1] == (
        "delete_item",
        (CALLER, COLLECTION.id, ITEM.id),
        {"if_match": IfMatch(versions=(1,)), "request_id": "r"},
    )
    assert audit_handle.calls == [
        (
            "query",
            (),
            {"cursor": None, "limit": 50, "actor": "a", "event_type": "t", "since": since, "until": None},
        )
    ]


async def test_an_answer_of_another_type_is_a_contract_error_not_a_dict_passed_along() -> None:
    users = UsersClient(_as_handle(FakeHandle({"get_user": PROFILE.model_dump(), "role_permissions": None})))
    data = DataClient(_as_handle(FakeHandle({"delete_item": ITEM})))

    with pytest.raises(ServiceContractError, match=r"users.get_user answered dict, its client expects Profile"):
        await users.get_user(PROFILE.user_id)
    with pytest.raises(ServiceContractError, match="RolePermissions"):
        await users.role_permissions()
    with pytest.raises(ServiceContractError, match="expected nothing"):
        await data.delete_item(CALLER, COLLECTION.id, ITEM.id, if_match=IfMatch(any=True))


async def test_a_service_error_keeps_its_class_and_detail_across_the_hop() -> None:
    raised = ItemNotFound("no item 42")
    wrapped = RayTaskError("get_item", "Traceback ...", raised).as_instanceof_cause()  # what Ray raises at the caller
    assert isinstance(wrapped, ItemNotFound) and type(wrapped) is not ItemNotFound
    data = DataClient(_as_handle(FakeHandle({"get_item": wrapped})))
    users = UsersClient(_as_handle(FakeHandle({"get_user": UserNotFound("no such user")})))

    with pytest.raises(ItemNotFound) as caught:
        await data.get_item(CALLER, COLLECTION.id, "42")
    with pytest.raises(UserNotFound, match="no such user"):
        await users.get_user("nobody")

    assert type(caught.value) is ItemNotFound and caught.value.detail == "no item 42"
    assert caught.value.status == 404 and caught.value.slug == "not-found"


async def test_a_call_serve_refuses_is_service_unavailable_with_retry_after() -> None:
    refused = BackPressureError(num_queued_requests=10, max_queued_requests=10, retry_after_s=2.5)
    audit = AuditClient(_as_handle(FakeHandle({"query": refused})))

    with pytest.raises(ServiceUnavailable) as caught:
        await audit.query()

    assert caught.value.retry_after == 2.5 and "audit" in caught.value.detail


async def test_readiness_is_asked_of_any_service_by_name() -> None:
    report = ServiceReadiness(database=DatabaseCheck(status="up"))
    fake = FakeHandle({"readiness": report})

    assert await ServiceClient(_as_handle(fake), app="auth").readiness() == report
    assert ServiceClient(_as_handle(fake), app="auth").service == "auth"
    assert UsersClient(_as_handle(fake)).service == "users"
    with pytest.raises(ValueError, match="calls the users service"):
        UsersClient(_as_handle(fake), app="data")
    with pytest.raises(TypeError, match="app name"):
        ServiceClient(_as_handle(fake))


_EVERY_SERVICE = {"readiness", "inject_fault", "clear_fault", "fault_state"}
"""Calls every deployment answers: readiness through any client, fault injection only from tests' raw handles."""


@pytest.mark.parametrize(
    ("client", "deployment"),
    [(UsersClient, UsersService), (DataClient, DataService), (AuditClient, AuditService)],
)
def test_a_client_has_one_method_per_call_of_its_deployment_with_the_same_parameters(
    client: type[ServiceClient], deployment: Any
) -> None:
    service_class = deployment.func_or_class
    calls = set(public_methods(service_class)) - _EVERY_SERVICE
    methods = {
        name
        for name, member in inspect.getmembers(client, inspect.iscoroutinefunction)
        if not name.startswith("_") and name not in _EVERY_SERVICE
    }

    assert methods == calls
    for name in calls:
        ours = inspect.signature(getattr(client, name)).parameters
        theirs = inspect.signature(getattr(service_class, name)).parameters
        assert [(p.name, p.kind, p.default) for p in ours.values()] == [
            (p.name, p.kind, p.default) for p in theirs.values()
        ], name


async def test_a_service_that_cannot_reach_its_database_is_unavailable_not_an_error() -> None:
    # The replica turns it into ServiceUnavailable before the hop (callers hold no database code to recognise it by),
    # and the client raises that as it is.
    class Stalled(ServiceReplica):
        service = "data"

        async def get_item(self, caller: DataCaller, collection_id: str, item_id: str) -> Item:
            raise self.raised

    for raised in (DatabaseUnavailable("connection refused"), CommandTimedOut("command timed out")):
        replica: Any = SimpleNamespace(service="data", raised=raised)  # a replica's state, not one to start
        with pytest.raises(ServiceUnavailable) as in_replica:
            await Stalled.get_item(replica, CALLER, COLLECTION.id, ITEM.id)
        wrapped = RayTaskError("get_item", "Traceback ...", in_replica.value).as_instanceof_cause()
        data = DataClient(_as_handle(FakeHandle({"get_item": wrapped})))
        with pytest.raises(ServiceUnavailable) as caught:
            await data.get_item(CALLER, COLLECTION.id, ITEM.id)
        assert type(caught.value) is ServiceUnavailable
        assert caught.value.status == 503 and caught.value.retry_after == 2
        assert caught.value.detail == "the data service cannot reach its database"
        assert "connection refused" not in caught.value.detail  # no internal detail reaches a client
