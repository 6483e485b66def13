"""TLS for the listener, as exporter-toolkit's `tls_server_config` describes it: the block's
model, the `ssl` context built from it (reloaded in place on reload), and the client
certificate SAN check."""

from __future__ import annotations

import ipaddress
import os
import ssl
import tempfile
from collections.abc import Iterator, Mapping
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

from resilience_exporter.configuration.models import StrictModel
from resilience_exporter.web import openssl

ClientAuthType = Literal[
    "NoClientCert",
    "RequestClientCert",
    "RequireAnyClientCert",
    "VerifyClientCertIfGiven",
    "RequireAndVerifyClientCert",
]
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
    "CurveP256": "P-256",
    "CurveP384": "P-384",
    "CurveP521": "P-521",
    "X25519": "X25519",
}
# The response headers a web config may set, with the values allowed where the header is an
# enumeration (exporter-toolkit's list: the server's own headers cannot be overridden).


class WebConfigError(Exception):
    """A web config that cannot be used: its file, its models or the TLS files it names."""


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
        for inline, path in (
            ("cert", "cert_file"),
            ("key", "key_file"),
            ("client_ca", "client_ca_file"),
        ):
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


def peer_sans(request: web.Request) -> set[str]:
    cert = request.transport.get_extra_info("peercert") if request.transport else None
    if not cert:
        return set()
    return {str(value) for _kind, value in cert.get("subjectAltName", ())}


def san_allowed(sans: set[str], allowed: list[str]) -> bool:
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
