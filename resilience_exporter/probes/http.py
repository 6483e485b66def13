"""Applications' own breakers and pools, read from their JSON health endpoints.

The document is mapped by a preset (`generic`, `resilience4j`, `node`) or the target's
`mapping:` block (JMESPath) onto the shared `resilience_breaker_*` and `resilience_pool_*`
families, with `source` = the target name. See docs/application-health.md.
"""

from __future__ import annotations

import asyncio
import json
import ssl
from collections.abc import Sequence
from pathlib import Path
from typing import Literal, Self
from urllib.parse import urlsplit

import aiohttp
from pydantic import Field, field_validator, model_validator

from resilience_exporter import __version__
from resilience_exporter.classify.aiohttp_errors import classify_http
from resilience_exporter.configuration.models import TLSClientConfig
from resilience_exporter.configuration.secrets import PasswordSource, Secret, remember
from resilience_exporter.configuration.targets import TargetConfig
from resilience_exporter.metrics.families import Sample, family, sample
from resilience_exporter.metrics.health_mapping import HealthMapping, MappingError, apply
from resilience_exporter.metrics.health_presets import PRESETS, Preset
from resilience_exporter.probing.registry import KindSpec, register_kind
from resilience_exporter.reasons import Failure, ProbeError

PARSE_ERRORS = family(
    "resilience_http_parse_errors_total",
    "Health documents that could not be read or did not fit the target's mapping.",
    "counter",
    ("target",),
    group="applications",
)

# A health document is small; a runaway endpoint must not fill the exporter's memory.
MAX_BODY_BYTES = 4 * 1024 * 1024
# Spring Boot answers 503 with a complete document when the application is DOWN.
_MAPPED_STATUSES = frozenset(range(200, 300)) | {503}


class BasicAuth(PasswordSource):
    username: str = Field(min_length=1)


class HttpTarget(TargetConfig):
    kind: Literal["http"]
    url: str = Field(min_length=1)
    preset: Preset | None = None
    mapping: HealthMapping | None = None
    bearer_token: Secret | None = None
    bearer_token_file: Path | None = None
    basic_auth: BasicAuth | None = None
    tls: TLSClientConfig = Field(default_factory=TLSClientConfig)

    @field_validator("url")
    @classmethod
    def _http_url(cls, url: str) -> str:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("url must be an http:// or https:// URL with a host")
        if parts.username is not None or parts.password is not None:
            raise ValueError("put credentials in basic_auth, not in the url")
        return url

    @model_validator(mode="after")
    def _one_of_each(self) -> Self:
        if self.preset is not None and self.mapping is not None:
            raise ValueError("give either preset or mapping, not both")
        credentials = [
            self.bearer_token is not None,
            self.bearer_token_file is not None,
            self.basic_auth is not None,
        ]
        if sum(credentials) > 1:
            raise ValueError("give one of bearer_token, bearer_token_file and basic_auth")
        if self.bearer_token_file is not None:
            self.read_bearer_token_file()
        return self

    @property
    def health_mapping(self) -> HealthMapping:
        return self.mapping if self.mapping is not None else PRESETS[self.preset or "generic"]

    def read_bearer_token_file(self) -> str:
        assert self.bearer_token_file is not None
        try:
            content = self.bearer_token_file.read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise ValueError(
                f"bearer_token_file {self.bearer_token_file}: {exc.strerror}"
            ) from None
        return remember(content)

    def authorization(self) -> str | None:
        """The Authorization header; files are read at every probe to follow rotation."""
        if self.bearer_token is not None:
            return f"Bearer {self.bearer_token.get_secret_value()}"
        if self.bearer_token_file is not None:
            return f"Bearer {self.read_bearer_token_file()}"
        if self.basic_auth is not None:
            password = self.basic_auth.resolve_password() or ""
            return aiohttp.BasicAuth(self.basic_auth.username, password).encode()
        return None

    def describe(self) -> str:
        parts = urlsplit(self.url)
        how = "mapping" if self.mapping is not None else f"preset {self.preset or 'generic'}"
        return f"http {parts.scheme}://{parts.netloc}{parts.path} ({how})"


class HttpProbe:
    def __init__(self, target: HttpTarget) -> None:
        self.target = target
        self.mapping = target.health_mapping
        self.parse_errors = 0
        self._session: aiohttp.ClientSession | None = None

    async def open(self) -> None:
        pass  # the session is made at the first probe, where a failure is a probe failure

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None:
            ssl_context: ssl.SSLContext | bool = True
            if self.target.url.startswith("https:"):
                try:  # the files were fine at load time, but may have gone since
                    ssl_context = self.target.tls.context()
                except ValueError as exc:
                    raise ProbeError("tls", str(exc), persistent=True) from None
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=self.target.timeout_seconds),
                headers={"User-Agent": f"resilience-exporter/{__version__}"},
                connector=aiohttp.TCPConnector(limit=1, ssl=ssl_context),
            )
        return self._session

    def _headers(self) -> dict[str, str]:
        headers = {"Accept": "application/json"}
        try:
            authorization = self.target.authorization()
        except ValueError as exc:  # a credentials file that went missing
            raise ProbeError("auth", str(exc), persistent=True) from None
        if authorization is not None:
            headers["Authorization"] = authorization
        return headers

    async def probe(self) -> Sequence[Sample]:
        session, headers = self._client(), self._headers()
        async with (
            asyncio.timeout(self.target.timeout_seconds),
            session.get(self.target.url, headers=headers, allow_redirects=False) as response,
        ):
            status = response.status
            if status in (401, 403):
                raise ProbeError("auth", f"HTTP {status}", persistent=True)
            if status == 429:
                raise ProbeError("too_many_connections", "HTTP 429")
            if status not in _MAPPED_STATUSES:
                raise ProbeError("other", f"HTTP {status}")
            body = await self._read_body(response)
        try:
            mapped = apply(self.mapping, json.loads(body))
        except (UnicodeDecodeError, json.JSONDecodeError, MappingError) as exc:
            if status == 503:  # a plain "Service Unavailable", from a proxy say
                raise ProbeError("other", "HTTP 503") from None
            self.parse_errors += 1
            detail = str(exc) if isinstance(exc, MappingError) else f"not JSON: {exc}"
            raise ProbeError("protocol", detail) from None
        return mapped.samples(self.target.name)

    async def _read_body(self, response: aiohttp.ClientResponse) -> bytes:
        chunks: list[bytes] = []
        size = 0
        try:
            async for chunk in response.content.iter_chunked(64 * 1024):
                size += len(chunk)
                if size > MAX_BODY_BYTES:
                    self.parse_errors += 1
                    raise ProbeError("protocol", f"body larger than {MAX_BODY_BYTES} bytes")
                chunks.append(chunk)
        except aiohttp.ClientPayloadError:
            self.parse_errors += 1
            raise ProbeError("protocol", "the body ended early") from None
        return b"".join(chunks)

    def local_samples(self) -> Sequence[Sample]:
        return [sample(PARSE_ERRORS, self.parse_errors, target=self.target.name)]

    def classify(self, exc: BaseException) -> Failure:
        return classify_http(exc)

    async def close(self) -> None:
        # The breaker closes the probe while open and opens it again for a trial: the next
        # probe makes a new session.
        session, self._session = self._session, None
        if session is not None:
            await session.close()


def _create(target: HttpTarget) -> HttpProbe:
    return HttpProbe(target)


register_kind(KindSpec(kind="http", config_model=HttpTarget, create=_create))
