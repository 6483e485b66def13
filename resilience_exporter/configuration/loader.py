"""The YAML configuration, validated once into typed objects.

Every rejection names the file, the line and the key path. Values may reference
`${ENV_VAR}`; `$${` is a literal `${`. Durations are Prometheus-style (`15s`, `1m30s`).
After loading, every target (the host, the listed targets and each `/probe` module's
template) has its defaults filled in by `with_defaults`; nothing is validated again later
except a module's template with a requested address put in.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from resilience_exporter.configuration.modules import ModuleAccess, ProbeModule, fill_template
from resilience_exporter.configuration.targets import Defaults, TargetConfig, with_defaults
from resilience_exporter.configuration.yamlfile import ConfigError, KeyPath, YamlDocument, read_text
from resilience_exporter.probing import registry

_ENV_REF = re.compile(r"\$\$\{|\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
# Validates a module's template at load time, before any request names a real address.
_STAND_IN_ADDRESS = "127.0.0.1:1"
_TOP_LEVEL_KEYS = frozenset({"defaults", "targets", "host", "modules"})
# The embedded default's targets: a variable holding a URL, and the kind that URL is for.
# Listed here rather than by each kind so that a kind whose variable is unset is never
# imported (nor its client library).
EMBEDDED_URL_VARIABLES: Mapping[str, str] = {"DATABASE_URL": "postgres", "REDIS_URL": "redis"}


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
            stand_in = {**fill_template(template, _STAND_IN_ADDRESS), "name": str(name)}
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
    for variable, kind in EMBEDDED_URL_VARIABLES.items():
        url = env.get(variable)
        if not url:
            continue
        spec = registry.kind_spec(kind)
        assert spec.from_env_url is not None, f"kind {kind} reads no URL"
        target = loader.validated(spec.config_model, spec.from_env_url(url), (variable,))
        if target is not None:
            targets.append(target)
    loader.doc.raise_issues()
    return Config(targets=tuple(targets), host=loader.host({}))
