"""The audit log: consumes every domain event and keeps one row per event in schema ``audit``."""

from strata.contracts import AuditClient  # its contract's, kept here for scripts that import it from here
from strata.serve_apps.audit._deployment import AuditService, app
from strata.serve_apps.audit._log import record_audit_event

__all__ = ["AuditClient", "AuditService", "app", "record_audit_event"]
