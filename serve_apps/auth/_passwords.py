"""Passwords: the policy a new one must meet, and argon2id hashing through libpass.

Hashing costs tens of milliseconds of CPU and ~19 MiB of memory on purpose:
:class:`PasswordHasher` runs it in a worker thread (argon2 releases the GIL), a
few at a time, so the replica's event loop keeps serving meanwhile.
"""

from __future__ import annotations

import asyncio
import functools
import secrets
from importlib import resources

from passlib.context import CryptContext

from strata.schemas import Settings, Unprocessable

MIN_PASSWORD_LENGTH = 12
MAX_PASSWORD_LENGTH = 128
"""Longer passwords are refused: they add no security and would let a client choose the cost of hashing."""

MAX_EMAIL_LENGTH = 254

_MAX_CONCURRENT_HASHES = 4
"""argon2 hashes one replica computes at once (each holds ``argon2_memory_kib`` of memory)."""


def normalize_email(email: str) -> str:
    """The stored form of an email address: trimmed and lower-cased, so logins ignore case."""
    return email.strip().lower()


def check_email(email: str) -> str:
    """``email`` normalized, or :class:`Unprocessable` (``code`` ``invalid-email``) when it cannot be one."""
    normalized = normalize_email(email)
    local, at, domain = normalized.rpartition("@")
    if (
        not at
        or not local
        or not domain
        or "." not in domain.strip(".")
        or len(normalized) > MAX_EMAIL_LENGTH
        or any(c.isspace() for c in normalized)
    ):
        raise Unprocessable("this is not a valid email address", code="invalid-email")
    return normalized


@functools.cache
def common_passwords() -> frozenset[str]:
    """The shipped list of very common (breached) passwords, lower-cased."""
    text = resources.files("strata.serve_apps.auth").joinpath("common_passwords.txt").read_text(encoding="utf-8")
    return frozenset(
        line.strip().lower() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")
    )


def check_password_policy(password: str, email: str) -> None:
    """Refuse a new password that breaks the policy, with :class:`Unprocessable`.

    The error's ``detail`` is written for the user; ``extra["code"]`` names the
    rule, stable and slug-shaped (``password-too-short``, ``password-too-long``,
    ``password-matches-email``, ``password-too-common``).
    """
    if len(password) < MIN_PASSWORD_LENGTH:
        raise Unprocessable(
            f"the password must have at least {MIN_PASSWORD_LENGTH} characters", code="password-too-short"
        )
    if len(password) > MAX_PASSWORD_LENGTH:
        raise Unprocessable(
            f"the password must have at most {MAX_PASSWORD_LENGTH} characters", code="password-too-long"
        )
    folded = password.strip().lower()
    normalized_email = normalize_email(email)
    if folded in {normalized_email, normalized_email.rpartition("@")[0]}:
        raise Unprocessable("the password must not be the email address", code="password-matches-email")
    if folded in common_passwords():
        raise Unprocessable(
            "this password is too common (it appears in lists of breached passwords)", code="password-too-common"
        )


class PasswordHasher:
    """argon2id hashes with the parameters of the settings; old parameters are upgraded on login.

    :meth:`verify_and_update` returns a new hash when the stored one was made
    with other parameters (the settings changed), for the caller to store.
    Verifying against no hash (an unknown email) still costs one argon2
    verification, against a fixed dummy hash, so the answer takes as long.
    """

    def __init__(self, *, time_cost: int, memory_kib: int, parallelism: int) -> None:
        self._context = CryptContext(
            schemes=["argon2"],
            argon2__type="ID",
            argon2__time_cost=time_cost,
            argon2__memory_cost=memory_kib,
            argon2__parallelism=parallelism,
        )
        # A hash of a random password nobody knows, made with the current parameters.
        self._dummy_hash = self.hash(secrets.token_urlsafe(24))
        self._semaphore: asyncio.Semaphore | None = None

    @classmethod
    def from_settings(cls, settings: Settings) -> PasswordHasher:
        return cls(
            time_cost=settings.argon2_time_cost,
            memory_kib=settings.argon2_memory_kib,
            parallelism=settings.argon2_parallelism,
        )

    def hash(self, password: str) -> str:
        """An argon2id hash (PHC string) of ``password``; blocking, CPU-bound."""
        return str(self._context.hash(password))

    def verify_and_update(self, password: str, password_hash: str | None) -> tuple[bool, str | None]:
        """Whether ``password`` matches ``password_hash``, and a replacement hash if its parameters are outdated.

        ``password_hash=None`` verifies against the dummy hash and answers
        ``(False, None)``: as slow as a real check. A malformed stored hash
        counts as a mismatch. Blocking, CPU-bound.
        """
        if password_hash is None:
            self._context.verify(password, self._dummy_hash)
            return False, None
        try:
            ok, new_hash = self._context.verify_and_update(password, password_hash)
        except ValueError:  # not a hash this context knows
            self._context.verify(password, self._dummy_hash)
            return False, None
        return bool(ok), (str(new_hash) if new_hash else None)

    def needs_update(self, password_hash: str) -> bool:
        return bool(self._context.needs_update(password_hash))

    def _limit(self) -> asyncio.Semaphore:
        if self._semaphore is None:
            self._semaphore = asyncio.Semaphore(_MAX_CONCURRENT_HASHES)
        return self._semaphore

    async def hash_async(self, password: str) -> str:
        """:meth:`hash` in a worker thread."""
        async with self._limit():
            return await asyncio.to_thread(self.hash, password)

    async def verify_and_update_async(self, password: str, password_hash: str | None) -> tuple[bool, str | None]:
        """:meth:`verify_and_update` in a worker thread."""
        async with self._limit():
            return await asyncio.to_thread(self.verify_and_update, password, password_hash)
