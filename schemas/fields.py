"""The names of the commands' fields on the wire, written once: the models, the JSON Schema, the
producer, the worker's sealing, redaction and dead letters all name a field from here."""

from __future__ import annotations

# The producer's idempotency key and the application; the worker fills in either when absent.
COMMAND_ID = "command_id"
APPID = "appid"
# reset-session-key
ACCOUNTID = "accountid"
REQUESTER_ACCOUNTID = "requester_accountid"
# reset-session-keys (bulk): a list of accounts, or every account of the appid
ACCOUNTIDS = "accountids"
EVERY_ACCOUNT = "every_account"
# reset-account-password: the dashboard's hyphen spelling (an underscore one is accepted too).
USERNAME = "username"
SECRET_CODE = "secret-code"  # noqa: S105 (a field name, not a secret)
NEW_PASSWORD = "new-password"  # noqa: S105 (a field name, not a secret)
SOURCE = "source"

# The secrets, which a worker with REQUIRE_SEALED refuses in plaintext.
SECRET_FIELDS = (SECRET_CODE, NEW_PASSWORD)
# What a producer may seal: the secrets and the username.
SEALABLE_FIELDS = (USERNAME, NEW_PASSWORD, SECRET_CODE)


def underscored(name: str) -> str:
    """The other spelling a producer may send: `new_password` for `new-password`."""
    return name.replace("-", "_")


def spellings(*names: str) -> frozenset[str]:
    """Each name in both spellings, as a message may carry it."""
    return frozenset(spelling for name in names for spelling in (name, underscored(name)))
