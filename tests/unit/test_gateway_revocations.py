"""What the gateway learns from events, with an injected clock (no Kafka)."""

from __future__ import annotations

from strata.serve_apps.gateway._revocations import Revocations
from strata.serve_apps.gateway._tokens import AccessClaims


def _claims(user: str = "u1", issued_at: int = 1000, session: str | None = "s1") -> AccessClaims:
    return AccessClaims(user, ("member",), 1, session, "jti", issued_at, issued_at + 300)


def test_an_ended_session_refuses_its_tokens_only() -> None:
    revocations = Revocations(horizon_s=400, clock=lambda: 1000.0)
    revocations.apply("strata.auth.account.sessions_revoked.v1", {"user_id": "u1", "family_id": "s1"}, 1005.0)
    assert revocations.refusal(_claims(session="s1", issued_at=2000)) is not None
    assert revocations.refusal(_claims(session="s2")) is None


def test_a_user_cut_off_refuses_older_tokens_and_accepts_a_new_login() -> None:
    revocations = Revocations(horizon_s=400, clock=lambda: 1000.0)
    for event_type in (
        "strata.users.user.disabled.v1",
        "strata.users.user.roles_changed.v1",
        "strata.auth.account.password_changed.v1",
    ):
        revocations = Revocations(horizon_s=400, clock=lambda: 1000.0)
        revocations.apply(event_type, {"user_id": "u1"}, 1010.7)
        assert revocations.refusal(_claims(issued_at=1009)) is not None, event_type
        assert revocations.refusal(_claims(issued_at=1010)) is not None, "the cut-off's own second may predate it"
        assert revocations.refusal(_claims(issued_at=1011)) is None, "a new login after the cut-off counts"
        assert revocations.refusal(_claims(user="u2", issued_at=900)) is None


def test_logout_everywhere_is_a_cut_off_and_unrelated_events_change_nothing() -> None:
    revocations = Revocations(horizon_s=400, clock=lambda: 1000.0)
    revocations.apply("strata.auth.account.sessions_revoked.v1", {"user_id": "u1", "family_id": None}, 1050.0)
    revocations.apply("strata.auth.account.logged_in.v1", {"user_id": "u2", "session_id": "x"}, 1050.0)
    assert revocations.refusal(_claims(issued_at=1049)) is not None
    assert len(revocations) == 1


def test_a_redelivered_older_event_does_not_move_the_cut_off_back() -> None:
    revocations = Revocations(horizon_s=400, clock=lambda: 1000.0)
    revocations.apply("strata.users.user.disabled.v1", {"user_id": "u1"}, 1100.0)
    revocations.apply("strata.users.user.roles_changed.v1", {"user_id": "u1"}, 1050.0)
    assert revocations.refusal(_claims(issued_at=1060)) is not None


def test_entries_older_than_any_valid_token_are_pruned() -> None:
    now = [1000.0]
    revocations = Revocations(horizon_s=400, clock=lambda: now[0])
    revocations.apply("strata.users.user.disabled.v1", {"user_id": "u1"}, 1000.0)
    now[0] = 1300.0
    revocations.prune()
    assert len(revocations) == 1
    now[0] = 1401.0
    revocations.prune()
    assert len(revocations) == 0


def _with_pv(perm_version: int, issued_at: int = 2000) -> AccessClaims:
    return AccessClaims("u1", ("admin",), perm_version, "s1", "jti", issued_at, issued_at + 300)


def test_a_token_below_the_users_latest_permissions_version_is_refused_whenever_it_was_issued() -> None:
    """A refresh that raced the role change minted a token after the cut-off, with the old roles and pv."""
    revocations = Revocations(horizon_s=400, clock=lambda: 1000.0)
    revocations.apply("strata.users.user.roles_changed.v1", {"user_id": "u1", "roles": [], "perm_version": 3}, 1000.0)
    assert revocations.refusal(_with_pv(2, issued_at=1500)) is not None, "issued after the change, old pv"
    assert revocations.refusal(_with_pv(3, issued_at=1500)) is None
    assert revocations.refusal(_with_pv(4, issued_at=1500)) is None
    other = AccessClaims("u2", ("admin",), 1, "s2", "jti", 1500, 1800)
    assert revocations.refusal(other) is None


def test_the_minimum_permissions_version_only_rises() -> None:
    revocations = Revocations(horizon_s=400, clock=lambda: 1000.0)
    revocations.apply("strata.users.user.roles_changed.v1", {"user_id": "u1", "perm_version": 5}, 1000.0)
    revocations.apply("strata.users.user.roles_changed.v1", {"user_id": "u1", "perm_version": 4}, 1001.0)
    assert revocations.refusal(_with_pv(4)) is not None, "a redelivered older event must not lower it"
    revocations.apply("strata.users.user.roles_changed.v1", {"user_id": "u1", "perm_version": True}, 1001.0)
    revocations.apply("strata.users.user.disabled.v1", {"user_id": "u1", "perm_version": 99}, 1001.0)
    assert revocations.refusal(_with_pv(5)) is None, "only roles_changed carries a permissions version"


def test_a_minimum_permissions_version_is_pruned_with_the_other_entries() -> None:
    now = [1000.0]
    revocations = Revocations(horizon_s=400, clock=lambda: now[0])
    revocations.apply("strata.users.user.roles_changed.v1", {"user_id": "u1", "perm_version": 2}, 1000.0)
    assert len(revocations) == 1  # the minimum pv (a role change sets no not-before time)
    now[0] = 1401.0
    revocations.prune()
    assert len(revocations) == 0


def test_a_token_with_the_new_roles_from_the_changes_own_second_is_good() -> None:
    """Logging in right after a role change works: the new ``pv`` says the token has the new roles."""
    revocations = Revocations(horizon_s=400, clock=lambda: 1000.0)
    revocations.apply("strata.users.user.roles_changed.v1", {"user_id": "u1", "perm_version": 3}, 1000.7)
    assert revocations.refusal(_with_pv(3, issued_at=1000)) is None
    assert revocations.refusal(_with_pv(2, issued_at=1000)) is not None, "minted with the old roles"
    assert revocations.refusal(_with_pv(2, issued_at=999)) is not None
