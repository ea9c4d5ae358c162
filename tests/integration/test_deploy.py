"""deploy/ and docker-compose.yml checked by the tools that will load them (finding 10 and 13):
promtool (Prometheus's own checker) loads the alert rules and the Prometheus config and runs the
rules' unit tests; docker-compose validates the compose file. Both come from Debian's packages
(tests/support/debian_tools.py)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import yaml

from tests.support.debian_tools import docker_compose_command, promtool

ROOT = Path(__file__).parents[2]
PROMETHEUS = ROOT / "deploy" / "prometheus"
DEADLINE_S = 60


def run(command: list[str], **options: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        command, capture_output=True, text=True, timeout=DEADLINE_S, check=False, **options
    )


def test_finding_13_each_alert_loads_and_fires_in_promtools_unit_tests() -> None:
    """Finding 13: there were no alert rules. `promtool check rules` loads deploy/prometheus/
    alerts.yml; `promtool test rules` replays the series of alerts.test.yml, in which every
    alert fires (dead letters growing, no consumption while the queue holds work, late events,
    the outbox relay publishing, guessing limits used up, Redis refusing, workers down)."""
    checked = run([str(promtool()), "check", "rules", str(PROMETHEUS / "alerts.yml")])
    assert checked.returncode == 0, checked.stdout + checked.stderr
    tested = run([str(promtool()), "test", "rules", "alerts.test.yml"], cwd=PROMETHEUS)
    assert tested.returncode == 0, tested.stdout + tested.stderr
    assert "SUCCESS" in tested.stdout

    rules = yaml.safe_load((PROMETHEUS / "alerts.yml").read_text())
    alerts = {rule["alert"] for group in rules["groups"] for rule in group["rules"]}
    cases = yaml.safe_load((PROMETHEUS / "alerts.test.yml").read_text())["tests"]
    firing = {
        check["alertname"]
        for case in cases
        for check in case["alert_rule_test"]
        if check["exp_alerts"]
    }
    assert firing == alerts
    assert {"AccountResetDeadLettersGrowing", "AccountResetNotConsuming",
            "AccountResetEventsDelayed", "AccountResetGuessingCeilingHit",
            "AccountResetNoWorker"} <= alerts  # fmt: skip


def test_finding_13_a_rule_that_no_longer_fires_fails_promtools_unit_tests(
    tmp_path: Path,
) -> None:
    """The unit tests can fail: with the dead-letter rule blind to a counter's first increment
    (prometheus-client's multiprocess counters appear at it), `promtool test rules` fails."""
    for name in ("alerts.yml", "alerts.test.yml"):
        shutil.copy(PROMETHEUS / name, tmp_path / name)
    rules = tmp_path / "alerts.yml"
    rules.write_text(
        rules.read_text().replace(
            "(account_reset_dead_letters_total unless account_reset_dead_letters_total offset 15m)",
            "increase(account_reset_dead_letters_total[15m])",
        )
    )
    tested = run([str(promtool()), "test", "rules", "alerts.test.yml"], cwd=tmp_path)
    assert tested.returncode != 0
    assert "AccountResetDeadLettersGrowing" in tested.stdout + tested.stderr


def test_finding_10_prometheus_config_loads_with_its_rules() -> None:
    """Finding 10: `promtool check config` loads deploy/prometheus/prometheus.yml (DNS service
    discovery of every replica) and the rule file it names."""
    checked = run([str(promtool()), "check", "config", str(PROMETHEUS / "prometheus.yml")])
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "1 rule files found" in checked.stdout


def compose_config(compose_file: Path) -> subprocess.CompletedProcess[str]:
    """`docker-compose config` (it needs no Docker engine) in an environment of its own."""
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(compose_file.parent)}
    return run(
        [*docker_compose_command(), "--project-directory", str(ROOT), "-f", str(compose_file),
         "config", "--quiet"],
        env=env,
    )  # fmt: skip


def test_finding_10_docker_compose_validates_the_compose_file(tmp_path: Path) -> None:
    """Finding 10: `docker-compose config` (Debian's docker-compose 1.29.2, no engine needed)
    validates docker-compose.yml against the Compose schema, with no variable set: nothing
    waits for a password in the environment. A wrong key fails it."""
    valid = compose_config(ROOT / "docker-compose.yml")
    assert valid.returncode == 0, valid.stderr

    broken = tmp_path / "docker-compose.yml"
    broken.write_text(
        (ROOT / "docker-compose.yml").read_text().replace("stop_grace_period:", "stop_grace:", 1)
    )
    refused = compose_config(broken)
    assert refused.returncode != 0
    assert "stop_grace" in refused.stderr
