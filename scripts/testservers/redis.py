"""Throwaway Redis servers (and a Sentinel) on free loopback ports, from Debian's redis-server."""

from __future__ import annotations

import subprocess
import tempfile
from collections.abc import Sequence
from pathlib import Path

import redis

from scripts.testservers.base import (
    ManagedServer,
    ServerProcess,
    free_port,
    require_binary,
)

REDIS_SERVER = "/usr/bin/redis-server"


def _quote(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


class RedisServer(ManagedServer):
    """`with RedisServer(password=...) as r:` gives a running Redis that is removed on exit.

    `password` protects the default user (`requirepass`); `acl_users` adds ACL users with
    full rights, as (name, password) pairs.
    """

    def __init__(
        self,
        *,
        password: str | None = None,
        acl_users: Sequence[tuple[str, str]] = (),
        maxmemory: int = 0,
        maxclients: int = 1000,
        replica_of: RedisServer | None = None,
        port: int | None = None,
        tls: bool = False,
    ) -> None:
        self.binary = require_binary(REDIS_SERVER, "redis-server")
        self.base = Path(tempfile.mkdtemp(prefix="resilience-redis-"))
        self.port = port or free_port()
        self.password = password
        lines = [
            f"port {self.port}",
            "bind 127.0.0.1",
            'save ""',
            "appendonly no",
            f"dir {self.base}",
            f"maxmemory {maxmemory}",
            f"maxclients {maxclients}",
            f"unixsocket {self.base / 'redis.sock'}",
            "unixsocketperm 700",
        ]
        self.tls_port: int | None = None
        if tls:
            self.tls_port = free_port()
            self._make_certificate()
            lines += [
                f"tls-port {self.tls_port}",
                f"tls-cert-file {self.cert_file}",
                f"tls-key-file {self.base / 'key.pem'}",
                f"tls-ca-cert-file {self.cert_file}",
                "tls-auth-clients no",
            ]
        if password is not None:
            lines.append(f"requirepass {_quote(password)}")
        for name, user_password in acl_users:
            lines.append(f"user {name} on >{user_password} ~* &* +@all")
        if replica_of is not None:
            lines.append(f"replicaof 127.0.0.1 {replica_of.port}")
            if replica_of.password is not None:
                lines.append(f"masterauth {_quote(replica_of.password)}")
        self.conf = self.base / "redis.conf"
        self.conf.write_text("\n".join(lines) + "\n")
        self.process = ServerProcess(
            "redis", [self.binary, str(self.conf)], log_path=self.base / "redis.log"
        )

    @property
    def cert_file(self) -> Path:
        """The self-signed certificate (for 127.0.0.1), also the CA file to verify it with."""
        return self.base / "cert.pem"

    def _make_certificate(self) -> None:
        openssl = require_binary("openssl", "openssl")
        subprocess.run(
            [openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
             "-keyout", str(self.base / "key.pem"), "-out", str(self.cert_file),
             "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"],
            check=True, capture_output=True,
        )  # fmt: skip

    def client(self) -> redis.Redis:
        return redis.Redis(
            host="127.0.0.1", port=self.port, password=self.password, socket_timeout=5
        )

    @property
    def socket_path(self) -> Path:
        return self.base / "redis.sock"

    def url(self, user: str = "", password: str | None = None) -> str:
        auth = f"{user}:{password}@" if password is not None else (f"{user}@" if user else "")
        return f"redis://{auth}127.0.0.1:{self.port}/0"

    def answering(self) -> bool:
        try:
            with self.client() as client:
                return bool(client.ping())
        except redis.RedisError:
            return False


class SentinelServer(ManagedServer):
    """A Redis Sentinel (`redis-server <conf> --sentinel`) watching one master as `service`."""

    def __init__(self, master: RedisServer, *, service: str = "mymaster") -> None:
        self.binary = require_binary(REDIS_SERVER, "redis-server")
        self.base = Path(tempfile.mkdtemp(prefix="resilience-sentinel-"))
        self.port = free_port()
        self.service = service
        lines = [
            f"port {self.port}",
            "bind 127.0.0.1",
            f"dir {self.base}",
            f"sentinel monitor {service} 127.0.0.1 {master.port} 1",
        ]
        if master.password is not None:
            lines.append(f"sentinel auth-pass {service} {_quote(master.password)}")
        # Sentinel rewrites its configuration file, so it must be writable and its own.
        self.conf = self.base / "sentinel.conf"
        self.conf.write_text("\n".join(lines) + "\n")
        self.process = ServerProcess(
            "sentinel",
            [self.binary, str(self.conf), "--sentinel"],
            log_path=self.base / "sentinel.log",
        )

    def answering(self) -> bool:
        try:
            with redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=5) as client:
                found = client.execute_command("SENTINEL", "get-master-addr-by-name", self.service)
                return bool(found)
        except redis.RedisError:
            return False
