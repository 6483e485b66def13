"""Writing samples in Prometheus' text format 0.0.4 and in OpenMetrics 1.0.0.

The two formats differ only in their family headers (OpenMetrics names a counter without its
`_total` and escapes `"` in help texts) and in OpenMetrics' closing `# EOF`: sample lines are
the same bytes in both, so a snapshot's lines are written once and serve either format.
Numbers are written as client_python and Go write them.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Iterable, Sequence
from enum import Enum

from resilience_exporter.families import Family, HistogramValue, Sample, SummaryValue

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


def _sample_lines(sample: Sample, out: list[str]) -> None:
    name, value = sample.family.name, sample.value
    if isinstance(value, HistogramValue):
        labels = tuple(sample.labels)
        bounds = _bucket_bounds(value.bounds)
        counts = (*value.cumulative_counts[: len(value.bounds)], value.count)
        for bound, count in zip(bounds, counts, strict=True):
            le = label_string((*labels, ("le", bound)))
            out.append(f"{name}_bucket{le} {go_float(count)}\n")
        plain = label_string(labels)
        out.append(f"{name}_count{plain} {go_float(value.count)}\n")
        out.append(f"{name}_sum{plain} {go_float(value.sum)}\n")
    elif isinstance(value, SummaryValue):
        plain = label_string(sample.labels)
        out.append(f"{name}_count{plain} {go_float(value.count)}\n")
        out.append(f"{name}_sum{plain} {go_float(value.sum)}\n")
    else:
        out.append(f"{name}{label_string(sample.labels)} {go_float(value)}\n")


def family_lines(samples: Iterable[Sample]) -> list[tuple[Family, bytes]]:
    """The samples' lines, family by family in name order (the same bytes in both formats)."""
    by_family: dict[str, tuple[Family, list[str]]] = {}
    for s in samples:
        entry = by_family.get(s.family.name)
        if entry is None:
            entry = by_family[s.family.name] = (s.family, [])
        _sample_lines(s, entry[1])
    return [
        (by_family[name][0], "".join(by_family[name][1]).encode()) for name in sorted(by_family)
    ]


def join(fmt: Format, blocks: Sequence[tuple[Family, bytes]]) -> bytes:
    """Families with their headers, as they come (no `# EOF`)."""
    parts: list[bytes] = []
    for fam, lines in blocks:
        parts.append(header(fam, fmt))
        parts.append(lines)
    return b"".join(parts)


def render(fmt: Format, samples: Iterable[Sample]) -> bytes:
    """A whole exposition of the samples (with OpenMetrics' `# EOF`)."""
    body = join(fmt, family_lines(samples))
    return body + EOF if fmt is Format.OPENMETRICS else body
