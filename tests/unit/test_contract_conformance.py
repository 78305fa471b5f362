"""mypy holds each deployment to its service's Protocol: a signature that drifts from the contract is a type error.

The check lives beside each deployment (``_implements(service: UsersService) -> UsersOperations``, never called):
mypy sees the class as written, since ``@serve.deployment`` (untyped for mypy) leaves a decorated class's type
alone. The tests below run mypy's API on small copies of that pattern in ``tmp_path`` (a Protocol, a class behind
an untyped decorator, the same check), one drifted and one faithful, rather than on the whole tree: a few seconds,
not a minute. A last test checks that every service deployment of the tree has its check.
"""

from __future__ import annotations

import importlib
import inspect
from pathlib import Path

import pytest
from mypy import api as mypy_api

from strata import contracts
from strata.schemas import REGISTRY, ServiceSpec

CONTRACT = """
from __future__ import annotations

from typing import Any, Protocol


class Profile:
    pass


class UsersOperations(Protocol):
    async def get_profile(self, user_id: str) -> Profile: ...

    async def set_roles(self, user_id: str, roles: list[str], *, request_id: str | None = None) -> Profile: ...


deployment: Any = None  # as mypy sees ray's @serve.deployment: untyped


@deployment
class UsersService:
    async def get_profile(self, user_id: str) -> Profile:
        return Profile()

    async def set_roles(self, {set_roles}) -> Profile:
        return Profile()


def _implements(service: UsersService) -> UsersOperations:
    return service
"""

FAITHFUL = "user_id: str, roles: list[str], *, request_id: str | None = None"


def _mypy(tmp_path: Path, set_roles: str) -> tuple[int, str]:
    module = tmp_path / "deployment.py"
    module.write_text(CONTRACT.format(set_roles=set_roles))
    config = tmp_path / "mypy.ini"
    config.write_text("[mypy]\n")  # not the project's: its files, plugins and overrides are not wanted here
    out, err, status = mypy_api.run(
        [
            "--config-file",
            str(config),
            "--cache-dir",
            str(tmp_path.parent / "mypy-cache"),  # shared by the cases of one session: typeshed is parsed once
            "--strict",
            "--python-version",
            "3.11",
            "--no-error-summary",
            str(module),
        ]
    )
    return status, out + err


def test_a_deployment_faithful_to_its_protocol_passes(tmp_path: Path) -> None:
    status, output = _mypy(tmp_path, FAITHFUL)
    assert status == 0, output


@pytest.mark.parametrize(
    "drifted",
    [
        pytest.param("user_id: str, roles: list[int], *, request_id: str | None = None", id="a-parameter-s-type"),
        pytest.param("user_id: str, roles: list[str]", id="a-keyword-dropped"),
        pytest.param("user_id: str, roles: list[str], request_id: str", id="an-option-made-required"),
    ],
)
def test_a_deployment_whose_signature_drifts_from_its_protocol_fails_mypy_naming_the_method(
    tmp_path: Path, drifted: str
) -> None:
    status, output = _mypy(tmp_path, drifted)
    assert status != 0
    assert 'Incompatible return value type (got "UsersService", expected "UsersOperations")' in output
    assert "def set_roles(" in output  # the conflicting member, as mypy's notes show it
    assert "get_profile" not in output  # only the drifted method is named


@pytest.mark.parametrize("spec", [spec for spec in REGISTRY if spec.route_prefix is None], ids=lambda spec: spec.name)
def test_every_service_deployment_is_checked_against_its_protocol(spec: ServiceSpec) -> None:
    """Each deployment of a service application (workers included) has its ``_implements`` check, naming the
    deployment class and a Protocol of :mod:`strata.contracts`."""
    package = importlib.import_module(spec.package)
    for name in (spec.deployment, *spec.workers):
        deployment = getattr(package, name)
        module = importlib.import_module(deployment.func_or_class.__module__)
        annotations = inspect.get_annotations(module._implements)
        assert next(iter(annotations.values())) == name
        protocol = getattr(contracts, annotations["return"])
        assert getattr(protocol, "_is_protocol", False), annotations["return"]
