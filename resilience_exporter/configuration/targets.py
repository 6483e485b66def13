"""What every target is: its name, kind, interval, timeout, labels and breaker, with the
defaults filled in by `with_defaults`. Each kind's module subclasses `TargetConfig`."""

from __future__ import annotations

import re
from typing import Self

from pydantic import Field, field_validator, model_validator

from resilience_exporter.configuration.models import Duration, StrictModel

_LABEL_NAME = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")
RESERVED_LABELS = frozenset(
    {"target", "kind", "reason", "pool", "source", "state", "le", "job", "instance", "breaker"}
)


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
