"""From an application's JSON health document to the shared breaker and pool schemas.

A mapping is declarative: JMESPath expressions (the `jmespath` library) say where each value
sits. The built-in presets are in `health_presets`.
"""

from __future__ import annotations

import functools
import itertools
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Annotated, Any, Literal, TypeVar

import jmespath
import jmespath.exceptions
import jmespath.parser
from jmespath import functions as jmespath_functions
from pydantic import AfterValidator, Field

from resilience_exporter.configuration.models import StrictModel
from resilience_exporter.metrics.breaker_schema import (
    OUTCOMES,
    BreakerState,
    BreakerStateError,
    BreakerView,
    Outcome,
    breaker_samples,
    breaker_state,
)
from resilience_exporter.metrics.families import HistogramValue, Sample
from resilience_exporter.metrics.pool_schema import PoolStats, pool_samples


class MappingError(ValueError):
    """The document does not fit the mapping: malformed, partial or out of range."""


def _breaker_state(value: object) -> BreakerState:
    try:
        return breaker_state(value)
    except BreakerStateError as exc:
        raise MappingError(str(exc)) from None


class _Functions(jmespath_functions.Functions):
    """JMESPath has no arithmetic; these two let a mapping read counts a library reports as
    overlapping totals (opossum counts a timeout as a failure too)."""

    @jmespath_functions.signature({"types": ["number"]}, {"types": ["number"]})
    def _func_subtract(self, minuend: float, subtrahend: float) -> float:
        return minuend - subtrahend

    @jmespath_functions.signature({"types": ["number"]}, {"types": ["number"]})
    def _func_ratio(self, part: float, whole: float) -> float | None:
        return None if whole == 0 else part / whole


_OPTIONS = jmespath.Options(custom_functions=_Functions())
_FUNCTION_NAMES = frozenset(_Functions().FUNCTION_TABLE)


@functools.lru_cache(maxsize=512)
def compiled(expression: str) -> jmespath.parser.ParsedResult:
    return jmespath.compile(expression)


def search(expression: str, value: Any) -> Any:
    return compiled(expression).search(value, options=_OPTIONS)


def _unknown_functions(node: Mapping[str, Any]) -> set[str]:
    found = set()
    if node.get("type") == "function_expression" and node.get("value") not in _FUNCTION_NAMES:
        found.add(str(node.get("value")))
    for child in node.get("children", ()):
        if isinstance(child, Mapping):
            found |= _unknown_functions(child)
    return found


def _valid_expression(expression: str) -> str:
    try:
        parsed = compiled(expression)
    except jmespath.exceptions.JMESPathError as exc:
        detail = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ValueError(f"not a JMESPath expression ({detail})") from None
    unknown = _unknown_functions(parsed.parsed)
    if unknown:
        raise ValueError(f"unknown JMESPath function {', '.join(sorted(unknown))}()")
    return expression


Expression = Annotated[str, Field(min_length=1), AfterValidator(_valid_expression)]


class CallsMapping(StrictModel):
    """Cumulative call counters. Leave out what the application does not count."""

    success: Expression | None = None
    failure: Expression | None = None
    timeout: Expression | None = None
    rejected: Expression | None = None


class BreakersMapping(StrictModel):
    items: Expression = Field(description="A list of breakers, or an object keyed by breaker name.")
    name: Expression | None = None  # default: the object key, else `name`
    state: Expression
    failure_ratio: Expression | None = None  # 0-1
    failure_rate_percent: Expression | None = None  # 0-100, negative = not enough calls yet
    calls: CallsMapping = Field(default_factory=CallsMapping)
    # A list of {"from": state, "to": state, "count": n} objects.
    transitions: Expression | None = None
    next_attempt_at: Expression | None = None  # Unix time
    fallbacks: Expression | None = None  # cumulative
    slow_calls: Expression | None = None  # cumulative
    slow_call_ratio: Expression | None = None  # 0-1
    slow_call_rate_percent: Expression | None = None  # 0-100, negative = not enough calls yet
    # An object of quantile (0-1) -> duration; negative durations mean "not measured".
    call_duration_quantiles: Expression | None = None
    call_duration_unit: Literal["seconds", "milliseconds"] = "seconds"
    # Counts over a rolling window, for libraries that keep no totals: exported as gauges.
    window_calls: CallsMapping = Field(default_factory=CallsMapping)
    window_fallbacks: Expression | None = None


