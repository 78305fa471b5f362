"""A client's error raised in a replica is one INFO line without a traceback; a real failure keeps both."""

from __future__ import annotations

import logging

import pytest

from strata.schemas import InvalidToken, ResourceNotFound, ServiceUnavailable
from strata.serve_apps._logging import ClientErrorsAreNotIncidents


def _failed_request_record(exc: BaseException) -> logging.LogRecord:
    """The record Serve's replica makes with ``logger.exception("Request failed.")`` while ``exc`` is handled."""
    try:
        raise exc
    except BaseException as raised:
        return logging.LogRecord(
            "ray.serve", logging.ERROR, __file__, 1, "Request failed.", (), (type(raised), raised, raised.__traceback__)
        )


@pytest.mark.parametrize("error", [ResourceNotFound("no such user"), InvalidToken("expired", error="invalid_token")])
def test_a_client_error_becomes_one_info_line_without_traceback(error: Exception) -> None:
    record = _failed_request_record(error)
    assert ClientErrorsAreNotIncidents().filter(record)
    assert record.levelno == logging.INFO and record.levelname == "INFO"
    assert record.exc_info is None and record.exc_text is None
    line = logging.Formatter("%(levelname)s %(message)s").format(record)
    assert line == f"INFO request refused: {error.status} {error.slug} ({type(error).__name__}): {error.detail}"
    assert "Traceback" not in line


@pytest.mark.parametrize("error", [ServiceUnavailable("down"), RuntimeError("boom"), KeyError("x")])
def test_a_server_side_failure_keeps_its_level_and_traceback(error: Exception) -> None:
    record = _failed_request_record(error)
    assert ClientErrorsAreNotIncidents().filter(record)
    assert record.levelno == logging.ERROR
    assert "Traceback" in logging.Formatter().format(record)
