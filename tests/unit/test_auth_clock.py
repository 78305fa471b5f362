"""The auth service's use cases with time moved by hand: the Authenticator over a real PostgreSQL, no Ray.

Every decision that depends on time (throttle waits and locks, the failure window, session expiry, pruning) is
taken with the Authenticator's clock, so these tests set that clock far from the real one (2030) and move it
themselves: a decision still taken with PostgreSQL's ``now()`` would show here as a wrong answer.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import asyncpg
import pytest

from strata.actors.postgres import Database
from strata.schemas import InvalidCredentials, InvalidToken, PasswordChanged, RevokedSessions, TooManyRequests
from strata.schemas.events import decode
from strata.serve_apps.auth import Authenticator, PasswordHasher, _refresh
from strata.serve_apps.auth._tokens import (
    child_refresh_token,
    hash_refresh_token,
    new_refresh_token,
    refresh_child_key,
)
from tests.unit.conftest import UnitPostgres

PASSWORD = "violet-Harbour-lantern-93"
WRONG_PASSWORD = "wrong-password-000"
NEW_PASSWORD = "quiet-Meadow-compass-17"
T0 = 1_900_000_000.0  # 2030-03-17: whole seconds, so waits computed from it are exact
FREE_FAILURES = 3
LOCK_AFTER = 6
LOCK_S = 300
ACCOUNT_FREE_FAILURES = 5
CLIENT_FREE_FAILURES = 8
MAX_BACKOFF_S = 30
WINDOW_S = 600
REFRESH_TTL_S = 3600
GRACE_S = 3


class FakeClock:
    """Unix seconds that move only when a test says so."""

    def __init__(self, start: float) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds

    @property
    def as_datetime(self) -> datetime:
        return datetime.fromtimestamp(self.now, UTC)


@pytest.fixture(scope="session")
def cheap_hasher() -> PasswordHasher:
    """argon2id at its smallest: these tests are about time, not about hashing cost."""
    return PasswordHasher(time_cost=1, memory_kib=8, parallelism=1)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(T0)


@pytest.fixture
async def auth(
    auth_database: Database, unit_postgres: UnitPostgres, cheap_hasher: PasswordHasher, clock: FakeClock
) -> AsyncIterator[Authenticator]:
    # Each test starts from empty tables (the signing key stays), so counts and prunes are the test's own.
    await auth_database.execute(
        "TRUNCATE auth.login_failures, auth.refresh_tokens, auth.refresh_families, auth.refresh_account_rates,"
        " auth.accounts, auth.outbox"
    )
    settings = unit_postgres.settings(
        login_free_failures=FREE_FAILURES,
        login_lock_after=LOCK_AFTER,
        login_lock_s=LOCK_S,
        login_account_free_failures=ACCOUNT_FREE_FAILURES,
        login_client_free_failures=CLIENT_FREE_FAILURES,
        login_max_backoff_s=MAX_BACKOFF_S,
        login_failure_window_s=WINDOW_S,
        refresh_token_ttl_s=REFRESH_TTL_S,
        refresh_reuse_grace_s=GRACE_S,
    )
    authenticator = Authenticator(auth_database, settings, hasher=cheap_hasher, clock=clock)
    await authenticator.start()
    yield authenticator


def new_email() -> str:
    return f"user-{uuid.uuid4().hex[:12]}@example.org"


def new_client() -> str:
    return f"198.51.100.{uuid.uuid4().int % 250}:{uuid.uuid4().hex[:6]}"


async def registered(auth: Authenticator) -> str:
    """A new account's email."""
    email = new_email()
    await auth.register(email, PASSWORD)
    return email


async def user_id_of(db: Database, email: str) -> str:
    return str(await db.fetchval("SELECT user_id FROM auth.accounts WHERE email = $1", email))


async def failures(db: Database, scope: str, subject: str) -> int | None:
    """The stored failure count of (scope, subject); ``None`` when there is no row."""
    value = await db.fetchval(
        "SELECT failures FROM auth.login_failures WHERE scope = $1 AND subject = $2", scope, subject
    )
    return None if value is None else int(value)


