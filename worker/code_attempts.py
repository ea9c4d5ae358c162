"""Wrong reset codes per account, counted in Redis so every worker process and node shares them.

An attempt is reserved before the code is checked, in one atomic script: an account with
`max_attempts` wrong codes inside the window gets `too-many-attempts` without its code being
looked at, however many workers race. A success clears the count. The window starts at the
first wrong code and the count goes with it.
"""

from __future__ import annotations

from dataclasses import dataclass

import redis

# Returns 0 when the account has used up its attempts, else the attempt's number.
RESERVE_ATTEMPT = """
local used = tonumber(redis.call('GET', KEYS[1]) or '0')
if used >= tonumber(ARGV[1]) then
    return 0
end
used = redis.call('INCR', KEYS[1])
if used == 1 then
    redis.call('EXPIRE', KEYS[1], ARGV[2])
end
return used
"""


@dataclass(frozen=True)
class CodeAttempts:
    client: redis.Redis
    key_prefix: str
    max_attempts: int
    window_s: int

    def reserve(self, *, appid: str, accountid: str) -> bool:
        """Count one attempt for the account; False when it has none left in the window."""
        script = self.client.register_script(RESERVE_ATTEMPT)
        used = script(keys=[self._key(appid, accountid)], args=[self.max_attempts, self.window_s])
        return int(used) > 0

    def clear(self, *, appid: str, accountid: str) -> None:
        self.client.delete(self._key(appid, accountid))

    def used(self, *, appid: str, accountid: str) -> int:
        return int(self.client.get(self._key(appid, accountid)) or 0)

    def _key(self, appid: str, accountid: str) -> str:
        return f"{self.key_prefix}:{appid}:{accountid}"
