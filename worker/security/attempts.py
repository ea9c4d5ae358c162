"""Attempts at reset codes, counted in Redis so every worker process and node shares them.

Three limits, each its own count with its own window (from the count's first attempt):

- per account: `max_attempts` wrong codes for one account;
- per source, when the producer names one: `max_source_attempts` over every account of an
  appid, so guesses spread thin over many accounts from one place are stopped too;
- per appid: `max_appid_attempts` over all its accounts, a ceiling for guesses from
  everywhere at once (a botnet, or a producer that passes no source).

An attempt is reserved before the code is checked, in one atomic script: past any limit the
code is not looked at, however many workers race. The script also notes the delivery's
decision under (appid, command_id) for the longest window, so a retry of the same delivery
after a transient fault gets the same decision and is not counted again. A success gives its
reservations back only once it is committed (`succeeded`, run as an after-commit hook): the
account's count is cleared, and the source's and appid's get their one attempt back, since
those limits count wrong codes, not successes.

Keys, all under `key_prefix` (one ACL pattern covers them; named in worker/keys.py):
- `<prefix>:<appid>:<accountid>`: the account's count (the key earlier versions used);
- `<prefix>:source:<appid>:<HMAC of the source>`: never the producer's raw value;
- `<prefix>:appid:<appid>`: the appid's ceiling;
- `<prefix>:delivery:<appid>:<command_id>:<HMAC of the account and the code>`: one delivery's
  decision. The guess is part of its name, so another code sent under a used command_id is
  another attempt, counted, and never rides on the first one's decision.

The HMACs are keyed by a key derived from HASH_KEY for naming counts alone: Redis holds no
source, code or dashboard hash, and the names cannot be tested offline without the key. With
no secret to derive it from (HASH_MODE=unkeyed), a name can be tested offline, so the code is
left out of the delivery's name (the account and command_id still tell retries apart) and a
source is named by a public derivation, which keeps only its raw value out of Redis.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from dataclasses import dataclass
from typing import Literal, cast

import redis

from worker import keys
from worker.ops.metrics import PROMETHEUS, Observer

Limit = Literal["account", "source", "appid"]
ALLOWED = "ok"
NAMING_KEY_CONTEXT = b"account-reset attempt counts v1"

# KEYS: the delivery's marker, then one count per limit. ARGV: the marker's TTL, then each
# limit's name, maximum and window, in KEYS' order. Returns {decision, 1 if decided now}:
# "ok", or the name of the first limit used up (nothing is counted then).
RESERVE = """
local decided = redis.call('GET', KEYS[1])
if decided then
    return {decided, 0}
end
decided = 'ok'
for i = 2, #KEYS do
    local at = 2 + (i - 2) * 3
    if tonumber(redis.call('GET', KEYS[i]) or '0') >= tonumber(ARGV[at + 1]) then
        decided = ARGV[at]
        break
    end
end
if decided == 'ok' then
    for i = 2, #KEYS do
        local at = 2 + (i - 2) * 3
        redis.call('INCR', KEYS[i])
        -- The window starts at the count's first attempt; a count somehow left without a
        -- TTL gets one, so no count outlives its window for ever.
        if redis.call('TTL', KEYS[i]) < 0 then
            redis.call('EXPIRE', KEYS[i], ARGV[at + 2])
        end
    end
end
redis.call('SET', KEYS[1], decided, 'EX', ARGV[1])
return {decided, 1}
"""

# KEYS: the delivery's marker, the account's count, then the counts to give one attempt back.
# A count that expired meanwhile is not given anything (DECR would make it -1, with no TTL).
SUCCEEDED = """
redis.call('DEL', KEYS[1], KEYS[2])
for i = 3, #KEYS do
    if tonumber(redis.call('GET', KEYS[i]) or '0') > 0 then
        redis.call('DECR', KEYS[i])
    end
