"""Send strata's own log records where Serve sends a replica's: its JSON log file, with request ids."""

from __future__ import annotations

import logging


def route_strata_logs_to_serve() -> None:
    """Give the ``strata`` logger the handlers and level Serve configured on ``ray.serve`` in this replica.

    Serve's ``logging_config`` (JSON encoding, level) applies to its own logger;
    without this, records of strata's modules would go to the root logger and
    be dropped at its default WARNING level. Safe to call more than once.
    """
    serve_logger = logging.getLogger("ray.serve")
    strata_logger = logging.getLogger("strata")
    strata_logger.setLevel(serve_logger.getEffectiveLevel())
    for handler in serve_logger.handlers:
        if handler not in strata_logger.handlers:
            strata_logger.addHandler(handler)
    strata_logger.propagate = not strata_logger.handlers
