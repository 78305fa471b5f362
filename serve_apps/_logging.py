"""Logging inside a replica: strata's records go where Serve's go, and a client's error is not an incident."""

from __future__ import annotations

import logging

from strata.schemas import DomainError


class ClientErrorsAreNotIncidents(logging.Filter):
    """Turns Serve's ``Request failed.`` record of a client error into one INFO line without a traceback.

    A service raises :class:`~strata.schemas.DomainError` for what the caller got wrong (401, 404, 409, 422,
    429...); the gateway answers it as problem+json. Serve logs every exception a replica method raises at
    ERROR with its traceback, which would bury real failures under wrong passwords and unknown ids. Errors of
    status 500 and above, and every other exception, keep their level and traceback.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, DomainError) and exc.status < 500:
            record.levelno, record.levelname = logging.INFO, logging.getLevelName(logging.INFO)
            record.msg = "request refused: %s %s (%s): %s"
            record.args = (exc.status, exc.slug, type(exc).__name__, (exc.detail or exc.title)[:200])
            record.exc_info, record.exc_text, record.stack_info = None, None, None
        return True


_FILTER = ClientErrorsAreNotIncidents()


def route_strata_logs_to_serve() -> None:
    """Configure logging in this replica; safe to call more than once.

    * The ``strata`` logger gets the handlers and level Serve configured on ``ray.serve``: Serve's
      ``logging_config`` (JSON encoding, level) applies to its own logger, and without this, records of
      strata's modules would go to the root logger and be dropped at its default WARNING level.
    * Serve's own logger gets :class:`ClientErrorsAreNotIncidents`.
    """
    serve_logger = logging.getLogger("ray.serve")
    if _FILTER not in serve_logger.filters:
        serve_logger.addFilter(_FILTER)
    strata_logger = logging.getLogger("strata")
    strata_logger.setLevel(serve_logger.getEffectiveLevel())
    for handler in serve_logger.handlers:
        if handler not in strata_logger.handlers:
            strata_logger.addHandler(handler)
    strata_logger.propagate = not strata_logger.handlers