async def fail_login(auth: Authenticator, email: str, client: str) -> None:
    with pytest.raises(InvalidCredentials):
        await auth.login(email, WRONG_PASSWORD, client)


async def refused_for(auth: Authenticator, email: str, client: str) -> float:
    """The ``retry_after`` of a login refused by the throttle (the right password: it is not even checked)."""
    with pytest.raises(TooManyRequests) as refused:
        await auth.login(email, PASSWORD, client)
    assert refused.value.retry_after is not None
    return refused.value.retry_after


async def outbox_events(db: Database) -> list[Any]:
    return [decode(bytes(row["payload"])) for row in await db.fetch("SELECT payload FROM auth.outbox ORDER BY seq")]


# --- the login throttle -------------------------------------------------------------------------------------------


async def test_free_failures_then_a_backoff_timed_by_the_clock_then_admitted_once_it_passed(
    auth: Authenticator, clock: FakeClock
) -> None:
    email, client = await registered(auth), new_client()
    for _ in range(FREE_FAILURES):
        await fail_login(auth, email, client)

    assert await refused_for(auth, email, client) == 1  # 2 ** 0 s after the last failure
    clock.advance(1)
    await fail_login(auth, email, client)  # admitted again, and wrong: the 4th failure
    assert await refused_for(auth, email, client) == 2  # 2 ** 1 s
    clock.advance(1.5)
    assert await refused_for(auth, email, client) == 1  # half a second left: Retry-After says 1
    clock.advance(0.5)

    pair = await auth.login(email, PASSWORD, client)
    assert pair.token_type == "Bearer"


async def test_the_pair_locks_after_lock_after_failures_while_other_clients_only_wait_the_accounts_backoff(
    auth: Authenticator, auth_database: Database, clock: FakeClock
) -> None:
    email, attacker = await registered(auth), new_client()
    for failure in range(LOCK_AFTER):
        # Wait out each backoff (1, 2, 4 s after the free failures), so every attempt is admitted and fails.
        clock.advance(2 ** (failure - FREE_FAILURES) if failure >= FREE_FAILURES else 0)
        await fail_login(auth, email, attacker)
    assert await failures(auth_database, "account", email) == LOCK_AFTER

    assert await refused_for(auth, email, attacker) == LOCK_S  # this client, this account: locked
    owner = new_client()
    assert await refused_for(auth, email, owner) == 2  # any other client: the account's backoff, 2 ** (6 - 5) s
    clock.advance(2)
    await auth.login(email, PASSWORD, owner)
    assert await failures(auth_database, "account", email) is None

    assert await refused_for(auth, email, attacker) == LOCK_S - 2  # the owner's login did not lift the pair's lock
    clock.advance(LOCK_S - 3)
    assert await refused_for(auth, email, attacker) == 1
    clock.advance(1)
    await auth.login(email, PASSWORD, attacker)
    assert await failures(auth_database, "pair", f"{attacker} {email}") is None


async def test_an_account_under_attack_from_many_addresses_makes_its_owner_wait_at_most_the_cap(
    auth: Authenticator, clock: FakeClock
) -> None:
    """Measured: 200 failures from 200 addresses, each as soon as the throttle allows; after every one, the wait the
    owner is told. The longest is the cap, and waiting it out logs the owner in."""
    email, owner = await registered(auth), new_client()
    owner_waits: list[float] = []
    for failure in range(1, 201):
        attacker = f"203.0.113.{failure % 250}"
        try:
            await fail_login(auth, email, attacker)
        except TooManyRequests as refused:  # backing off: the attacker waits, as fast as allowed
            assert refused.retry_after is not None
            clock.advance(refused.retry_after)
            await fail_login(auth, email, attacker)
        # Below the free failures the owner is not asked: a login would succeed and clear the count.
        owner_waits.append(await refused_for(auth, email, owner) if failure >= ACCOUNT_FREE_FAILURES else 0)
    assert max(owner_waits) == MAX_BACKOFF_S
    assert owner_waits[ACCOUNT_FREE_FAILURES - 1 : ACCOUNT_FREE_FAILURES + 5] == [1, 2, 4, 8, 16, MAX_BACKOFF_S]
    assert owner_waits[-1] == MAX_BACKOFF_S  # 200 failures in, the wait is still the cap

    clock.advance(owner_waits[-1])
    pair = await auth.login(email, PASSWORD, owner)
    assert pair.token_type == "Bearer"


