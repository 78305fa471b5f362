"""strata: a microservices backend that runs as an async actor system on Ray.

The repository keeps the architecture's folders at its top (``actors/``, ``serve_apps/``, ``schemas/``,
``cluster/``); this package gathers them under one name with relative symlinks (``strata/actors ->
../actors``, ...), so that ``import strata.serve_apps.users`` resolves from the tree as it is, for
Python, setuptools' package discovery, mypy, editors and import-linter alike.
"""
