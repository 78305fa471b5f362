"""The auth service: credentials, sessions (refresh-token families), signing keys and their JWKS.

Its deployment, domain logic and its own schema's migrations (``migrations/``)
live here; the gateway verifies the access tokens it signs, and calls it through
:class:`AuthClient`.
"""

from strata.contracts import AuthClient  # its contract's, kept here for scripts that import it from here
from strata.serve_apps.auth._deployment import AuthService, app
from strata.serve_apps.auth._keys import (
    KEY_CACHE_TTL_S,
    ActiveKeyCache,
    EncryptedKey,
    KeyDecryptionError,
    SigningKey,
    ensure_active_key,
    jwks,
    key_inventory,
    rotate_key,
)
from strata.serve_apps.auth._passwords import PasswordHasher, check_email, check_password_policy
from strata.serve_apps.auth._projection import apply_users_event
from strata.serve_apps.auth._service import Authenticator
from strata.serve_apps.auth._tokens import issue_access_token

__all__ = [
    "KEY_CACHE_TTL_S",
    "ActiveKeyCache",
    "AuthClient",
    "AuthService",
    "Authenticator",
    "EncryptedKey",
    "KeyDecryptionError",
    "PasswordHasher",
    "SigningKey",
    "app",
    "apply_users_event",
    "check_email",
    "check_password_policy",
    "ensure_active_key",
    "issue_access_token",
    "jwks",
    "key_inventory",
    "rotate_key",
]