async def test_200_failures_from_one_address_against_other_accounts_leave_an_untouched_account_open(
    auth: Authenticator, auth_database: Database, clock: FakeClock
) -> None:
    busy = new_client()
    for _ in range(200):
        await fail_login(auth, new_email(), busy)  # never refused: none of those emails had failed before
    assert await failures(auth_database, "client", busy) == 200

    untouched = await registered(auth)
    pair = await auth.login(untouched, PASSWORD, busy)
    assert pair.token_type == "Bearer"


async def test_a_busy_address_backs_off_on_an_account_that_has_failures_at_most_the_cap(
    auth: Authenticator, clock: FakeClock
) -> None:
    busy = new_client()
    for _ in range(CLIENT_FREE_FAILURES + 10):
        await fail_login(auth, new_email(), busy)
    attacked = await registered(auth)
    await fail_login(auth, attacked, new_client())  # one failure from elsewhere: the account is under attack

    assert await refused_for(auth, attacked, busy) == MAX_BACKOFF_S  # 2 ** 10 s, capped
    clock.advance(MAX_BACKOFF_S)
    await auth.login(attacked, PASSWORD, busy)


async def test_failures_outside_the_window_no_longer_count(
    auth: Authenticator, auth_database: Database, clock: FakeClock
) -> None:
    email, client = await registered(auth), new_client()
    for _ in range(FREE_FAILURES):
        await fail_login(auth, email, client)
    assert await refused_for(auth, email, client) == 1

    clock.advance(WINDOW_S + 1)

    await fail_login(auth, email, client)  # admitted: the old failures left the window, the count starts again
    assert await failures(auth_database, "account", email) == 1
    assert await failures(auth_database, "client", client) == 1
    for _ in range(FREE_FAILURES - 1):
        await fail_login(auth, email, client)  # free again
    assert await refused_for(auth, email, client) == 1


async def test_housekeeping_prunes_failure_counts_only_once_they_left_the_window(
    auth: Authenticator, auth_database: Database, clock: FakeClock
) -> None:
    email, client = await registered(auth), new_client()
    await fail_login(auth, email, client)

    clock.advance(WINDOW_S)
    assert (await auth.housekeeping())["login_failures"] == 0  # at the window's edge it still counts
    clock.advance(1)
    assert (await auth.housekeeping())["login_failures"] == 3  # the account's, the client's and their pair's
    assert await failures(auth_database, "account", email) is None


async def test_a_success_clears_the_accounts_count_and_refunds_the_clients_charge(
    auth: Authenticator, auth_database: Database
) -> None:
    email, client = await registered(auth), new_client()
    other = await registered(auth)
    await fail_login(auth, other, client)
    await fail_login(auth, email, client)
    assert await failures(auth_database, "client", client) == 2

    await auth.login(email, PASSWORD, client)

    assert await failures(auth_database, "account", email) is None
    assert await failures(auth_database, "pair", f"{client} {email}") is None
    assert await failures(auth_database, "client", client) == 2  # charged when admitted, refunded on success
    assert await failures(auth_database, "account", other) == 1  # another account's count is its own