class PoolsMapping(StrictModel):
    items: Expression
    name: Expression | None = None
    max: Expression
    min: Expression | None = None
    size: Expression | None = None  # in_use + idle; any two of the three are enough
    in_use: Expression | None = None
    idle: Expression | None = None
    waiting: Expression | None = None
    # Cumulative counters.
    connect_errors: Expression | None = None
    acquire_errors: Expression | None = None
    lost: Expression | None = None
    # Measured around the application's checkouts (resilience_exporter.instrument).
    overflow: Expression | None = None
    long_held: Expression | None = None
    leak_threshold_seconds: Expression | None = None
    oldest_checkout_age_seconds: Expression | None = None
    # Histograms: {"buckets": {"<le>": cumulative count, ..., "+Inf": n}, "sum": seconds}.
    acquire_seconds: Expression | None = None
    connect_seconds: Expression | None = None
    hold_seconds: Expression | None = None


class HealthMapping(StrictModel):
    # Must evaluate to a true value, else the document is rejected (a format version check).
    check: Expression | None = None
    breakers: BreakersMapping | None = None
    pools: PoolsMapping | None = None


def _number(value: object, what: str) -> float:
    if isinstance(value, bool):
        raise MappingError(f"{what}: {value!r} is not a number")
    if isinstance(value, int | float):
        number = float(value)
    elif isinstance(value, str):
        try:
            number = float(value.strip().removesuffix("%"))
        except ValueError:
            raise MappingError(f"{what}: {value!r} is not a number") from None
    else:
        raise MappingError(f"{what}: {value!r} is not a number")
    if not math.isfinite(number):
        raise MappingError(f"{what}: {value!r} is not a finite number")
    return number


def _count(value: object, what: str) -> int:
    number = _number(value, what)
    if number < 0 or number != int(number):
        raise MappingError(f"{what}: {value!r} is not a count")
    return int(number)


@dataclass(frozen=True, slots=True)
class _Item:
    key: str | None
    value: Any


def _items(document: Any, expression: str, what: str) -> list[_Item]:
    found = search(expression, document)
    if found is None:
        return []
    if isinstance(found, dict):
        return [_Item(str(k), v) for k, v in found.items()]
    if isinstance(found, list):
        return [_Item(None, v) for v in found]
    raise MappingError(f"{what}: `{expression}` gave {type(found).__name__}, not a list or object")


def _name(item: _Item, expression: str | None, what: str) -> str:
    if expression is None and item.key is not None:
        return item.key
    found = search(expression or "name", item.value)
    if not isinstance(found, str | int) or isinstance(found, bool) or str(found) == "":
        raise MappingError(f"{what}: no name (`{expression or 'name'}`)")
    return str(found)


def _field(item: _Item, expression: str | None) -> Any:
    return None if expression is None else search(expression, item.value)


@dataclass(frozen=True, slots=True)
class MappedHealth:
    breakers: dict[str, BreakerView]
    pools: dict[str, PoolStats]

    def samples(self, source: str) -> list[Sample]:
        out: list[Sample] = []
        for name, view in sorted(self.breakers.items()):
            out += breaker_samples(name, source, view)
        for name, stats in sorted(self.pools.items()):
            out += pool_samples(name, source, stats)
        return out


def _transitions(raw: object, what: str) -> dict[tuple[BreakerState, BreakerState], int] | None:
    if raw is None:
        return None
    if not isinstance(raw, list):
        raise MappingError(f"{what}: transitions is not a list")
    out: dict[tuple[BreakerState, BreakerState], int] = {}
    for entry in raw:
        if not isinstance(entry, dict) or not {"from", "to", "count"} <= set(entry):
            raise MappingError(f"{what}: a transition needs from, to and count")
        key = (_breaker_state(entry["from"]), _breaker_state(entry["to"]))
        out[key] = out.get(key, 0) + _count(entry["count"], f"{what} transition count")
    return out


