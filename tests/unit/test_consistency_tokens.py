"""``Strata-Consistency`` tokens: strata signs the positions it hands out and honours only those it signed."""

from __future__ import annotations

import pytest

from strata.actors.postgres import format_lsn
from strata.schemas import InvalidConsistencyToken, Settings
from strata.serve_apps.gateway._consistency import MAX_TOKEN_CHARS, TokenSigner

KEY = b"k" * 32


def test_a_token_strata_signed_names_its_position_and_round_trips() -> None:
    signer = TokenSigner(KEY)
    for position in (0, 1, 0x16B3748, (0x16 << 32) | 0xB374D848, (1 << 64) - 1):
        token = signer.sign(position)
        assert token.startswith(format_lsn(position) + ".")
        assert len(token) <= MAX_TOKEN_CHARS
        assert signer.verify(token) == position
        assert signer.verify(f"  {token} ") == position


@pytest.mark.parametrize(
    "forged",
    [
        "FFFFFFFF/FFFFFFFF",  # a bare position: any client could write one
        "0/1",
        "FFFFFFFF/FFFFFFFF.AAAAAAAAAAAAAAAAAAAAAA",  # a made-up signature
        "FFFFFFFF/FFFFFFFF.",
    ],
)
def test_a_position_strata_did_not_sign_is_ignored(forged: str) -> None:
    assert TokenSigner(KEY).verify(forged) is None


def test_a_signature_is_bound_to_its_position_and_its_key() -> None:
    signer = TokenSigner(KEY)
    mac = signer.sign(100).partition(".")[2]
    assert signer.verify(f"{format_lsn(0xFFFFFFFFFFFFFFFF)}.{mac}") is None, "another position, the same signature"
    assert TokenSigner(b"o" * 32).verify(signer.sign(100)) is None, "signed under another master secret"


@pytest.mark.parametrize("bad", ["yesterday", "0/", "1/2/3", "G/1", "0/" + "F" * 40, "x" * 10_000, "0/1." + "A" * 80])
def test_a_malformed_or_huge_header_is_an_invalid_token(bad: str) -> None:
    with pytest.raises(InvalidConsistencyToken):
        TokenSigner(KEY).verify(bad)


def test_no_header_is_no_token() -> None:
    assert TokenSigner(KEY).verify(None) is None and TokenSigner(KEY).verify("  ") is None


def test_the_key_is_derived_for_this_purpose_from_the_master_secret() -> None:
    one = Settings(_env_file=None, secret_key="s" * 32)  # type: ignore[arg-type]
    same = Settings(_env_file=None, secret_key="s" * 32)  # type: ignore[arg-type]
    other = Settings(_env_file=None, secret_key="t" * 32)  # type: ignore[arg-type]
    key = one.consistency_token_key()
    assert key == same.consistency_token_key() != other.consistency_token_key()
    assert key not in (one.derived_key("data-cursor"), one.edge_token().encode()), "its own key, no other purpose's"
    assert TokenSigner(key).verify(TokenSigner(same.consistency_token_key()).sign(7)) == 7