async def test_a_wrong_current_password_is_throttled_like_a_login(
    auth: Authenticator, auth_database: Database, clock: FakeClock
) -> None:
    email = await registered(auth)
    user_id = await user_id_of(auth_database, email)
    for _ in range(ACCOUNT_FREE_FAILURES):  # no client: the account's scope alone
        with pytest.raises(InvalidCredentials):
            await auth.change_password(user_id, WRONG_PASSWORD, NEW_PASSWORD)
    with pytest.raises(TooManyRequests) as refused:
        await auth.change_password(user_id, PASSWORD, NEW_PASSWORD)
    assert refused.value.retry_after == 1

    clock.advance(1)
    changed = await auth.change_password(user_id, PASSWORD, NEW_PASSWORD)

    assert changed == PasswordChanged(user_id=user_id, revoked_sessions=0)
    stamped = await auth_database.fetchval("SELECT password_changed_at FROM auth.accounts WHERE email = $1", email)
    assert stamped == clock.as_datetime
    assert await failures(auth_database, "account", email) is None


# --- refresh-token families ---------------------------------------------------------------------------------------


async def test_refresh_gives_a_new_pair_and_the_old_token_is_refused(auth: Authenticator, clock: FakeClock) -> None:
    email = await registered(auth)
    first = await auth.login(email, PASSWORD, new_client())
    assert first.refresh_expires_in == REFRESH_TTL_S

    clock.advance(10)
    second = await auth.refresh(first.refresh_token)

    assert second.refresh_token != first.refresh_token
    assert second.access_token != first.access_token
    assert second.refresh_expires_in == REFRESH_TTL_S - 10  # the family's expiry, counted on the clock
    clock.advance(GRACE_S + 1)
    with pytest.raises(InvalidToken):
        await auth.refresh(first.refresh_token)


async def test_reusing_a_rotated_token_revokes_the_whole_family_and_records_it(
    auth: Authenticator, auth_database: Database, clock: FakeClock
) -> None:
    email = await registered(auth)
    first = await auth.login(email, PASSWORD, new_client())
    clock.advance(5)
    second = await auth.refresh(first.refresh_token)
    clock.advance(5)
    newest = await auth.refresh(second.refresh_token)

    clock.advance(5)
    with pytest.raises(InvalidToken):
        await auth.refresh(second.refresh_token)  # rotated already: someone else holds it
    with pytest.raises(InvalidToken):
        await auth.refresh(newest.refresh_token)  # the family's newest dies with it

    family = await auth_database.fetch("SELECT used_at, revoked_at FROM auth.refresh_tokens ORDER BY created_at")
    assert [row["revoked_at"] for row in family] == [clock.as_datetime] * 3
    assert [row["used_at"] for row in family] == [
        datetime.fromtimestamp(T0 + 5, UTC),
        datetime.fromtimestamp(T0 + 10, UTC),
        None,
    ]
    revoked = [e for e in await outbox_events(auth_database) if e.type.endswith(".sessions_revoked.v1")]
    assert len(revoked) == 1
    assert revoked[0].data["reason"] == "refresh_token_reuse" and revoked[0].actor == "system"


async def test_a_family_past_its_absolute_ttl_is_refused(
    auth: Authenticator, auth_database: Database, clock: FakeClock
) -> None:
    email = await registered(auth)
    pair = await auth.login(email, PASSWORD, new_client())
    clock.advance(REFRESH_TTL_S - 600)
    pair = await auth.refresh(pair.refresh_token)  # refreshing does not extend the family
    assert pair.refresh_expires_in == 600

    clock.advance(600)

    with pytest.raises(InvalidToken):
        await auth.refresh(pair.refresh_token)
    events = await outbox_events(auth_database)
    assert not [e for e in events if e.type.endswith(".sessions_revoked.v1")], "expiry is not a reuse"


async def test_housekeeping_prunes_refresh_tokens_a_ttl_after_they_expired(
    auth: Authenticator, auth_database: Database, clock: FakeClock
) -> None:
    email = await registered(auth)
    await auth.login(email, PASSWORD, new_client())

    clock.advance(2 * REFRESH_TTL_S)  # expired for one TTL: kept a little longer
    assert (await auth.housekeeping())["refresh_tokens"] == 0
    clock.advance(1)
    assert (await auth.housekeeping())["refresh_tokens"] == 1
    assert await auth_database.fetchval("SELECT count(*) FROM auth.refresh_tokens") == 0


