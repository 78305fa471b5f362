from __future__ import annotations

import re
from pathlib import Path

import pytest

from strata.actors.postgres import (
    SUPERSEDED,
    MigrationError,
    load_migrations,
    plumbing_migrations,
    service_migrations_dir,
)
from strata.schemas import ServiceSpec, schema_owners


def test_migrations_load_in_version_order(tmp_path: Path) -> None:
    (tmp_path / "0002_second.sql").write_text("SELECT 2;")
    (tmp_path / "0001_first.sql").write_text("SELECT 1;")
    (tmp_path / "README.md").write_text("not a migration")
    migrations = load_migrations(tmp_path)
    assert [(m.version, m.name) for m in migrations] == [(1, "0001_first.sql"), (2, "0002_second.sql")]
    assert migrations[0].checksum != migrations[1].checksum


def test_a_badly_named_file_is_refused(tmp_path: Path) -> None:
    (tmp_path / "1_first.sql").write_text("SELECT 1;")
    with pytest.raises(MigrationError, match=r"NNNN_lower_snake\.sql"):
        load_migrations(tmp_path)


def test_two_files_with_one_version_are_refused(tmp_path: Path) -> None:
    (tmp_path / "0001_a.sql").write_text("SELECT 1;")
    (tmp_path / "0001_b.sql").write_text("SELECT 1;")
    with pytest.raises(MigrationError, match="share version 0001"):
        load_migrations(tmp_path)


def test_a_missing_directory_has_no_migrations(tmp_path: Path) -> None:
    assert load_migrations(tmp_path / "nope") == []


@pytest.mark.parametrize("service", [spec.name for spec in schema_owners()])
def test_each_service_ships_its_migrations_beside_its_code(service: str) -> None:
    directory = service_migrations_dir(service)
    assert directory.is_dir()
    assert directory.parent.name == service
    load_migrations(directory)  # whatever ships must load


SERVICES_MIGRATIONS = sorted(Path(__file__).parents[2].joinpath("serve_apps").glob("*/migrations"))
FIXTURES_0 = Path(__file__).parents[1] / "fixtures" / "migrations_0"


def test_no_migration_file_is_repeated_across_services() -> None:
    # Tables every component of a kind has come from the shared plumbing, not from a copy in each service's folder.
    assert len(SERVICES_MIGRATIONS) >= 4, SERVICES_MIGRATIONS
    seen: dict[str, Path] = {}
    for directory in SERVICES_MIGRATIONS:
        for path in sorted(directory.glob("*.sql")):
            text = path.read_text(encoding="utf-8")
            assert text not in seen, f"{path} repeats {seen[text]}: share it as plumbing (actors/postgres/plumbing/)"
            seen[text] = path


@pytest.mark.parametrize("table", ["outbox", "inbox"])
def test_no_service_migration_creates_a_shared_table(table: str) -> None:
    # The outbox and inbox DDL lives once, in actors/postgres/plumbing/: a copy in a service would drift from it.
    creates = re.compile(rf"\bCREATE\s+TABLE\s+(IF\s+NOT\s+EXISTS\s+)?{table}\b", re.IGNORECASE)
    offenders = [p for d in SERVICES_MIGRATIONS for p in d.glob("*.sql") if creates.search(p.read_text())]
    assert offenders == []


@pytest.mark.parametrize("spec", schema_owners(), ids=lambda spec: spec.name)
def test_the_plumbing_follows_the_registry(spec: ServiceSpec) -> None:
    names = [m.name for m in plumbing_migrations(spec)]
    assert any(name.startswith("outbox/") for name in names) == spec.outbox
    assert any(name.startswith("inbox/") for name in names) == bool(spec.consumer_groups)
    assert all(m.checksum for m in plumbing_migrations(spec))


def test_superseded_checksums_are_those_of_the_files_databases_recorded() -> None:
    # A wrong checksum here would make an old database refuse to migrate ("edited after it was applied").
    for service, files in SUPERSEDED.items():
        old = {m.name: m.checksum for m in load_migrations(FIXTURES_0 / service)}
        assert files, service
        for name, checksum in files.items():
            assert old[name] == checksum, f"{service}/{name}"
        shipped = {m.name: m.checksum for m in load_migrations(service_migrations_dir(service))}
        for name, checksum in old.items():
            if name not in files:  # every other file of then ships unchanged
                assert shipped[name] == checksum, f"{service}/{name} was edited"
