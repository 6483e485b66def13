"""Redis: PING round trip through the exporter's own redis-py pool, the pool's stats, and the
server's saturation and replication state from `INFO`. With `sentinel:`, the master is found
through Sentinel at every probe, and what Sentinel reported is exported too."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any, Literal, Self
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit, urlunsplit

import redis.exceptions
from pydantic import Field, model_validator
from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.connection import (
    AbstractConnection,
    Connection,
    SSLConnection,
    UnixDomainSocketConnection,
    parse_url,
)
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import Sentinel
from redis.backoff import NoBackoff
from redis.credentials import CredentialProvider

from resilience_exporter.config import StrictModel, TargetConfig
from resilience_exporter.families import HistogramAccumulator, Sample, family, sample
from resilience_exporter.pools import PoolStats, PoolTimings, pool_samples
from resilience_exporter.reasons import Failure, ProbeError, Reason, classify_builtin
from resilience_exporter.registry import KindSpec, register_kind
from resilience_exporter.secrets import PasswordSource, Secret, remember

PING_DURATION = family(
    "resilience_redis_ping_duration_seconds",
    "Round trip of a PING on a pooled connection.",
    "histogram", ("target",), group="redis",
)  # fmt: skip
CONNECTED_CLIENTS = family(
    "resilience_redis_connected_clients",
    "Client connections open on the server (INFO connected_clients).",
    "gauge", ("target",), group="redis",
)  # fmt: skip
BLOCKED_CLIENTS = family(
    "resilience_redis_blocked_clients",
    "Clients waiting in a blocking command (BLPOP, WAIT, ...).",
    "gauge", ("target",), group="redis",
)  # fmt: skip
MAX_CLIENTS = family(
    "resilience_redis_max_clients",
    "The server's maxclients setting.",
    "gauge", ("target",), group="redis",
)  # fmt: skip
MEMORY_USED = family(
    "resilience_redis_memory_used_bytes",
    "Memory allocated by Redis (INFO used_memory).",
    "gauge", ("target",), group="redis",
)  # fmt: skip
MEMORY_MAX = family(
    "resilience_redis_memory_max_bytes",
    "The server's maxmemory setting; 0 means no limit (saturation ratios must skip it).",
    "gauge", ("target",), group="redis",
)  # fmt: skip
EVICTED_KEYS = family(
    "resilience_redis_evicted_keys_total",
    "Keys evicted because of the maxmemory limit.",
    "counter", ("target",), group="redis",
)  # fmt: skip
REJECTED_CONNECTIONS = family(
    "resilience_redis_rejected_connections_total",
    "Connections refused because of the maxclients limit.",
    "counter", ("target",), group="redis",
)  # fmt: skip
KEYSPACE_HITS = family(
    "resilience_redis_keyspace_hits_total",
    "Successful key lookups.",
    "counter", ("target",), group="redis",
)  # fmt: skip
KEYSPACE_MISSES = family(
    "resilience_redis_keyspace_misses_total",
    "Failed key lookups.",
    "counter", ("target",), group="redis",
)  # fmt: skip
ROLE = family(
    "resilience_redis_role",
    "1 for the server's replication role (master or replica).",
    "gauge", ("target", "role"), group="redis",
)  # fmt: skip
CONNECTED_REPLICAS = family(
    "resilience_redis_connected_replicas",
    "Replicas connected to this server.",
    "gauge", ("target",), group="redis",
)  # fmt: skip
REPLICATION_LINK_UP = family(
    "resilience_redis_replication_link_up",
    "Replicas only: 1 if the link to the master is up (master_link_status), else 0.",
    "gauge", ("target",), group="redis",
)  # fmt: skip
SENTINEL_UP = family(
    "resilience_redis_sentinel_up",
    "Sentinel targets only: 1 if a Sentinel answered the last master discovery, else 0.",
    "gauge", ("target",), group="redis",
)  # fmt: skip
SENTINEL_MASTER = family(
    "resilience_redis_sentinel_master",
    "Sentinel targets only: 1 for the master address Sentinel last reported for the service.",
    "gauge", ("target", "service", "address"), group="redis",
)  # fmt: skip

# INFO fields exported as they are: (field, family).
_INFO_FIELDS: tuple[tuple[str, Any], ...] = (
    ("connected_clients", CONNECTED_CLIENTS),
    ("blocked_clients", BLOCKED_CLIENTS),
    ("maxclients", MAX_CLIENTS),
    ("used_memory", MEMORY_USED),
    ("maxmemory", MEMORY_MAX),
    ("evicted_keys", EVICTED_KEYS),
    ("rejected_connections", REJECTED_CONNECTIONS),
    ("keyspace_hits", KEYSPACE_HITS),
    ("keyspace_misses", KEYSPACE_MISSES),
    ("connected_slaves", CONNECTED_REPLICAS),
)
_ROLES: Mapping[str, str] = {"master": "master", "slave": "replica"}


# A pooled connection the server closed while it sat idle (a restart, a timeout on the server
# side) is replaced once, at once; anything else is not retried: the next probe is the retry.
# Timeouts are never retried, so that a hung server costs one timeout.
# Fresh objects for every client: redis-py updates them in place.
def _retry_dropped_connection() -> dict[str, Any]:
    return {
        "retry": Retry(NoBackoff(), 1, supported_errors=(redis.exceptions.ConnectionError,)),
        "retry_on_error": [redis.exceptions.ConnectionError],
    }


class RedisPoolConfig(StrictModel):
    max_connections: int = Field(2, ge=1, le=100)


class RedisTLSConfig(StrictModel):
    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None
    verify: bool = True

    @model_validator(mode="after")
    def _key_with_cert(self) -> Self:
        if self.key_file is not None and self.cert_file is None:
            raise ValueError("tls.key_file needs tls.cert_file")
        return self


class SentinelConfig(StrictModel):
    hosts: list[str] = Field(min_length=1)
    service: str = Field(min_length=1)
    # Sentinel's own credentials, when it has `requirepass` (they differ from the master's).
    username: str | None = None
    password: Secret | None = None

    @model_validator(mode="after")
    def _host_ports(self) -> Self:
        for host in self.hosts:
            _split_host_port(host)
        return self


def _split_host_port(address: str) -> tuple[str, int]:
    host, sep, port = address.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise ValueError(f"{address!r}: sentinel hosts are host:port")
    return host.strip("[]"), int(port)


def _url_without_password(url: str) -> tuple[str, str | None]:
    """The URL with any password (in the authority or as `?password=`) taken out."""
    parts = urlsplit(url)
    password = unquote(parts.password) if parts.password else None
    netloc = parts.netloc
    if parts.password is not None:
        userinfo, _, hostport = netloc.rpartition("@")
        user = userinfo.partition(":")[0]
        netloc = f"{user}@{hostport}" if user else hostport
    query = parse_qsl(parts.query, keep_blank_values=True)
    kept = [(k, v) for k, v in query if k != "password"]
    for key, value in query:
        if key == "password" and value:
            if password is not None and password != value:
                raise ValueError("the url holds two different passwords")
            password = value
    rebuilt = urlunsplit((parts.scheme, netloc, parts.path, urlencode(kept), parts.fragment))
    return rebuilt, password


class RedisTarget(TargetConfig, PasswordSource):
    kind: Literal["redis"]
    url: str | None = Field(None, min_length=1)
    username: str | None = None
    tls: RedisTLSConfig | None = None
    pool: RedisPoolConfig = Field(default_factory=RedisPoolConfig)
    sentinel: SentinelConfig | None = None

    @model_validator(mode="before")
    @classmethod
    def _password_out_of_url(cls, data: Any) -> Any:
        """Move a password written inside the URL into the secret, so the URL can be shown."""
        if not isinstance(data, dict) or not isinstance(data.get("url"), str):
            return data
        try:
            url, password = _url_without_password(data["url"])
        except ValueError as exc:
            # Never quote the URL: it may hold a password.
            raise ValueError(f"url is not a valid Redis URL: {exc}") from None
        if password is None:
            return data
        remember(password)
        if data.get("password") is not None or data.get("password_file") is not None:
            raise ValueError("the url holds a password: remove it or the password key")
        return {**data, "url": url, "password": password}

    @model_validator(mode="after")
    def _url_or_sentinel(self) -> Self:
        if (self.url is None) == (self.sentinel is None):
            raise ValueError("give either url or sentinel")
        if self.url is not None:
            try:
                kwargs = parse_url(self.url)
            except ValueError as exc:
                raise ValueError(str(exc)) from None
            if self.tls is not None and kwargs.get("connection_class") is not SSLConnection:
                raise ValueError("tls options need a rediss:// url")
            url_user = kwargs.get("username")
            if url_user and self.username and url_user != self.username:
                raise ValueError("the url and the username key name different users")
        return self

    def endpoint(self) -> str:
        if self.sentinel is not None:
            hosts = ",".join(self.sentinel.hosts)
            return f"sentinel {self.sentinel.service} via {hosts}"
        assert self.url is not None
        kwargs = parse_url(self.url)
        if "path" in kwargs:
            return f"unix:{kwargs['path']}"
        return f"{kwargs.get('host', 'localhost')}:{kwargs.get('port', 6379)}/{kwargs.get('db', 0)}"

    def describe(self) -> str:
        user = self.username or (parse_url(self.url).get("username") if self.url else None)
        return f"redis {user + '@' if user else ''}{self.endpoint()}"


class _Credentials(CredentialProvider):
    """Resolves the password at every connection, so a rotated password_file is picked up."""

    def __init__(self, target: RedisTarget, username: str | None) -> None:
        self.target = target
        self.username = username

    def get_credentials(self) -> tuple[str] | tuple[str, str]:
        password = self.target.resolve_password() or ""
        return (self.username, password) if self.username else (password,)

    async def get_credentials_async(self) -> tuple[str] | tuple[str, str]:
        return self.get_credentials()


class _ConnectObserver:
    """Times successful connects and keeps the last failure (a pool error wraps it)."""

    def __init__(self, timings: PoolTimings) -> None:
        self.timings = timings
        self.errors = 0
        self.last_error: tuple[float, BaseException] | None = None

    def error_since(self, moment: float) -> BaseException | None:
        if self.last_error is not None and self.last_error[0] >= moment:
            return self.last_error[1]
        return None

    def connection_class(self, base: type[AbstractConnection]) -> type[AbstractConnection]:
        observer = self

        class _Observed(AbstractConnection):
            # Every way of connecting (the pool's, and a reconnect while sending) ends here.
            async def connect_check_health(
                self, check_health: bool = True, retry_socket_connect: bool = True
            ) -> None:
                if self.is_connected:
                    return
                start = time.perf_counter()
                try:
                    await super().connect_check_health(check_health, retry_socket_connect)
                except BaseException as exc:
                    observer.errors += 1
                    observer.last_error = (time.monotonic(), exc)
                    raise
                observer.timings.connect.observe(time.perf_counter() - start)

        return type(f"Observed{base.__name__}", (_Observed, base), {})


class _TimedPool(BlockingConnectionPool):
    """Measures acquiring a connection (which includes opening it when none is idle)."""

    timings: PoolTimings

    async def get_connection(self, *args: Any, **kwargs: Any) -> AbstractConnection:
        with self.timings.timing_acquire():
            return await super().get_connection(*args, **kwargs)  # type: ignore[no-untyped-call,no-any-return]

    def stats(self) -> tuple[int, int]:
        """(in use, idle) connections."""
        idle = sum(1 for c in self._available_connections if c.is_connected)
        return len(self._in_use_connections), idle


_MESSAGE_REASONS: tuple[tuple[str, Reason, bool], ...] = (
    ("wrongpass", "auth", True),
    ("noauth", "auth", True),
    ("invalid username-password", "auth", True),
    ("invalid password", "auth", True),
    ("auth <password> called without any password", "auth", True),
    ("noperm", "auth", True),
    ("connection refused", "refused", False),
    ("no such file or directory", "refused", False),
    ("name or service not known", "dns", True),
    ("temporary failure in name resolution", "dns", False),
    ("nodename nor servname", "dns", True),
    ("timeout", "timeout", False),
    ("timed out", "timeout", False),
    ("ssl", "tls", True),
    ("certificate", "tls", True),
    ("max number of clients reached", "too_many_connections", False),
    ("loading", "other", False),
)


def classify_redis(exc: BaseException) -> Failure:
    if isinstance(exc, redis.exceptions.TimeoutError):
        return Failure("timeout", "no answer within the timeout")
    if isinstance(exc, redis.exceptions.AuthenticationError | redis.exceptions.NoPermissionError):
        return Failure("auth", _first_line(exc), persistent=True)
    if isinstance(exc, redis.exceptions.RedisError):
        text = str(exc).lower()
        for needle, reason, persistent in _MESSAGE_REASONS:
            if needle in text:
                return Failure(reason, _first_line(exc), persistent)
        cause = exc.__cause__ or exc.__context__
        if cause is not None and not isinstance(cause, redis.exceptions.RedisError):
            found = classify_builtin(cause)
            if found is not None and found.reason != "other":
                return found
        if isinstance(exc, redis.exceptions.InvalidResponse | redis.exceptions.DataError):
            return Failure("protocol", _first_line(exc))
        return Failure("other", _first_line(exc))
    return classify_builtin(exc) or Failure("other", type(exc).__name__)


def _first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0].strip() if lines else type(exc).__name__


def _number(info: Mapping[str, Any], key: str) -> float | None:
    value = info.get(key)
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


class RedisProbe:
    def __init__(self, target: RedisTarget) -> None:
        self.target = target
        self.timings = PoolTimings()
        self.ping = HistogramAccumulator()
        self._observer = _ConnectObserver(self.timings)
        self._started = time.monotonic()
        self._pool: _TimedPool | None = None
        self._client: Redis | None = None
        self._sentinel: Sentinel | None = None
        self._master: tuple[str, int] | None = None
        self._sentinel_up: bool | None = None

    # --- clients ----------------------------------------------------------------------------
    def _connection_kwargs(self) -> dict[str, Any]:
        timeout = self.target.timeout_seconds
        kwargs: dict[str, Any] = {
            "socket_timeout": timeout,
            "socket_connect_timeout": timeout,
            **_retry_dropped_connection(),
            "client_name": "resilience-exporter",
        }
        tls = self.target.tls
        if tls is not None:
            kwargs |= {
                "ssl_ca_certs": tls.ca_file,
                "ssl_certfile": tls.cert_file,
                "ssl_keyfile": tls.key_file,
                "ssl_cert_reqs": "required" if tls.verify else "none",
                "ssl_check_hostname": tls.verify,
            }
        return kwargs

    def _make_pool(self, address: tuple[str, int] | None) -> _TimedPool:
        """A pool for the URL, or for a master address Sentinel gave."""
        kwargs = self._connection_kwargs()
        username = self.target.username
        if self.target.url is not None:
            url_kwargs: dict[str, Any] = dict(parse_url(self.target.url))
            username = username or url_kwargs.pop("username", None)
            url_kwargs.pop("username", None)
            url_kwargs.pop("password", None)
            base = url_kwargs.pop("connection_class", Connection)
            kwargs |= url_kwargs
        else:
            assert address is not None
            kwargs |= {"host": address[0], "port": address[1]}
            base = SSLConnection if self.target.tls is not None else Connection
        if base is not SSLConnection:
            for key in [k for k in kwargs if k.startswith("ssl_")]:
                del kwargs[key]
        if base is UnixDomainSocketConnection:
            kwargs.pop("socket_connect_timeout", None)
        if username is not None or self.target.resolve_password() is not None:
            kwargs["credential_provider"] = _Credentials(self.target, username)
        pool = _TimedPool(
            max_connections=self.target.pool.max_connections,
            timeout=self.target.timeout_seconds,
            connection_class=self._observer.connection_class(base),
            **kwargs,
        )
        pool.timings = self.timings
        return pool

    def _make_sentinel(self) -> Sentinel:
        config = self.target.sentinel
        assert config is not None
        timeout = self.target.timeout_seconds
        sentinel_kwargs: dict[str, Any] = {
            "socket_timeout": timeout,
            "socket_connect_timeout": timeout,
            **_retry_dropped_connection(),
        }
        if config.username is not None:
            sentinel_kwargs["username"] = config.username
        if config.password is not None:
            sentinel_kwargs["password"] = config.password.get_secret_value()
        hosts = [_split_host_port(h) for h in config.hosts]
        return Sentinel(hosts, sentinel_kwargs=sentinel_kwargs)  # type: ignore[no-untyped-call]

    async def open(self) -> None:
        """Create the clients; nothing connects until the first probe. Safe after close()."""
        if self.target.sentinel is not None:
            if self._sentinel is None:
                self._sentinel = self._make_sentinel()
        elif self._pool is None:
            self._set_pool(self._make_pool(None))

    def _set_pool(self, pool: _TimedPool) -> None:
        self._pool = pool
        self._client = Redis(connection_pool=pool)

    async def _discover_master(self) -> tuple[str, int]:
        """Ask each Sentinel in turn for the service's master (as redis-py's discover_master
        does), remembering whether any of them answered at all."""
        assert self._sentinel is not None
        config = self.target.sentinel
        assert config is not None
        failures: list[BaseException] = []
        answered = False
        found: tuple[str, int] | None = None
        for client in self._sentinel.sentinels:
            try:
                masters = await client.sentinel_masters()
            except redis.exceptions.RedisError as exc:
                failures.append(exc)
                continue
            answered = True
            state = masters.get(config.service) if isinstance(masters, dict) else None
            if state and self._sentinel.check_master_state(state, config.service):
                found = (str(state["ip"]), int(state["port"]))
                break
        self._sentinel_up = answered
        if found is None:
            if not answered:
                raise failures[0]
            raise ProbeError("other", f"Sentinel knows no healthy master for {config.service}")
        if found != self._master or self._pool is None:
            old = self._pool
            self._master = found
            self._set_pool(self._make_pool(found))
            if old is not None:
                await old.disconnect()
        return found

    # --- probing ----------------------------------------------------------------------------
    async def probe(self) -> Sequence[Sample]:
        await self.open()
        self._started = time.monotonic()
        if self._sentinel is not None:
            await self._discover_master()
        client = self._client
        assert client is not None
        start = time.perf_counter()
        await client.ping()
        self.ping.observe(time.perf_counter() - start)
        info: dict[str, Any] = await client.info()
        return self._info_samples(info)

    def _info_samples(self, info: Mapping[str, Any]) -> list[Sample]:
        name = self.target.name
        out: list[Sample] = []
        for key, fam in _INFO_FIELDS:
            value = _number(info, key)
            if value is None:
                raise ProbeError("protocol", f"INFO has no numeric {key}")
            out.append(sample(fam, value, target=name))
        role = _ROLES.get(str(info.get("role", "")))
        if role is None:
            raise ProbeError("protocol", f"unknown replication role {info.get('role')!r}")
        out.append(sample(ROLE, 1, target=name, role=role))
        if role == "replica":
            link_up = 1.0 if info.get("master_link_status") == "up" else 0.0
            out.append(sample(REPLICATION_LINK_UP, link_up, target=name))
        return out

    def local_samples(self) -> Sequence[Sample]:
        name = self.target.name
        in_use, idle = self._pool.stats() if self._pool is not None else (0, 0)
        stats = PoolStats(
            in_use=in_use,
            idle=idle,
            max_size=self.target.pool.max_connections,
            connect_errors=self._observer.errors,
            acquire_errors=self.timings.acquire_failures,
        )
        out = pool_samples(name, "exporter", stats, self.timings)
        out.append(sample(PING_DURATION, self.ping.value(), target=name))
        config = self.target.sentinel
        if config is not None and self._sentinel_up is not None:
            out.append(sample(SENTINEL_UP, 1.0 if self._sentinel_up else 0.0, target=name))
            if self._master is not None:
                host, port = self._master
                address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
                out.append(
                    sample(SENTINEL_MASTER, 1, target=name, service=config.service, address=address)
                )
        return out

    def classify(self, exc: BaseException) -> Failure:
        if (
            isinstance(exc, redis.exceptions.ConnectionError)
            and "no connection available" in str(exc).lower()
        ):
            cause = self._observer.error_since(self._started)
            if cause is not None:
                return classify_redis(cause)
            return Failure("timeout", "no pooled connection within the timeout")
        return classify_redis(exc)

    async def close(self) -> None:
        """Drop every client; open() creates new ones."""
        pool, sentinel = self._pool, self._sentinel
        self._pool = self._client = None
        self._sentinel = None
        self._master = None
        if pool is not None:
            await pool.disconnect()
        if sentinel is not None:
            for client in sentinel.sentinels:
                await client.aclose()


def _from_env_url(url: str) -> Mapping[str, Any]:
    return {"name": "redis", "kind": "redis", "url": url}


def _create(target: RedisTarget) -> RedisProbe:
    return RedisProbe(target)


register_kind(
    KindSpec(
        kind="redis",
        config_model=RedisTarget,
        create=_create,
        env_url_var="REDIS_URL",
        from_env_url=_from_env_url,
    )
)
