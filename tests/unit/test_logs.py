"""`strata up --foreground`'s log stream: Serve's JSON records as one readable line each, other lines as they are."""

from __future__ import annotations

import json
from pathlib import Path

from strata.cluster._logs import follow, readable_lines

# Records from the Serve logs of a real `strata up` (replica_gateway_Gateway_*.log, replica_auth_AuthService_*.log,
# replica_users_UsersService_*.log, controller_*.log): json.dumps() of each gives the file's line byte for byte.

ACCESS = {
    "asctime": "2026-12-01 08:48:22,610",
    "levelname": "INFO",
    "message": "GET /v1/users/me 200 25.2ms",
    "filename": "_hygiene.py",
    "lineno": 311,
    "process": 31848,
    "request_id": "d8146ed4-943c-48cf-89f2-51a5adc5bcfb",
    "http_method": "GET",
    "http_route": "/v1/users/me",
    "http_status": 200,
    "duration_ms": 25.24,
    "worker_id": "bfe1a2ad5c68102fc22a900aac5b289ce51ff798872ce194b69a0f07",
    "node_id": "ef38c63b7f02d9e5026bddcb3fa2e2472046d3a13366a65b7f8ebddb",
    "actor_id": "1e427465b21df2694e4e2ab901000000",
    "task_name": "ServeReplica:gateway:Gateway.initialize_and_get_metadata",
    "task_func_name": "ray.serve._private.replica.ServeReplica:gateway:Gateway.initialize_and_get_metadata",
    "actor_name": "SERVE_REPLICA::gateway#Gateway#rklsjs6z",
    "route": "/v1/users/me",
    "application": "gateway",
    "deployment": "gateway_Gateway",
    "replica": "rklsjs6z",
    "component_name": "replica",
    "timestamp_ns": 1796114902610892069,
}

FAILED = {
    "asctime": "2026-12-01 08:48:22,461",
    "levelname": "ERROR",
    "message": "Request failed.",
    "filename": "replica.py",
    "lineno": 1465,
    "process": 31762,
    "exc_text": "('Traceback (most recent call last):\\n',)('  File "
    '"/work/wt-lifecycle/.venv/lib/python3.11/site-packages/ray/serve/_private/replica.py", line '
    "1459, in _handle_errors_and_metrics\\n    yield _status_code_callback\\n',)('  File "
    '"/work/wt-lifecycle/.venv/lib/python3.11/site-packages/ray/serve/_private/replica.py", line '
    "2517, in _wrap_request\\n    yield status_code_callback\\n',)('  File "
    '"/work/wt-lifecycle/.venv/lib/python3.11/site-packages/ray/serve/_private/replica.py", line '
    "1820, in handle_request_with_rejection\\n    self._raise_user_exception(e, "
    "request_metadata)\\n',)('  File "
    '"/work/wt-lifecycle/.venv/lib/python3.11/site-packages/ray/serve/_private/replica.py", line '
    "1756, in _raise_user_exception\\n    raise e\\n',)('  File "
    '"/work/wt-lifecycle/.venv/lib/python3.11/site-packages/ray/serve/_private/replica.py", line '
    "1816, in handle_request_with_rejection\\n    yield await "
    "self._user_callable_wrapper.call_user_method(\\n          "
    "^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^\\n',)('  File "
    '"/work/wt-lifecycle/.venv/lib/python3.11/site-packages/ray/serve/_private/replica.py", line '
    "4612, in call_user_method\\n    result, _ = await self._call_func_or_gen(\\n                "
    "^^^^^^^^^^^^^^^^^^^^^^^^^^^^^\\n',)('  File "
    '"/work/wt-lifecycle/.venv/lib/python3.11/site-packages/ray/serve/_private/replica.py", line '
    "4010, in _call_func_or_gen\\n    result = await result\\n             ^^^^^^^^^^^^\\n',)('  "
    'File "/work/wt-lifecycle/serve_apps/auth/_deployment.py", line 62, in login\\n    return await '
    "self._auth.login(email, password, client, request_id)\\n           "
    "^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^\\n',)('  File "
    '"/work/wt-lifecycle/serve_apps/auth/_service.py", line 341, in login\\n    raise '
    "InvalidCredentials(INVALID_CREDENTIALS)\\n',)('strata.schemas._errors.InvalidCredentials: "
    "wrong email or password\\n',)",
    "worker_id": "fda1cdd2311292a67ca445d5ba01b3fa81a1739f1d3bfd8f9f65a61e",
    "node_id": "ef38c63b7f02d9e5026bddcb3fa2e2472046d3a13366a65b7f8ebddb",
    "actor_id": "541c15eb930f1e59df6dbfac01000000",
    "task_name": "ServeReplica:auth:AuthService.initialize_and_get_metadata",
    "task_func_name": "ray.serve._private.replica.ServeReplica:auth:AuthService.initialize_and_get_metadata",
    "actor_name": "SERVE_REPLICA::auth#AuthService#ypras9mv",
    "route": "/v1/auth/login",
    "request_id": "900b3686-6060-427e-9c2b-5dba4ad174cb",
    "application": "auth",
    "deployment": "auth_AuthService",
    "replica": "ypras9mv",
    "component_name": "replica",
    "timestamp_ns": 1796114902461860934,
}