async def test_logout_and_logout_all_stamp_revocations_with_the_clock(
    auth: Authenticator, auth_database: Database, clock: FakeClock
) -> None:
    email = await registered(auth)
    one = await auth.login(email, PASSWORD, new_client())
    await auth.login(email, PASSWORD, new_client())
    user_id = await user_id_of(auth_database, email)

    clock.advance(60)
    assert await auth.logout(one.refresh_token) == RevokedSessions(revoked_sessions=1)
    clock.advance(60)
    assert await auth.logout_all(user_id) == RevokedSessions(
        revoked_sessions=1
    )  # the other one; the first ended already

    stamps = await auth_database.fetch("SELECT revoked_at FROM auth.refresh_tokens ORDER BY revoked_at")
    assert [row["revoked_at"] for row in stamps] == [
        datetime.fromtimestamp(T0 + 60, UTC),
        datetime.fromtimestamp(T0 + 120, UTC),
    ]


# --- the grace window of a retried refresh ------------------------------------------------------------------------


async def sessions_revoked(db: Database) -> list[Any]:
    return [e for e in await outbox_events(db) if e.type.endswith(".sessions_revoked.v1")]


async def test_a_retry_within_the_grace_window_gets_the_same_child_and_it_works(
    auth: Authenticator, auth_database: Database, clock: FakeClock
) -> None:
    email = await registered(auth)
    first = await auth.login(email, PASSWORD, new_client())
    clock.advance(1)
    child = await auth.refresh(first.refresh_token)  # the answer the client lost

    clock.advance(GRACE_S)  # the window's last instant
    retried = await auth.refresh(first.refresh_token)

    assert retried.refresh_token == child.refresh_token
    assert retried.refresh_expires_in == child.refresh_expires_in - GRACE_S
    assert await auth_database.fetchval("SELECT count(*) FROM auth.refresh_tokens") == 2, "no new token was made"
    grandchild = await auth.refresh(retried.refresh_token)  # the same child rotates as usual
    assert grandchild.refresh_token not in {first.refresh_token, child.refresh_token}
    assert not await sessions_revoked(auth_database)


async def test_a_retry_after_the_grace_window_is_reuse_and_revokes_the_family(
    auth: Authenticator, auth_database: Database, clock: FakeClock
) -> None:
    email = await registered(auth)
    first = await auth.login(email, PASSWORD, new_client())
    child = await auth.refresh(first.refresh_token)

    clock.advance(GRACE_S + 0.001)
    with pytest.raises(InvalidToken):
        await auth.refresh(first.refresh_token)
    with pytest.raises(InvalidToken):
        await auth.refresh(child.refresh_token)
    assert [e.data["reason"] for e in await sessions_revoked(auth_database)] == ["refresh_token_reuse"]


async def test_within_the_window_only_the_immediate_parent_of_an_unused_child_is_forgiven(
    auth: Authenticator, auth_database: Database, clock: FakeClock
) -> None:
    email = await registered(auth)
    first = await auth.login(email, PASSWORD, new_client())
    child = await auth.refresh(first.refresh_token)
    grandchild = await auth.refresh(child.refresh_token)  # the child is used: its parent is no longer forgiven

    with pytest.raises(InvalidToken):
        await auth.refresh(first.refresh_token)  # within the window, but two generations back
    for token in (child.refresh_token, grandchild.refresh_token):
        with pytest.raises(InvalidToken):
            await auth.refresh(token)
    assert [e.data["reason"] for e in await sessions_revoked(auth_database)] == ["refresh_token_reuse"]


