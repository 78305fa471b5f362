"""How far behind a service's outbox is: unsent rows and the age of the oldest."""

from __future__ import annotations

from typing import Any

from strata.actors.postgres import check_service_name


def backlog_query(service: str) -> str:
    """SQL giving one row ``(rows, oldest_age_s)`` for ``service``'s outbox; run it as the service or the admin."""
    return (
        "SELECT count(*) AS rows,"
        " coalesce(extract(epoch FROM now() - min(created_at)), 0)::float8 AS oldest_age_s"
        f" FROM {check_service_name(service)}.outbox WHERE sent_at IS NULL"
    )


def backlog_report(row: Any) -> dict[str, Any]:
    """``{"rows": unsent rows, "oldest_age_s": age of the oldest unsent row (0 when none)}``."""
    return {"rows": int(row["rows"]), "oldest_age_s": round(float(row["oldest_age_s"]), 3)}


async def outbox_backlog(db: Any, service: str) -> dict[str, Any]:
    """The backlog of ``service``'s outbox, read through its :class:`~strata.actors.postgres.Database`."""
    return backlog_report(await db.fetch_one(backlog_query(service)))
