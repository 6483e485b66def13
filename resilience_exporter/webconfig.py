"""`--web.config.file`: TLS, basic auth, response headers and rate limiting, in the
exporter-toolkit format shared by Prometheus and its exporters, so existing files just work.

Every file exporter-toolkit accepts is accepted, with its meaning (tests/test_web_toolkit.py
runs its own test data); the differences are listed in docs/security.md: the file is re-read on
reload (SIGHUP, POST /-/reload) rather than on every request, `http2` is accepted and ignored
(aiohttp serves HTTP/1.1), and a client certificate whose SAN is not allowed gets 403 on every
request instead of a failed handshake.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import ipaddress
import logging
import os
import re
import ssl
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Literal, Self, get_args

from aiohttp import web
from pydantic import (
    AfterValidator,
    BeforeValidator,
    Field,
    SecretStr,
    ValidationInfo,
    field_validator,
    model_validator,
)

from resilience_exporter import openssl
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
# Go's crypto/tls names (what web config files carry) to OpenSSL's names. The TLS 1.3 suites
# are always on, in Go as in OpenSSL: naming them is allowed and changes nothing.
_CIPHER_SUITES: Mapping[str, str | None] = {
    "TLS_AES_128_GCM_SHA256": None,
    "TLS_AES_256_GCM_SHA384": None,
    "TLS_CHACHA20_POLY1305_SHA256": None,
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
    "CurveP256": "P-256", "CurveP384": "P-384", "CurveP521": "P-521", "X25519": "X25519",
}  # fmt: skip
# The response headers a web config may set, with the values allowed where the header is an
# enumeration (exporter-toolkit's list: the server's own headers cannot be overridden).
ALLOWED_HEADERS: Mapping[str, tuple[str, ...]] = {
    "Content-Security-Policy": (),
    "X-Frame-Options": ("deny", "sameorigin"),
    "X-Content-Type-Options": ("nosniff",),
    "X-XSS-Protection": (),
    "Strict-Transport-Security": (),
}


class WebConfigError(Exception):
    pass


def _only_known(names: list[str], known: Mapping[str, str | None], what: str) -> list[str]:
    unknown = [name for name in names if name not in known]
    if unknown:
        raise ValueError(f"{what}: {', '.join(unknown)}")
    return names


def _blank_is_unset(value: object) -> object:
    """exporter-toolkit reads an empty string as "not set"."""
    return None if value == "" else value


def _client_auth_type(value: object) -> object:
    if value in ("", None):
        return "NoClientCert"
    if value == "RequireClientCert":  # exporter-toolkit's older spelling
        return "RequireAnyClientCert"
    if value not in get_args(ClientAuthType):
        raise ValueError(
            f"invalid client_auth_type {value!r} (one of {', '.join(get_args(ClientAuthType))})"
        )
    return value


def _tls_version(value: object) -> object:
    if value not in _TLS_VERSIONS:
        raise ValueError(f"unknown TLS version {value!r} (one of {', '.join(_TLS_VERSIONS)})")
    return value


def _relative_to_config(value: Path | None, info: ValidationInfo) -> Path | None:
    """Relative file names are resolved against the web config file's directory, as
    exporter-toolkit does, not against the working directory."""
    base = (info.context or {}).get("base_dir")
    if value is None or base is None or value.is_absolute():
        return value
    return Path(base) / value


OptionalText = Annotated[str | None, BeforeValidator(_blank_is_unset)]
OptionalSecret = Annotated[SecretStr | None, BeforeValidator(_blank_is_unset)]
ConfigRelativePath = Annotated[
    Path | None, BeforeValidator(_blank_is_unset), AfterValidator(_relative_to_config)
]
# Settings whose presence switches TLS on (exporter-toolkit's TLSConfig.IsEnabled).
_TLS_SWITCHES = ("cert", "key", "client_ca", "cert_file", "key_file", "client_ca_file")


class TLSServerConfig(StrictModel):
    cert: OptionalText = None
    key: OptionalSecret = None
    client_ca: OptionalText = None
    cert_file: ConfigRelativePath = None
    key_file: ConfigRelativePath = None
    client_auth_type: Annotated[ClientAuthType, BeforeValidator(_client_auth_type)] = "NoClientCert"
    client_ca_file: ConfigRelativePath = None
    client_allowed_sans: list[str] = Field(default_factory=list)
    min_version: Annotated[TLSVersionName, BeforeValidator(_tls_version)] = "TLS12"
    max_version: Annotated[TLSVersionName, BeforeValidator(_tls_version)] = "TLS13"
    cipher_suites: list[str] = Field(default_factory=list)
    prefer_server_cipher_suites: bool = True
    curve_preferences: list[str] = Field(default_factory=list)

    @field_validator("cipher_suites")
    @classmethod
    def _known_suites(cls, suites: list[str]) -> list[str]:
        return _only_known(suites, _CIPHER_SUITES, "unknown cipher suites")

    @field_validator("curve_preferences")
    @classmethod
    def _known_curves(cls, curves: list[str]) -> list[str]:
        return _only_known(curves, _CURVES, "unknown curves")

    @property
    def enabled(self) -> bool:
        """Whether this block asks for TLS at all: a block with only versions or suites
        leaves the server on plain HTTP, as exporter-toolkit does."""
        explicit_auth = "client_auth_type" in self.model_fields_set and (
            self.client_auth_type != "NoClientCert"
        )
        return explicit_auth or any(getattr(self, name) is not None for name in _TLS_SWITCHES)

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if not self.enabled:
            return self
        if self.cert is None and self.cert_file is None:
            raise ValueError("missing one of cert or cert_file")
        if self.key is None and self.key_file is None:
            raise ValueError("missing one of key or key_file")
        for inline, path in (("cert", "cert_file"), ("key", "key_file"),
                             ("client_ca", "client_ca_file")):  # fmt: skip
            if getattr(self, inline) is not None and getattr(self, path) is not None:
                raise ValueError(f"give {inline} or {path}, not both")
        has_ca = self.client_ca is not None or self.client_ca_file is not None
        if has_ca and self.client_auth_type == "NoClientCert":
            raise ValueError(
                "a client CA is configured but client_auth_type is NoClientCert: set "
                "client_auth_type (RequireAndVerifyClientCert to check client certificates)"
            )
        if self.client_allowed_sans and self.client_auth_type == "NoClientCert":
            raise ValueError(
                "client_allowed_sans needs a client_auth_type that asks for a certificate"
            )
        if _TLS_VERSIONS[self.min_version] > _TLS_VERSIONS[self.max_version]:
            raise ValueError("min_version is above max_version")
        return self


def _header_value(value: object) -> object:
    """A YAML scalar that is not a string (`X-XSS-Protection: 1`) is its text, as Go's YAML
    decoder gives it to exporter-toolkit."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    return value


