"""`make bench`: resilience-exporter against the peer exporters, side by side in one run.
`make bench-scale` (or `--scale`): cost and punctuality as the number of targets grows.

Results go to bench/results/ as Markdown and JSON (and a PNG in scale mode)."""

from __future__ import annotations

import argparse
import os
import shlex
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

from bench import compare, fleet, report, scale

REPO = Path(__file__).resolve().parent.parent

RESULTS = REPO / "bench" / "results"


def parse(argv: Sequence[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python3 -m bench.run", description=__doc__)
    p.add_argument("--scale", action="store_true", help="scale mode instead of the comparison")
    p.add_argument("--fleet", action="store_true",
                   help="fleet mode: --fleet-targets scraped by a real Prometheus")  # fmt: skip
    p.add_argument("--fleet-targets", type=int, default=2000)
    p.add_argument("--shards", type=int, default=1, help="fleet mode: exporter processes")
    p.add_argument("--minutes", type=float, default=5.0, help="fleet mode: measured minutes")
    p.add_argument("--out", type=Path, default=RESULTS, help="where results go")
    p.add_argument("--scrapes", type=int, default=300, help="scrapes of each exporter")
    p.add_argument("--rate", type=float, default=5.0, help="scrapes per second per exporter")
    p.add_argument("--steady-seconds", type=float, default=60.0)
    p.add_argument("--interval", type=float, default=None,
                   help="probe interval, seconds (default 5, scale mode 15)")  # fmt: skip
    p.add_argument("--probe-rounds", type=int, default=200)
    p.add_argument("--targets", default="100,500,1000", help="scale mode: comma-separated N")
    p.add_argument("--cycles", type=int, default=3, help="scale mode: intervals measured")
    p.add_argument("--databases", type=int, default=100, help="scale mode: databases created")
    p.add_argument("--no-pin", action="store_true",
                   help="scale mode: leave the exporter and PostgreSQL on any CPU")  # fmt: skip
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse(sys.argv[1:] if argv is None else argv)
    # `make bench` names itself; run directly, the command line is quoted.
    command = os.environ.get("BENCH_COMMAND") or "python3 -m bench.run " + shlex.join(
        sys.argv[1:] if argv is None else argv
    )
    with tempfile.TemporaryDirectory(prefix="resilience-bench-") as tmp:
        workdir = Path(tmp)
        if args.fleet:
            fleet_options = fleet.Options(
                targets=args.fleet_targets,
                postgres_targets=max(1, args.fleet_targets // 20),
                shards=args.shards,
                interval=args.interval or 15.0,
                minutes=args.minutes,
                pin=not args.no_pin,
            )
            result = fleet.run(fleet_options, workdir)
            stem = f"fleet-{args.fleet_targets}" + (f"x{args.shards}" if args.shards > 1 else "")
            markdown = report.fleet_markdown(result, command, image=f"{stem}.png")
            report.write(result, markdown, args.out, stem)
            fleet.plot(result, args.out / f"{stem}.png")
        elif args.scale:
            options = scale.Options(
                targets=tuple(int(n) for n in args.targets.split(",")),
                interval=args.interval or 15.0,
                cycles=args.cycles,
                databases=args.databases,
                pin=not args.no_pin,
            )
            result = scale.run(options, workdir)
            markdown = report.scale_markdown(result, command)
            report.write(result, markdown, args.out, "scale")
            scale.plot(result, args.out / "scale.png")
        else:
            result = compare.run(
                compare.Options(
                    scrapes=args.scrapes,
                    rate=args.rate,
                    steady_seconds=args.steady_seconds,
                    interval=args.interval or 5.0,
                    probe_rounds=args.probe_rounds,
                ),
                workdir,
            )
            markdown = report.compare_markdown(result, command)
            report.write(result, markdown, args.out, "compare")
    print(markdown)
    return 0


if __name__ == "__main__":
    sys.exit(main())