@pytest.mark.parametrize("revocation", ["logout", "logout_all", "password_change"])
async def test_no_retry_is_forgiven_once_the_session_is_revoked(
    auth: Authenticator, auth_database: Database, clock: FakeClock, revocation: str
) -> None:
    email = await registered(auth)
    user_id = await user_id_of(auth_database, email)
    first = await auth.login(email, PASSWORD, new_client())
    child = await auth.refresh(first.refresh_token)
    if revocation == "logout":
        await auth.logout(child.refresh_token)
    elif revocation == "logout_all":
        await auth.logout_all(user_id)
    else:
        await auth.change_password(user_id, PASSWORD, NEW_PASSWORD)

    for token in (first.refresh_token, child.refresh_token):  # within the window, and refused
        with pytest.raises(InvalidToken):
            await auth.refresh(token)


async def test_a_disabled_account_gets_no_child_again(
    auth: Authenticator, auth_database: Database, clock: FakeClock
) -> None:
    email = await registered(auth)
    first = await auth.login(email, PASSWORD, new_client())
    await auth.refresh(first.refresh_token)
    await auth_database.execute("UPDATE auth.accounts SET disabled = true WHERE email = $1", email)

    with pytest.raises(InvalidToken):
        await auth.refresh(first.refresh_token)


async def test_without_a_grace_window_any_retry_is_reuse(
    auth_database: Database, unit_postgres: UnitPostgres, cheap_hasher: PasswordHasher, clock: FakeClock
) -> None:
    strict = Authenticator(
        auth_database, unit_postgres.settings(refresh_reuse_grace_s=0), hasher=cheap_hasher, clock=clock
    )
    await strict.start()
    email = new_email()
    await strict.register(email, PASSWORD)
    first = await strict.login(email, PASSWORD, new_client())
    child = await strict.refresh(first.refresh_token)

    with pytest.raises(InvalidToken):
        await strict.refresh(first.refresh_token)  # at the same instant: still reuse
    with pytest.raises(InvalidToken):
        await strict.refresh(child.refresh_token)


# --- how often a session and an account may refresh ------------------------------------------------------------------

FAMILY_RATE = (3, 60)  # a token every 20 s
ACCOUNT_RATE = (5, 60)  # a token every 12 s


@pytest.fixture
async def rated(
    auth: Authenticator,
    auth_database: Database,
    unit_postgres: UnitPostgres,
    cheap_hasher: PasswordHasher,
    clock: FakeClock,
) -> Authenticator:
    """An auth replica with small refresh allowances (the tables emptied by ``auth``)."""
    settings = unit_postgres.settings(
        refresh_token_ttl_s=REFRESH_TTL_S,
        refresh_reuse_grace_s=GRACE_S,
        refresh_rate_per_family=f"{FAMILY_RATE[0]}/{FAMILY_RATE[1]}s",
        refresh_rate_per_account=f"{ACCOUNT_RATE[0]}/{ACCOUNT_RATE[1]}s",
    )
    replica = Authenticator(auth_database, settings, hasher=cheap_hasher, clock=clock)
    await replica.start()
    return replica


async def refresh_limited(auth: Authenticator, token: str, limit_class: str) -> float:
    """The ``retry_after`` of a refresh refused by ``limit_class`` (``refresh-family`` or ``refresh-account``)."""
    with pytest.raises(TooManyRequests) as refused:
        await auth.refresh(token)
    assert refused.value.extra == {"limit_class": limit_class}
    assert refused.value.retry_after is not None
    return refused.value.retry_after


async def test_a_session_refreshes_its_allowance_then_waits_and_its_token_stays_good(
    rated: Authenticator, auth_database: Database, clock: FakeClock
) -> None:
    email = await registered(rated)
    token = (await rated.login(email, PASSWORD, new_client())).refresh_token
    for _ in range(FAMILY_RATE[0]):
        token = (await rated.refresh(token)).refresh_token
    assert await refresh_limited(rated, token, "refresh-family") == FAMILY_RATE[1] / FAMILY_RATE[0]
    # Refused for now, not spent: the same token refreshes once a token refilled, and not a moment before.
    clock.advance(FAMILY_RATE[1] / FAMILY_RATE[0] - 1)
    await refresh_limited(rated, token, "refresh-family")
    clock.advance(1)
    assert (await rated.refresh(token)).refresh_token != token
    assert not await sessions_revoked(auth_database)


