"""Hashes the dashboard can read: computed here independently with hashlib and bcrypt."""

from __future__ import annotations

import hashlib

import bcrypt

from worker.security.hashing import Hasher

hasher = Hasher(key="dashboard-key", bcrypt_rounds=4)


def test_lookup_hash_is_sha512_hex_of_text_colon_key() -> None:
    expected = hashlib.sha512(b"some-username:dashboard-key").hexdigest()
    assert hasher.lookup_hash("some-username") == expected


def test_password_hash_is_bcrypt_over_sha256_hex_of_password_and_key() -> None:
    stored = hasher.password_hash("new-password")
    prehash = hashlib.sha256(b"new-passworddashboard-key").hexdigest().encode()
    assert bcrypt.checkpw(prehash, stored.encode())
    assert stored.startswith("$2b$04$")


def test_a_hash_made_by_nodes_bcryptjs_verifies() -> None:
    # bcryptjs writes the $2a$ prefix; the digests are otherwise the same.
    prehash = hashlib.sha256(b"from-nodedashboard-key").hexdigest().encode()
    node_style = bcrypt.hashpw(prehash, bcrypt.gensalt(4, prefix=b"2a")).decode()
    assert hasher.password_matches("from-node", node_style)


def test_long_passwords_are_not_truncated_at_72_bytes() -> None:
    shared = "x" * 80
    stored = hasher.password_hash(shared + "A")
    assert not hasher.password_matches(shared + "B", stored)


def test_repr_hides_the_key() -> None:
    assert "dashboard-key" not in repr(hasher)


# A stock dashboard sets no dashboardEncryptionKey: JavaScript's `text + ':' + undefined` and
# `password + (key || '')`, as its src/hash.js and src/bcrypt.js compute them.
stock = Hasher(key="", bcrypt_rounds=4)


def test_a_stock_dashboards_lookup_hash_is_keyed_by_the_text_undefined() -> None:
    expected = hashlib.sha512(b"some-username:undefined").hexdigest()
    assert stock.lookup_hash("some-username") == expected


def test_a_stock_dashboards_password_hash_has_no_key_at_all() -> None:
    """With HASH_KEY=undefined the rows were found but this hash was wrong: a locked-out user."""
    stored = stock.password_hash("new-password")
    assert bcrypt.checkpw(hashlib.sha256(b"new-password").hexdigest().encode(), stored.encode())
    assert not bcrypt.checkpw(
        hashlib.sha256(b"new-passwordundefined").hexdigest().encode(), stored.encode()
    )
