"""The API's one OpenAPI document (``/openapi.json``) and its docs page (``/docs``).

FastAPI describes each route from its models; this module completes the
document from the routing table (:mod:`._access`), so that it cannot drift from
what the edge enforces:

- the ``bearerAuth`` security scheme (HTTP bearer, a JWT) on exactly the
  operations whose permission is not ``PUBLIC``, with the permission named in
  ``x-strata-permission``;
- the problem+json (``Problem``) answers the edge gives: 401 where a token is
  needed, 403 where a permission is, 413 and 422 where a body or parameters are
  read, 429 where the route is rate-limited, 503 where a service is called and
  504 everywhere (the deadline); FastAPI's own 422 schema is replaced, since
  strata answers validation errors as problems too.

Route modules declare the errors only their service knows (404, 409, ...)
with :func:`~._problems.problem_responses`. The data routes' headers, 304s,
links and limits are added by :mod:`._data_document`. The document is built once per
replica, on first request.

``/docs`` is Swagger UI with its assets served by the gateway itself, from the
installed ``swagger-ui-py`` package (``swagger_ui/static``), at
``/docs/assets/<file>``: the page names no other host (no CDN, no validator
badge), so it works offline and a third party's script never runs on the API's
origin.
"""

from __future__ import annotations

from collections.abc import Sequence
from importlib import resources
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.openapi.utils import get_openapi
from fastapi.responses import HTMLResponse, Response
from pydantic import BaseModel
from pydantic.json_schema import models_json_schema
from starlette.exceptions import HTTPException

from strata.schemas import Problem, Settings
from strata.serve_apps.gateway import _access
from strata.serve_apps.gateway._data_document import complete_data_operation, data_limits_text
from strata.serve_apps.gateway._problems import problem_response_object

DOCS_ASSETS = "/docs/assets"
SWAGGER_ASSETS: dict[str, str] = {
    "swagger-ui-bundle.js": "text/javascript; charset=utf-8",
    "swagger-ui.css": "text/css; charset=utf-8",
    "favicon-32x32.png": "image/png",
}
"""The files of the installed Swagger UI the docs page loads, with their content types (nothing else is served)."""
_ASSET_CACHE_S = 3600

BEARER = "bearerAuth"
_METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")
_DESCRIPTION = """\
strata's HTTP API. Every route is versioned under `/v1` except probes and documents.

- **Errors** are RFC 9457 problem details (`application/problem+json`) with a stable `type`;
  `request_id` names the request in strata's logs.
- **Request ids**: send a well-formed `X-Request-ID` (8-128 of `A-Za-z0-9._:-`) or get one; it is echoed
  in the response and recorded in the events the request caused (CloudEvents `requestid`).
- **Authentication**: routes marked with the lock need `Authorization: Bearer <access token>` (from
  `/v1/auth/login`); `x-strata-permission` names the permission one of the caller's roles must grant.
- **Limits**: request bodies up to the configured size (413 beyond); each request has a deadline (504 past it);
  a client may ask for a shorter one with `Request-Timeout: 2.5` (seconds), `2.5s` or `250ms`.
  Rate limits answer 429 with `Retry-After` and the `RateLimit` / `RateLimit-Policy` headers.
"""


