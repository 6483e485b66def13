"""Writing samples in Prometheus' text format 0.0.4 and in OpenMetrics 1.0.0.

The two formats differ only in their family headers (OpenMetrics names a counter without its
`_total` and escapes `"` in help texts) and in OpenMetrics' closing `# EOF`: sample lines are
the same bytes in both, so a snapshot's lines are written once and serve either format.
Numbers are written as client_python and Go write them.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Iterable, Mapping, Sequence
from enum import Enum

from resilience_exporter.metrics.families import (
    CATALOG,
    Family,
    HistogramValue,
    Sample,
    SampleValue,
    SummaryValue,
)

EOF = b"# EOF\n"


class Format(Enum):
    TEXT = "text"
    OPENMETRICS = "openmetrics"

    @property
    def content_type(self) -> str:
        if self is Format.OPENMETRICS:
            return "application/openmetrics-text; version=1.0.0; charset=utf-8"
        return "text/plain; version=0.0.4; charset=utf-8"


def go_float(value: float) -> str:
    """A number as Go's strconv writes it for Prometheus (client_python's spelling too)."""
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if math.isnan(value):
        return "NaN"
    text = repr(float(value))
    dot = text.find(".")
    # Go switches to exponents for large numbers sooner than Python does.
    if value > 0 and dot > 6:
        mantissa = f"{text[0]}.{text[1:dot]}{text[dot + 1 :]}".rstrip("0.")
        return f"{mantissa}e+{dot - 1:02d}"
    return text


def _escape_label_value(value: str) -> str:
    return value.replace("\\", r"\\").replace("\n", r"\n").replace('"', r"\"")


def label_string(labels: Iterable[tuple[str, str]]) -> str:
    """`{a="1",b="2"}` sorted by name, leaving out empty values (as Prometheus does)."""
    pairs = sorted((k, v) for k, v in labels if v != "")
    if not pairs:
        return ""
    return "{" + ",".join(f'{k}="{_escape_label_value(v)}"' for k, v in pairs) + "}"


@functools.cache
def header(fam: Family, fmt: Format) -> bytes:
    """A family's `# HELP` and `# TYPE` lines."""
    help_text = fam.help.replace("\\", r"\\").replace("\n", r"\n")
    name = fam.name
    if fmt is Format.OPENMETRICS:
        help_text = help_text.replace('"', r"\"")
        if fam.type == "counter":
            name = name.removesuffix("_total")
    return f"# HELP {name} {help_text}\n# TYPE {name} {fam.type}\n".encode()


@functools.cache
def _bucket_bounds(bounds: tuple[float, ...]) -> tuple[str, ...]:
    return (*(go_float(b) for b in bounds), "+Inf")


def _label_strings(sample: Sample) -> tuple[str, ...]:
    """The series' label sets as written: the plain one, then one per bucket (with `le`)."""
    plain = label_string(sample.labels)
    value = sample.value
    if not isinstance(value, HistogramValue):
        return (plain,)
    labels = tuple(sample.labels)
    return (plain, *(label_string((*labels, ("le", le))) for le in _bucket_bounds(value.bounds)))


def _write(sample: Sample, labels: tuple[str, ...]) -> str:
    name, value = sample.family.name, sample.value
    if isinstance(value, HistogramValue):
        counts = (*value.cumulative_counts[: len(value.bounds)], value.count)
        lines = [
            f"{name}_bucket{le} {go_float(count)}\n"
            for le, count in zip(labels[1:], counts, strict=True)
        ]
        lines.append(f"{name}_count{labels[0]} {go_float(value.count)}\n")
        lines.append(f"{name}_sum{labels[0]} {go_float(value.sum)}\n")
        return "".join(lines)
    if isinstance(value, SummaryValue):
        return (
            f"{name}_count{labels[0]} {go_float(value.count)}\n"
            f"{name}_sum{labels[0]} {go_float(value.sum)}\n"
        )
    return f"{name}{labels[0]} {go_float(value)}\n"


ValueKey = float | str | tuple[object, ...]


def _value_key(value: SampleValue) -> ValueKey:
    """What decides how a value is written, as plain numbers and tuples (the garbage collector
    does not follow those: a writer's memory costs it nothing)."""
    if isinstance(value, HistogramValue):
        return (value.cumulative_counts, repr(value.sum))
    if isinstance(value, SummaryValue):
        return (value.count, repr(value.sum))
    return value if value != 0 else repr(value)  # 0.0 and -0.0 are equal, not written alike


SeriesKey = tuple[str, tuple[tuple[str, str], ...]]
# A target's families as written: (family name, its sample lines), by name. The same bytes
# serve both formats; headers are added when families are joined.
Lines = tuple[tuple[str, bytes], ...]


class LineWriter:
    """Writes a target's samples again and again: a series whose value has not changed since
    the last call is not written again, and its label sets are written once. Holds only the
    series of the last call.

    What it keeps are strings, numbers and tuples of them, each series' tuples made once: the
    garbage collector stops following such tuples, so thousands of targets' writers add
    nothing to its work.
    """

    def __init__(self) -> None:
        self._last: dict[SeriesKey, tuple[ValueKey, tuple[str, ...], str]] = {}

    def write(self, samples: Sequence[Sample]) -> Lines:
        last = self._last
        by_family: dict[str, list[str]] = {}
        for s in samples:
            key = (s.family.name, s.labels)
            value_key = _value_key(s.value)
            entry = last.get(key)
            if entry is None:
                labels = _label_strings(s)
                entry = last[key] = (value_key, labels, _write(s, labels))
            elif entry[0] != value_key:
                # Assigning to a key that is there keeps the key object from before.
                entry = last[key] = (value_key, entry[1], _write(s, entry[1]))
            by_family.setdefault(s.family.name, []).append(entry[2])
        if len(last) > len(samples):  # series gone since the last call
            current = {(s.family.name, s.labels) for s in samples}
            for gone in last.keys() - current:
                del last[gone]
        written = [(name, "".join(by_family[name]).encode()) for name in sorted(by_family)]
        return tuple(written)


def join(
    fmt: Format, families: Iterable[tuple[str, Sequence[bytes]]], declared: Mapping[str, Family]
) -> bytes:
    """Families' headers and lines, in the order given (no `# EOF`). Each family comes with
    the lines of every target that has it."""
    parts: list[bytes] = []
    for name, lines in families:
        parts.append(header(declared[name], fmt))
        parts.extend(lines)
    return b"".join(parts)


def render(fmt: Format, samples: Sequence[Sample]) -> bytes:
    """A whole exposition of the samples (with OpenMetrics' `# EOF`)."""
    declared = {s.family.name: s.family for s in samples}
    body = join(fmt, ((name, (lines,)) for name, lines in LineWriter().write(samples)), declared)
    return body + EOF if fmt is Format.OPENMETRICS else body


def render_lines(fmt: Format, lines: Lines) -> bytes:
    """A whole exposition of one target's written lines (declared families only)."""
    body = join(fmt, ((name, (text,)) for name, text in lines), CATALOG)
    return body + EOF if fmt is Format.OPENMETRICS else body
