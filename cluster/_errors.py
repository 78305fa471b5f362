"""Errors the operator must act on. The CLI prints each as one line and exits non-zero.

::

    ClusterError                 something about running strata went wrong; the message says what to do
    ├── PreflightError           refused before anything started
    │   ├── ToolMissing          a JDK or Maven is needed for the embedded Kafka
    │   ├── PortInUse            a port strata would listen on is taken
    │   └── Unreachable          an external PostgreSQL / Kafka / Ray does not answer
    ├── StartupError             a component started but did not become ready in time
    └── ScaleRefused             `strata scale` was given bounds it cannot apply (or scale.json holds such)
"""

from __future__ import annotations


class ClusterError(Exception):
    """Base of the errors ``strata`` reports to an operator as one line."""


class PreflightError(ClusterError):
    """A check before starting anything failed; nothing was started."""


class ToolMissing(PreflightError):
    """A program strata needs is not installed."""


class PortInUse(PreflightError):
    """A port strata would listen on is already taken."""


class Unreachable(PreflightError):
    """An external server named in the settings does not answer."""


class StartupError(ClusterError):
    """A component did not become ready."""


class ScaleRefused(ClusterError):
    """Replica bounds that cannot be applied: an unknown app, a bound outside 1..64, a minimum above the maximum."""
