"""`--web.config.file`: TLS, basic auth, response headers and rate limiting, in the
exporter-toolkit format shared by Prometheus and its exporters, so existing files just work.

Every file exporter-toolkit accepts is accepted, with its meaning (tests/web/test_web_toolkit.py
runs its own test data); the differences are listed in docs/security.md: the file is re-read on
reload (SIGHUP, POST /-/reload) rather than on every request, `http2` is accepted and ignored
(aiohttp serves HTTP/1.1), and a client certificate whose SAN is not allowed gets 403 on every
request instead of a failed handshake.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated

from pydantic import (
    AfterValidator,
    BeforeValidator,
    Field,
    SecretStr,
    field_validator,
)

from resilience_exporter.configuration.models import StrictModel, parse_duration
from resilience_exporter.configuration.yamlfile import parse_model, read_text
from resilience_exporter.web.tls import TLSServerConfig, build_ssl_context

ALLOWED_HEADERS: Mapping[str, tuple[str, ...]] = {
    "Content-Security-Policy": (),
    "X-Frame-Options": ("deny", "sameorigin"),
    "X-Content-Type-Options": ("nosniff",),
    "X-XSS-Protection": (),
    "Strict-Transport-Security": (),
}


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
    "ns": 1e-9,
    "us": 1e-6,
    "µs": 1e-6,
    "ms": 1e-3,
    "s": 1.0,
    "m": 60.0,
    "h": 3600.0,
}


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
