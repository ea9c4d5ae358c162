"""The hot path measured against a plain Celery no-op, in alternating pairs, and profiled.

`python -m bench.profile_hot_path --rounds 3 --commands 2000` prints, for each pair, the plain
no-op's rate (bench/plain_noop_app.py), reset-session-key's on PostgreSQL, their ratio, and the
PSS of the worker's processes; `--profile DIR` records py-spy flame graphs of the worker's
main process and pool processes during one more session-key drain.
"""

from __future__ import annotations

import os
import signal
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import click

from bench import run as bench_run
from bench.processes import _kb
from bench.run import DEFAULT_POSTGRES, DEFAULT_REDIS, MB, Bench, postgres_database
from worker.dev.processes import WorkerProcess


@dataclass
class SpiedWorkerProcess(WorkerProcess):
    """The worker started under `py-spy record --subprocesses`: its main and pool processes."""

    profile_to: Path = Path("worker.txt")

    def start(self, *options: str) -> WorkerProcess:
        super().start(*options)
        assert self.process is not None
        self.process.kill()  # started unprofiled: replaced by the same command under py-spy
        self.process.wait()
        py_spy = Path(sys.executable).parent / "py-spy"
        spy = [str(py_spy), "record", "--subprocesses", "--rate", "250", "--nonblocking",
               "--format", os.environ.get("PROFILE_FORMAT", "raw"), "-o", str(self.profile_to),
               "--"]  # fmt: skip
        with self.log_path.open("ab") as log_file:
            self.process = subprocess.Popen(  # noqa: S603
                [*spy, *self.argv], env=self.env, stdout=log_file, stderr=subprocess.STDOUT
            )
        return self

    def stop(self, timeout_s: float = 60.0) -> int:
        """The worker stopped first, then py-spy writes what it sampled."""
        if self.process is not None:
            for pid in self.pids()[1:]:
                os.kill(pid, signal.SIGTERM)
            self.process.wait(timeout=timeout_s)
        return super().stop(timeout_s)


@dataclass
class ProfiledBench(Bench):
    extra_env: dict[str, str] = field(default_factory=dict)

    def env(self, database_url: str, concurrency: int) -> dict[str, str]:
        return super().env(database_url, concurrency) | self.extra_env

    cpu_ms: dict[str, tuple[float, float]] = field(default_factory=dict)
    pss_mb: dict[str, list[float]] = field(default_factory=dict)
    private_mb: dict[str, list[float]] = field(default_factory=dict)

    @contextmanager
    def worker(self, app: str, env: dict[str, str], label: str) -> Iterator[WorkerProcess]:
        """Also the CPU its main process and its pool used while it ran (`cpu_ms[label]`)."""
        with super().worker(app, env, label) as running:
            pids = running.pids()
            before = [_cpu_s(pid) for pid in pids]
            yield running
            used = [_cpu_s(pid) - start for pid, start in zip(pids, before, strict=True)]
            self.cpu_ms[label] = (used[0] * 1000, sum(used[1:]) * 1000)
            self.pss_mb[label] = [_kb(pid, "Pss:") / 1024 for pid in pids]
            self.private_mb[label] = [_kb(pid, "Private_Dirty:") / 1024 for pid in pids]


def _cpu_s(pid: int) -> float:
    """User + system seconds of `pid` so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def profiled(out: Path, run: Any) -> Any:
    """`run()` with every worker it starts under py-spy, writing to `out`."""

    def spied(*args: Any, **kwargs: Any) -> SpiedWorkerProcess:
        spy = SpiedWorkerProcess(*args, **kwargs)
        spy.profile_to = out
        return spy

    # Bench.worker starts bench.run's WorkerProcess: swapped for the run.
    original = vars(bench_run)["WorkerProcess"]
    setattr(bench_run, "WorkerProcess", spied)  # noqa: B010
    try:
        return run()
    finally:
        setattr(bench_run, "WorkerProcess", original)  # noqa: B010


def _cpu_line(bench: ProfiledBench, label: str, commands: int) -> str:
    main_ms, pool_ms = bench.cpu_ms[label]
    each = " + ".join(f"{mb:.0f}" for mb in bench.pss_mb[label])
    each += " (private dirty " + " + ".join(f"{mb:.0f}" for mb in bench.private_mb[label]) + ")"
    return (f"  {label}: CPU per message: main {main_ms / commands:.2f} ms, "
            f"pool {pool_ms / commands:.2f} ms; PSS at the end {each} MB")  # fmt: skip


@click.command()
@click.option("--rounds", default=3, show_default=True)
@click.option("--commands", default=2000, show_default=True)
@click.option("--profile", "profile_dir", type=click.Path(path_type=Path), default=None)
@click.option("--password", is_flag=True, help="Password resets (bcrypt cost 12) too.")
@click.option("--concurrency", default=2, show_default=True, help="The worker's pool processes.")
@click.option("--variant", multiple=True, help="KEY=VALUE: a third run per round with it set.")
def main(
    rounds: int,
    commands: int,
    profile_dir: Path | None,
    password: bool,
    concurrency: int,
    variant: tuple[str, ...],
) -> None:
    extra = dict(item.split("=", 1) for item in variant)
    redis_url = os.environ.get("ACCOUNT_RESET_TEST_REDIS_URL", DEFAULT_REDIS)
    postgres = os.environ.get("ACCOUNT_RESET_TEST_DATABASE_URL", DEFAULT_POSTGRES)
    with tempfile.TemporaryDirectory(prefix="account-reset-profile-") as work:
        bench = ProfiledBench(redis_url=redis_url, work=Path(work), bcrypt_rounds=12)
        with postgres_database(postgres) as pg:
            ratios, variants = [], []
            for i in range(rounds):
                plain = bench.plain_noop(pg, 2, commands)
                session = bench.commands(pg, concurrency, commands)
                label = f"session-key PostgreSQL c={concurrency}"
                pss = bench.peak_memory[label][0] / MB
                click.echo(_cpu_line(bench, "plain no-op c=2", commands))
                click.echo(_cpu_line(bench, label, commands))
                ratios.append(session / plain)
                click.echo(f"round {i}: plain {plain:.0f}/s session-key {session:.0f}/s "
                           f"ratio {session / plain:.3f} pss {pss:.0f} MB")  # fmt: skip
                if extra:
                    bench.extra_env = extra
                    varied = bench.commands(pg, concurrency, commands)
                    click.echo(_cpu_line(bench, label, commands))
                    bench.extra_env = {}
                    variants.append(varied / plain)
                    click.echo(f"  with {extra}: {varied:.0f}/s ratio {varied / plain:.3f}")
            if rounds:
                click.echo(f"median ratio {statistics.median(ratios):.3f}")
            if variants:
                click.echo(f"median ratio with {extra}: {statistics.median(variants):.3f}")
            if password:
                from bench.run import bcrypt_seconds

                ceiling = 2 / bcrypt_seconds(12, 5)
                done = bench.commands(pg, 2, 40, password=True)
                click.echo(f"password {done:.2f}/s ceiling {ceiling:.2f}/s "
                           f"ratio {done / ceiling:.3f}")  # fmt: skip
                click.echo(_cpu_line(bench, "password PostgreSQL c=2", 40))
            if profile_dir is not None:
                profile_dir.mkdir(parents=True, exist_ok=True)
                rate = profiled(profile_dir / "session-key.txt",
                                lambda: bench.commands(pg, 2, commands))  # fmt: skip
                click.echo(f"profiled: {rate:.0f}/s")


if __name__ == "__main__":
    main()
