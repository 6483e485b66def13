"""`--web.config.file`: TLS, basic auth, response headers and rate limiting, in the
exporter-toolkit format shared by Prometheus and its exporters, so existing files just work.

Differences from exporter-toolkit, documented in docs/security.md: the file is re-read on
reload (SIGHUP, POST /-/reload) rather than on every request; `http2` is accepted and ignored
(aiohttp serves HTTP/1.1); `curve_preferences` uses its first curve only (OpenSSL via Python
takes a single ECDH curve).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import ipaddress
import logging
import os
import ssl
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Literal, Self

import bcrypt
from aiohttp import web
from pydantic import (
    AfterValidator,
    BeforeValidator,
    Field,
    SecretStr,
    field_validator,
    model_validator,
)

from resilience_exporter.models import StrictModel, parse_duration
from resilience_exporter.yamlfile import parse_model, read_text

log = logging.getLogger(__name__)

ClientAuthType = Literal[
    "NoClientCert", "RequestClientCert", "RequireAnyClientCert", "VerifyClientCertIfGiven",
    "RequireAndVerifyClientCert",
]  # fmt: skip
TLSVersionName = Literal["TLS10", "TLS11", "TLS12", "TLS13"]
_TLS_VERSIONS: Mapping[str, ssl.TLSVersion] = {
    "TLS10": ssl.TLSVersion.TLSv1,
    "TLS11": ssl.TLSVersion.TLSv1_1,
    "TLS12": ssl.TLSVersion.TLSv1_2,
    "TLS13": ssl.TLSVersion.TLSv1_3,
}
# Go's crypto/tls names (what web config files carry) to OpenSSL's names.
_CIPHER_SUITES: Mapping[str, str] = {
    "TLS_RSA_WITH_AES_128_CBC_SHA": "AES128-SHA",
    "TLS_RSA_WITH_AES_256_CBC_SHA": "AES256-SHA",
    "TLS_RSA_WITH_AES_128_GCM_SHA256": "AES128-GCM-SHA256",
    "TLS_RSA_WITH_AES_256_GCM_SHA384": "AES256-GCM-SHA384",
    "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA": "ECDHE-ECDSA-AES128-SHA",
    "TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA": "ECDHE-ECDSA-AES256-SHA",
    "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA": "ECDHE-RSA-AES128-SHA",
    "TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA": "ECDHE-RSA-AES256-SHA",
    "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256": "ECDHE-ECDSA-AES128-GCM-SHA256",
    "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256": "ECDHE-RSA-AES128-GCM-SHA256",
    "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384": "ECDHE-ECDSA-AES256-GCM-SHA384",
    "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384": "ECDHE-RSA-AES256-GCM-SHA384",
    "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256": "ECDHE-RSA-CHACHA20-POLY1305",
    "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256": "ECDHE-ECDSA-CHACHA20-POLY1305",
}
_CURVES: Mapping[str, str] = {
    "CurveP256": "prime256v1", "CurveP384": "secp384r1", "CurveP521": "secp521r1",
    "X25519": "X25519",
}  # fmt: skip
ALLOWED_HEADERS = (
    "Content-Security-Policy", "X-Frame-Options", "X-Content-Type-Options", "X-XSS-Protection",
    "Strict-Transport-Security",
)  # fmt: skip


class WebConfigError(Exception):
    pass


def _only_known(names: list[str], known: Mapping[str, str], what: str) -> list[str]:
    unknown = [name for name in names if name not in known]
    if unknown:
        raise ValueError(f"{what}: {', '.join(unknown)}")
    return names


class TLSServerConfig(StrictModel):
    cert: str | None = None
    key: SecretStr | None = None
    client_ca: str | None = None
    cert_file: Path | None = None
    key_file: Path | None = None
    client_auth_type: ClientAuthType = "NoClientCert"
    client_ca_file: Path | None = None
    client_allowed_sans: list[str] = Field(default_factory=list)
    min_version: TLSVersionName = "TLS12"
    max_version: TLSVersionName = "TLS13"
    cipher_suites: list[str] = Field(default_factory=list)
    prefer_server_cipher_suites: bool = True
    curve_preferences: list[str] = Field(default_factory=list)

    @field_validator("cipher_suites")
    @classmethod
    def _known_suites(cls, suites: list[str]) -> list[str]:
        return _only_known(suites, _CIPHER_SUITES, "unsupported cipher suites")

    @field_validator("curve_preferences")
    @classmethod
    def _known_curves(cls, curves: list[str]) -> list[str]:
        return _only_known(curves, _CURVES, "unsupported curves")

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if (self.cert is None) == (self.cert_file is None):
            raise ValueError("give exactly one of cert and cert_file")
        if (self.key is None) == (self.key_file is None):
            raise ValueError("give exactly one of key and key_file")
        if self.client_ca is not None and self.client_ca_file is not None:
            raise ValueError("give client_ca or client_ca_file, not both")
        needs_ca = self.client_auth_type in (
            "VerifyClientCertIfGiven",
            "RequireAndVerifyClientCert",
        )
        if needs_ca and self.client_ca is None and self.client_ca_file is None:
            raise ValueError(f"client_auth_type {self.client_auth_type} needs client_ca_file")
        if self.client_allowed_sans and self.client_auth_type not in (
            "RequireAnyClientCert", "RequireAndVerifyClientCert",
        ):  # fmt: skip
            raise ValueError("client_allowed_sans needs a client_auth_type that requires a cert")
        if _TLS_VERSIONS[self.min_version] > _TLS_VERSIONS[self.max_version]:
            raise ValueError("min_version is above max_version")
        return self


class HTTPServerConfig(StrictModel):
    http2: bool = True
    headers: dict[str, str] = Field(default_factory=dict)

    @field_validator("headers")
    @classmethod
    def _known_headers(cls, headers: dict[str, str]) -> dict[str, str]:
        unknown = [h for h in headers if h not in ALLOWED_HEADERS]
        if unknown:
            raise ValueError(f"headers not allowed: {', '.join(unknown)}")
        return headers


def _rate_interval(value: object) -> float:
    if value in (0, "0", "0s"):
        return 0.0  # exporter-toolkit's way of switching the limiter off
    return parse_duration(value)


class RateLimit(StrictModel):
    interval: Annotated[float, BeforeValidator(_rate_interval)] = 0.0
    burst: int = Field(0, ge=0)


def _bcrypt_hash(value: SecretStr) -> SecretStr:
    if not value.get_secret_value().startswith(("$2a$", "$2b$", "$2y$")):
        raise ValueError("not a bcrypt hash (see docs/security.md for making one)")
    return value


BcryptHash = Annotated[SecretStr, AfterValidator(_bcrypt_hash)]


class WebConfig(StrictModel):
    tls_server_config: TLSServerConfig | None = None
    http_server_config: HTTPServerConfig = Field(default_factory=HTTPServerConfig)
    basic_auth_users: dict[str, BcryptHash] = Field(default_factory=dict)
    rate_limit: RateLimit = Field(default_factory=RateLimit)


def load_web_config(path: Path) -> WebConfig:
    config = parse_model(WebConfig, read_text(path), str(path))
    if config.tls_server_config is not None:
        build_ssl_context(config.tls_server_config)  # unreadable files fail now, not later
    return config


@contextmanager
def _pem_file(inline: str | None, path: Path | None) -> Iterator[str | None]:
    """`ssl` loads certificates from files only: inline PEM goes through a private temp file."""
    if inline is None:
        yield str(path) if path is not None else None
        return
    fd, name = tempfile.mkstemp(prefix="resilience-tls-")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(inline)
        yield name
    finally:
        os.unlink(name)


def build_ssl_context(
    tls: TLSServerConfig, context: ssl.SSLContext | None = None
) -> ssl.SSLContext:
    """A new server context, or `context` reloaded in place (so a running listener picks up
    renewed certificates for its next connections)."""
    ctx = context or ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = _TLS_VERSIONS[tls.min_version]
    ctx.maximum_version = _TLS_VERSIONS[tls.max_version]
    key = tls.key.get_secret_value() if tls.key is not None else None
    try:
        with _pem_file(tls.cert, tls.cert_file) as cert, _pem_file(key, tls.key_file) as keyfile:
            assert cert is not None
            ctx.load_cert_chain(cert, keyfile)
        with _pem_file(tls.client_ca, tls.client_ca_file) as ca:
            if ca is not None:
                ctx.load_verify_locations(cafile=ca)
    except (OSError, ssl.SSLError) as exc:
        raise WebConfigError(f"TLS certificate or key: {exc}") from None
    ctx.verify_mode = {
        "NoClientCert": ssl.CERT_NONE,
        "RequestClientCert": ssl.CERT_OPTIONAL,
        "VerifyClientCertIfGiven": ssl.CERT_OPTIONAL,
        "RequireAnyClientCert": ssl.CERT_REQUIRED,
        "RequireAndVerifyClientCert": ssl.CERT_REQUIRED,
    }[tls.client_auth_type]
    if tls.cipher_suites:
        ctx.set_ciphers(":".join(_CIPHER_SUITES[s] for s in tls.cipher_suites))
    if tls.prefer_server_cipher_suites:
        ctx.options |= ssl.OP_CIPHER_SERVER_PREFERENCE
    if tls.curve_preferences:
        ctx.set_ecdh_curve(_CURVES[tls.curve_preferences[0]])
    return ctx


def _peer_sans(request: web.Request) -> set[str]:
    cert = request.transport.get_extra_info("peercert") if request.transport else None
    if not cert:
        return set()
    return {str(value) for _kind, value in cert.get("subjectAltName", ())}


def _san_allowed(sans: set[str], allowed: list[str]) -> bool:
    for entry in allowed:
        if entry in sans:
            return True
        try:  # an IP written differently (::1 vs 0:0:...:1) is still the same IP
            ip = ipaddress.ip_address(entry)
        except ValueError:
            continue
        if any(_same_ip(ip, san) for san in sans):
            return True
    return False


def _same_ip(ip: ipaddress.IPv4Address | ipaddress.IPv6Address, san: str) -> bool:
    try:
        return ipaddress.ip_address(san.strip()) == ip
    except ValueError:
        return False


class BasicAuth:
    """bcrypt is slow on purpose (~70 ms at cost 10): verified credentials are cached by a
    digest of user, password and hash, as exporter-toolkit does, and checks run off-loop."""

    _CACHE_LIMIT = 1024

    def __init__(self) -> None:
        self._verified: set[bytes] = set()

    @staticmethod
    def _key(user: str, password: str, hashed: str) -> bytes:
        return hashlib.sha256(f"{user}\0{password}\0{hashed}".encode()).digest()

    async def check(self, header: str | None, users: Mapping[str, SecretStr]) -> str | None:
        """The authenticated user, or None."""
        if not header or not header.startswith("Basic "):
            return None
        try:
            decoded = base64.b64decode(header[6:], validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            return None
        user, sep, password = decoded.partition(":")
        hashed = users.get(user)
        if not sep or hashed is None:
            return None
        key = self._key(user, password, hashed.get_secret_value())
        if key in self._verified:
            return user
        ok = await asyncio.to_thread(
            bcrypt.checkpw, password.encode(), hashed.get_secret_value().encode()
        )
        if not ok:
            return None
        if len(self._verified) >= self._CACHE_LIMIT:
            self._verified.clear()
        self._verified.add(key)
        return user


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
    basic auth, response headers. Swapping `config` takes effect on the next request."""

    def __init__(self, config: WebConfig, *, unauthenticated_paths: frozenset[str]) -> None:
        self.unauthenticated_paths = unauthenticated_paths
        self._auth = BasicAuth()
        self.config = config

    @property
    def config(self) -> WebConfig:
        return self._config

    @config.setter
    def config(self, config: WebConfig) -> None:
        self._config = config
        limit = config.rate_limit
        self._bucket = TokenBucket(limit.interval, limit.burst) if limit.interval > 0 else None

    @web.middleware
    async def middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        config = self._config
        response = await self._guard(request, handler, config)
        for name, value in config.http_server_config.headers.items():
            if value:
                response.headers[name] = value
        return response

    async def _guard(
        self, request: web.Request, handler: Handler, config: WebConfig
    ) -> web.StreamResponse:
        if self._bucket is not None and not self._bucket.take():
            return web.Response(status=429, text="Too Many Requests\n")
        tls = config.tls_server_config
        allowed_sans = tls.client_allowed_sans if tls is not None else []
        if allowed_sans and not _san_allowed(_peer_sans(request), allowed_sans):
            return web.Response(status=403, text="client certificate SAN not allowed\n")
        if config.basic_auth_users and request.path not in self.unauthenticated_paths:
            user = await self._auth.check(
                request.headers.get("Authorization"), config.basic_auth_users
            )
            if user is None:
                return web.Response(
                    status=401, text="Unauthorized\n",
                    headers={"WWW-Authenticate": 'Basic realm="resilience-exporter"'},
                )  # fmt: skip
        return await handler(request)
