"""The benchmark's table, with the machine and versions it was measured on."""

from __future__ import annotations

import platform
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib.metadata import version
from pathlib import Path

import redis
import sqlalchemy as sa

PACKAGES = ("celery", "kombu", "redis", "sqlalchemy", "psycopg", "bcrypt", "pydantic")


@dataclass(frozen=True)
class Row:
    measure: str
    value: str
    ceiling: str = ""
    ratio: float | None = None
    target: str = ""
    met: bool | None = None

    def cells(self) -> list[str]:
        ratio = "" if self.ratio is None else f"{self.ratio:.2f}"
        met = "" if self.met is None else ("yes" if self.met else "**no**")
        return [self.measure, self.value, self.ceiling, ratio, self.target, met]


def table(rows: list[Row]) -> str:
    header = ["measure", "value", "ceiling (same run)", "ratio", "target", "met"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row.cells()) + " |" for row in rows]
    return "\n".join(lines)


def machine(redis_client: redis.Redis, database_url: str, cores: int) -> str:
    model = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor(),
    )
    memory_kb = int(Path("/proc/meminfo").read_text().split()[1])
    engine = sa.create_engine(database_url)
    with engine.connect() as connection:
        postgres = str(connection.exec_driver_sql("SHOW server_version").scalar())
    engine.dispose()
    info = redis_client.info("server")
    versions = ", ".join(f"{name} {version(name)}" for name in PACKAGES)
    return (
        f"- Measured {datetime.now(UTC):%Y-%m-%d %H:%M} UTC on {model}, {cores} cores, "
        f"{memory_kb / 1024 / 1024:.0f} GiB, {platform.system()} {platform.release()}\n"
        f"- Python {platform.python_version()}; Redis {info['redis_version']}; "
        f"PostgreSQL {postgres}\n- {versions}"
    )
