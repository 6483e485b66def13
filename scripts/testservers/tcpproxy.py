"""A counting TCP proxy on loopback: every connection it accepts is counted, then piped to
the upstream port. Tests put it in front of a server to count a client's connection attempts,
including those that fail because the upstream is down (the client is then disconnected)."""

from __future__ import annotations

import contextlib
import socket
import threading
from types import TracebackType
from typing import Self

_CHUNK = 65536


class CountingProxy:
    """`with CountingProxy(upstream_port=p) as proxy:` listens on `proxy.port`."""

    def __init__(self, *, upstream_port: int, upstream_host: str = "127.0.0.1") -> None:
        self.upstream = (upstream_host, upstream_port)
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._listener.getsockname()[1]
        self._lock = threading.Lock()
        self._accepted = 0
        self._open_sockets: set[socket.socket] = set()
        self._stopping = threading.Event()
        self._acceptor = threading.Thread(
            target=self._accept_loop, name="proxy-accept", daemon=True
        )

    @property
    def accepted(self) -> int:
        """Connections accepted since the proxy started."""
        with self._lock:
            return self._accepted

    def start(self) -> Self:
        self._acceptor.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        with contextlib.suppress(OSError):
            self._listener.shutdown(socket.SHUT_RDWR)
        self._listener.close()
        self._acceptor.join(timeout=5)
        with self._lock:
            sockets = list(self._open_sockets)
        for sock in sockets:
            _close(sock)

    def _accept_loop(self) -> None:
        while not self._stopping.is_set():
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            with self._lock:
                self._accepted += 1
            threading.Thread(
                target=self._connect_upstream, args=(client,), name="proxy-conn", daemon=True
            ).start()

    def _connect_upstream(self, client: socket.socket) -> None:
        try:
            upstream = socket.create_connection(self.upstream, timeout=5)
        except OSError:
            _close(client)  # what the client sees of a refused upstream
            return
        upstream.settimeout(None)
        with self._lock:
            self._open_sockets.update((client, upstream))
        threading.Thread(
            target=self._pipe, args=(upstream, client), name="proxy-pipe", daemon=True
        ).start()
        self._pipe(client, upstream)

    def _pipe(self, source: socket.socket, sink: socket.socket) -> None:
        try:
            while chunk := source.recv(_CHUNK):
                sink.sendall(chunk)
        except OSError:
            pass
        finally:
            for sock in (source, sink):
                with self._lock:
                    self._open_sockets.discard(sock)
                _close(sock)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def _close(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
    sock.close()