def _ratio(item: _Item, ratio: str | None, percent: str | None, what: str) -> float | None:
    """A 0-1 ratio given as such or as a percentage; None while the source has too few calls
    (Resilience4j reports -1 until its sliding window holds its minimum number of calls)."""
    raw_ratio = _field(item, ratio)
    if raw_ratio is not None:
        value: float | None = _number(raw_ratio, what)
    else:
        raw_percent = _field(item, percent)
        if raw_percent is None:
            return None
        number = _number(raw_percent, what)
        value = None if number < 0 else number / 100.0
    if value is not None and not 0.0 <= value <= 1.0:
        raise MappingError(f"{what} {value} is outside 0-1")
    return value


_SECONDS_PER_UNIT = {"seconds": 1.0, "milliseconds": 0.001}


def _quantiles(raw: object, unit: str, what: str) -> dict[float, float] | None:
    """Negative durations are left out: opossum reports -1 when its percentiles are off."""
    if raw is None:
        return None
    if not isinstance(raw, dict):
        raise MappingError(f"{what}: call duration quantiles are not an object")
    out: dict[float, float] = {}
    for key, value in raw.items():
        quantile = _number(key, f"{what} quantile")
        if not 0.0 <= quantile <= 1.0:
            raise MappingError(f"{what}: quantile {key!r} is outside 0-1")
        duration = _number(value, f"{what} call duration")
        if duration >= 0:
            out[quantile] = duration * _SECONDS_PER_UNIT[unit]
    return out or None


def _breaker(item: _Item, mapping: BreakersMapping, index: int) -> tuple[str, BreakerView]:
    name = _name(item, mapping.name, f"breakers[{index}]")
    what = f"breaker {name!r}"
    state_value = _field(item, mapping.state)
    if state_value is None:
        raise MappingError(f"{what}: no state (`{mapping.state}`)")

    def count(expression: str | None, field: str) -> int | None:
        raw = _field(item, expression)
        return None if raw is None else _count(raw, f"{what} {field}")

    def outcomes(calls: CallsMapping, field: str) -> dict[Outcome, int] | None:
        found = {o: count(getattr(calls, o), f"{field}.{o}") for o in OUTCOMES}
        return {o: n for o, n in found.items() if n is not None} or None

    raw_next = _field(item, mapping.next_attempt_at)
    view = BreakerView(
        state=_breaker_state(state_value),
        failure_ratio=_ratio(
            item, mapping.failure_ratio, mapping.failure_rate_percent, f"{what} failure ratio"
        ),
        calls=outcomes(mapping.calls, "calls"),
        transitions=_transitions(_field(item, mapping.transitions), what),
        next_attempt_at=None if raw_next is None else _number(raw_next, f"{what} next_attempt_at"),
        fallbacks=count(mapping.fallbacks, "fallbacks"),
        slow_calls=count(mapping.slow_calls, "slow_calls"),
        slow_call_ratio=_ratio(
            item, mapping.slow_call_ratio, mapping.slow_call_rate_percent, f"{what} slow call ratio"
        ),
        call_duration_quantiles=_quantiles(
            _field(item, mapping.call_duration_quantiles), mapping.call_duration_unit, what
        ),
        window_calls=outcomes(mapping.window_calls, "window_calls"),
        window_fallbacks=count(mapping.window_fallbacks, "window_fallbacks"),
    )
    return name, view


