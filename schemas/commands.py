"""The two commands as pydantic models, and how a raw payload becomes one.

Validation reports the dashboard's exception codes in the dashboard's order of checks: fields are
declared in that order, pydantic reports errors in field order, and the first error decides.
"""

from __future__ import annotations

from typing import Annotated, Any, ClassVar

from pydantic import (
    AliasChoices,
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    ValidationInfo,
    WrapValidator,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from schemas.codes import CommandRejected, ExceptionCode
from schemas.events import BulkChunk
from schemas.fields import (
    ACCOUNTID,
    ACCOUNTIDS,
    NEW_PASSWORD,
    SECRET_CODE,
    USERNAME,
    spellings,
    underscored,
)

MAX_COMMAND_ID_LENGTH = 200
MAX_APPID_LENGTH = 200
MAX_SOURCE_LENGTH = 200
# reset-session-keys: accounts per message (a chunk, one transaction; about 40 KiB of ids), the
# length of an accountid, and of the bulk run's id, which chunk numbers extend (`<id>#<n>`).
MAX_BULK_ACCOUNTS = 1000
MAX_ACCOUNTID_LENGTH = 64
MAX_BULK_ID_LENGTH = MAX_COMMAND_ID_LENGTH - 12
# A run's messages are numbered below this (`#` and ten digits fit the twelve characters left).
MAX_CHUNKS = 10**10 - 1
_CODES = frozenset(code.value for code in ExceptionCode)


class CommandLimits(BaseModel):
    """Length rules, from settings; defaults are the dashboard's."""

    model_config = ConfigDict(frozen=True)

    min_username_length: int = 6
    min_password_length: int = 6
    max_password_length: int = 50
    # Any text field longer than this is refused before it is hashed or looked up.
    max_field_length: int = 1024


def _limits(info: ValidationInfo) -> CommandLimits:
    context = info.context
    return context if isinstance(context, CommandLimits) else CommandLimits()


def js_length(text: str) -> int:
    """Length as the dashboard's JavaScript counts it: UTF-16 code units."""
    return len(text.encode("utf-16-le", "surrogatepass")) // 2


def is_usable_text(text: str, limits: CommandLimits) -> bool:
    """Not empty, not over the hard cap, and storable text (see `is_storable`)."""
    return 0 < len(text) <= limits.max_field_length and is_storable(text)


def storable(text: str, length: int) -> str:
    """`text` cut to `length`, with what `is_storable` refuses replaced by "?"."""
    return text[:length].encode("utf-8", "replace").decode().replace("\x00", "?")


def is_storable(text: str) -> bool:
    """Valid Unicode with no NUL: no lone surrogate (JSON allows them; UTF-8 does not), and
    nothing PostgreSQL text or bcrypt refuses."""
    if "\x00" in text:
        return False
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _none_unless_text(value: Any, handler: Any, info: ValidationInfo) -> Any:
    """A requester that is not usable text counts as no requester at all."""
    if not isinstance(value, str) or not is_usable_text(value, _limits(info)):
        return None
    return handler(value)


def _none_unless_source(value: Any, handler: Any, info: ValidationInfo) -> Any:  # noqa: ARG001
    """An optional source that is not usable text counts as absent, never as an error: a
    producer that sends something odd is no worse off than one that sends nothing."""
    usable = isinstance(value, str) and 0 < len(value) <= MAX_SOURCE_LENGTH
    return handler(value) if usable and is_storable(value) else None


class _Command(BaseModel):
    model_config = ConfigDict(
        extra="ignore",
        frozen=True,
        strict=True,
        hide_input_in_errors=True,
        populate_by_name=True,
    )

    name: ClassVar[str]
    # Input key -> code reported when that field is absent, empty or of the wrong type.
    field_codes: ClassVar[dict[str, ExceptionCode]]
    # Field -> code reported when its text is over the hard cap, where that is not the above.
    too_long_codes: ClassVar[dict[str, ExceptionCode]] = {}

    appid: str = Field(min_length=1, max_length=MAX_APPID_LENGTH)
    command_id: str = Field(min_length=1, max_length=MAX_COMMAND_ID_LENGTH)

    @field_validator("*", mode="after")
    @classmethod
    def _usable_text(cls, value: Any, info: ValidationInfo) -> Any:
        """Text is checked before anything hashes it, looks it up or stores it."""
        text = value.get_secret_value() if isinstance(value, SecretStr) else value
        if not isinstance(text, str) or is_usable_text(text, _limits(info)):
            return value
        if len(text) > _limits(info).max_field_length and info.field_name in cls.too_long_codes:
            code = cls.too_long_codes[info.field_name]
            raise PydanticCustomError(code.value, "text longer than allowed")
        raise PydanticCustomError("unusable_text", "text is empty, too long or not valid Unicode")

    @staticmethod
    def usable_appid(appid: Any) -> str | None:
        """The appid if it could be valid, for a failure event about an invalid command."""
        usable = isinstance(appid, str) and 0 < len(appid) <= MAX_APPID_LENGTH
        return appid if usable and is_storable(appid) else None

    @classmethod
    def parse(cls, payload: dict[str, Any], limits: CommandLimits) -> _Command:
        """Validate a payload, or raise `CommandRejected` with the first rule's code."""
        try:
            return cls.model_validate(payload, context=limits)
        except ValidationError as error:
            raise CommandRejected(cls._first_code(error)) from None

    @classmethod
    def _first_code(cls, error: ValidationError) -> ExceptionCode:
        first = error.errors(include_input=False, include_url=False)[0]
        if first["type"] in _CODES:
            return ExceptionCode(first["type"])
        key = str(first["loc"][0]) if first["loc"] else ""
        return cls.field_codes.get(key, ExceptionCode.INVALID_PAYLOAD)


class ResetSessionKey(_Command):
    """End every session of an account: a new session key, the key number + 1."""

    name: ClassVar[str] = "reset-session-key"
    field_codes: ClassVar[dict[str, ExceptionCode]] = {
        ACCOUNTID: ExceptionCode.INVALID_ACCOUNTID,
    }

    accountid: str
    # Checked against the account only after the account is found (the dashboard's order).
    requester_accountid: Annotated[str | None, WrapValidator(_none_unless_text)] = None


class ResetAccountPassword(_Command):
    """Set a new password with a reset code; ends every session and uses up the codes."""

    name: ClassVar[str] = "reset-account-password"
    field_codes: ClassVar[dict[str, ExceptionCode]] = {
        **dict.fromkeys(spellings(SECRET_CODE), ExceptionCode.INVALID_SECRET_CODE),
        USERNAME: ExceptionCode.INVALID_USERNAME,
        **dict.fromkeys(spellings(NEW_PASSWORD), ExceptionCode.INVALID_PASSWORD),
    }
    too_long_codes: ClassVar[dict[str, ExceptionCode]] = {
        underscored(NEW_PASSWORD): ExceptionCode.INVALID_PASSWORD_LENGTH,
    }

    # Declared in the dashboard's order of checks.
    secret_code: SecretStr = Field(
        validation_alias=AliasChoices(SECRET_CODE, underscored(SECRET_CODE))
    )
    username: SecretStr
    new_password: SecretStr = Field(
        validation_alias=AliasChoices(NEW_PASSWORD, underscored(NEW_PASSWORD))
    )
    # Where the request came from, as the producer names it: a hashed client address or a
    # device id. Optional; it adds a guessing limit per source (worker/security/attempts.py).
    source: Annotated[str | None, WrapValidator(_none_unless_source)] = Field(
        default=None,
        max_length=MAX_SOURCE_LENGTH,
        description="optional opaque id of where the request came from (a hashed client"
        " address, a device id): at most 200 characters; attempts at reset codes are also"
        " limited per source. Any other value counts as absent.",
    )

    @field_validator("username", mode="after")
    @classmethod
    def _username_length(cls, value: SecretStr, info: ValidationInfo) -> SecretStr:
        if js_length(value.get_secret_value()) < _limits(info).min_username_length:
            raise PydanticCustomError(ExceptionCode.INVALID_USERNAME, "username too short")
        return value

    @field_validator("new_password", mode="after")
    @classmethod
    def _password_length(cls, value: SecretStr, info: ValidationInfo) -> SecretStr:
        limits = _limits(info)
        length = js_length(value.get_secret_value())
        if not limits.min_password_length <= length <= limits.max_password_length:
            raise PydanticCustomError(
                ExceptionCode.INVALID_PASSWORD_LENGTH, "password length out of range"
            )
        return value


def _accountids(value: Any, handler: Any, info: ValidationInfo) -> Any:  # noqa: ARG001
    """A list of 1 to MAX_BULK_ACCOUNTS distinct accountids, each usable text; else the
    command is `invalid-accountid` (which of them is wrong is not said: it is the producer's
    list to check)."""
    usable = (
        isinstance(value, list)
        and 0 < len(value) <= MAX_BULK_ACCOUNTS
        and all(
            isinstance(item, str) and 0 < len(item) <= MAX_ACCOUNTID_LENGTH and is_storable(item)
            for item in value
        )
        and len(set(value)) == len(value)
    )
    if not usable:
        raise PydanticCustomError(ExceptionCode.INVALID_ACCOUNTID, "not a list of accountids")
    return handler(value)


class ResetSessionKeys(_Command):
    """End every session of many accounts: the listed ones (at most MAX_BULK_ACCOUNTS a
    message), or with `every_account` each account of the appid, chunk after chunk.

    An operator's command after an incident (docs/contract.md, "Bulk revocation"). Each message
    is one transaction and one result event naming the accounts it reset; an `every_account`
    run goes on as messages of its own, `<command_id>#1`, `#2`..., each resuming after the last
    accountid of the one before, until a chunk finds no more accounts.
    """

    name: ClassVar[str] = "reset-session-keys"
    field_codes: ClassVar[dict[str, ExceptionCode]] = {
        ACCOUNTIDS: ExceptionCode.INVALID_ACCOUNTID,
    }

    accountids: Annotated[list[str] | None, WrapValidator(_accountids)] = None
    every_account: bool = False
    # An every_account run's place, set by the worker on the run's next message: the chunk's
    # number, the last accountid reset before it, the accounts reset so far, the run's id.
    chunk: int = Field(default=0, ge=0, le=MAX_CHUNKS)
    after: str | None = Field(default=None, min_length=1, max_length=MAX_ACCOUNTID_LENGTH)
    reset_before: int = Field(default=0, ge=0, le=MAX_CHUNKS * MAX_BULK_ACCOUNTS)
    bulk_id: str | None = Field(default=None, min_length=1, max_length=MAX_BULK_ID_LENGTH)
    # Who asked, for the audit trail (an operator's name, an incident number).
    requested_by: Annotated[str | None, WrapValidator(_none_unless_source)] = Field(
        default=None, max_length=MAX_SOURCE_LENGTH
    )

    @model_validator(mode="after")
    def _accounts_or_every_account(self) -> ResetSessionKeys:
        if self.every_account == (self.accountids is not None):
            raise PydanticCustomError(
                ExceptionCode.INVALID_ACCOUNTID, "name accountids, or every_account, not both"
            )
        if len(self.run_id) > MAX_BULK_ID_LENGTH:
            # Its messages' command_ids, `<run id>#<n>`, would be too long to record.
            raise PydanticCustomError(ExceptionCode.INVALID_PAYLOAD, "run id too long")
        return self

    @property
    def run_id(self) -> str:
        """The bulk run's id: its first message's command_id."""
        return self.bulk_id or self.command_id


def next_chunk(payload: dict[str, Any], chunk: BulkChunk, *, appid: str) -> dict[str, Any] | None:
    """The kwargs of an every_account run's next message, after the message of `payload` did
    `chunk`; None when the run is over. The same chunk always gives the same message (its
    command_id `<run id>#<n>`), so a repeat of it is only a replay."""
    if chunk.done or not chunk.accountids:
        return None
    number = chunk.chunk + 1
    return {
        "command_id": f"{chunk.bulk_id}#{number}",
        "appid": appid,
        "every_account": True,
        "bulk_id": chunk.bulk_id,
        "chunk": number,
        "after": chunk.accountids[-1],
        "reset_before": chunk.reset_so_far,
        **({"requested_by": payload["requested_by"]} if payload.get("requested_by") else {}),
    }


Command = ResetSessionKey | ResetAccountPassword | ResetSessionKeys

COMMANDS: dict[str, type[ResetSessionKey] | type[ResetAccountPassword] | type[ResetSessionKeys]] = {
    ResetSessionKey.name: ResetSessionKey,
    ResetAccountPassword.name: ResetAccountPassword,
    ResetSessionKeys.name: ResetSessionKeys,
}
