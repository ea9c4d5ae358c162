"""The worker's own dependencies, the `worker` extra (pyproject.toml).

A producer's or an audit consumer's installation (`pip install account-reset-worker`, or its
`[client]`) has the client alone: its `account-reset` runs `enqueue`, `events` and `schema`,
and every other command says in one line what to install, instead of a traceback on the first
missing import. What the extra holds is read from this installation's own metadata, so the
list lives in pyproject.toml only.
"""

from __future__ import annotations

from importlib import metadata

import click
from packaging.requirements import Requirement

DISTRIBUTION = "account-reset-worker"
EXTRA = "worker"
INSTALL_HINT = f"pip install '{DISTRIBUTION}[{EXTRA}]'"


def extra_distributions(extra: str = EXTRA) -> list[str]:
    """The distributions `extra` adds to the base, by name (none where the project was never
    installed, e.g. run from a bare checkout: nothing to check against)."""
    try:
        requires = metadata.requires(DISTRIBUTION) or []
    except metadata.PackageNotFoundError:
        return []
    requirements = [Requirement(line) for line in requires]
    return [
        r.name
        for r in requirements
        if r.marker is not None
        and r.marker.evaluate({"extra": extra})
        and not r.marker.evaluate({"extra": ""})
    ]


def missing_worker_dependencies() -> list[str]:
    """The worker extra's distributions not installed here."""
    missing = []
    for name in extra_distributions():
        try:
            metadata.distribution(name)
        except metadata.PackageNotFoundError:
            missing.append(name)
    return missing


def require_worker_extra(command: str | None) -> None:
    """Refuse a worker's command, in one line, on a client-only installation."""
    missing = missing_worker_dependencies()
    if missing:
        raise click.ClickException(
            f"`account-reset {command}` needs the worker's dependencies, not installed here"
            f" ({', '.join(missing)}): {INSTALL_HINT}"
        )