HeaderValue = Annotated[str, BeforeValidator(_header_value)]


class HTTPServerConfig(StrictModel):
    # Accepted for compatibility; this server speaks HTTP/1.1 only (docs/security.md).
    http2: bool = True
    headers: dict[str, HeaderValue] = Field(default_factory=dict)

    @field_validator("headers")
    @classmethod
    def _allowed_headers(cls, headers: dict[str, str]) -> dict[str, str]:
        for name, value in headers.items():
            if name not in ALLOWED_HEADERS:
                raise ValueError(
                    f"HTTP header {name!r} can not be configured "
                    f"(allowed: {', '.join(ALLOWED_HEADERS)})"
                )
            allowed = ALLOWED_HEADERS[name]
            if allowed and value and value not in allowed:
                raise ValueError(
                    f"invalid value for {name}: expected one of {', '.join(allowed)}, got {value!r}"
                )
        return headers


_GO_DURATION = re.compile(r"^(?:\d+(?:\.\d*)?|\.\d+)(?:ns|us|µs|ms|s|m|h)")
_GO_UNIT_SECONDS = {
    "ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0,
}  # fmt: skip


def _go_duration(text: str) -> float | None:
    """Go's time.ParseDuration (what exporter-toolkit's YAML gives rate_limit.interval):
    `1s`, `1.5s`, `1m30s`, `250ms`; None if `text` is not one."""
    rest, total = text, 0.0
    while rest:
        match = _GO_DURATION.match(rest)
        if match is None:
            return None
        number = re.match(r"[\d.]+", match.group(0))
        assert number is not None
        total += float(number.group(0)) * _GO_UNIT_SECONDS[match.group(0)[number.end() :]]
        rest = rest[match.end() :]
    return total if text else None


def _rate_interval(value: object) -> float:
    if value in (0, "0", "0s"):
        return 0.0  # exporter-toolkit's way of switching the limiter off
    if isinstance(value, str):
        seconds = _go_duration(value)
        if seconds is not None:
            return seconds
    return parse_duration(value)


class RateLimit(StrictModel):
    interval: Annotated[float, BeforeValidator(_rate_interval)] = 0.0
    burst: int = Field(0, ge=0)


