"""docker-compose.yml fails closed (finding 5 of the secrets issue): Redis with ACL users and
nothing for the default user but PING, sealing required, Flower without the worker's keys, the
metrics port on an internal network only. `tests/integration/test_cli.py` runs the commands it
runs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

COMPOSE = Path(__file__).parents[2] / "docker-compose.yml"
WORKERS = ("worker", "worker-sessions", "migrate")


def compose() -> dict[str, Any]:
    loaded = yaml.safe_load(COMPOSE.read_text())
    assert isinstance(loaded, dict)
    return loaded


def test_finding_5_flower_gets_neither_the_hash_key_nor_the_payload_key() -> None:
    """Finding 5: compose gave Flower the hash and payload keys (it took the workers' whole
    environment). Flower now gets the broker and its basic auth, and no worker setting."""
    flower = compose()["services"]["flower"]
    environment = flower["environment"]
    assert set(environment) == {"CELERY_BROKER_URL", "FLOWER_BASIC_AUTH"}
    assert not any(name.startswith("ACCOUNT_RESET_") for name in environment)
    assert "-A" not in flower["command"]
    assert "secrets" not in flower


def test_finding_5_sealing_is_on_for_every_worker() -> None:
    """Finding 5: compose left sealing off. Every worker reads its private keys from a secret
    file and refuses plaintext secrets."""
    services = compose()["services"]
    for name in WORKERS:
        environment = services[name]["environment"]
        assert environment["ACCOUNT_RESET_REQUIRE_SEALED"] == "true", name
        assert environment["ACCOUNT_RESET_SEALING_KEYS_FILE"] == "/run/secrets/sealing_keys"
        assert services[name]["secrets"] == ["sealing_keys"], name


def test_finding_5_redis_has_acl_users_and_never_evicts() -> None:
    """Finding 5: compose ran Redis open. It now loads the ACL file `account-reset redis-acl
    --acl-file` writes (the default user may only PING), fsyncs every write, and never evicts
    (the guessing counters must not vanish); the workers connect as their user."""
    services = compose()["services"]
    command = services["redis"]["command"]
    assert command[command.index("--aclfile") + 1] == "/run/secrets/redis_acl"
    assert command[command.index("--maxmemory-policy") + 1] == "noeviction"
    assert command[command.index("--appendfsync") + 1] == "always"
    for name in ("worker", "worker-sessions"):
        url = services[name]["environment"]["ACCOUNT_RESET_BROKER_URL"]
        assert url.startswith("redis://account-reset-worker:"), name
    assert services["flower"]["environment"]["CELERY_BROKER_URL"].startswith(
        "redis://account-reset-worker:"
    )


def test_finding_5_the_metrics_port_is_on_an_internal_network_only() -> None:
    """Finding 5: the metrics port was unauthenticated on the default network. The workers sit
    on an internal network alone and publish no port; only Flower's port is published, on
    loopback."""
    loaded = compose()
    assert loaded["networks"]["backend"]["internal"] is True
    for name, service in loaded["services"].items():
        if name != "flower":
            assert service["networks"] == ["backend"], name
            assert "ports" not in service, name
    assert loaded["services"]["flower"]["ports"] == ["127.0.0.1:5555:5555"]


def test_no_secret_has_a_default_in_compose() -> None:
    """Every secret is asked for (`${VAR:?...}`) or read from a secret file, never defaulted."""
    text = COMPOSE.read_text()
    for variable in ("ACCOUNT_RESET_HASH_KEY", "POSTGRES_PASSWORD", "FLOWER_BASIC_AUTH",
                     "ACCOUNT_RESET_ACL_WORKER_PASSWORD", "ACCOUNT_RESET_PAYLOAD_KEY"):  # fmt: skip
        assert f"${{{variable}:-" not in text, variable
        assert f"${{{variable}:?" in text, variable
