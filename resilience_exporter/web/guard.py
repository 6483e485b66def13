"""The request path's guard: rate limit, client certificate SANs, basic auth and response
headers, applied to every request from the current web config (exporter-toolkit's
`handler.go`)."""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import time
from collections.abc import Awaitable, Callable, Mapping

from aiohttp import web
from pydantic import (
    SecretStr,
)

from resilience_exporter.web.tls import peer_sans, san_allowed
from resilience_exporter.web.webconfig import WebConfig


class BasicAuthCheck:
    """bcrypt is slow on purpose (~70 ms at cost 10): outcomes are cached by a digest of user,
    password and hash, as exporter-toolkit does, and checks run off-loop. An unknown user is
    checked against a fixed hash too, so that timing does not tell which users exist."""

    _CACHE_LIMIT = 1024
    # bcrypt of a random password nobody knows, at the cost exporter-toolkit's docs suggest.
    _UNKNOWN_USER_HASH = "$2b$10$naXXaAmC.Hf.quhSnIwZHeMm5Kx2VJA6oud.Z.gsTcKiImojtBW2C"

    def __init__(self) -> None:
        self._outcomes: dict[bytes, bool] = {}

    @staticmethod
    def _key(user: str, password: str, hashed: str) -> bytes:
        digest = hashlib.sha256()
        for part in (user, password, hashed):  # length-prefixed: no two triples collide
            encoded = part.encode()
            digest.update(len(encoded).to_bytes(8, "big") + encoded)
        return digest.digest()

    async def check(self, header: str | None, users: Mapping[str, SecretStr]) -> str | None:
        """The authenticated user, or None."""
        if not header or not header.startswith("Basic "):
            return None
        try:
            decoded = base64.b64decode(header[6:], validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            return None
        user, sep, password = decoded.partition(":")
        if not sep:
            return None
        known = users.get(user)
        hashed = known.get_secret_value() if known is not None else self._UNKNOWN_USER_HASH
        key = self._key(user, password, hashed)
        ok = self._outcomes.get(key)
        if ok is None:
            import bcrypt  # loaded only where basic auth is configured

            ok = await asyncio.to_thread(bcrypt.checkpw, password.encode(), hashed.encode())
            if len(self._outcomes) >= self._CACHE_LIMIT:
                self._outcomes.clear()
            self._outcomes[key] = ok
        return user if ok and known is not None else None


class TokenBucket:
    def __init__(self, interval: float, burst: int) -> None:
        self.interval = interval
        self.burst = max(burst, 1)
        self._tokens = float(self.burst)
        self._at = time.monotonic()

    def take(self) -> bool:
        now = time.monotonic()
        self._tokens = min(self.burst, self._tokens + (now - self._at) / self.interval)
        self._at = now
        if self._tokens >= 1:
            self._tokens -= 1
            return True
        return False


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class WebGuard:
    """Applies the current web config to every request: rate limit, client certificate SANs,
    basic auth, response headers. The health checks (`unauthenticated_paths`) skip the rate
    limit, SAN and basic auth checks: a kubelet or load balancer has no credentials, must not
    lose to scrapes for the rate limit, and the checks tell nothing but "alive" or "ready".
    Swapping `config` takes effect on the next request."""

    def __init__(self, config: WebConfig, *, unauthenticated_paths: frozenset[str]) -> None:
        self.unauthenticated_paths = unauthenticated_paths
        self._auth = BasicAuthCheck()
        self.config = config

    @property
    def config(self) -> WebConfig:
        return self._config

    @config.setter
    def config(self, config: WebConfig) -> None:
        self._config = config
        limit = config.rate_limit
        self._bucket = TokenBucket(limit.interval, limit.burst) if limit.interval > 0 else None

    async def add_headers(self, request: web.Request, response: web.StreamResponse) -> None:
        """An `on_response_prepare` signal, so that streamed responses, which send their
        headers before the handler returns, carry the configured headers too."""
        for name, value in self._config.http_server_config.headers.items():
            if value:
                response.headers[name] = value

    @web.middleware
    async def middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        config = self._config
        if request.path in self.unauthenticated_paths:
            return await handler(request)
        if self._bucket is not None and not self._bucket.take():
            return web.Response(status=429, text="Too Many Requests\n")
        tls = config.tls_server_config
        allowed_sans = tls.client_allowed_sans if tls is not None else []
        if allowed_sans and not san_allowed(peer_sans(request), allowed_sans):
            return web.Response(status=403, text="client certificate SAN not allowed\n")
        if config.basic_auth_users:
            user = await self._auth.check(
                request.headers.get("Authorization"), config.basic_auth_users
            )
            if user is None:
                return web.Response(
                    status=401,
                    text="Unauthorized\n",
                    headers={"WWW-Authenticate": 'Basic realm="resilience-exporter"'},
                )
        return await handler(request)
