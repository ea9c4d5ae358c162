"""The wire contract as JSON Schema (2020-12), for producers and consumers in any language.

Built from the pydantic models, then adjusted to what travels on the wire: `appid` and
`command_id` may be left out (the worker fills them in), and each secret field may be sealed.
"""

from __future__ import annotations

import copy
from typing import Any

from schemas.commands import COMMANDS
from schemas.events import CommandOutcome
from schemas.fields import APPID, COMMAND_ID, SEALABLE_FIELDS

DIALECT = "https://json-schema.org/draft/2020-12/schema"
FILLED_IN_BY_THE_WORKER = (APPID, COMMAND_ID)
SEALED_VALUE = {
    "type": "object",
    "description": "a compact JWE (ECDH-ES, A256GCM) of the field's UTF-8 text, bound by its"
    " protected header to the command (cmd), the field (fld) and the command_id (cid), and"
    " stamped (iat); README: the sealed format",
    "properties": {"sealed": {"type": "string"}},
    "required": ["sealed"],
    "additionalProperties": False,
}


def kwargs_schema(command: str) -> dict[str, Any]:
    """The keyword arguments of one command's task message."""
    model = COMMANDS[command]
    schema = copy.deepcopy(model.model_json_schema(by_alias=True))
    schema["required"] = [k for k in schema["required"] if k not in FILLED_IN_BY_THE_WORKER]
    for field in SEALABLE_FIELDS:
        if field in schema["properties"]:
            plain = schema["properties"][field]
            schema["properties"][field] = {"anyOf": [plain, SEALED_VALUE], "title": plain["title"]}
    return {"$schema": DIALECT, **schema, "title": command}


def event_schema() -> dict[str, Any]:
    """One result event: the JSON in the stream entry's `event` field."""
    # Validation mode: the serializer that leaves `bulk` out hides the fields from the other.
    schema = CommandOutcome.model_json_schema(mode="validation")
    # The worker always writes every field, `bulk` on reset-session-keys events alone.
    schema["required"] = [name for name in schema["properties"] if name != "bulk"]
    return {"$schema": DIALECT, **schema, "title": "result event"}


def wire_contract() -> dict[str, dict[str, Any]]:
    return {**{name: kwargs_schema(name) for name in sorted(COMMANDS)}, "event": event_schema()}