async def test_a_retry_within_the_grace_window_spends_the_sessions_allowance_too(
    rated: Authenticator, clock: FakeClock
) -> None:
    email = await registered(rated)
    first = (await rated.login(email, PASSWORD, new_client())).refresh_token
    await rated.refresh(first)
    for _ in range(FAMILY_RATE[0] - 1):
        await rated.refresh(first)  # a client retrying with the token it has: the same child each time
    await refresh_limited(rated, first, "refresh-family")


async def test_an_accounts_sessions_share_its_allowance_and_another_account_keeps_its_own(
    rated: Authenticator, clock: FakeClock
) -> None:
    email, other = await registered(rated), await registered(rated)
    sessions = [(await rated.login(email, PASSWORD, new_client())).refresh_token for _ in range(3)]
    spent = 0
    for index in range(len(sessions)):  # two refreshes a session: the families' allowances are not the bound
        for _ in range(2):
            if spent == ACCOUNT_RATE[0]:
                break
            sessions[index] = (await rated.refresh(sessions[index])).refresh_token
            spent += 1
    assert spent == ACCOUNT_RATE[0]
    retry_after = await refresh_limited(rated, sessions[2], "refresh-account")
    assert retry_after == ACCOUNT_RATE[1] / ACCOUNT_RATE[0]
    await refresh_limited(rated, sessions[0], "refresh-account")  # its family has room; its account has none
    stranger = (await rated.login(other, PASSWORD, new_client())).refresh_token
    await rated.refresh(stranger)
    clock.advance(retry_after)
    await rated.refresh(sessions[2])


async def test_a_limited_refresh_still_refuses_a_reused_token_and_revokes_its_session(
    rated: Authenticator, auth_database: Database, clock: FakeClock
) -> None:
    email = await registered(rated)
    first = (await rated.login(email, PASSWORD, new_client())).refresh_token
    token = first
    for _ in range(FAMILY_RATE[0]):
        token = (await rated.refresh(token)).refresh_token
    clock.advance(GRACE_S + 1)
    with pytest.raises(InvalidToken):  # a stolen, spent token: refused as reuse, not as "too many"
        await rated.refresh(first)
    assert len(await sessions_revoked(auth_database)) == 1


def test_a_stored_bucket_refills_with_the_clock_and_a_clock_behind_refills_nothing() -> None:
    policy = _refresh.RatePolicy(3, 60)
    t0 = datetime.fromtimestamp(T0, UTC)
    full = _refresh.spend_one(policy, None, None, t0)
    assert full.allowed and full.tokens_left == 2 and full.refilled_at == t0
    empty = _refresh.spend_one(policy, 0.0, t0, t0)
    assert not empty.allowed and empty.retry_after_s == 20
    behind = _refresh.spend_one(policy, 0.5, t0, datetime.fromtimestamp(T0 - 30, UTC))
    assert not behind.allowed and behind.refilled_at == t0 and behind.retry_after_s == 10
    later = _refresh.spend_one(policy, 0.5, t0, datetime.fromtimestamp(T0 + 10, UTC))
    assert later.allowed and later.tokens_left == 0


def test_a_child_token_is_derived_from_its_parent_under_the_master_secrets_key() -> None:
    key = refresh_child_key("one master secret")
    parent = new_refresh_token()
    child = child_refresh_token(key, parent)
    assert child == child_refresh_token(key, parent)
    assert len(child) == len(parent) == 43 and child != parent
    assert child != child_refresh_token(refresh_child_key("another master secret"), parent)
    assert child != child_refresh_token(key, new_refresh_token())


# --- a rotation in flight against a revocation (two real transactions, interleaved by hand) -----------------------


