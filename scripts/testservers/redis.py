"""Throwaway Redis servers (and a Sentinel) on free loopback ports, from Debian's redis-server."""

from __future__ import annotations

import socket
import subprocess
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Self

import redis

from scripts.testservers.base import (
    ManagedServer,
    ServerError,
    ServerProcess,
    free_port,
    require_binary,
    wait_until,
)

REDIS_SERVER = "/usr/bin/redis-server"


def _quote(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


class RedisServer(ManagedServer):
    """`with RedisServer(password=...) as r:` gives a running Redis that is removed on exit.

    `password` protects the default user (`requirepass`); `acl_users` adds ACL users with
    full rights, as (name, password) pairs; `extra_config` lines are appended to redis.conf
    (`enable-protected-configs local` lets a test `CONFIG SET dir`, for instance).
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
        extra_config: Sequence[str] = (),
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
        lines += extra_config
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
    """A Redis Sentinel (`redis-server <conf> --sentinel`) watching one master as `service`.

    `quorum` Sentinels must agree that the master is down; `down_after_ms` is how long a
    server (master, replica or another Sentinel) may stay silent before it counts as down.
    """

    def __init__(
        self,
        master: RedisServer,
        *,
        service: str = "mymaster",
        quorum: int = 1,
        down_after_ms: int = 30_000,
    ) -> None:
        self.binary = require_binary(REDIS_SERVER, "redis-server")
        self.base = Path(tempfile.mkdtemp(prefix="resilience-sentinel-"))
        self.port = free_port()
        self.service = service
        lines = [
            f"port {self.port}",
            "bind 127.0.0.1",
            f"dir {self.base}",
            f"sentinel monitor {service} 127.0.0.1 {master.port} {quorum}",
            f"sentinel down-after-milliseconds {service} {down_after_ms}",
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


def _cluster_node_port() -> int:
    """A free port whose cluster bus port (the port + 10000) is free too, and exists: Redis
    refuses a cluster node on a port above 55535."""
    for _ in range(200):
        port = free_port()
        if port + 10000 > 65535:
            continue
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.bind(("127.0.0.1", port + 10000))
            except OSError:
                continue
        return port
    raise ServerError("no free loopback port with a free cluster bus port")


class RedisCluster:
    """`with RedisCluster() as cluster:` gives a Redis Cluster of `masters` masters (no
    replicas) on loopback, created with `redis-cli --cluster create` and removed on exit.

    `node_timeout_ms` is `cluster-node-timeout`: how long a silent node takes to be suspected
    (PFAIL) and then, once the other masters agree, failed (FAIL)."""

    def __init__(
        self, *, masters: int = 3, password: str | None = None, node_timeout_ms: int = 1000
    ) -> None:
        self.password = password
        self.nodes = [
            RedisServer(
                password=password,
                port=_cluster_node_port(),
                extra_config=[
                    "cluster-enabled yes",
                    "cluster-config-file nodes.conf",
                    f"cluster-node-timeout {node_timeout_ms}",
                ],
            )
            for _ in range(masters)
        ]

    def start(self, timeout: float = 30.0) -> None:
        for node in self.nodes:
            node.start()
        cli = require_binary("/usr/bin/redis-cli", "redis-tools")
        env = {"REDISCLI_AUTH": self.password} if self.password is not None else {}
        addresses = [f"127.0.0.1:{node.port}" for node in self.nodes]
        subprocess.run(
            [cli, "--cluster", "create", *addresses, "--cluster-yes"],
            check=True, capture_output=True, timeout=timeout, env=env,
        )  # fmt: skip
        wait_until(
            lambda: all(self.state(node) == "ok" for node in self.nodes if node.process.running()),
            timeout=timeout,
            what="every cluster node to report cluster_state:ok",
        )

    @staticmethod
    def state(node: RedisServer) -> str:
        """The node's `cluster_state` (ok or fail); empty when it does not answer."""
        try:
            with node.client() as client:
                info = client.execute_command("CLUSTER", "INFO")
        except redis.RedisError:
            return ""
        text = info.decode() if isinstance(info, bytes) else str(info)
        for line in text.splitlines():
            key, _, value = line.partition(":")
            if key == "cluster_state":
                return value.strip()
        return ""

    def remove(self) -> None:
        for node in self.nodes:
            node.remove()

    def __enter__(self) -> Self:
        try:
            self.start()
        except BaseException:
            self.remove()
            raise
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.remove()
