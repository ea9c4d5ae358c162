"""Exception codes: the `code` of a failure event. Other teams match on these strings."""

from enum import StrEnum


class ExceptionCode(StrEnum):
    """Why a command was refused. The first group are the dashboard's own codes."""

    INVALID_ACCOUNTID = "invalid-accountid"
    INVALID_ACCOUNT = "invalid-account"
    INVALID_SECRET_CODE = "invalid-secret-code"
    INVALID_USERNAME = "invalid-username"
    INVALID_PASSWORD = "invalid-password"
    INVALID_PASSWORD_LENGTH = "invalid-password-length"
    INVALID_RESET_CODE = "invalid-reset-code"
    # Added by the worker: too many wrong reset codes for the account within the window.
    TOO_MANY_ATTEMPTS = "too-many-attempts"
    # Added by the worker: the message itself could not be read as a command.
    INVALID_PAYLOAD = "invalid-payload"
    # Added by the worker: a sealed field was sealed longer ago than SEALED_MAX_AGE_S.
    SEALED_VALUE_EXPIRED = "sealed-value-expired"
    # Added by the worker: the command_id is already recorded for a different request.
    COMMAND_ID_CONFLICT = "command-id-conflict"
    # Added by the worker: a fault outside the rules that retries could not overcome.
    INTERNAL_ERROR = "internal-error"


DESCRIPTIONS: dict[ExceptionCode, str] = {
    ExceptionCode.INVALID_ACCOUNTID: "accountid missing, empty, not a string, or no such account "
    "in the appid",
    ExceptionCode.INVALID_ACCOUNT: "the requester is not the account, or the account is deleted",
    ExceptionCode.INVALID_SECRET_CODE: "secret-code missing, empty or not a string",
    ExceptionCode.INVALID_USERNAME: "username missing, not a string, of a length no username has, "
    "or no account with that username in the appid",
    ExceptionCode.INVALID_PASSWORD: "new-password missing, empty or not a string",
    ExceptionCode.INVALID_PASSWORD_LENGTH: "new-password shorter than the minimum or longer than "
    "the maximum",
    ExceptionCode.INVALID_RESET_CODE: "no reset code with that secret belongs to the account "
    "(or, with a code lifetime set, the code is older than that)",
    ExceptionCode.TOO_MANY_ATTEMPTS: "the account has had too many wrong reset codes within the "
    "attempt window; the code was not checked",
    ExceptionCode.INVALID_PAYLOAD: "the message carries positional arguments, a sealed value "
    "that does not open or was sealed for another command, field or command_id, a plaintext "
    "secret where sealing is required, or is otherwise not a command",
    ExceptionCode.SEALED_VALUE_EXPIRED: "a sealed field was sealed longer ago than the worker's "
    "maximum age for sealed values; seal it again and resend under a new command_id",
    ExceptionCode.COMMAND_ID_CONFLICT: "the command_id is already recorded, in this appid, for "
    "a different request (another command, or other fields): nothing applied, the recorded "
    "outcome stands; send the new request under a new command_id",
    ExceptionCode.INTERNAL_ERROR: "a fault (database, Redis) persisted through every retry",
}


class CommandRejected(Exception):
    """A rule refused the command. Never retried; it becomes a failure event with `code`.

    The message is the code alone, so no payload value can reach a log through it.
    """

    def __init__(self, code: ExceptionCode, *, accountid: str | None = None) -> None:
        super().__init__(code.value)
        self.code = code
        self.accountid = accountid
