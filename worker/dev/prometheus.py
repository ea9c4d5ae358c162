"""A Prometheus server (Debian's, worker/dev/debian_tools.py) scraping one worker on loopback
with the shipped scrape job, for the dashboard's e2e test and `make dashboard-png`; and the
two HTTP API calls they make of it."""

from __future__ import annotations

import json
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from worker.dev.debian_tools import prometheus_server
from worker.dev.processes import STOP_DEADLINE_S, free_port

READY_DEADLINE_S = 60.0
API_TIMEOUT_S = 30.0


class PrometheusError(RuntimeError):
    """Prometheus refused a query, or never became ready."""


def one_worker_config(
    shipped: Path, *, metrics_port: int, interval_s: float, rule_files: list[Path]
) -> dict[str, Any]:
    """The shipped prometheus.yml's worker job, aimed at one worker on loopback (a static
    target, where compose finds its replicas by DNS), scraped and evaluated every `interval_s`."""
    import yaml  # a development dependency: the worker itself never reads YAML

    config: dict[str, Any] = yaml.safe_load(shipped.read_text())
    [job] = config["scrape_configs"]
    job.pop("dns_sd_configs")
    job.pop("relabel_configs")
    job["static_configs"] = [
        {"targets": [f"127.0.0.1:{metrics_port}"], "labels": {"service": "worker"}}
    ]
    interval = f"{interval_s:g}s"
    config["global"] = {"scrape_interval": interval, "evaluation_interval": interval}
    config["rule_files"] = [str(path) for path in rule_files]
    return config


@dataclass
class PrometheusProcess:
    """`prometheus` with `config`, its data, config file and log in `folder`."""

    config: dict[str, Any]
    folder: Path
    port: int = 0
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, binary: Path | None = None) -> PrometheusProcess:
        """Started on a free port, once it says it is ready (PrometheusError if it does not)."""
        import yaml

        self.port = self.port or free_port()
        config_file = self.folder / "prometheus.yml"
        config_file.write_text(yaml.safe_dump(self.config))
        argv = [
            str(binary or prometheus_server()), f"--config.file={config_file}",
            f"--storage.tsdb.path={self.folder / 'data'}",
            f"--web.listen-address=127.0.0.1:{self.port}",
        ]  # fmt: skip
        with (self.folder / "prometheus.log").open("ab") as log:
            self.process = subprocess.Popen(argv, stdout=log, stderr=log)  # noqa: S603
        self._wait_until_ready()
        return self

    def _wait_until_ready(self) -> None:
        deadline = time.monotonic() + READY_DEADLINE_S
        while not self._ready():
            if self.process is None or self.process.poll() is not None:
                raise PrometheusError(f"prometheus exited; see {self.folder / 'prometheus.log'}")
            if time.monotonic() > deadline:
                raise PrometheusError(f"prometheus not ready after {READY_DEADLINE_S} s")
            time.sleep(0.1)  # no readiness signal but its HTTP answer; the deadline bounds it

    def _ready(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.url}/-/ready", timeout=5) as answer:  # noqa: S310
                return int(answer.status) == 200
        except OSError:
            return False

    def stop(self) -> None:
        if self.process is None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=STOP_DEADLINE_S)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.process = None

    def query(self, expression: str) -> list[dict[str, Any]]:
        """An instant query's result vector."""
        return self._api("query", {"query": expression})

    def last_scrape(self, job: str) -> float:
        """When it last scraped `job`'s first target, in Unix seconds (0 before it has)."""
        answer = self.query(f'timestamp(up{{job="{job}"}})')
        return float(answer[0]["value"][1]) if answer else 0.0

    def query_range(
        self, expression: str, *, start: float, end: float, step_s: float
    ) -> list[dict[str, Any]]:
        """A range query's result matrix: each series' labels and [timestamp, "value"] pairs."""
        params = {"query": expression, "start": start, "end": end, "step": step_s}
        return self._api("query_range", params)

    def _api(self, endpoint: str, params: dict[str, Any]) -> list[dict[str, Any]]:
        url = f"{self.url}/api/v1/{endpoint}?{urllib.parse.urlencode(params)}"
        try:
            with urllib.request.urlopen(url, timeout=API_TIMEOUT_S) as response:  # noqa: S310
                answer = json.loads(response.read())
        except urllib.error.HTTPError as refused:
            answer = json.loads(refused.read() or b"{}")
        if answer.get("status") != "success":
            raise PrometheusError(f"{params['query']!r}: {answer.get('error', answer)}")
        result: list[dict[str, Any]] = answer["data"]["result"]
        return result