def _pool(item: _Item, mapping: PoolsMapping, index: int) -> tuple[str, PoolStats]:
    name = _name(item, mapping.name, f"pools[{index}]")
    what = f"pool {name!r}"

    def count(field: str) -> int | None:
        raw = _field(item, getattr(mapping, field))
        return None if raw is None else _count(raw, f"{what} {field}")

    size, in_use, idle = count("size"), count("in_use"), count("idle")
    if in_use is None and size is not None and idle is not None:
        in_use = size - idle
    if idle is None and size is not None and in_use is not None:
        idle = size - in_use
    if in_use is None or idle is None or in_use < 0 or idle < 0:
        raise MappingError(f"{what}: needs two of size, in_use and idle, consistent")
    max_size = count("max")
    if max_size is None:
        raise MappingError(f"{what}: no max (`{mapping.max}`)")

    def seconds(field: str) -> float | None:
        raw = _field(item, getattr(mapping, field))
        if raw is None:
            return None
        value = _number(raw, f"{what} {field}")
        if value < 0:
            raise MappingError(f"{what} {field}: {raw!r} is negative")
        return value

    def histogram(field: str) -> HistogramValue | None:
        return _histogram(_field(item, getattr(mapping, field)), f"{what} {field}")

    return name, PoolStats(
        in_use=in_use,
        idle=idle,
        max_size=max_size,
        min_size=count("min"),
        pending=count("waiting"),
        connect_errors=count("connect_errors"),
        acquire_errors=count("acquire_errors"),
        lost=count("lost"),
        overflow=count("overflow"),
        acquire=histogram("acquire_seconds"),
        connect=histogram("connect_seconds"),
        hold=histogram("hold_seconds"),
        long_held=count("long_held"),
        leak_threshold=seconds("leak_threshold_seconds"),
        oldest_checkout_age=seconds("oldest_checkout_age_seconds"),
    )


def _histogram(raw: object, what: str) -> HistogramValue | None:
    """Cumulative bucket counts keyed by upper bound (one of them `+Inf`) and a sum."""
    if raw is None:
        return None
    if not isinstance(raw, dict) or not isinstance(raw.get("buckets"), dict):
        raise MappingError(f"{what}: a histogram is an object with `buckets` and `sum`")
    bounds: list[tuple[float, int]] = []
    for key, value in raw["buckets"].items():
        bound = math.inf if str(key).strip().lower() in ("+inf", "inf") else None
        if bound is None:
            bound = _number(key, f"{what} bucket bound")
        bounds.append((bound, _count(value, f"{what} bucket {key!r}")))
    bounds.sort()
    if not bounds or bounds[-1][0] != math.inf:
        raise MappingError(f"{what}: no +Inf bucket")
    counts = [count for _, count in bounds]
    if any(later < earlier for earlier, later in itertools.pairwise(counts)):
        raise MappingError(f"{what}: bucket counts are not cumulative")
    return HistogramValue(
        bounds=tuple(bound for bound, _ in bounds[:-1]),
        cumulative_counts=tuple(counts),
        sum=_number(raw.get("sum", 0), f"{what} sum"),
    )


def apply(mapping: HealthMapping, document: Any) -> MappedHealth:
    """Map a decoded JSON document; raise `MappingError` when it does not fit."""
    try:
        return _apply(mapping, document)
    except jmespath.exceptions.JMESPathError as exc:  # e.g. a function given the wrong type
        raise MappingError(f"expression failed on this document: {exc}") from None


def _apply(mapping: HealthMapping, document: Any) -> MappedHealth:
    if mapping.check is not None and not search(mapping.check, document):
        raise MappingError(f"the document fails the mapping's check `{mapping.check}`")
    breakers: dict[str, BreakerView] = {}
    if mapping.breakers is not None:
        breakers = _by_name(document, mapping.breakers, _breaker, "breaker")
    pools: dict[str, PoolStats] = {}
    if mapping.pools is not None:
        pools = _by_name(document, mapping.pools, _pool, "pool")
    return MappedHealth(breakers, pools)


M = TypeVar("M", BreakersMapping, PoolsMapping)
V = TypeVar("V")


def _by_name(
    document: Any, mapping: M, read: Callable[[_Item, M, int], tuple[str, V]], what: str
) -> dict[str, V]:
    found: dict[str, V] = {}
    for index, item in enumerate(_items(document, mapping.items, f"{what}s")):
        name, value = read(item, mapping, index)
        if name in found:
            raise MappingError(f"{what} {name!r} reported twice")
        found[name] = value
    return found
