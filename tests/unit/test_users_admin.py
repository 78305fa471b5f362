"""The users service's user ids: a malformed id is no user, never a database error.

(Its list cursors are the shared keyset codec's, tested in test_pagination.py.)
"""

from __future__ import annotations

import uuid

import pytest

from strata.schemas import ResourceNotFound
from strata.serve_apps.users._admin import user_uuid


def test_a_user_id_that_is_no_uuid_is_no_user() -> None:
    user_id = uuid.uuid4()

    assert user_uuid(str(user_id).upper()) == str(user_id)
    with pytest.raises(ResourceNotFound):
        user_uuid("42")
