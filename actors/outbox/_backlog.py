"""How far behind a service's outbox is: unsent rows and the age of the oldest."""

from __future__ import annotations

from typing import Any

from strata.actors.postgres import Database
from strata.actors.postgres._roles import check_service_name


async def outbox_backlog(db: Database, service: str) -> dict[str, Any]:
    """``{"rows": unsent rows, "oldest_age_s": age of the oldest unsent row (0 when none)}``."""
    row = await db.fetch_one(
        "SELECT count(*) AS rows,"
        " coalesce(extract(epoch FROM now() - min(created_at)), 0)::float8 AS oldest_age_s"
        f" FROM {check_service_name(service)}.outbox WHERE sent_at IS NULL"
    )
    return {"rows": int(row["rows"]), "oldest_age_s": round(float(row["oldest_age_s"]), 3)}
