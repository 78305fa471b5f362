"""Code names an event type through the catalogue's constant (``USER_DELETED.type``), never by spelling it out.

A spelt-out type is a second list of types that nothing keeps in step with the catalogue: bump a type's major
version (a new type, see ``schemas/events/_catalog.py``) and a literal elsewhere silently stops matching, and a filter
goes quiet instead of failing. So every ``.py`` the ``strata`` package holds (its linked folders followed) is read
with :mod:`ast`, and a string constant is refused when it equals a catalogue type, has a type's shape
(``strata.<service>.<entity>.<verb>.v<major>``: a retired or misspelt type), or is a catalogue type's prefix down to
its entity (``strata.data.collection.``, matching a family of types by prefix). The catalogue itself and docstrings,
which explain rather than match, are allowed.
"""

from __future__ import annotations

import ast
import os
import re
from pathlib import Path

from strata.schemas.events import EVENT_TYPES

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "strata"
CATALOGUE = PACKAGE / "schemas" / "events" / "_catalog.py"
TYPES = frozenset(EVENT_TYPES)
_TYPE_SHAPE = re.compile(r"strata\.[a-z0-9_]+\.[a-z0-9_]+\.[a-z0-9_]+\.v[0-9]+")


def package_sources() -> list[Path]:
    """Every ``.py`` of the package as it is imported: ``strata/serve_apps`` and the other links are followed."""
    found = []
    for folder, subfolders, files in os.walk(PACKAGE, followlinks=True):
        subfolders[:] = sorted(d for d in subfolders if d != "__pycache__")
        found += [Path(folder) / name for name in sorted(files) if name.endswith(".py")]
    return found


def names_an_event_type(text: str) -> bool:
    """``text`` spells an event type, or the prefix of some down to their entity, instead of naming the constant."""
    if text in TYPES or _TYPE_SHAPE.fullmatch(text):
        return True
    return text.endswith(".") and text.count(".") >= 3 and any(t.startswith(text) for t in TYPES)


def _docstrings(tree: ast.Module) -> set[int]:
    """The ids of the string constants that stand alone as statements: docstrings of modules, classes, functions and
    attributes (``x = 1`` followed by ``\"\"\"what x is\"\"\"``), which document and never match."""
    return {
        id(node.value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant) and isinstance(node.value.value, str)
    }


def spelt_out_event_types(source: str, filename: str = "<source>") -> list[tuple[int, str]]:
    """``(line, literal)`` of each string constant of ``source`` that spells an event type (docstrings aside)."""
    tree = ast.parse(source, filename)
    docstrings = _docstrings(tree)
    return sorted(
        (node.lineno, node.value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant)
        and isinstance(node.value, str)
        and id(node) not in docstrings
        and names_an_event_type(node.value)
    )


def test_the_walk_reaches_the_services_through_the_package_s_links() -> None:
    sources = package_sources()
    assert PACKAGE / "serve_apps" / "gateway" / "_revocations.py" in sources
    assert PACKAGE / "actors" / "outbox" / "__init__.py" in sources
    assert CATALOGUE in sources


def test_no_module_outside_the_catalogue_spells_out_an_event_type() -> None:
    spelt = [
        f"{path.relative_to(PACKAGE)}:{line}: {literal!r}"
        for path in package_sources()
        if path != CATALOGUE
        for line, literal in spelt_out_event_types(path.read_text(), str(path))
    ]
    assert not spelt, "name these types by their constants of strata.schemas.events:\n" + "\n".join(spelt)


def test_a_type_its_shape_or_its_entity_prefix_is_found_and_a_docstring_or_a_topic_is_not() -> None:
    source = '''
"""Reads strata.users.user.deleted.v1 events."""
GONE = "strata.users.user.deleted.v1"
OLD = "strata.data.item.created.v1"


def f(event_type: str) -> bool:
    """True for strata.data.collection.item_created.v1."""
    return event_type.startswith("strata.data.collection.") or event_type == f"strata.{event_type}.v1"


TOPIC = "strata.users.user.v1"
SERVICE = "strata.users."
'''
    assert spelt_out_event_types(source) == [
        (3, "strata.users.user.deleted.v1"),
        (4, "strata.data.item.created.v1"),
        (9, "strata.data.collection."),
    ]
