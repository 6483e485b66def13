"""Loading and validating the YAML configuration.

Every rejection names the file, the line and the key path, so that a typo in a fleet's config
is found by reading one line of output. Values may reference `${ENV_VAR}`; `$${` is a literal
`${`. Durations are Prometheus-style (`15s`, `1m30s`).
"""

from __future__ import annotations

import fnmatch
import ipaddress
import os
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Self, TypeVar

import yaml
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from resilience_exporter import registry

KeyPath = tuple[str | int, ...]

_DURATION = re.compile(
    r"^(?:(?P<y>\d+)y)?(?:(?P<w>\d+)w)?(?:(?P<d>\d+)d)?(?:(?P<h>\d+)h)?"
    r"(?:(?P<m>\d+)m)?(?:(?P<s>\d+)s)?(?:(?P<ms>\d+)ms)?$"
)
_UNIT_SECONDS = {
    "y": 365 * 86400.0,
    "w": 7 * 86400.0,
    "d": 86400.0,
    "h": 3600.0,
    "m": 60.0,
    "s": 1.0,
    "ms": 0.001,
}
_ENV_REF = re.compile(r"\$\$\{|\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
_LABEL_NAME = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")
ADDRESS_PLACEHOLDER = "{address}"
RESERVED_LABELS = frozenset(
    {"target", "kind", "reason", "pool", "source", "state", "le", "job", "instance", "breaker"}
)


def parse_duration(value: object) -> float:
    """Prometheus duration string to seconds."""
    if isinstance(value, bool) or not isinstance(value, str):
        raise ValueError("a duration is a string with a unit, such as 15s, 1m or 500ms")
    match = _DURATION.match(value)
    if not value or not match or not any(match.groupdict().values()):
        raise ValueError(f"{value!r} is not a duration (use e.g. 15s, 1m, 500ms)")
    seconds = sum(float(n) * _UNIT_SECONDS[unit] for unit, n in match.groupdict().items() if n)
    if seconds <= 0:
        raise ValueError("a duration must be positive")
    return seconds


def format_duration(seconds: float) -> str:
    if seconds < 1 or seconds != int(seconds):
        return f"{round(seconds * 1000)}ms"
    return f"{int(seconds)}s"


Duration = Annotated[float, BeforeValidator(parse_duration)]


class StrictModel(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


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
    # None: the target's interval (clamped to the cap), filled in at load time.
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
        assert self.backoff_base is not None, "defaults are applied at load time"
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
        assert self.interval is not None, "defaults are applied at load time"
        return self.interval

    @property
    def timeout_seconds(self) -> float:
        assert self.timeout is not None, "defaults are applied at load time"
        return self.timeout

    def describe(self) -> str:
        """A secret-free one-line description for the landing page and logs."""
        return self.kind


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


@dataclass(frozen=True, slots=True)
class ProbeModule:
    """A /probe module: a target template with `{address}` placeholders, and who it admits."""

    name: str
    kind: str
    access: ModuleAccess
    template: Mapping[str, Any]


class Config(StrictModel):
    model_config = ConfigDict(extra="forbid", frozen=True, arbitrary_types_allowed=True)

    defaults: Defaults = Field(default_factory=Defaults)
    targets: list[TargetConfig] = Field(default_factory=list)
    host: dict[str, Any] = Field(default_factory=dict)
    modules: dict[str, ProbeModule] = Field(default_factory=dict)
    source: str = "<embedded default>"


@dataclass(frozen=True, slots=True)
class ConfigIssue:
    file: str
    line: int | None
    key: str
    message: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else self.file
        return f"{where}: {self.key or '<top level>'}: {self.message}"


class ConfigError(Exception):
    def __init__(self, issues: list[ConfigIssue]) -> None:
        self.issues = issues
        super().__init__("\n".join(str(issue) for issue in issues))


def _dotted(path: KeyPath) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


class _Document:
    """A parsed YAML document and the line of every key in it."""

    def __init__(self, text: str, file: str) -> None:
        self.file = file
        self.lines: dict[KeyPath, int] = {}
        self.issues: list[ConfigIssue] = []
        try:
            node = yaml.compose(text, Loader=yaml.SafeLoader)
            if node is None:
                self.data: Any = {}
                return
            self._index(node, ())
            self.data = yaml.SafeLoader("").construct_document(node)
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
            line = mark.line + 1 if mark is not None else None
            problem = getattr(exc, "problem", None) or str(exc)
            raise ConfigError([ConfigIssue(file, line, "", f"invalid YAML: {problem}")]) from None

    def _index(self, node: yaml.Node, path: KeyPath) -> None:
        self.lines.setdefault(path, node.start_mark.line + 1)
        if isinstance(node, yaml.MappingNode):
            seen: set[str] = set()
            for key_node, value_node in node.value:
                key = str(key_node.value)
                if key in seen:
                    self.issues.append(
                        ConfigIssue(
                            self.file,
                            key_node.start_mark.line + 1,
                            _dotted((*path, key)),
                            "duplicate key",
                        )
                    )
                seen.add(key)
                self.lines[(*path, key)] = key_node.start_mark.line + 1
                self._index(value_node, (*path, key))
        elif isinstance(node, yaml.SequenceNode):
            for index, item in enumerate(node.value):
                self._index(item, (*path, index))

    def line_of(self, path: KeyPath) -> int | None:
        while path not in self.lines and path:
            path = path[:-1]
        return self.lines.get(path)

    def issue(self, path: KeyPath, message: str) -> ConfigIssue:
        return ConfigIssue(self.file, self.line_of(path), _dotted(path), message)


def _expand_env(value: Any, path: KeyPath, env: Mapping[str, str], doc: _Document) -> Any:
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
            doc.issues.append(doc.issue(path, f"environment variable {name} is not set"))
            return ""
        return env[name]

    return _ENV_REF.sub(substitute, value)


def _pydantic_issues(doc: _Document, exc: ValidationError, prefix: KeyPath) -> list[ConfigIssue]:
    issues = []
    for error in exc.errors(include_url=False, include_input=False):
        path = (*prefix, *(p for p in error["loc"] if isinstance(p, str | int)))
        message = str(error["msg"]).removeprefix("Value error, ")
        if error["type"] == "extra_forbidden":
            message = "unknown key"
        issues.append(doc.issue(path, message))
    return issues


def _validate_target(
    doc: _Document, raw: Any, index: int, defaults: Defaults
) -> TargetConfig | None:
    return _validate_target_at(doc, raw, ("targets", index), defaults)


def _validate_target_at(
    doc: _Document, raw: Any, path: KeyPath, defaults: Defaults
) -> TargetConfig | None:
    if not isinstance(raw, dict):
        doc.issues.append(doc.issue(path, "each target is a mapping"))
        return None
    kind = raw.get("kind")
    listed = {k: spec for k, spec in registry.kinds().items() if spec.listed}
    if not isinstance(kind, str) or kind not in listed:
        known = ", ".join(sorted(listed))
        what = "missing" if kind is None else f"unknown kind {str(kind)[:40]!r}"
        doc.issues.append(doc.issue((*path, "kind"), f"{what}; known kinds: {known}"))
        return None
    return _validate_with_defaults(doc, listed[kind].config_model, raw, path, defaults)


def with_defaults(target: TargetConfig, defaults: Defaults) -> TargetConfig:
    """Fill in what defaults to something else: interval, timeout, the breaker's back-off base."""
    interval = target.interval or defaults.interval
    breaker = target.breaker
    if breaker.backoff_base is None:
        base = min(interval, breaker.backoff_cap)
        breaker = breaker.model_copy(update={"backoff_base": base})
    return target.model_copy(
        update={
            "interval": interval,
            "timeout": target.timeout or defaults.timeout,
            "breaker": breaker,
        }
    )


def _validate_with_defaults(
    doc: _Document,
    model: type[TargetConfig],
    raw: dict[str, Any],
    path: KeyPath,
    defaults: Defaults,
) -> TargetConfig | None:
    try:
        target = model.model_validate(raw)
    except ValidationError as exc:
        doc.issues.extend(_pydantic_issues(doc, exc, path))
        return None
    target = with_defaults(target, defaults)
    if target.timeout_seconds > target.interval_seconds:
        doc.issues.append(doc.issue((*path, "timeout"), "timeout must not exceed the interval"))
        return None
    return target


def host_target(config: Config) -> TargetConfig | None:
    """The host probe's settings (the `host:` block), or None when it is disabled."""
    spec = registry.kind_spec("host")
    raw = {"name": "host", "kind": "host", **config.host}
    target = spec.config_model.model_validate(raw)
    target = with_defaults(target, config.defaults)
    return target if getattr(target, "enabled", True) else None


def parse(text: str, file: str, env: Mapping[str, str] | None = None) -> Config:
    env = os.environ if env is None else env
    doc = _Document(text, file)
    data = _expand_env(doc.data, (), env, doc)
    if not isinstance(data, dict):
        raise ConfigError([doc.issue((), "the configuration must be a mapping")])

    try:
        defaults = Defaults.model_validate(data.get("defaults") or {})
    except ValidationError as exc:
        doc.issues.extend(_pydantic_issues(doc, exc, ("defaults",)))
        defaults = Defaults()

    unknown = sorted(str(k) for k in set(data) - {"defaults", "targets", "host", "modules"})
    doc.issues.extend(doc.issue((key,), "unknown key") for key in unknown)

    raw_targets = data.get("targets") or []
    targets: list[TargetConfig] = []
    if not isinstance(raw_targets, list):
        doc.issues.append(doc.issue(("targets",), "targets is a list"))
        raw_targets = []
    names: set[str] = set()
    for index, raw in enumerate(raw_targets):
        target = _validate_target(doc, raw, index, defaults)
        if target is None:
            continue
        if target.name in names:
            doc.issues.append(doc.issue(("targets", index, "name"), "duplicate target name"))
        names.add(target.name)
        targets.append(target)

    host = data.get("host") or {}
    if not isinstance(host, dict):
        doc.issues.append(doc.issue(("host",), "host is a mapping"))
        host = {}
    host_model = registry.kind_spec("host").config_model
    _validate_with_defaults(
        doc, host_model, {"name": "host", "kind": "host", **host}, ("host",), defaults
    )

    modules = _validate_modules(doc, data.get("modules") or {}, defaults)

    if doc.issues:
        raise ConfigError(doc.issues)
    return Config(defaults=defaults, targets=targets, host=host, modules=modules, source=file)


def _fill_template(template: Any, address: str) -> Any:
    if isinstance(template, dict):
        return {k: _fill_template(v, address) for k, v in template.items()}
    if isinstance(template, list):
        return [_fill_template(v, address) for v in template]
    if isinstance(template, str):
        return template.replace(ADDRESS_PLACEHOLDER, address)
    return template


def _validate_modules(doc: _Document, raw: Any, defaults: Defaults) -> dict[str, ProbeModule]:
    if not isinstance(raw, dict):
        doc.issues.append(doc.issue(("modules",), "modules is a mapping of name to module"))
        return {}
    modules: dict[str, ProbeModule] = {}
    for name, body in raw.items():
        path: KeyPath = ("modules", str(name))
        if not isinstance(body, dict):
            doc.issues.append(doc.issue(path, "each module is a mapping"))
            continue
        template = {k: v for k, v in body.items() if k not in ("allow", "allow_ports")}
        try:
            access = ModuleAccess.model_validate(
                {k: v for k, v in body.items() if k in ("allow", "allow_ports")}
            )
        except ValidationError as exc:
            doc.issues.extend(_pydantic_issues(doc, exc, path))
            continue
        # Validate the template now, with a stand-in address, so a broken module fails at
        # start rather than on the first request that uses it.
        sample = {**_fill_template(template, "127.0.0.1:1"), "name": str(name)}
        target = _validate_target_at(doc, sample, path, defaults)
        if target is not None:
            modules[str(name)] = ProbeModule(str(name), target.kind, access, template)
    return modules


def validate_module_target(module: ProbeModule, address: str, defaults: Defaults) -> TargetConfig:
    """The target a module makes for one address (already admitted by its access rules)."""
    raw = {**_fill_template(module.template, address), "name": address}
    spec = registry.kind_spec(module.kind)
    target = spec.config_model.model_validate(raw)
    return target.model_copy(
        update={
            "interval": target.interval or defaults.interval,
            "timeout": target.timeout or defaults.timeout,
        }
    )


def read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except OSError as exc:
        issue = ConfigIssue(str(path), None, "", f"cannot read: {exc.strerror}")
        raise ConfigError([issue]) from None
    except UnicodeDecodeError:
        raise ConfigError([ConfigIssue(str(path), None, "", "not UTF-8 text")]) from None


def load(path: Path, env: Mapping[str, str] | None = None) -> Config:
    return parse(read_text(path), str(path), env)


M = TypeVar("M", bound=BaseModel)


def parse_model(model: type[M], text: str, file: str) -> M:
    """Validate a whole YAML document against `model`, with file:line:key errors."""
    doc = _Document(text, file)
    if not isinstance(doc.data, dict):
        raise ConfigError([doc.issue((), "the file must hold a mapping")])
    try:
        result = model.model_validate(doc.data)
    except ValidationError as exc:
        doc.issues.extend(_pydantic_issues(doc, exc, ()))
    if doc.issues:
        raise ConfigError(doc.issues)
    return result


def embedded_default(env: Mapping[str, str] | None = None) -> Config:
    """No config file: host metrics, plus one target per `DATABASE_URL`-style variable set."""
    env = os.environ if env is None else env
    doc = _Document("", "<environment>")
    defaults = Defaults()
    targets: list[TargetConfig] = []
    for spec in registry.kinds().values():
        if spec.env_url_var is None or spec.from_env_url is None:
            continue
        url = env.get(spec.env_url_var)
        if not url:
            continue
        raw = dict(spec.from_env_url(url))
        target = _validate_with_defaults(doc, spec.config_model, raw, (spec.env_url_var,), defaults)
        if target is not None:
            targets.append(target)
    if doc.issues:
        raise ConfigError(doc.issues)
    return Config(defaults=defaults, targets=targets)


def iter_targets(config: Config) -> Iterator[TargetConfig]:
    """Every probed target, the host included when enabled."""
    host = host_target(config)
    if host is not None:
        yield host
    yield from config.targets
