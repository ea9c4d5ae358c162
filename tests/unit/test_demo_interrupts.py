"""How `account-reset demo` ends on Ctrl-C and SIGTERM (issue 16, finding 11)."""

from __future__ import annotations

import signal
import sys

import pytest

from worker.dev.demo import interrupts_end_the_demo


class SignalledInAFinaliser:
    """The signal arrives while Python runs a finaliser: the handler's KeyboardInterrupt is
    printed as "Exception ignored in ..." and the code it interrupted goes on."""

    def __init__(self, signum: signal.Signals) -> None:
        self.signum = signum

    def __del__(self) -> None:
        signal.raise_signal(self.signum)


def demo_signalled_in_a_finaliser(signum: signal.Signals, steps: list[str]) -> None:
    with interrupts_end_the_demo():
        SignalledInAFinaliser(signum)  # dropped at once: its __del__ runs here
        steps.append("went on")


def demo_signalled(signum: signal.Signals, steps: list[str]) -> None:
    with interrupts_end_the_demo():
        signal.raise_signal(signum)
        steps.append("went on")


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["Ctrl-C", "SIGTERM"])
def test_a_signal_swallowed_by_a_finaliser_still_ends_the_demo_with_its_status(
    signum: signal.Signals, monkeypatch: pytest.MonkeyPatch
) -> None:
    """CI saw a SIGTERMed demo exit 0 (stop 20, test_cli_worker): its KeyboardInterrupt was lost
    where Python cannot raise it, and the demo ran on to its end. Now the demo ends with 128 + the
    signal's number (130, 143) whatever swallowed the exception."""
    swallowed: list[type[BaseException] | None] = []
    monkeypatch.setattr(sys, "unraisablehook", lambda raised: swallowed.append(raised.exc_type))
    steps: list[str] = []
    with pytest.raises(SystemExit) as ended:
        demo_signalled_in_a_finaliser(signum, steps)
    assert steps == ["went on"]
    assert swallowed == [KeyboardInterrupt]
    assert ended.value.code == 128 + signum


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["Ctrl-C", "SIGTERM"])
def test_a_signal_ends_the_demo_where_it_lands_with_its_status(signum: signal.Signals) -> None:
    steps: list[str] = []
    with pytest.raises(SystemExit) as ended:
        demo_signalled(signum, steps)
    assert steps == []
    assert ended.value.code == 128 + signum


def test_the_handlers_before_the_demo_are_back_after_it() -> None:
    before = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)
    with interrupts_end_the_demo():
        pass
    assert (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)) == before
