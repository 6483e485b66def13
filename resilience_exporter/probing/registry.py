"""Probe kinds. Kind `<kind>` is the module (or package) `resilience_exporter.probes.<kind>`,
which calls `register_kind` once, when it is imported.

A kind is imported the first time a configuration names it, so the exporter loads only the
client libraries of the kinds it probes. A new kind is one new module under `probes/`.
"""

from __future__ import annotations

import functools
import importlib
import pkgutil
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from resilience_exporter.configuration.targets import TargetConfig
    from resilience_exporter.metrics.families import Sample
    from resilience_exporter.reasons import Failure

PROBES_PACKAGE = "resilience_exporter.probes"


class Probe(Protocol):
    """One target's prober. The runtime owns the timing, the timeout and the bookkeeping."""

    async def open(self) -> None:
        """Prepare clients or pools; must not wait for the target to answer. Called again
        after `close()` (the target's breaker closes the probe while open and reopens it for
        a trial): build fresh clients then, keeping histograms and counters going."""

    async def probe(self) -> Sequence[Sample]:
        """Talk to the target once and return what it said. Raise on failure."""

    def local_samples(self) -> Sequence[Sample]:
        """Samples known without asking the target (pool stats, histograms): exported always."""

    def classify(self, exc: BaseException) -> Failure:
        """Turn a failure of `probe` into a reason."""

    async def close(self) -> None:
        """Close clients and pools: no connection attempt may follow until `open()`."""


@dataclass(frozen=True, slots=True)
class KindSpec:
    kind: str
    config_model: type[TargetConfig]
    create: Callable[[Any], Probe]
    # How a URL in the embedded default's variable for this kind
    # (`loader.EMBEDDED_URL_VARIABLES`) becomes a config mapping.
    from_env_url: Callable[[str], Mapping[str, Any]] | None = None
    # Kinds configured outside `targets:` (the host) are not accepted in the target list.
    listed: bool = True


class UnknownKindError(LookupError):
    pass


_KINDS: dict[str, KindSpec] = {}


def register_kind(spec: KindSpec) -> None:
    if spec.kind in _KINDS:
        raise ValueError(f"probe kind {spec.kind!r} registered twice")
    _KINDS[spec.kind] = spec


@functools.cache
def kind_names() -> tuple[str, ...]:
    """Every kind there is, known from the modules' names without importing any."""
    package = importlib.import_module(PROBES_PACKAGE)
    return tuple(
        sorted(m.name for m in pkgutil.iter_modules(package.__path__) if not m.name.startswith("_"))
    )


def kind_spec(kind: str) -> KindSpec:
    """The kind's spec, importing its module the first time it is asked for."""
    spec = _KINDS.get(kind)
    if spec is not None:
        return spec
    if kind not in kind_names():
        raise UnknownKindError(kind)
    importlib.import_module(f"{PROBES_PACKAGE}.{kind}")
    if kind not in _KINDS:
        raise RuntimeError(f"{PROBES_PACKAGE}.{kind} does not register kind {kind!r}")
    return _KINDS[kind]


def listed_kinds() -> list[str]:
    """The kinds a `targets:` entry may have."""
    return [kind for kind in kind_names() if kind_spec(kind).listed]


def all_kinds() -> list[KindSpec]:
    """Every kind, all imported: for the generated docs."""
    return [kind_spec(kind) for kind in kind_names()]
