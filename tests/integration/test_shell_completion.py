"""Issue 16, finding 13: shell completion, as users of Celery's tools expect it. It is click's
own (docs/operations.md): the console script prints its completion script,
`_ACCOUNT_RESET_COMPLETE=bash_source account-reset`, and a real bash completes with it. Neither
needs the worker's settings (here: production without a hash key, which the worker refuses)."""

from __future__ import annotations

import shlex
import subprocess
from pathlib import Path

import pytest

from tests.support.probes import CLI
from tests.support.workers import clean_env

DEADLINE_S = 60.0


def completion_script(shell: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [CLI],
        env=clean_env(_ACCOUNT_RESET_COMPLETE=f"{shell}_source",
                      ACCOUNT_RESET_ENVIRONMENT="production"),
        capture_output=True, text=True, timeout=DEADLINE_S,
    )  # fmt: skip


@pytest.mark.parametrize("shell", ["bash", "zsh", "fish"])
def test_finding_13_the_console_script_prints_its_completion_script(shell: str) -> None:
    script = completion_script(shell)
    assert (script.returncode, script.stderr) == (0, "")
    assert "_account_reset_completion" in script.stdout
    assert "_ACCOUNT_RESET_COMPLETE=" in script.stdout


@pytest.fixture(scope="module")
def bash_script() -> str:
    return completion_script("bash").stdout


@pytest.mark.parametrize(
    ("words", "expected"),
    [
        (["db", "u"], ["upgrade"]),
        (["sealing-keys", "p"], ["public"]),
        (["enqueue", "--w"], ["--wait"]),
        (["events", "t"], ["tail"]),
    ],
)
def test_finding_13_bash_completes_commands_and_options(
    bash_script: str, words: list[str], expected: list[str]
) -> None:
    """The script as bash loads it (`eval "$(_ACCOUNT_RESET_COMPLETE=bash_source
    account-reset)"`), asked what completes the last word, as bash asks on a Tab."""
    line = " ".join(shlex.quote(word) for word in ["account-reset", *words])
    asked = (
        f"{bash_script}\nCOMP_WORDS=({line}); COMP_CWORD={len(words)};"
        ' _account_reset_completion account-reset; printf "%s\\n" "${COMPREPLY[@]}"'
    )
    env = clean_env(ACCOUNT_RESET_ENVIRONMENT="production")
    env["PATH"] = f"{Path(CLI).parent}:{env.get('PATH', '')}"
    completed = subprocess.run(
        ["bash", "-c", asked], env=env, capture_output=True, text=True, timeout=DEADLINE_S
    )
    assert (completed.returncode, completed.stderr) == (0, "")
    assert completed.stdout.split() == expected
