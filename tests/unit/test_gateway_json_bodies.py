"""JSON bodies at the edge: parsed once, nesting bounded cheaply, media types refused with 415 (no Ray)."""

from __future__ import annotations

import json

import pytest
from fastapi import APIRouter, FastAPI, Request
from fastapi.testclient import TestClient

from strata.schemas import DomainError, Unprocessable
from strata.serve_apps.gateway._json_bodies import (
    CONTENT_TYPES_KEY,
    JsonBodyRoute,
    json_depth_within,
    media_type,
    parse_json_body,
)


def _depth(value: object) -> int:
    if isinstance(value, dict):
        return 1 + max((_depth(v) for v in value.values()), default=0)
    if isinstance(value, list):
        return 1 + max((_depth(v) for v in value), default=0)
    return 0


@pytest.mark.parametrize(
    "value",
    [
        {},
        [],
        {"a": [1, {"b": [[]]}]},
        [[[]], [[[[]]]], {}],
        {"text": "[[[[[[[[[[ not nesting {{{{", "esc": 'a \\" [[[ "'},
        {"a": {"b": {"c": {"d": {"e": []}}}}},
        [{"x": [{"y": [{"z": 1}]}]}],
    ],
)
def test_the_byte_depth_check_agrees_with_a_walk_of_the_value(value: object) -> None:
    raw = json.dumps(value).encode()
    depth = _depth(value)
    assert json_depth_within(raw, depth)
    if depth > 0:
        assert not json_depth_within(raw, depth - 1)


def test_ten_thousand_brackets_are_refused_as_too_deep_not_a_recursion_error() -> None:
    for raw in (b"[" * 10_000 + b"]" * 10_000, b'{"a":' * 10_000 + b"1" + b"}" * 10_000, b"[" * 900 + b"]" * 900):
        with pytest.raises(Unprocessable) as caught:
            parse_json_body(raw, 20)
        assert caught.value.extra["code"] in ("too-deep", "invalid-json")


@pytest.mark.parametrize("raw", [b"{nope", b'{"a": NaN}', b'"\\ud800"', b'{"t": "\xff"}', b""])
def test_what_postgresql_would_refuse_later_is_invalid_json_now(raw: bytes) -> None:
    with pytest.raises(Unprocessable) as caught:
        parse_json_body(raw, 20)
    assert caught.value.extra["code"] == "invalid-json"


def test_media_types_are_compared_bare() -> None:
    assert media_type("Application/JSON; charset=utf-8") == "application/json"
    assert media_type("application/merge-patch+json") == "application/merge-patch+json"
    assert media_type(None) is None


def _app() -> TestClient:
    router = APIRouter(route_class=JsonBodyRoute)

    @router.patch("/thing", openapi_extra={CONTENT_TYPES_KEY: ["application/merge-patch+json", "application/json"]})
    async def patch_thing(request: Request) -> dict[str, object]:
        return {"got": await request.json()}

    @router.post("/thing")
    async def post_thing(body: dict[str, int]) -> dict[str, int]:
        return body

    app = FastAPI()
    app.include_router(router)

    @app.exception_handler(DomainError)
    async def problem(request: Request, exc: DomainError) -> object:
        from fastapi.responses import JSONResponse

        headers = exc.extra.get("headers") or {}
        return JSONResponse({"status": exc.status, "code": exc.extra.get("code")}, exc.status, headers=headers)

    return TestClient(app)


def test_a_route_hands_the_parsed_body_to_fastapi_and_refuses_other_media_types_with_415() -> None:
    client = _app()
    merge = client.patch("/thing", content=b'{"a": 1}', headers={"Content-Type": "application/merge-patch+json"})
    assert merge.status_code == 200 and merge.json() == {"got": {"a": 1}}
    json_patch = client.patch("/thing", content=b"[]", headers={"Content-Type": "application/json-patch+json"})
    assert json_patch.status_code == 415
    assert json_patch.headers["accept-patch"] == "application/merge-patch+json, application/json"
    assert client.post("/thing", json={"n": 1}).json() == {"n": 1}
    deep = client.post("/thing", content=b"[" * 10_000 + b"]" * 10_000, headers={"Content-Type": "application/json"})
    assert deep.status_code == 422 and deep.json()["code"] == "too-deep"