HEALTH = {
    "asctime": "2026-12-01 08:48:33,646",
    "levelname": "INFO",
    "message": "users health check: database unreachable (DatabaseUnavailable), see /readyz",
    "filename": "_replica.py",
    "lineno": 106,
    "process": 31579,
    "worker_id": "e1bba99074132cbcfed33ea3130cb94f94cc4e966f45935e97c05964",
    "node_id": "ef38c63b7f02d9e5026bddcb3fa2e2472046d3a13366a65b7f8ebddb",
    "actor_id": "c8d942454c37a5806f6c704301000000",
    "task_name": "ServeReplica:users:UsersService.check_health",
    "task_func_name": "ray.serve._private.replica.ServeReplica:users:UsersService.check_health",
    "actor_name": "SERVE_REPLICA::users#UsersService#1snc1611",
    "deployment": "users_UsersService",
    "replica": "1snc1611",
    "component_name": "replica",
    "timestamp_ns": 1796114913647013145,
}

CONTROLLER = {
    "asctime": "2026-12-01 08:47:59,005",
    "levelname": "INFO",
    "message": "Controller starting (version='2.60.0').",
    "filename": "controller.py",
    "lineno": 373,
    "process": 31230,
    "log_to_stderr": False,
    "worker_id": "89c55fd6a19016980c20207b64cea2b0bffd12853c7d05d32b0e9c52",
    "node_id": "ef38c63b7f02d9e5026bddcb3fa2e2472046d3a13366a65b7f8ebddb",
    "actor_id": "62b18830ab60f07e94f1fd6801000000",
    "task_name": "SERVE_CONTROLLER_ACTOR:ServeController.__init__",
    "task_func_name": "ray.serve._private.controller.ServeController.__init__",
    "actor_name": "SERVE_CONTROLLER_ACTOR",
    "component_name": "controller",
    "component_id": "31230",
    "timestamp_ns": 1796114879005887283,
}

POSTGRES_LINE = "2026-12-01 08:47:45.317 UTC [30628] LOG:  database system is ready to accept connections"
KAFKA_LINE = (
    "[2026-12-01 08:47:47,755] INFO [ControllerServer id=1] Starting controller (kafka.server.ControllerServer)"
)


def test_a_request_record_is_one_line_with_time_level_source_message_and_request_id() -> None:
    assert readable_lines("serve", json.dumps(ACCESS)) == [
        "08:48:22.610 INFO  gateway.Gateway  GET /v1/users/me 200 25.2ms  [req d8146ed4-943c-48cf-89f2-51a5adc5bcfb]"
    ]


def test_a_record_outside_a_request_names_its_application_from_the_deployment() -> None:
    assert readable_lines("serve", json.dumps(HEALTH)) == [
        "08:48:33.646 INFO  users.UsersService  users health check: database unreachable (DatabaseUnavailable),"
        " see /readyz"
    ]


def test_serves_own_components_are_named_as_such() -> None:
    assert readable_lines("serve", json.dumps(CONTROLLER)) == [
        "08:47:59.005 INFO  serve.controller  Controller starting (version='2.60.0')."
    ]


def test_a_replicas_traceback_follows_as_indented_lines() -> None:
    shown = readable_lines("serve", json.dumps(FAILED))
    assert (
        shown[0] == "08:48:22.461 ERROR auth.AuthService  Request failed.  [req 900b3686-6060-427e-9c2b-5dba4ad174cb]"
    )
    assert shown[1] == "    Traceback (most recent call last):"
    assert shown[2].startswith('      File "') and shown[2].endswith("in _handle_errors_and_metrics")
    assert shown[-2:] == [
        "        raise InvalidCredentials(INVALID_CREDENTIALS)",
        "    strata.schemas._errors.InvalidCredentials: wrong email or password",
    ]
    assert not any("',)(" in line for line in shown), "Serve's tuple reprs are read back into plain lines"


def test_a_plain_traceback_and_a_multi_line_message_are_indented_as_they_are() -> None:
    record = {**HEALTH, "message": "first\nsecond", "exc_text": "Traceback (most recent call last):\nValueError: x"}
    assert readable_lines("serve", json.dumps(record))[1:] == [
        "    second",
        "    Traceback (most recent call last):",
        "    ValueError: x",
    ]


def test_postgres_kafka_and_other_lines_pass_through_with_their_component() -> None:
    assert readable_lines("postgres", POSTGRES_LINE) == [f"postgres | {POSTGRES_LINE}"]
    assert readable_lines("kafka", KAFKA_LINE) == [f"kafka    | {KAFKA_LINE}"]
    assert readable_lines("serve", '{"not": "a record"}') == ['serve    | {"not": "a record"}']
    assert readable_lines("serve", "{torn") == ["serve    | {torn"]


def test_follow_shows_new_lines_once_they_are_complete(tmp_path: Path) -> None:
    log = tmp_path / "postgres" / "postgres.log"
    log.parent.mkdir()
    log.write_text("written before following: not shown\n")
    appended = ["", f"{POSTGRES_LINE}\nhalf a li", "ne\n"]
    calls: list[int] = []

    def stop() -> bool:
        # Called before each pass: it appends the next piece, and stops once every piece was read.
        calls.append(1)
        if len(calls) > len(appended):
            return True
        with open(log, "a") as out:
            out.write(appended[len(calls) - 1])
        return False

    emitted: list[str] = []
    follow(tmp_path, emitted.append, stop=stop, interval=0)
    assert emitted == [f"postgres | {POSTGRES_LINE}", "postgres | half a line"]
