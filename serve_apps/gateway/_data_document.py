"""The data routes' part of the OpenAPI document: their headers, 304s, links and limits (see ``_openapi.py``).

FastAPI documents each route's parameters (``If-Match``, ``If-None-Match``, ``Idempotency-Key`` are header
parameters with descriptions) and bodies; this module adds what a route's signature cannot say:

- the response headers: ``ETag`` (and ``Vary``) on every single collection, member or item, ``Location`` on a
  201, ``Idempotent-Replayed`` on a replayed POST; the 304 of a GET that takes ``If-None-Match``;
- OpenAPI ``links`` from the create answers to the operations on what they made (by id, and with the ETag as
  ``If-Match``), so a client (and schemathesis' stateful run) can follow them;
- the limits the replica runs with (its :class:`~strata.schemas.Settings`): in the API description and each
  operation's, and as ``maximum`` / ``maxItems`` where a schema can say it.
"""

from __future__ import annotations

from typing import Any

from strata.schemas import Settings

ETAG_HEADER = {
    "description": 'The strong ETag of this version of the resource (its `version` in quotes, `"3"`).',
    "schema": {"type": "string"},
}
STATS_ETAG_HEADER = {
    "description": "The strong ETag of these figures (a digest of them): unchanged while the figures are.",
    "schema": {"type": "string"},
}
VARY_HEADER = {"description": "`Authorization`: the answer depends on who asks.", "schema": {"type": "string"}}
LOCATION_HEADER = {"description": "The URL of the resource created.", "schema": {"type": "string"}}
REPLAYED_HEADER = {
    "description": "`true` when this answer replays the first answer to the same `Idempotency-Key`.",
    "schema": {"type": "string", "enum": ["true"]},
}

_SINGLE = {"getCollection", "updateCollection", "getMember", "putMember", "getItem", "replaceItem", "patchItem"}
"""Operations answering one resource with its ETag."""
_CONDITIONAL_GETS = {"getCollection", "getMember", "getItem"}
_CREATES = {"createCollection", "createItem"}
_IDEMPOTENT = {"createCollection", "createItem", "createItems"}
_PAGED = {"listCollections", "listMembers", "listItems"}
_BODY_LIMITED = {"createCollection", "updateCollection", "createItem", "createItems", "replaceItem", "patchItem"}

_COLLECTION_ID = "$response.body#/id"
_IF_MATCH = "$response.header.ETag"


def _links() -> dict[str, dict[str, Any]]:
    collection = {"collection_id": _COLLECTION_ID}
    item = {"collection_id": "$response.body#/collection_id", "item_id": "$response.body#/id"}
    return {
        "createCollection": {
            "GetCollection": {"operationId": "getCollection", "parameters": collection},
            "UpdateCollection": {
                "operationId": "updateCollection",
                "parameters": {**collection, "header.If-Match": _IF_MATCH},
            },
            "DeleteCollection": {
                "operationId": "deleteCollection",
                "parameters": {**collection, "header.If-Match": _IF_MATCH},
            },
            "CreateItem": {"operationId": "createItem", "parameters": collection},
            "CreateItems": {"operationId": "createItems", "parameters": collection},
            "ListItems": {"operationId": "listItems", "parameters": collection},
            "ListMembers": {"operationId": "listMembers", "parameters": collection},
        },
        "createItem": {
            "GetItem": {"operationId": "getItem", "parameters": item},
            "ReplaceItem": {"operationId": "replaceItem", "parameters": {**item, "header.If-Match": _IF_MATCH}},
            "PatchItem": {"operationId": "patchItem", "parameters": {**item, "header.If-Match": _IF_MATCH}},
            "DeleteItem": {"operationId": "deleteItem", "parameters": {**item, "header.If-Match": _IF_MATCH}},
        },
    }


def data_limits_text(settings: Settings) -> str:
    """The data routes' limits, as a paragraph of the API's description."""
    return f"""\
- **Data limits** (this deployment's settings): request bodies up to {settings.max_body_bytes} bytes; an item's
  `attributes` up to {settings.data_max_attributes_bytes} bytes of JSON and {settings.data_max_json_depth} levels
  deep; a collection's `item_schema` up to {settings.data_max_schema_bytes} bytes and
  {settings.data_max_json_depth} levels; a batch up to {settings.data_max_batch_items} items; a page up to
  {settings.data_max_page_size} rows; an `Idempotency-Key` is remembered for {settings.idempotency_key_ttl_s} s.
  Checking one request's items against an `item_schema` takes at most {settings.data_max_validation_steps} steps,
  all its items together (422 `too-complex` past it); a schema may cost an empty object at most
  {settings.data_max_validation_steps // settings.data_max_batch_items} of them (422 `invalid-schema`).
- **Concurrency**: single collections, members and items carry a strong `ETag`; `If-None-Match` answers 304;
  changes of collections and items need `If-Match` (428 without, 412 when it names no current version).
"""


