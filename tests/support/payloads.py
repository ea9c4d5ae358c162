"""Password-reset payloads the rings share: one builder, and the table of the dashboard's
order of checks that the unit ring (in memory) and the integration ring (real transactions) both
run."""

from __future__ import annotations

from typing import Any


def password_payload(username: Any, new_password: Any, secret_code: Any) -> dict[str, Any]:
    return {"username": username, "new-password": new_password, "secret-code": secret_code}


# Each payload and the code the dashboard answers it with: the first check that fails wins.
CHECK_ORDER: list[tuple[dict[str, Any], str]] = [
    ({}, "invalid-secret-code"),
    (password_payload(None, None, None), "invalid-secret-code"),
    (password_payload("", "", "code"), "invalid-username"),
    (password_payload("short", "", "code"), "invalid-username"),
    (password_payload("u" * 51, "password", "code"), "invalid-username"),
    # Only the minimum is checked at step 2: a long username with no password is step 3.
    (password_payload("u" * 51, "", "code"), "invalid-password"),
    (password_payload("username", "p" * 1025, "code"), "invalid-password-length"),
    (password_payload("u" * 1025, "password", "code"), "invalid-username"),
    # Lengths count UTF-16 code units, as the dashboard's JavaScript does.
    (password_payload("\U0001f600" * 3, "password", "code"), "invalid-username"),
    (password_payload("username", "\U0001f600" * 2, "code"), "invalid-password-length"),
    (password_payload("username", None, "code"), "invalid-password"),
    (password_payload("username", "12345", "code"), "invalid-password-length"),
    (password_payload("username", "p" * 51, "code"), "invalid-password-length"),
    (password_payload("username", "password", ""), "invalid-secret-code"),
]