end
return 0
"""


def counts_naming_key(hash_key: str | None) -> bytes | None:
    """The HMAC key that names counts and markers, derived from HASH_KEY for that use alone;
    None without a secret to derive it from."""
    if hash_key is None:
        return None
    return hmac.new(hash_key.encode(), NAMING_KEY_CONTEXT, hashlib.sha256).digest()


@dataclass(frozen=True)
class Reservation:
    """One delivery's attempt at a code, as decided once for every retry of it."""

    # The limit that refused it; None: the code may be checked.
    refused_by: Limit | None
    # The delivery's marker, the account's count, then the source's (if any) and the appid's.
    keys: tuple[str, ...]


@dataclass(frozen=True)
class CodeAttempts:
    client: redis.Redis
    key_prefix: str
    max_attempts: int
    window_s: int
    # None: no secret to name counts by (see the module's docstring).
    naming_key: bytes | None
    max_source_attempts: int = 20
    source_window_s: int = 900
    max_appid_attempts: int = 200
    appid_window_s: int = 900
    observer: Observer = PROMETHEUS

    def reserve(
        self,
        *,
        appid: str,
        accountid: str,
        command_id: str,
        secret_code: str,
        source: str | None = None,
    ) -> Reservation:
        """Count one attempt against every limit, or name the limit that refuses it.

        A delivery already decided (a retry: same command_id, account and code) gets its
        earlier decision and counts nothing.
        """
        limits: list[tuple[Limit, str, int, int]] = [
            ("account", self._account_key(appid, accountid), self.max_attempts, self.window_s),
            ("appid", self._appid_key(appid), self.max_appid_attempts, self.appid_window_s),
        ]
        if source is not None:
            source_count = self._source_key(appid, source)
            limits.insert(
                1, ("source", source_count, self.max_source_attempts, self.source_window_s)
            )
        keys = (
            self._delivery_key(appid, command_id, accountid, secret_code),
            *(key for _, key, *_ in limits),
        )
        args: list[str | int] = [max(window for *_, window in limits)]
        for name, _key, most, window in limits:
            args += [name, most, window]
        script = self.client.register_script(RESERVE)
        decided, now = cast(list[bytes | int], script(keys=keys, args=args))
        decision = decided.decode() if isinstance(decided, bytes) else str(decided)
        refused_by = None if decision == ALLOWED else cast(Limit, decision)
        if now:
            if refused_by is None:
                self.observer.guess_checked()
            else:
                self.observer.guess_refused(limit=refused_by)
        return Reservation(refused_by=refused_by, keys=keys)

    def succeeded(self, reservation: Reservation) -> None:
        """After a success is committed: clear the account's count, give the rest back."""
        self.client.register_script(SUCCEEDED)(keys=reservation.keys)

    def used(self, *, appid: str, accountid: str) -> int:
        return self._count(self._account_key(appid, accountid))

    def used_by_source(self, *, appid: str, source: str) -> int:
        return self._count(self._source_key(appid, source))

    def used_by_appid(self, *, appid: str) -> int:
        return self._count(self._appid_key(appid))

    def _count(self, key: str) -> int:
        return int(cast(bytes | None, self.client.get(key)) or 0)

    def _account_key(self, appid: str, accountid: str) -> str:
        return keys.account_attempts(self.key_prefix, appid, accountid)

    def _source_key(self, appid: str, source: str) -> str:
        # Keyed, so the count's name tells nothing of the address or device it counts.
        return keys.source_attempts(self.key_prefix, appid, self._named("source", appid, source))

    def _appid_key(self, appid: str) -> str:
        return keys.appid_attempts(self.key_prefix, appid)

    def _delivery_key(self, appid: str, command_id: str, accountid: str, code: str) -> str:
        # Without a secret, a code in a name could be tested offline: the guess stays out.
        guess = self._named("delivery", appid, accountid, "" if self.naming_key is None else code)
        return keys.delivery_decision(self.key_prefix, appid, command_id, guess)

    def _named(self, *parts: str) -> str:
        """An HMAC of `parts`, the first naming the use, so no two uses share a name."""
        key = self.naming_key or NAMING_KEY_CONTEXT
        return hmac.new(key, json.dumps(parts).encode(), hashlib.sha256).hexdigest()