def _operation_limits(operation_id: str, settings: Settings) -> str:
    notes = []
    if operation_id in _BODY_LIMITED:
        notes.append(f"bodies up to {settings.max_body_bytes} bytes")
    if operation_id in ("createItem", "createItems", "replaceItem", "patchItem"):
        notes.append(
            f"`attributes` up to {settings.data_max_attributes_bytes} bytes of JSON and"
            f" {settings.data_max_json_depth} levels deep, valid for the collection's `item_schema` (checked within"
            f" {settings.data_max_validation_steps} steps for the whole request)"
        )
    if operation_id in ("createCollection", "updateCollection"):
        notes.append(
            f"`item_schema` up to {settings.data_max_schema_bytes} bytes and {settings.data_max_json_depth} levels"
        )
    if operation_id == "createItems":
        notes.append(f"at most {settings.data_max_batch_items} items")
    if operation_id == "getCollectionStats":
        notes.append(
            f"the oldest {settings.data_stats_max_items} items, {settings.data_stats_max_tags} tags and"
            f" {settings.data_stats_max_attributes} numeric attributes"
        )
    if operation_id in _PAGED:
        notes.append(f"pages of at most {settings.data_max_page_size} rows")
    if operation_id in _IDEMPOTENT:
        notes.append(f"an `Idempotency-Key` is remembered for {settings.idempotency_key_ttl_s} s")
    return ("Limits: " + "; ".join(notes) + ".") if notes else ""


def complete_data_operation(
    method: str, path: str, operation: dict[str, Any], schemas: dict[str, Any], settings: Settings
) -> None:
    """Add the headers, 304, links and limits of the data operation ``method path`` (see the module docstring)."""
    operation_id = operation.get("operationId", "")
    responses: dict[str, Any] = operation.setdefault("responses", {})
    success = next((code for code in ("200", "201") if code in responses), None)
    if operation_id in _SINGLE and success is not None:
        responses[success].setdefault("headers", {}).update({"ETag": ETAG_HEADER, "Vary": VARY_HEADER})
    if operation_id == "putMember" and "201" in responses:
        responses["201"].setdefault("headers", {}).update(
            {"ETag": ETAG_HEADER, "Vary": VARY_HEADER, "Location": LOCATION_HEADER}
        )
    if operation_id == "getCollectionStats" and "200" in responses:
        responses["200"].setdefault("headers", {}).update({"ETag": STATS_ETAG_HEADER, "Vary": VARY_HEADER})
        responses["304"] = {
            "description": "Not Modified: `If-None-Match` names the current figures' ETag (no body)",
            "headers": {"ETag": STATS_ETAG_HEADER, "Vary": VARY_HEADER},
        }
    if operation_id in _CONDITIONAL_GETS:
        responses["304"] = {
            "description": "Not Modified: `If-None-Match` names the current ETag (no body)",
            "headers": {"ETag": ETAG_HEADER, "Vary": VARY_HEADER},
        }
    if operation_id in _CREATES and "201" in responses:
        created = responses["201"]
        created.setdefault("headers", {}).update(
            {
                "Location": LOCATION_HEADER,
                "ETag": ETAG_HEADER,
                "Vary": VARY_HEADER,
                "Idempotent-Replayed": REPLAYED_HEADER,
            }
        )
        created["links"] = _links()[operation_id]
    if operation_id == "createItems" and "200" in responses:
        responses["200"].setdefault("headers", {})["Idempotent-Replayed"] = REPLAYED_HEADER
    for parameter in operation.get("parameters", []):
        if parameter.get("in") == "query" and parameter.get("name") == "limit":
            parameter["schema"]["maximum"] = settings.data_max_page_size
    if operation_id == "createItems":
        batch = schemas.get("ItemBatchCreate", {}).get("properties", {}).get("items")
        if batch is not None:
            batch["maxItems"] = settings.data_max_batch_items
    limits = _operation_limits(operation_id, settings)
    if limits:
        operation["description"] = (operation.get("description", "") + "\n\n" + limits).strip()
    operation["responses"] = dict(sorted(responses.items()))