def build_openapi(app: FastAPI, extra_models: Sequence[type[BaseModel]] = ()) -> dict[str, Any]:
    """The completed OpenAPI document of ``app`` (cached on it).

    ``extra_models`` are documented in ``components/schemas`` though no route validates them (the PATCH bodies,
    read raw as JSON Merge Patches). The limits stated are those of ``app.state.settings`` (the replica's).
    """
    if app.openapi_schema:
        return app.openapi_schema
    settings: Settings = getattr(app.state, "settings", None) or Settings()
    schema = get_openapi(
        title=app.title,
        version=app.version,
        description=_DESCRIPTION + data_limits_text(settings),
        routes=app.routes,
        tags=[
            {"name": "auth", "description": "Accounts, tokens and sessions (the auth service)."},
            {"name": "users", "description": "Profiles and user administration (the users service)."},
            {"name": "audit", "description": "The audit log of every event (admins)."},
            {"name": "data", "description": "Collections, their members and items (the data service)."},
            {"name": "operations", "description": "Probes and documents."},
        ],
    )
    components = schema.setdefault("components", {})
    components.setdefault("securitySchemes", {})[BEARER] = {
        "type": "http",
        "scheme": "bearer",
        "bearerFormat": "JWT",
        "description": "An access token from `POST /v1/auth/login` (EdDSA or RS256; keys at /.well-known/jwks.json).",
    }
    schemas = components.setdefault("schemas", {})
    schemas.setdefault("Problem", Problem.model_json_schema(ref_template="#/components/schemas/{model}"))
    if extra_models:
        _, extra = models_json_schema(
            [(model, "validation") for model in extra_models], ref_template="#/components/schemas/{model}"
        )
        for name, model_schema in extra.get("$defs", {}).items():
            schemas.setdefault(name, model_schema)
    for path, item in schema.get("paths", {}).items():
        for method, operation in item.items():
            if method in _METHODS:
                _complete_operation(method.upper(), path, operation)
                route = _access.route_for(method, path)
                if route is not None and route.app == "data":
                    complete_data_operation(method.upper(), path, operation, schemas, settings)
    # FastAPI's validation-error models are unused once every 422 is a problem.
    text = repr(schema["paths"])
    for name in ("HTTPValidationError", "ValidationError"):
        if f"#/components/schemas/{name}'" not in text:
            schemas.pop(name, None)
    app.openapi_schema = schema
    return schema


def _complete_operation(method: str, path: str, operation: dict[str, Any]) -> None:
    route = _access.route_for(method, path)
    responses: dict[str, Any] = operation.setdefault("responses", {})
    if "422" in responses:
        responses["422"] = problem_response_object(422)
    permission = route.permission if route is not None else None
    if permission is not None and permission != _access.PUBLIC:
        operation["security"] = [{BEARER: []}]
        responses.setdefault("401", problem_response_object(401))
        if permission != _access.AUTHENTICATED:
            operation["x-strata-permission"] = permission
            responses.setdefault("403", problem_response_object(403))
    if "requestBody" in operation:
        responses.setdefault("413", problem_response_object(413))
        responses.setdefault("422", problem_response_object(422))
    if operation.get("parameters"):
        responses.setdefault("422", problem_response_object(422))
    if route is not None and getattr(route, "limit", "none") != "none":
        responses.setdefault("429", problem_response_object(429))
    if route is not None and getattr(route, "app", "gateway") != "gateway":
        responses.setdefault("503", problem_response_object(503))
    responses.setdefault("504", problem_response_object(504))
    operation["responses"] = dict(sorted(responses.items()))


def swagger_asset(name: str) -> bytes | None:
    """The bytes of the installed Swagger UI's file ``name`` if it is one of :data:`SWAGGER_ASSETS`, else ``None``."""
    if name not in SWAGGER_ASSETS:
        return None
    return resources.files("swagger_ui").joinpath("static", name).read_bytes()


def install_openapi(app: FastAPI, *, extra_models: Sequence[type[BaseModel]] = ()) -> None:
    """Serve the completed document at ``app.openapi_url`` and Swagger UI at ``/docs``, its assets from the
    installed package at ``/docs/assets/<file>``."""
    app.openapi = lambda: build_openapi(app, extra_models)  # type: ignore[method-assign]  # FastAPI's documented override

    async def docs() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url=app.openapi_url or "/openapi.json",
            title=f"{app.title} API",
            swagger_js_url=f"{DOCS_ASSETS}/swagger-ui-bundle.js",
            swagger_css_url=f"{DOCS_ASSETS}/swagger-ui.css",
            swagger_favicon_url=f"{DOCS_ASSETS}/favicon-32x32.png",
            # Swagger UI's default shows a badge fetched from its public validator: another host. Off.
            swagger_ui_parameters={"validatorUrl": None},
        )

    async def docs_asset(name: str) -> Response:
        content = swagger_asset(name)
        if content is None:
            raise HTTPException(404)  # a problem+json 404, like any unknown path
        headers = {"Cache-Control": f"public, max-age={_ASSET_CACHE_S}"}
        return Response(content, media_type=SWAGGER_ASSETS[name], headers=headers)

    app.add_api_route("/docs", docs, methods=["GET"], include_in_schema=False, response_class=HTMLResponse)
    app.add_api_route(f"{DOCS_ASSETS}/{{name}}", docs_asset, methods=["GET"], include_in_schema=False)
