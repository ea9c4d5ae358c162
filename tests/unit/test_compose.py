"""docker-compose.yml fails closed (finding 5 of the secrets issue): Redis with ACL users and
nothing for the default user but PING, sealing required, Flower without the worker's keys, the
metrics port on an internal network only; and holds in production (issue 16, finding 10):
unhealthy workers replaced, every replica scraped, Docker secrets, pinned images and packages,
one image built once. `tests/e2e/test_cli_worker.py` runs the commands it runs;
`tests/integration/test_deploy.py` validates it with `docker-compose config`."""

from __future__ import annotations

import re
import tomllib
from importlib.metadata import distribution
from pathlib import Path
from typing import Any

import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).parents[2]
COMPOSE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "Dockerfile"
DEPLOY = ROOT / "deploy"
CONSTRAINTS = DEPLOY / "constraints.txt"
WORKERS = ("worker", "worker-sessions", "migrate")


def compose() -> dict[str, Any]:
    loaded = yaml.safe_load(COMPOSE.read_text())
    assert isinstance(loaded, dict)
    return loaded


def test_finding_5_flower_gets_neither_the_hash_key_nor_the_payload_key() -> None:
    """Finding 5: compose gave Flower the hash and payload keys (it took the workers' whole
    environment). Flower now gets the broker URL and its basic auth, as secret files, and no
    worker setting."""
    flower = compose()["services"]["flower"]
    environment = flower["environment"]
    assert set(environment) == {"CELERY_BROKER_URL_FILE", "FLOWER_BASIC_AUTH_FILE"}
    assert not any(name.startswith("ACCOUNT_RESET_") for name in environment)
    assert "-A" not in " ".join(flower["command"])
    assert flower["secrets"] == ["worker_broker_url", "flower_basic_auth"]


def test_finding_5_sealing_is_on_for_every_worker() -> None:
    """Finding 5: compose left sealing off. Every worker reads its private keys from a secret
    file and refuses plaintext secrets."""
    services = compose()["services"]
    for name in WORKERS:
        environment = services[name]["environment"]
        assert environment["ACCOUNT_RESET_REQUIRE_SEALED"] == "true", name
        assert environment["ACCOUNT_RESET_SEALING_KEYS_FILE"] == "/run/secrets/sealing_keys"
        assert "sealing_keys" in services[name]["secrets"], name


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
        url_file = services[name]["environment"]["ACCOUNT_RESET_BROKER_URL_FILE"]
        assert url_file == "/run/secrets/worker_broker_url", name
    assert services["flower"]["environment"]["CELERY_BROKER_URL_FILE"] == url_file
    assert "redis://account-reset-worker:" in COMPOSE.read_text()  # the secret's documented shape


def test_finding_5_the_metrics_port_is_on_an_internal_network_only() -> None:
    """Finding 5: the metrics port was unauthenticated on the default network. The workers,
    Redis and PostgreSQL sit on an internal network alone and publish no port; Prometheus and
    Grafana have an internal network of their own; only Flower's and Grafana's ports are
    published, on loopback."""
    loaded = compose()
    services = loaded["services"]
    assert loaded["networks"]["backend"]["internal"] is True
    assert loaded["networks"]["monitoring"]["internal"] is True
    for name in (*WORKERS, "redis", "postgres"):
        assert services[name]["networks"] == ["backend"], name
    published = {name for name, service in services.items() if "ports" in service}
    assert published == {"flower", "grafana"}
    assert services["flower"]["ports"] == ["127.0.0.1:5555:5555"]
    assert services["grafana"]["ports"] == ["127.0.0.1:3000:3000"]
    assert services["prometheus"]["networks"] == ["backend", "monitoring"]


def test_finding_10_autoheal_replaces_a_worker_whose_healthcheck_fails() -> None:
    """Finding 10: plain compose restarts a container that exits, never one that is unhealthy,
    so a worker that stopped consuming stayed so. Each worker is labelled for `autoheal`, which
    restarts it once `account-reset health` fails; both restart `unless-stopped`."""
    services = compose()["services"]
    autoheal = services["autoheal"]
    label = autoheal["environment"]["AUTOHEAL_CONTAINER_LABEL"]
    assert "/var/run/docker.sock:/var/run/docker.sock" in autoheal["volumes"]
    assert autoheal["network_mode"] == "none"
    assert autoheal["restart"] == "unless-stopped"
    for name in ("worker", "worker-sessions"):
        worker = services[name]
        assert worker["healthcheck"]["test"] == ["CMD", "account-reset", "health"], name
        assert worker["labels"] == {label: "true"}, name
        assert worker["restart"] == "unless-stopped", name


def test_finding_10_prometheus_scrapes_every_replica_by_dns() -> None:
    """Finding 10: the scrape target `worker:9808` reached one replica at random. Prometheus
    (in compose, on the workers' network) resolves each worker service's name to every
    replica's address (`dns_sd_configs`, type A) and scrapes each on 9808."""
    services = compose()["services"]
    config = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text())
    [job] = config["scrape_configs"]
    [discovery] = job["dns_sd_configs"]
    exposing = {name for name, service in services.items() if "9808" in service.get("expose", [])}
    assert set(discovery["names"]) == exposing == {"worker", "worker-sessions"}
    assert (discovery["type"], discovery["port"]) == ("A", 9808)
    assert "static_configs" not in job
    assert config["rule_files"] == ["alerts.yml"]
    prometheus = services["prometheus"]
    assert "./deploy/prometheus:/etc/prometheus:ro" in prometheus["volumes"]
    assert "--config.file=/etc/prometheus/prometheus.yml" in prometheus["command"]
    assert "backend" in prometheus["networks"]


