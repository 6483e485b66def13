"""The exporter's own redis-py clients for one target: a connection pool (TLS, credentials
read at every connection, connects observed) and, with Sentinel, the Sentinel clients that
find the master. `close()` drops them all; `open()` makes new ones."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import redis.exceptions
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

from resilience_exporter.metrics.pool_schema import PoolTimings
from resilience_exporter.probes._common import ConnectObserver
from resilience_exporter.probes.redis.config import RedisTarget, split_host_port
from resilience_exporter.reasons import ProbeError


# A pooled connection the server closed while it sat idle (a restart, a timeout on the server
# side) is replaced once, at once; anything else is not retried: the next probe is the retry.
# Timeouts are never retried, so that a hung server costs one timeout.
# Fresh objects for every client: redis-py updates them in place.
def _retry_dropped_connection() -> dict[str, Any]:
    return {
        "retry": Retry(NoBackoff(), 1, supported_errors=(redis.exceptions.ConnectionError,)),
        "retry_on_error": [redis.exceptions.ConnectionError],
    }


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


def _observed(base: type[AbstractConnection], observer: ConnectObserver) -> type[Any]:
    class _Observed(AbstractConnection):
        # Every way of connecting (the pool's, and a reconnect while sending) ends here. Its
        # arguments passed on as they come: redis-py 6.4 added one.
        async def connect_check_health(self, *args: Any, **kwargs: Any) -> None:
            if self.is_connected:
                return
            await observer.observe(super().connect_check_health(*args, **kwargs))

    return type(f"Observed{base.__name__}", (_Observed, base), {})


class TimedPool(BlockingConnectionPool):
    """Measures acquiring a connection (which includes opening it when none is idle)."""

    timings: PoolTimings

    async def get_connection(self, *args: Any, **kwargs: Any) -> AbstractConnection:
        acquire: Any = super().get_connection  # typed in some redis-py releases, not in others
        with self.timings.timing_acquire():
            connection: AbstractConnection = await acquire(*args, **kwargs)
            return connection

    def stats(self) -> tuple[int, int]:
        """(in use, idle) connections."""
        idle = sum(1 for c in self._available_connections if c.is_connected)
        return len(self._in_use_connections), idle


@dataclass(frozen=True, slots=True)
class SentinelReport:
    """What a Sentinel said about the service besides its master's address."""

    known_sentinels: int  # the answering Sentinel and the others it knows
    known_replicas: int
    quorum: int
    # CKQUORUM: enough Sentinels reachable to agree on a failure and authorise a failover;
    # None when that Sentinel refused the command.
    quorum_reachable: bool | None

    @classmethod
    def from_state(cls, state: dict[str, Any], quorum_reachable: bool | None) -> SentinelReport:
        def count(key: str) -> int:
            value = state.get(key)
            return int(value) if isinstance(value, int | str) and str(value).isdigit() else 0

        return cls(
            known_sentinels=count("num-other-sentinels") + 1,
            known_replicas=count("num-slaves"),
            quorum=count("quorum"),
            quorum_reachable=quorum_reachable,
        )


async def _masters_and_quorum(client: Redis, service: str) -> tuple[Any, bool | None]:
    """SENTINEL MASTERS and SENTINEL CKQUORUM <service>, pipelined: one round trip."""
    async with client.pipeline(transaction=False) as pipe:
        commands: Any = pipe  # redis-py types its commands in some releases, not in others
        commands.sentinel_masters()
        commands.execute_command("SENTINEL", "CKQUORUM", service)
        masters, quorum = await pipe.execute(raise_on_error=False)
    if isinstance(masters, BaseException):
        raise masters
    if not isinstance(quorum, BaseException):
        return masters, True
    # NOQUORUM is Sentinel's answer; anything else (NOPERM, an unknown service) is no answer.
    return masters, (False if str(quorum).startswith("NOQUORUM") else None)


# redis-py gives every client its own table of some 250 reply parsers (about 14 KB); the
# exporter's clients never change theirs, so clients with the same protocol share one table.
_REPLY_PARSERS: dict[tuple[object, object], Any] = {}


