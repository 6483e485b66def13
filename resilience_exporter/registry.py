"""Probe kinds register themselves here; config validation and the runtime look them up.

A new kind is one new module under `resilience_exporter/probes/` that calls `register_kind`.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from resilience_exporter.config import TargetConfig
    from resilience_exporter.families import Sample
    from resilience_exporter.reasons import Failure


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
    # Environment variable holding a URL that adds a target of this kind in the embedded
    # default, and how to turn that URL into a config mapping.
    env_url_var: str | None = None
    from_env_url: Callable[[str], Mapping[str, Any]] | None = None
    # Kinds configured outside `targets:` (the host) are not accepted in the target list.
    listed: bool = True


_KINDS: dict[str, KindSpec] = {}


def register_kind(spec: KindSpec) -> None:
    if spec.kind in _KINDS and _KINDS[spec.kind] != spec:
        raise ValueError(f"probe kind {spec.kind!r} registered twice")
    _KINDS[spec.kind] = spec


def load_probe_modules() -> None:
    """Import every module of `resilience_exporter.probes`, each of which registers its kind."""
    import resilience_exporter.probes as package

    for module in pkgutil.iter_modules(package.__path__):
        importlib.import_module(f"{package.__name__}.{module.name}")


def kinds() -> Mapping[str, KindSpec]:
    load_probe_modules()
    return _KINDS


def kind_spec(kind: str) -> KindSpec:
    return kinds()[kind]
