"""The YAML configuration, validated once into typed objects.

Every rejection names the file, the line and the key path. Values may reference
`${ENV_VAR}`; `$${` is a literal `${`. Durations are Prometheus-style (`15s`, `1m30s`).
After loading, every target (the host, the listed targets and each `/probe` module's
template) has its defaults filled in by `with_defaults`; nothing is validated again later
except a module's template with a requested address put in.
"""

from __future__ import annotations

import fnmatch
import ipaddress
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Self

from pydantic import Field, ValidationError, field_validator, model_validator

from resilience_exporter import registry
from resilience_exporter.models import Duration, StrictModel
from resilience_exporter.yamlfile import ConfigError, KeyPath, YamlDocument, read_text

_ENV_REF = re.compile(r"\$\$\{|\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
_LABEL_NAME = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")
ADDRESS_PLACEHOLDER = "{address}"
RESERVED_LABELS = frozenset(
    {"target", "kind", "reason", "pool", "source", "state", "le", "job", "instance", "breaker"}
)
# Validates a module's template at load time, before any request names a real address.
_STAND_IN_ADDRESS = "127.0.0.1:1"
_TOP_LEVEL_KEYS = frozenset({"defaults", "targets", "host", "modules"})


class Defaults(StrictModel):
    interval: Duration = 15.0
    timeout: Duration = 5.0


class PoolConfig(StrictModel):
    min_size: int = Field(1, ge=0, le=100)
    max_size: int = Field(2, ge=1, le=100)

    @model_validator(mode="after")
    def _min_below_max(self) -> Self:
        if self.min_size > self.max_size:
            raise ValueError("pool.min_size must not exceed pool.max_size")
        return self


class BreakerConfig(StrictModel):
    """A target's `breaker:` block: when its probe stops being called (docs/breakers.md)."""

    enabled: bool = True
    consecutive_failures: int = Field(3, ge=1, le=1000)
    failure_ratio: float = Field(0.5, gt=0, le=1)
    window: int = Field(10, ge=1, le=1000)
    minimum_calls: int = Field(5, ge=1, le=1000)
    half_open_successes: int = Field(1, ge=1, le=100)
    # None: the target's interval (clamped to the cap), filled in by `with_defaults`.
    backoff_base: Duration | None = None
    backoff_cap: Duration = 300.0

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if self.minimum_calls > self.window:
            raise ValueError("breaker.minimum_calls must not exceed breaker.window")
        if self.backoff_base is not None and self.backoff_base > self.backoff_cap:
            raise ValueError("breaker.backoff_base must not exceed breaker.backoff_cap")
        return self

    @property
    def backoff_base_seconds(self) -> float:
        assert self.backoff_base is not None, "with_defaults fills it in"
        return self.backoff_base


class TargetConfig(StrictModel):
    """What every target has; each kind's module subclasses it with its own fields."""

    name: str = Field(pattern=r"^[A-Za-z0-9\[][A-Za-z0-9_.:@/\[\]-]{0,127}$")
    kind: str
    interval: Duration | None = None
    timeout: Duration | None = None
    labels: dict[str, str] = Field(default_factory=dict)
    breaker: BreakerConfig = Field(default_factory=BreakerConfig)

    @field_validator("labels")
    @classmethod
    def _label_names(cls, labels: dict[str, str]) -> dict[str, str]:
        for key in labels:
            if not _LABEL_NAME.match(key) or key.startswith("__"):
                raise ValueError(f"{key!r} is not a valid Prometheus label name")
            if key in RESERVED_LABELS:
                raise ValueError(f"label {key!r} is set by the exporter itself")
        return labels

    @property
    def interval_seconds(self) -> float:
        assert self.interval is not None, "with_defaults fills it in"
        return self.interval

    @property
    def timeout_seconds(self) -> float:
        assert self.timeout is not None, "with_defaults fills it in"
        return self.timeout

    def describe(self) -> str:
        """A secret-free one-line description for the landing page and logs."""
        return self.kind


def with_defaults(target: TargetConfig, defaults: Defaults) -> TargetConfig:
    """Fill in what defaults to something else: interval, timeout, the breaker's back-off base.
    Every target the runtime gets went through here."""
    interval = target.interval or defaults.interval
    breaker = target.breaker
    if breaker.backoff_base is None:
        breaker = breaker.model_copy(update={"backoff_base": min(interval, breaker.backoff_cap)})
    return target.model_copy(
        update={
            "interval": interval,
            "timeout": target.timeout or defaults.timeout,
            "breaker": breaker,
        }
    )


class ModuleAccess(StrictModel):
    """Which addresses a module may probe: hosts by CIDR, IP or name glob, and ports."""

    allow: list[str] = Field(min_length=1)
    allow_ports: list[int] = Field(default_factory=list)

    @field_validator("allow")
    @classmethod
    def _patterns(cls, patterns: list[str]) -> list[str]:
        for pattern in patterns:
            if "/" in pattern:
                try:
                    ipaddress.ip_network(pattern, strict=False)
                except ValueError:
                    raise ValueError(f"{pattern!r} is not a CIDR network") from None
            elif not re.fullmatch(r"[A-Za-z0-9*?.:\-\[\]]+", pattern):
                raise ValueError(f"{pattern!r} is not an IP, CIDR or host name pattern")
        return patterns

    @field_validator("allow_ports")
    @classmethod
    def _ports(cls, ports: list[int]) -> list[int]:
        if any(not 0 < p < 65536 for p in ports):
            raise ValueError("ports are 1-65535")
        return ports

    def admits(self, host: str, port: int) -> bool:
        if self.allow_ports and port not in self.allow_ports:
            return False
        bare = host.strip("[]")
        try:
            ip: ipaddress.IPv4Address | ipaddress.IPv6Address | None = ipaddress.ip_address(bare)
        except ValueError:
            ip = None
        for pattern in self.allow:
            if "/" in pattern:
                if ip is not None and ip in ipaddress.ip_network(pattern, strict=False):
                    return True
            elif ip is not None:
                try:
                    if ip == ipaddress.ip_address(pattern.strip("[]")):
                        return True
                except ValueError:
                    continue
            elif fnmatch.fnmatchcase(bare.lower(), pattern.lower()):
                return True
        return False


def _fill_template(template: Any, address: str) -> Any:
    if isinstance(template, dict):
        return {k: _fill_template(v, address) for k, v in template.items()}
    if isinstance(template, list):
        return [_fill_template(v, address) for v in template]
    if isinstance(template, str):
        return template.replace(ADDRESS_PLACEHOLDER, address)
    return template


@dataclass(frozen=True, slots=True)
class ProbeModule:
    """A /probe module: a target template with `{address}` placeholders, validated at load
    time with a stand-in address, and who it admits."""

    name: str
    kind: str
    access: ModuleAccess
    template: Mapping[str, Any]
    model: type[TargetConfig]
    defaults: Defaults

    def target(self, address: str) -> TargetConfig:
        """The target for one address (already admitted by the access rules); raises
        ValidationError when the address does not fit the template."""
        raw = {**_fill_template(self.template, address), "name": address}
        return with_defaults(self.model.model_validate(raw), self.defaults)


@dataclass(frozen=True, slots=True)
class Config:
    defaults: Defaults = field(default_factory=Defaults)
    targets: Sequence[TargetConfig] = ()
    # The host probe's settings, defaults filled in; None when `host.enabled` is false.
    host: TargetConfig | None = None
    modules: Mapping[str, ProbeModule] = field(default_factory=dict)
    source: str = "<embedded default>"

    def target_named(self, name: str) -> TargetConfig | None:
        return next((t for t in self.targets if t.name == name), None)


class _Loader:
    """One document's validation: each step adds its issues and goes on, so that one run
    reports every mistake in the file."""

    def __init__(self, doc: YamlDocument) -> None:
        self.doc = doc
        self.defaults = Defaults()

    def defaults_from(self, raw: Any) -> Defaults:
        try:
            return Defaults.model_validate(raw or {})
        except ValidationError as exc:
            self.doc.add_validation_errors(exc, ("defaults",))
            return Defaults()

    def target(self, raw: Any, path: KeyPath) -> TargetConfig | None:
        """A `targets:` entry (or a module template): a listed kind's config, defaults in."""
        if not isinstance(raw, dict):
            self.doc.add_issue(path, "each target is a mapping")
            return None
        kind = raw.get("kind")
        if not isinstance(kind, str) or not _is_listed(kind):
            what = "missing" if kind is None else f"unknown kind {str(kind)[:40]!r}"
            known = ", ".join(registry.listed_kinds())
            self.doc.add_issue((*path, "kind"), f"{what}; known kinds: {known}")
            return None
        return self.validated(registry.kind_spec(kind).config_model, raw, path)

    def validated(
        self, model: type[TargetConfig], raw: Mapping[str, Any], path: KeyPath
    ) -> TargetConfig | None:
        try:
            target = with_defaults(model.model_validate(raw), self.defaults)
        except ValidationError as exc:
            self.doc.add_validation_errors(exc, path)
            return None
        if target.timeout_seconds > target.interval_seconds:
            self.doc.add_issue((*path, "timeout"), "timeout must not exceed the interval")
            return None
        return target

    def targets(self, raw: Any) -> list[TargetConfig]:
        if not isinstance(raw, list):
            self.doc.add_issue(("targets",), "targets is a list")
            return []
        targets: list[TargetConfig] = []
        names: set[str] = set()
        for index, entry in enumerate(raw):
            target = self.target(entry, ("targets", index))
            if target is None:
                continue
            if target.name in names:
                self.doc.add_issue(("targets", index, "name"), "duplicate target name")
            names.add(target.name)
            targets.append(target)
        return targets

    def host(self, raw: Any) -> TargetConfig | None:
        if not isinstance(raw, dict):
            self.doc.add_issue(("host",), "host is a mapping")
            raw = {}
        model = registry.kind_spec("host").config_model
        target = self.validated(model, {"name": "host", "kind": "host", **raw}, ("host",))
        return target if target is not None and getattr(target, "enabled", True) else None

    def modules(self, raw: Any) -> dict[str, ProbeModule]:
        if not isinstance(raw, dict):
            self.doc.add_issue(("modules",), "modules is a mapping of name to module")
            return {}
        modules: dict[str, ProbeModule] = {}
        for name, body in raw.items():
            path: KeyPath = ("modules", str(name))
            if not isinstance(body, dict):
                self.doc.add_issue(path, "each module is a mapping")
                continue
            template = {k: v for k, v in body.items() if k not in ("allow", "allow_ports")}
            try:
                access = ModuleAccess.model_validate(
                    {k: v for k, v in body.items() if k in ("allow", "allow_ports")}
                )
            except ValidationError as exc:
                self.doc.add_validation_errors(exc, path)
                continue
            stand_in = {**_fill_template(template, _STAND_IN_ADDRESS), "name": str(name)}
            target = self.target(stand_in, path)
            if target is not None:
                modules[str(name)] = ProbeModule(
                    str(name), target.kind, access, template, type(target), self.defaults
                )
        return modules


def _is_listed(kind: str) -> bool:
    return kind in registry.kind_names() and registry.kind_spec(kind).listed


def _expand_env(value: Any, path: KeyPath, env: Mapping[str, str], doc: YamlDocument) -> Any:
    if isinstance(value, dict):
        return {k: _expand_env(v, (*path, str(k)), env, doc) for k, v in value.items()}
    if isinstance(value, list):
        return [_expand_env(v, (*path, i), env, doc) for i, v in enumerate(value)]
    if not isinstance(value, str):
        return value

    def substitute(match: re.Match[str]) -> str:
        if match.group(0) == "$${":
            return "${"
        name = match.group(1)
        if name not in env:
            doc.add_issue(path, f"environment variable {name} is not set")
            return ""
        return env[name]

    return _ENV_REF.sub(substitute, value)


def parse(text: str, file: str, env: Mapping[str, str] | None = None) -> Config:
    env = os.environ if env is None else env
    doc = YamlDocument(text, file)
    data = _expand_env(doc.data, (), env, doc)
    if not isinstance(data, dict):
        raise ConfigError([doc.issue((), "the configuration must be a mapping")])
    for key in sorted(str(k) for k in set(data) - _TOP_LEVEL_KEYS):
        doc.add_issue((key,), "unknown key")
    loader = _Loader(doc)
    loader.defaults = loader.defaults_from(data.get("defaults"))
    config = Config(
        defaults=loader.defaults,
        targets=tuple(loader.targets(data.get("targets") or [])),
        host=loader.host(data.get("host") or {}),
        modules=loader.modules(data.get("modules") or {}),
        source=file,
    )
    doc.raise_issues()
    return config


def load(path: Path, env: Mapping[str, str] | None = None) -> Config:
    return parse(read_text(path), str(path), env)


def embedded_default(env: Mapping[str, str] | None = None) -> Config:
    """No config file: host metrics, plus one target per `DATABASE_URL`-style variable set."""
    env = os.environ if env is None else env
    loader = _Loader(YamlDocument("", "<environment>"))
    targets: list[TargetConfig] = []
    for spec in registry.all_kinds():
        if spec.env_url_var is None or spec.from_env_url is None:
            continue
        url = env.get(spec.env_url_var)
        if not url:
            continue
        target = loader.validated(spec.config_model, spec.from_env_url(url), (spec.env_url_var,))
        if target is not None:
            targets.append(target)
    loader.doc.raise_issues()
    return Config(targets=tuple(targets), host=loader.host({}))