def _client(pool: TimedPool) -> Redis:
    client: Redis = Redis(connection_pool=pool)
    kwargs = pool.connection_kwargs
    protocol = (kwargs.get("protocol"), kwargs.get("legacy_responses", True))
    client.response_callbacks = _REPLY_PARSERS.setdefault(protocol, client.response_callbacks)
    return client


class RedisClients:
    def __init__(self, target: RedisTarget, timings: PoolTimings) -> None:
        self.target = target
        self.timings = timings
        self.observer = ConnectObserver(timings)
        self.pool: TimedPool | None = None
        self.client: Redis | None = None
        self.sentinel: Sentinel | None = None
        # What Sentinel said last: the master's address, and whether any Sentinel answered.
        self.master: tuple[str, int] | None = None
        self.sentinel_up: bool | None = None
        self.sentinel_report: SentinelReport | None = None

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
            verify = not tls.insecure_skip_verify
            kwargs |= {
                "ssl_ca_certs": str(tls.ca_file) if tls.ca_file else None,
                "ssl_certfile": str(tls.cert_file) if tls.cert_file else None,
                "ssl_keyfile": str(tls.key_file) if tls.key_file else None,
                "ssl_cert_reqs": "required" if verify else "none",
                "ssl_check_hostname": verify,
            }
        return kwargs

    def _make_pool(self, address: tuple[str, int] | None) -> TimedPool:
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
        kwargs["timeout"] = self.target.timeout_seconds  # a float: some releases say int
        pool = TimedPool(
            max_connections=self.target.pool.max_connections,
            connection_class=_observed(base, self.observer),
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
        hosts = [split_host_port(h) for h in config.hosts]
        # Typed from redis-py 8.2 on, untyped before: called as a plain callable for both.
        make: Callable[..., Sentinel] = Sentinel
        return make(hosts, sentinel_kwargs=sentinel_kwargs)

    def open(self) -> None:
        """Create the clients; nothing connects until they are used. Safe after close()."""
        if self.target.sentinel is not None:
            if self.sentinel is None:
                self.sentinel = self._make_sentinel()
        elif self.pool is None:
            self._set_pool(self._make_pool(None))

    def _set_pool(self, pool: TimedPool) -> None:
        self.pool = pool
        self.client = _client(pool)

    async def discover_master(self) -> tuple[str, int]:
        """Ask each Sentinel in turn for the service's master (as redis-py's discover_master
        does) and, in the same round trip, whether quorum can be reached; remember what the
        first one to answer said, and whether any answered at all. A new master gets a new
        pool."""
        assert self.sentinel is not None
        config = self.target.sentinel
        assert config is not None
        failures: list[BaseException] = []
        answered = False
        found: tuple[str, int] | None = None
        report: SentinelReport | None = None
        for client in self.sentinel.sentinels:
            try:
                masters, quorum = await _masters_and_quorum(client, config.service)
            except redis.exceptions.RedisError as exc:
                failures.append(exc)
                continue
            answered = True
            state = masters.get(config.service) if isinstance(masters, dict) else None
            if report is None and isinstance(state, dict):
                report = SentinelReport.from_state(state, quorum)
            if state and self.sentinel.check_master_state(state, config.service):
                found = (str(state["ip"]), int(state["port"]))
                report = SentinelReport.from_state(state, quorum)
                break
        self.sentinel_up = answered
        self.sentinel_report = report
        if found is None:
            if not answered:
                raise failures[0]
            raise ProbeError("other", f"Sentinel knows no healthy master for {config.service}")
        if found != self.master or self.pool is None:
            old = self.pool
            self.master = found
            self._set_pool(self._make_pool(found))
            if old is not None:
                await old.disconnect()
        return found

    def pool_stats(self) -> tuple[int, int]:
        """(in use, idle) connections of the current pool."""
        return self.pool.stats() if self.pool is not None else (0, 0)

    async def close(self) -> None:
        pool, sentinel = self.pool, self.sentinel
        self.pool = self.client = None
        self.sentinel = None
        self.master = None
        self.sentinel_report = None
        if pool is not None:
            await pool.disconnect()
        if sentinel is not None:
            for client in sentinel.sentinels:
                await client.aclose()
