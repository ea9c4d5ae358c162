"""Every Redis client of the worker and its producers, made from a URL in one place.

URLs: `redis://`, `rediss://` (TLS), `unix://`, and kombu's Sentinel form
`sentinel://[:password@]host:port[;sentinel://host:port...]/db`, where the password is the
master's and `SENTINEL_MASTER` names the master. A Sentinel client is redis-py's
`Sentinel(...).master_for(...)`: it asks the sentinels for the master on each new connection, and
a connection to a demoted master is dropped (its `ReadOnlyError` becomes a `ConnectionError`), so
the next command goes to the new master.

TLS means TLS: `rediss://` always encrypts and verifies the server's certificate and host name
unless the URL itself says `ssl_cert_reqs=none`, against `ssl_ca_certs` in the URL or else
`REDIS_CA_FILE` (else the system's CAs). With `SENTINEL_TLS`, the sentinels and the master they
name are reached the same way. kombu, left alone, turns a `rediss://` URL without options into
unverified TLS, and under a transport class of its own into plaintext: `broker_connection` hands
it the same verified settings explicitly.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, quote, unquote, urlencode, urlsplit, urlunsplit

import redis
from redis.connection import parse_url as redis_parse_url
from redis.sentinel import Sentinel

SENTINEL_SCHEME = "sentinel"
TLS_SCHEME = "rediss"
DEFAULT_SENTINEL_PORT = 26379
# Under a transport class of the worker's own, kombu reads no scheme: TLS is asked for here.
# kombu sets no socket timeout, and redis-py makes the TLS handshake under the read timeout: a
# TLS client of a plaintext server would wait for ever (the server waits for a line's end), and
# a producer of a Redis that never answers too (client/producer.py). Well above kombu's 1 s
# blocking take, so a wait for a message never runs into it.
SOCKET_TIMEOUTS_S = {"socket_timeout": 10.0, "socket_connect_timeout": 10.0}
CERT_REQS = {"none": ssl.CERT_NONE, "optional": ssl.CERT_OPTIONAL, "required": ssl.CERT_REQUIRED}


@dataclass(frozen=True)
class RedisOptions:
    """What a URL does not say about reaching Redis: the Sentinel master and TLS trust."""

    sentinel_master: str | None = None
    # The sentinels' own password (their `requirepass`), not the master's.
    sentinel_password: str | None = field(default=None, repr=False)
    # The sentinels, and the master they name, speak TLS.
    sentinel_tls: bool = False
    # The CA that signed the servers' certificates, when the URL names none.
    ca_file: Path | None = None


@dataclass(frozen=True)
class SentinelUrl:
    sentinels: list[tuple[str, int]]
    db: int
    username: str | None = None
    password: str | None = field(default=None, repr=False)


# Said of a URL neither parser reads, in place of the parser's text, which may quote a password.
UNREADABLE_URL = (
    "is not a URL redis-py reads: percent-encode /, #, ? and @ in a user or password"
    " (%2F, %23, %3F, %40), and give the port and query options as numbers where they are"
)


def is_sentinel(url: str) -> bool:
    return urlsplit(url).scheme == SENTINEL_SCHEME


def parse_sentinel_url(url: str) -> SentinelUrl:
    """kombu's form: each sentinel a `sentinel://host:port`, joined by `;`; the credentials
    (the master's) and the database may be given on any of them."""
    sentinels: list[tuple[str, int]] = []
    username = password = None
    db = 0
    for part in url.split(";"):
        parts = urlsplit(part.strip())
        if parts.scheme != SENTINEL_SCHEME or not parts.hostname:
            raise ValueError(
                "a Sentinel URL is sentinel://[:password@]host:port[;sentinel://...]/db"
            )
        try:
            port = parts.port
        except ValueError:  # its text quotes what stood in the port: part of a password, say
            raise ValueError(f"a Sentinel URL {UNREADABLE_URL}") from None
        sentinels.append((parts.hostname, port or DEFAULT_SENTINEL_PORT))
        username = unquote(parts.username) if parts.username else username
        password = unquote(parts.password) if parts.password else password
        path = parts.path.strip("/")
        if path:
            if not path.isdigit():
                raise ValueError("a Sentinel URL's database is a number: sentinel://.../0")
            db = int(path)
    return SentinelUrl(sentinels=sentinels, db=db, username=username, password=password)


def check_redis_url(url: str | None, options: RedisOptions, *, variable: str) -> None:
    """A ValueError naming `variable` when `url` cannot be used with `options`."""
    if url is None:
        return
    if is_sentinel(url):
        try:
            parse_sentinel_url(url)
        except ValueError as error:
            raise ValueError(f"{variable}: {error}") from None
        if not options.sentinel_master:
            raise ValueError(f"{variable} is a sentinel:// URL: set ACCOUNT_RESET_SENTINEL_MASTER")
    elif urlsplit(url).scheme not in ("redis", TLS_SCHEME, "unix"):
        raise ValueError(f"{variable} must be a redis://, rediss://, unix:// or sentinel:// URL")
    else:
        try:
            redis_parse_url(url)  # type: ignore[no-untyped-call]
        except ValueError:  # its text may quote the password: "Port could not be cast ... 'Ab3'"
            raise ValueError(f"{variable} {UNREADABLE_URL}") from None


def _tls_params(options: RedisOptions) -> dict[str, Any]:
    params: dict[str, Any] = {"ssl_cert_reqs": "required"}
    if options.ca_file is not None:
        params["ssl_ca_certs"] = str(options.ca_file)
    return params


def redis_client(url: str, options: RedisOptions | None = None, **kwargs: Any) -> redis.Redis:
    """A client for `url`; `kwargs` are redis-py's (socket timeouts and the like)."""
    options = options or RedisOptions()
    if not is_sentinel(url):
        if urlsplit(url).scheme == TLS_SCHEME:
            kwargs = {**_tls_params(options), **kwargs}  # the URL's own ssl_* options win
        return redis.Redis.from_url(url, **kwargs)
    if not options.sentinel_master:
        raise ValueError("a sentinel:// URL needs ACCOUNT_RESET_SENTINEL_MASTER")
    target = parse_sentinel_url(url)
    tls = {"ssl": True, **_tls_params(options)} if options.sentinel_tls else {}
    sentinel_kwargs = {
        **{name: value for name, value in kwargs.items() if name.startswith("socket_")},
        **tls,
    }
    if options.sentinel_password:
        sentinel_kwargs["password"] = options.sentinel_password
    sentinel = Sentinel(target.sentinels, sentinel_kwargs=sentinel_kwargs)
    master: redis.Redis = sentinel.master_for(
        options.sentinel_master,
        db=target.db,
        username=target.username,
        password=target.password,
        **tls,
        **kwargs,
    )
    return master


@dataclass(frozen=True)
class BrokerConnection:
    """What kombu is given for a broker URL: the URL, its TLS settings, transport options."""

    url: str
    ssl: dict[str, Any] | None
    transport_options: dict[str, Any]
    sentinel: bool
    # For kombu's own transports (producers): every sentinel as a failover URL, each with the
    # credentials and database, since kombu reads them from the first it uses.
    kombu_url: str


def broker_connection(url: str, options: RedisOptions | None = None) -> BrokerConnection:
    """kombu's settings for `url`, encrypted and verified whenever the URL says TLS.

    A Sentinel URL is handed to kombu as its first sentinel alone, with every sentinel in the
    transport options: kombu would otherwise treat the others as failover URLs, and switching
    to one re-reads its scheme and drops the transport class it was given.
    """
    options = options or RedisOptions()
    if is_sentinel(url):
        if not options.sentinel_master:
            raise ValueError("a sentinel:// URL needs ACCOUNT_RESET_SENTINEL_MASTER")
        target = parse_sentinel_url(url)
        host, port = target.sentinels[0]
        credentials = ""
        if target.password is not None:
            credentials = f"{quote(target.username or '')}:{quote(target.password)}@"
        every = ";".join(
            f"{SENTINEL_SCHEME}://{credentials}{name}:{number}/{target.db}"
            for name, number in target.sentinels
        )
        sentinel_kwargs: dict[str, Any] = {}
        if options.sentinel_password:
            sentinel_kwargs["password"] = options.sentinel_password
        tls = _kombu_ssl({}, options) if options.sentinel_tls else None
        if tls is not None:
            sentinel_kwargs.update(ssl=True, **tls)
        return BrokerConnection(
            url=f"{SENTINEL_SCHEME}://{credentials}{host}:{port}/{target.db}",
            ssl=tls,
            transport_options={
                **(SOCKET_TIMEOUTS_S if tls is not None else {}),
                "master_name": options.sentinel_master,
                "sentinels": target.sentinels,
                "sentinel_kwargs": sentinel_kwargs or None,
            },
            sentinel=True,
            kombu_url=every,
        )
    parts = urlsplit(url)
    if parts.scheme != TLS_SCHEME:
        return BrokerConnection(
            url=url, ssl=None, transport_options={}, sentinel=False, kombu_url=url
        )
    query = parse_qsl(parts.query, keep_blank_values=True)
    parsed: dict[str, Any] = redis_parse_url(url)  # type: ignore[no-untyped-call]
    given = {name: value for name, value in parsed.items() if name.startswith("ssl_")}
    rest = urlencode([(name, value) for name, value in query if not name.startswith("ssl_")])
    plain = urlunsplit(parts._replace(query=rest))
    return BrokerConnection(
        url=plain,
        ssl=_kombu_ssl(given, options),
        transport_options=dict(SOCKET_TIMEOUTS_S),
        sentinel=False,
        kombu_url=plain,
    )


def _kombu_ssl(given: dict[str, Any], options: RedisOptions) -> dict[str, Any]:
    """redis-py's SSL arguments, verification on unless `given` (the URL's) turns it off."""
    params = {**_tls_params(options), **given}
    reqs = params["ssl_cert_reqs"]
    params["ssl_cert_reqs"] = CERT_REQS.get(reqs, reqs) if isinstance(reqs, str) else reqs
    return params