SECRET_NAME = re.compile(r"(PASSWORD|KEY|KEYS|SECRET|TOKEN|BASIC_AUTH|_URL)$")
URL_WITH_PASSWORD = re.compile(r"://[^/@\s]+:[^/@\s]+@")


def test_finding_10_every_password_and_key_is_a_docker_secret() -> None:
    """Finding 10: secrets went in as environment variables (`docker inspect` shows them) and
    the PostgreSQL password had a default. No service's environment holds a password, a key or
    a URL with a password: each is a `*_FILE` naming a secret file the service mounts, and every
    secret is a file under ./secrets (git and the build context ignore it). Grafana's admin
    password (admin/admin by default) is one too."""
    loaded = compose()
    for name, service in loaded["services"].items():
        for variable, value in service.get("environment", {}).items():
            assert not SECRET_NAME.search(variable), f"{name}: {variable}"
            assert not URL_WITH_PASSWORD.search(str(value)), f"{name}: {variable}"
            if str(value).startswith("/run/secrets/"):
                assert value.removeprefix("/run/secrets/") in service["secrets"], name
    for name, secret in loaded["secrets"].items():
        assert secret["file"].startswith("./secrets/"), name
    services = loaded["services"]
    assert services["postgres"]["environment"]["POSTGRES_PASSWORD_FILE"] == (
        "/run/secrets/postgres_password"
    )
    assert "GF_SECURITY_ADMIN_PASSWORD__FILE" in services["grafana"]["environment"]
    for variable in ("HASH_KEY", "PAYLOAD_KEY", "BROKER_URL", "DATABASE_URL", "SEALING_KEYS"):
        assert f"ACCOUNT_RESET_{variable}_FILE" in services["worker"]["environment"]
    assert ":-" not in "".join(re.findall(r"\$\{[^}]*(?:PASSWORD|KEY)[^}]*\}", COMPOSE.read_text()))


# `name:1.2.3...` (PostgreSQL's releases are `16.4`), maybe `@sha256:...`: a release, never
# `latest` or a bare major version.
PINNED_IMAGE = re.compile(r"^[\w./-]+:v?\d+\.\d+(\.\d+)?(-[\w.-]+)?(@sha256:[0-9a-f]{64})?$")


def test_finding_10_every_image_is_pinned_to_a_version() -> None:
    """Finding 10: images were pinned by a moving tag (`redis:7-alpine`). Every image compose
    pulls, and the Dockerfile's base, names a full version (a digest where one is known:
    docs/operations.md, "Pinning the images")."""
    for name, service in compose()["services"].items():
        image = service["image"]
        if not image.startswith("account-reset-"):  # built here
            assert PINNED_IMAGE.match(image), f"{name}: {image}"
    bases = re.findall(r"^FROM (\S+)", DOCKERFILE.read_text(), flags=re.MULTILINE)
    assert [base for base in bases if base != "worker"] == ["python:3.11.9-slim-bookworm"]
    assert all(PINNED_IMAGE.match(base) for base in bases if base != "worker")


def test_finding_10_the_images_python_packages_are_pinned() -> None:
    """Finding 10: the image's Python dependencies were unpinned. The Dockerfile installs under
    PIP_CONSTRAINT=deploy/constraints.txt (`pip freeze` of `.[worker,flower]` from PyPI), which pins
    every package the image installs, direct or not, to one version."""
    dockerfile = DOCKERFILE.read_text()
    assert "PIP_CONSTRAINT=/app/deploy/constraints.txt" in dockerfile
    assert "COPY deploy/constraints.txt ./deploy/" in dockerfile
    pins = {}
    for line in CONSTRAINTS.read_text().splitlines():
        if line and not line.startswith("#"):
            name, _, version = line.partition("==")
            pins[canonicalize_name(name)] = version
    assert all(pins.values())
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    extras = project["optional-dependencies"]
    wanted = [*project["dependencies"], *extras["worker"], *extras["flower"]]
    missing = installed_closure(wanted) - set(pins)
    assert not missing, f"not pinned in deploy/constraints.txt: {sorted(missing)}"


def installed_closure(requirements: list[str]) -> set[str]:
    """The distributions `requirements` pull in, followed through this environment's metadata."""
    seen: set[str] = set()
    todo = [Requirement(text) for text in requirements]
    while todo:
        requirement = todo.pop()
        name = canonicalize_name(requirement.name)
        key = f"{name}[{','.join(sorted(requirement.extras))}]"
        if key in seen:
            continue
        seen.add(key)
        for text in distribution(name).requires or []:
            needed = Requirement(text)
            extras = requirement.extras or {""}
            if needed.marker is None or any(needed.marker.evaluate({"extra": e}) for e in extras):
                todo.append(needed)
    return {key.partition("[")[0] for key in seen}


def test_finding_10_the_workers_image_is_built_once() -> None:
    """Finding 10: the same image was built three times (migrate, worker, worker-sessions).
    `worker` builds it, under one name, and the others run that image."""
    services = compose()["services"]
    builders = [name for name, service in services.items() if "build" in service]
    assert sorted(builders) == ["flower", "worker"]
    assert services["worker"]["build"]["target"] == "worker"
    images = {services[name]["image"] for name in WORKERS}
    assert len(images) == 1
    assert images.pop().startswith("account-reset-worker:")


def test_finding_10_redis_fsyncs_every_write_as_the_figures_were_measured() -> None:
    """Finding 10: Redis ran `appendfsync everysec` while the no-loss figures were measured with
    `always`. It keeps its append-only file and fsyncs it on every write."""
    command = compose()["services"]["redis"]["command"]
    assert command[command.index("--appendonly") + 1] == "yes"
    assert command[command.index("--appendfsync") + 1] == "always"
