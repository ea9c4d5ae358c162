"""This test session's keys: the hash key, a cheap bcrypt cost, the payload key, sealing keys."""

from __future__ import annotations

import json

from worker.security.sealing_keys import SealingKeys

TEST_HASH_KEY = "test-hash-key-" + "k" * 20
TEST_BCRYPT_ROUNDS = 4
TEST_PAYLOAD_KEY = "x6Ky_9yt9BZP8oJGXGnsq1Ov7kxf1ic2bbZUnpWx4i4="
# This test session's sealing keys: workers get the private set, producers its public key.
TEST_SEALING_KEYS = SealingKeys.generated()
TEST_SEALING_KEYS_JSON = json.dumps(TEST_SEALING_KEYS.private_jwk_set())
TEST_SEALING_PUBLIC_KEY = json.dumps(TEST_SEALING_KEYS.public_jwk())
