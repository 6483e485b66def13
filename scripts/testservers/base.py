"""Running real servers from Debian's packages on loopback, as children we hold the PID of.

Servers that refuse root (PostgreSQL, PgBouncer) run as their Debian system user, in a fresh
temporary directory that user owns: the checkout may sit where that user cannot enter.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Self

import psutil


class ServerError(RuntimeError):
    pass


def free_port() -> int:
    """A loopback port free right now (the kernel picks it; we read it back)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.2)
        return sock.connect_ex((host, port)) == 0


def wait_until(
    predicate: Callable[[], bool], *, timeout: float, interval: float = 0.1, what: str = ""
) -> None:
    """Poll `predicate` until it is true; raise after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        if predicate():
            return
        if time.monotonic() > deadline:
            raise ServerError(f"timed out after {timeout:.0f}s waiting for {what or predicate}")
        time.sleep(interval)


def service_user(name: str) -> pwd.struct_passwd | None:
    """The Debian system user to run a root-refusing server as, or None when not root."""
    if os.geteuid() != 0:
        return None
    return pwd.getpwnam(name)


def owned_tempdir(prefix: str, user: pwd.struct_passwd | None) -> Path:
    path = Path(tempfile.mkdtemp(prefix=prefix))
    if user is not None:
        os.chown(path, user.pw_uid, user.pw_gid)
    path.chmod(0o700)
    return path


def chown_tree(path: Path, user: pwd.struct_passwd | None) -> None:
    if user is None:
        return
    for root, dirs, files in os.walk(path):
        for name in (*dirs, *files):
            os.chown(os.path.join(root, name), user.pw_uid, user.pw_gid)
    os.chown(path, user.pw_uid, user.pw_gid)


def run_as(
    argv: Sequence[str], user: pwd.struct_passwd | None, **kwargs: object
) -> subprocess.CompletedProcess[str]:
    if user is not None:
        kwargs |= {"user": user.pw_uid, "group": user.pw_gid, "extra_groups": []}
    return subprocess.run(argv, check=True, capture_output=True, text=True, **kwargs)  # type: ignore[call-overload,no-any-return]


class ServerProcess:
    """A long-running server: started in its own session so that stopping or freezing it
    reaches every process it forked (PostgreSQL's backends, for instance)."""

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        *,
        log_path: Path,
        user: pwd.struct_passwd | None = None,
        cwd: Path | None = None,
        env: Mapping[str, str] | None = None,  # None: this process's environment
    ) -> None:
        self.name = name
        self.argv = list(argv)
        self.log_path = log_path
        self.user = user
        self.cwd = cwd
        self.env = None if env is None else dict(env)
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int:
        if self.proc is None:
            raise ServerError(f"{self.name} is not running")
        return self.proc.pid

    def start(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            raise ServerError(f"{self.name} is already running")
        log = self.log_path.open("ab")
        kwargs: dict[str, object] = {}
        if self.user is not None:
            kwargs = {"user": self.user.pw_uid, "group": self.user.pw_gid, "extra_groups": []}
        self.proc = subprocess.Popen(  # type: ignore[call-overload]
            self.argv,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            cwd=self.cwd,
            env=self.env,
            start_new_session=True,
            **kwargs,
        )
        log.close()

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def signal_group(self, signum: int) -> None:
        if self.running():
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.pid, signum)

    def signal_tree(self, signum: int) -> None:
        """Signal the server and every descendant: PostgreSQL backends call setsid(), so a
        process-group signal would miss them."""
        if not self.running():
            return
        root = psutil.Process(self.pid)
        for proc in [root, *root.children(recursive=True)]:
            with contextlib.suppress(psutil.NoSuchProcess):
                proc.send_signal(signum)

    def freeze(self) -> None:
        self.signal_tree(signal.SIGSTOP)

    def thaw(self) -> None:
        self.signal_tree(signal.SIGCONT)

    def stop(self, signum: int = signal.SIGTERM, timeout: float = 15.0) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.thaw()  # a frozen process cannot act on SIGTERM
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.proc.pid, signum)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.signal_group(signal.SIGKILL)
                self.proc.wait(5)
        # Whatever it forked and left behind goes too.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signal.SIGKILL)

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""


class ManagedServer:
    """A server the harness owns: its process, run from a temporary directory of its own
    that goes with it. Subclasses build `process` and `base`, say when the server is ready to
    serve in `answering()`, and choose how it is stopped."""

    process: ServerProcess
    base: Path
    stop_signal: int = signal.SIGTERM  # a clean stop: the port closes, the files stay
    remove_signal: int = signal.SIGKILL  # removal: nothing to keep, the files go too
    start_timeout: float = 20.0

    def answering(self) -> bool:
        raise NotImplementedError

    def start(self, timeout: float | None = None) -> None:
        self.process.start()
        what = f"{self.process.name} to answer"
        wait_until(self._answering_while_alive, timeout=timeout or self.start_timeout, what=what)

    def _answering_while_alive(self) -> bool:
        if not self.process.running():
            raise ServerError(f"{self.process.name} exited:\n{self.process.log_text()[-2000:]}")
        return self.answering()

    def stop(self) -> None:
        self.process.stop(self.stop_signal)

    def freeze(self) -> None:
        self.process.freeze()

    def thaw(self) -> None:
        self.process.thaw()

    def remove(self) -> None:
        self.process.stop(self.remove_signal)
        shutil.rmtree(self.base, ignore_errors=True)

    def log_text(self) -> str:
        return self.process.log_text()

    def __enter__(self) -> Self:
        try:
            self.start()
        except BaseException:
            self.remove()
            raise
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:  # fmt: skip
        self.remove()


def require_binary(path: str, package: str) -> str:
    found = shutil.which(path) or (path if os.path.exists(path) else None)
    if found is None:
        raise ServerError(
            f"{path} not found: install the Debian package {package} "
            "(scripts/install-servers.sh does)"
        )
    return found
