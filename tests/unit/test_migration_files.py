from __future__ import annotations

from pathlib import Path

import pytest

from strata.actors.postgres import MigrationError, load_migrations, service_migrations_dir
from strata.schemas import schema_owners


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
