"""Bounded work per message: lengths are capped before any hashing, bcrypt runs last, and a
locked-out account's code is never even hashed.

The hasher here is the real one; it only counts its calls.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from typing import Any

import pytest

from tasks.pipeline import CommandProcessor
from tests.support.commands import password_payload, reset_password
from tests.support.seeding import Seeder
from worker.security.hashing import Hasher

NEW_PASSWORD = "brand-new-password"
MAX_ATTEMPTS = 5


@dataclasses.dataclass(frozen=True, repr=False)
class CountingHasher(Hasher):
    calls: Counter[str] = dataclasses.field(default_factory=Counter)

    def lookup_hash(self, text: str) -> str:
        self.calls["lookup"] += 1
        return super().lookup_hash(text)

    def password_hash(self, password: str) -> str:
        self.calls["bcrypt"] += 1
        return super().password_hash(password)


@pytest.fixture
def counting(processor: CommandProcessor, hasher: Hasher) -> CommandProcessor:
    counted = CountingHasher(key=hasher.key, bcrypt_rounds=hasher.bcrypt_rounds)
    return dataclasses.replace(processor, deps=dataclasses.replace(processor.deps, hasher=counted))


def hashing_for(processor: CommandProcessor, payload: dict[str, Any]) -> tuple[str, Counter[str]]:
    hasher = processor.deps.hasher
    assert isinstance(hasher, CountingHasher)
    hasher.calls.clear()
    outcome = reset_password(processor, **payload)
    return outcome.code or "success", Counter(hasher.calls)


def test_every_cheap_check_runs_before_any_hashing_and_bcrypt_runs_last(
    counting: CommandProcessor, seeder: Seeder
) -> None:
    user = seeder.account()
    code = seeder.code(user)
    huge = "x" * 100_000
    cases = {
        "username over the cap": password_payload(huge, NEW_PASSWORD, code),
        "code over the cap": password_payload(user.username, NEW_PASSWORD, huge),
        "password over the cap": password_payload(user.username, huge, code),
        "password too long": password_payload(user.username, "p" * 51, code),
        "no such username": password_payload("nobody-at-all", NEW_PASSWORD, code),
        "wrong code": password_payload(user.username, NEW_PASSWORD, "wrong-code"),
    }
    seen = {name: hashing_for(counting, payload) for name, payload in cases.items()}
    for _ in range(MAX_ATTEMPTS):
        hashing_for(counting, password_payload(user.username, NEW_PASSWORD, "wrong-code"))
    seen["locked out, right code"] = hashing_for(
        counting, password_payload(user.username, NEW_PASSWORD, code)
    )

    print("\n" + "\n".join(f"{name}: {result}" for name, result in seen.items()))
    assert seen == {
        "username over the cap": ("invalid-username", Counter()),
        "code over the cap": ("invalid-secret-code", Counter()),
        "password over the cap": ("invalid-password-length", Counter()),
        "password too long": ("invalid-password-length", Counter()),
        "no such username": ("invalid-username", Counter(lookup=1)),
        "wrong code": ("invalid-reset-code", Counter(lookup=2)),
        # The username is looked up; the code is not even hashed.
        "locked out, right code": ("too-many-attempts", Counter(lookup=1)),
    }


def test_bcrypt_runs_once_for_a_success(counting: CommandProcessor, seeder: Seeder) -> None:
    user = seeder.account()
    code = seeder.code(user)

    result = hashing_for(counting, password_payload(user.username, NEW_PASSWORD, code))

    assert result == ("success", Counter(lookup=2, bcrypt=1))
