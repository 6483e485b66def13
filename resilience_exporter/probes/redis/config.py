"""A Redis target's configuration: a URL (redis://, rediss://, unix://) or Sentinel."""

from __future__ import annotations

from typing import Any, Literal, Self
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit, urlunsplit

from pydantic import Field, model_validator
from redis.asyncio.connection import SSLConnection, parse_url

from resilience_exporter.configuration.models import StrictModel, TLSClientConfig
from resilience_exporter.configuration.secrets import PasswordSource, Secret, remember
from resilience_exporter.configuration.targets import TargetConfig


class RedisPoolConfig(StrictModel):
    max_connections: int = Field(2, ge=1, le=100)


def split_host_port(address: str) -> tuple[str, int]:
    host, sep, port = address.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise ValueError(f"{address!r}: sentinel hosts are host:port")
    return host.strip("[]"), int(port)


def host_port(host: str, port: object) -> str:
    """The address as host:port, an IPv6 host in brackets: split_host_port's inverse."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


class SentinelConfig(StrictModel):
    hosts: list[str] = Field(min_length=1)
    service: str = Field(min_length=1)
    # Sentinel's own credentials, when it has `requirepass` (they differ from the master's).
    username: str | None = None
    password: Secret | None = None

    @model_validator(mode="after")
    def _host_ports(self) -> Self:
        for host in self.hosts:
            split_host_port(host)
        return self


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
    tls: TLSClientConfig | None = None
    pool: RedisPoolConfig = Field(default_factory=RedisPoolConfig)
    sentinel: SentinelConfig | None = None
    # Redis Cluster state (CLUSTER INFO): unset, asked whenever INFO says cluster_enabled;
    # true, asked from the first probe and the target is down if the server is no cluster
    # node; false, never asked.
    cluster: bool | None = None

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
        if self.sentinel is not None and self.cluster:
            raise ValueError("cluster: true needs a url: Redis Cluster does not use Sentinel")
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