def _bcrypt_hash(value: SecretStr) -> SecretStr:
    if not value.get_secret_value().startswith(("$2a$", "$2b$", "$2y$")):
        raise ValueError("not a bcrypt hash (see docs/security.md for making one)")
    return value


BcryptHash = Annotated[SecretStr, AfterValidator(_bcrypt_hash)]


def _tls_only_if_enabled(value: TLSServerConfig | None) -> TLSServerConfig | None:
    return value if value is not None and value.enabled else None


class WebConfig(StrictModel):
    # None unless the block switches TLS on (a certificate, a key, a client CA or auth type).
    tls_server_config: Annotated[TLSServerConfig | None, AfterValidator(_tls_only_if_enabled)] = (
        None
    )
    http_server_config: HTTPServerConfig = Field(default_factory=HTTPServerConfig)
    basic_auth_users: dict[str, BcryptHash] = Field(default_factory=dict)
    rate_limit: RateLimit = Field(default_factory=RateLimit)


def load_web_config(path: Path) -> WebConfig:
    config = parse_model(WebConfig, read_text(path), str(path), context={"base_dir": path.parent})
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
    for setting in ("cert_file", "key_file", "client_ca_file"):
        path = getattr(tls, setting)
        try:
            if path is not None:
                path.read_bytes()
        except OSError as exc:
            what = "TLS client CA" if setting == "client_ca_file" else "TLS certificate or key"
            raise WebConfigError(f"{what}: {setting} {path}: {exc.strerror}") from None
    key = tls.key.get_secret_value() if tls.key is not None else None
    try:
        with _pem_file(tls.cert, tls.cert_file) as cert, _pem_file(key, tls.key_file) as keyfile:
            assert cert is not None
            ctx.load_cert_chain(cert, keyfile)
    except (OSError, ssl.SSLError) as exc:
        raise WebConfigError(f"TLS certificate or key: {exc}") from None
    try:
        with _pem_file(tls.client_ca, tls.client_ca_file) as ca:
            if ca is not None:
                ctx.load_verify_locations(cafile=ca)
            elif tls.client_auth_type in ("VerifyClientCertIfGiven", "RequireAndVerifyClientCert"):
                # Go verifies against the system's roots when no client CA is given.
                ctx.load_default_certs(ssl.Purpose.CLIENT_AUTH)
    except (OSError, ssl.SSLError) as exc:
        raise WebConfigError(f"TLS client CA: {exc}") from None
    _set_client_auth(ctx, tls.client_auth_type)
    suites = [_CIPHER_SUITES[s] for s in tls.cipher_suites]
    up_to_tls12 = [name for name in suites if name is not None]
    if up_to_tls12:
        ctx.set_ciphers(":".join(up_to_tls12))
    if tls.prefer_server_cipher_suites:
        ctx.options |= ssl.OP_CIPHER_SERVER_PREFERENCE
    else:
        ctx.options &= ~ssl.OP_CIPHER_SERVER_PREFERENCE
    if tls.curve_preferences:
        try:
            openssl.set_groups(ctx, [_CURVES[c] for c in tls.curve_preferences])
        except (openssl.OpenSSLUnavailableError, ssl.SSLError) as exc:
            raise WebConfigError(f"curve_preferences: {exc}") from None
    return ctx


def _set_client_auth(ctx: ssl.SSLContext, auth: ClientAuthType) -> None:
    """Go's client auth types: Request and RequireAny take any certificate unverified, the
    Verify ones check it against the client CAs."""
    if auth == "NoClientCert":
        ctx.verify_mode = ssl.CERT_NONE
        return
    try:
        openssl.set_client_verification(
            ctx,
            require=auth in ("RequireAnyClientCert", "RequireAndVerifyClientCert"),
            verify=auth in ("VerifyClientCertIfGiven", "RequireAndVerifyClientCert"),
        )
    except openssl.OpenSSLUnavailableError as exc:
        raise WebConfigError(f"client_auth_type {auth}: {exc}") from None


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
        if allowed_sans and not _san_allowed(_peer_sans(request), allowed_sans):
            return web.Response(status=403, text="client certificate SAN not allowed\n")
        if config.basic_auth_users:
            user = await self._auth.check(
                request.headers.get("Authorization"), config.basic_auth_users
            )
            if user is None:
                return web.Response(
                    status=401, text="Unauthorized\n",
                    headers={"WWW-Authenticate": 'Basic realm="resilience-exporter"'},
                )  # fmt: skip
        return await handler(request)