@pytest.mark.parametrize("revocation", ["revoke_all", "logout"])
async def test_a_revocation_waits_for_a_rotation_in_flight_and_revokes_the_child_it_inserted(
    auth: Authenticator, auth_database: Database, unit_postgres: UnitPostgres, clock: FakeClock, revocation: str
) -> None:
    email = await registered(auth)
    user_id = await user_id_of(auth_database, email)
    first = await auth.login(email, PASSWORD, new_client())
    child_token = new_refresh_token()
    rotating = await asyncpg.connect(unit_postgres.admin_dsn)
    revoking = await asyncpg.connect(unit_postgres.admin_dsn)
    try:
        rotation = rotating.transaction()
        await rotation.start()
        rotated = await _refresh.rotate_refresh_token(
            rotating, clock.as_datetime, hash_refresh_token(first.refresh_token), hash_refresh_token(child_token)
        )
        assert isinstance(rotated, _refresh.Session)  # the child is inserted, not yet committed

        async def revoke() -> int:
            async with revoking.transaction():
                if revocation == "revoke_all":
                    return await _refresh.revoke_all(revoking, clock.as_datetime, user_id)
                return await _refresh.revoke_family(
                    revoking, clock.as_datetime, hash_refresh_token(first.refresh_token)
                )

        revoked = asyncio.create_task(revoke())
        await _blocked_by(rotating, revoking)
        await rotation.commit()
        assert await revoked == 1
    finally:
        await rotating.close()
        await revoking.close()

    with pytest.raises(InvalidToken):
        await auth.refresh(child_token)
    live = await auth_database.fetchval("SELECT count(*) FROM auth.refresh_tokens WHERE revoked_at IS NULL")
    assert live == 0


async def _blocked_by(holder: asyncpg.Connection, waiter: asyncpg.Connection) -> None:
    """Return once ``waiter``'s statement waits for a lock ``holder`` holds (asked on ``holder``'s connection)."""
    for _ in range(10_000):
        blockers = await holder.fetchval("SELECT pg_blocking_pids($1)", waiter.get_server_pid())
        if holder.get_server_pid() in blockers:
            return
        await asyncio.sleep(0.01)  # the wait is in another server process: poll it
    raise AssertionError("the revocation never waited for the rotation's lock")


async def test_a_rotation_holding_its_family_finishes_while_revoke_all_holds_the_account(
    auth: Authenticator, auth_database: Database, unit_postgres: UnitPostgres, clock: FakeClock
) -> None:
    """The other interleaving: revoke_all has the account and waits for the family; the rotation that holds the
    family then inserts its child (a foreign key to the account). Neither may deadlock the other."""
    email = await registered(auth)
    user_id = await user_id_of(auth_database, email)
    first = await auth.login(email, PASSWORD, new_client())
    family_id = await auth_database.fetchval("SELECT family_id FROM auth.refresh_families WHERE user_id = $1", user_id)
    child_token = new_refresh_token()
    rotating = await asyncpg.connect(unit_postgres.admin_dsn)
    revoking = await asyncpg.connect(unit_postgres.admin_dsn)
    try:
        rotation = rotating.transaction()
        await rotation.start()
        await rotating.execute("SELECT 1 FROM auth.refresh_families WHERE family_id = $1 FOR UPDATE", family_id)

        async def revoke() -> int:
            async with revoking.transaction():
                return await _refresh.revoke_all(revoking, clock.as_datetime, user_id)

        revoked = asyncio.create_task(revoke())
        await _blocked_by(rotating, revoking)  # holding the account, waiting for the family
        rotated = await _refresh.rotate_refresh_token(
            rotating, clock.as_datetime, hash_refresh_token(first.refresh_token), hash_refresh_token(child_token)
        )
        assert isinstance(rotated, _refresh.Session)
        await rotation.commit()
        assert await revoked == 1
    finally:
        await rotating.close()
        await revoking.close()

    with pytest.raises(InvalidToken):
        await auth.refresh(child_token)
