"""docs/settings.md, generated from the settings classes: every variable, its type, its default
and its description, so that the reference cannot drift from the code.

    python -m worker.ops.settings_reference --output docs/settings.md    (`make docs`)

`tests/unit/test_settings_reference.py` fails when the file is stale.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import types
from pathlib import Path
from typing import Any, Literal, Union, get_args, get_origin

import annotated_types
from pydantic import SecretStr
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings

from client.settings import ClientSettings
from worker.settings import DEVELOPMENT_HASH_KEY, Settings

COMMAND = "make docs"
# Public placeholders, which may be printed as defaults; any other secret default is not shown.
PUBLIC_PLACEHOLDERS = frozenset({DEVELOPMENT_HASH_KEY})

_TYPE_NAMES: dict[Any, str] = {
    str: "text",
    int: "integer",
    float: "number",
    bool: "boolean",
    Path: "path",
    SecretStr: "secret text",
}
_BOUNDS = (
    (annotated_types.Ge, "ge", "≥"),
    (annotated_types.Gt, "gt", ">"),
    (annotated_types.Le, "le", "≤"),
    (annotated_types.Lt, "lt", "<"),
)

HEADER = f"""# Settings

<!-- Generated from worker/settings.py and client/settings.py by `{COMMAND}`
     (python -m worker.ops.settings_reference --output docs/settings.md): do not edit. -->

Every setting comes from the environment, prefixed `ACCOUNT_RESET_`. A setting's description is
its field's `description` in the settings class; change it there and run `{COMMAND}`.
"""

SHARED_INTRO = """## Shared by the worker and its producers

Read by the worker (`Settings`, worker/settings.py) and by the Python client, `account-reset
enqueue` and `account-reset events tail` (`ClientSettings`, client/settings.py), with the same
default: the two sides must agree on them.
"""

WORKER_INTRO = """## The worker

`Settings` (worker/settings.py): what `account-reset worker`, `account-reset db upgrade`, the
operator commands and `account-reset health` read.
"""

CLIENT_INTRO = """## Producers and audit consumers

`ClientSettings` (client/settings.py): what the Python client, `account-reset enqueue` and
`account-reset events tail` read besides the shared settings.
"""


def variable(model: type[BaseSettings], name: str, field: FieldInfo) -> str:
    """The environment variable a field is read from."""
    prefix = model.model_config.get("env_prefix", "")
    alias = field.validation_alias if isinstance(field.validation_alias, str) else field.alias
    return f"{prefix}{alias or name}".upper()


def type_text(field: FieldInfo) -> str:
    """The field's type in words, with its bounds (`integer ≥ 1`)."""
    bounds = [
        f"{sign} {getattr(item, attribute)}"
        for kind, attribute, sign in _BOUNDS
        for item in field.metadata
        if isinstance(item, kind)
    ]
    return " ".join([_annotation_text(field.annotation), ", ".join(bounds)]).strip()


def _annotation_text(annotation: Any) -> str:
    origin = get_origin(annotation)
    if origin in (Union, types.UnionType):
        kinds = [arg for arg in get_args(annotation) if arg is not type(None)]
        return " or ".join(_annotation_text(kind) for kind in kinds)
    if origin is Literal:
        return " or ".join(f"`{value}`" for value in get_args(annotation))
    return _TYPE_NAMES.get(annotation, getattr(annotation, "__name__", str(annotation)))


def default_text(field: FieldInfo) -> str:
    """The default as an operator would write it; never a secret that is not a placeholder."""
    default = field.get_default(call_default_factory=False)
    if default is None:
        return "unset"
    if isinstance(default, SecretStr):
        secret = default.get_secret_value()
        return f"`{secret}` (placeholder)" if secret in PUBLIC_PLACEHOLDERS else "(not shown)"
    if isinstance(default, bool):
        return f"`{str(default).lower()}`"
    if isinstance(default, float):
        return f"`{default:g}`"
    if isinstance(default, Path) and default.parent == Path(tempfile.gettempdir()):
        return f"`{default.name}` in the temporary directory"
    return f"`{default}`"


def _cell(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|")


def table(model: type[BaseSettings], names: list[str]) -> str:
    """One row per named field of `model`; a field without a description is a ValueError."""
    rows = ["| variable | type | default | description |", "|---|---|---|---|"]
    for name in names:
        field = model.model_fields[name]
        if not field.description:
            raise ValueError(f"{model.__name__}.{name} has no description")
        cells = (
            f"`{variable(model, name, field)}`",
            type_text(field),
            default_text(field),
            field.description,
        )
        rows.append("| " + " | ".join(_cell(cell) for cell in cells) + " |")
    return "\n".join(rows) + "\n"


def _same(first: FieldInfo, second: FieldInfo) -> bool:
    return (default_text(first), first.description) == (default_text(second), second.description)


def render() -> str:
    """The whole of docs/settings.md: shared settings, the worker's own, the client's own."""
    worker, client = Settings.model_fields, ClientSettings.model_fields
    shared = [name for name in worker if name in client and _same(worker[name], client[name])]
    return "\n".join(
        [
            HEADER,
            SHARED_INTRO,
            table(Settings, shared),
            WORKER_INTRO,
            table(Settings, [name for name in worker if name not in shared]),
            CLIENT_INTRO,
            table(ClientSettings, [name for name in client if name not in shared]),
        ]
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", type=Path, help="write here instead of standard output")
    options = parser.parse_args(argv)
    text = render()
    if options.output is None:
        sys.stdout.write(text)
    else:
        options.output.write_text(text, encoding="utf-8")


if __name__ == "__main__":
    main()
