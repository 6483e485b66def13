"""The locked sets every install of this repository comes from (`make lock`, `make lock-check`).

    python -m scripts.lock             # after a change to pyproject.toml: what changed, only
    python -m scripts.lock --upgrade   # the newest releases within pyproject.toml's ranges
    python -m scripts.lock --check     # fail when a file below no longer matches pyproject.toml

Written from `pyproject.toml`, all with hashes:
- `uv.lock`: the package, its extras and the dependency groups, for every platform and Python the
  package supports (uv's universal lock). `make test`, `make demo` and `make bench` install it.
- `requirements/runtime.txt` and `requirements/build.txt`: the package's dependencies and its
  build backend, exported from `uv.lock`, for the image (the Dockerfile installs them with
  `--require-hashes`).
- `requirements/floor.txt`: the lowest release of every dependency the package and its
  `instrument-*` extras declare (uv's `--resolution lowest-direct`), with the `test` and
  `typecheck` groups, for Python 3.11; `make test-floor` runs the package's tests against it.
- `requirements/uv.txt`: uv itself, which `make` installs first.
- `bench/peers.txt`: the PyPI peer of `make bench` (prometheus-pgbouncer-exporter).

Only the standard library: this runs before anything is installed.
"""

from __future__ import annotations

import argparse
import difflib
import os
import re
import shutil
import subprocess
import sys
import tempfile
import tomllib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PYPROJECT = ROOT / "pyproject.toml"
REQUIREMENTS = ROOT / "requirements"
UV_REQUIREMENTS = REQUIREMENTS / "uv.txt"
UV_IN = REQUIREMENTS / "uv.in"
FLOOR_TXT = REQUIREMENTS / "floor.txt"
FLOOR_IN = REQUIREMENTS / "floor.in"
PEERS_IN = ROOT / "bench" / "peers.in"
PEERS_TXT = ROOT / "bench" / "peers.txt"
FLOOR_PYTHON = "3.11"
# The groups installed beside the floors: what the package's tests and mypy need.
FLOOR_GROUPS = ("test", "typecheck", "build")
HEADER = "# Exported from uv.lock by `make lock` (python -m scripts.lock): do not edit.\n"
_NAME = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)")
_FLOOR = re.compile(r">=\s*([0-9][0-9.]*)")
_RELEASE = re.compile(r"^v?([0-9]+(?:\.[0-9]+)*)")
_PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;\\]+)", re.MULTILINE)


class LockError(Exception):
    pass


def normalize(name: str) -> str:
    """A distribution's name as PyPI compares it (PEP 503)."""
    return re.sub(r"[-_.]+", "-", name).lower()


def release(version: str) -> tuple[int, ...]:
    """The numeric release of a version: `3.3`, `3.3.0` and `3.3.0.post1` are the same release
    (PEP 440: a post-release fixes the release's packaging, not its code)."""
    numeric = _RELEASE.match(version)
    if numeric is None:
        raise LockError(f"cannot read the version {version!r}")
    parts = [int(p) for p in numeric.group(1).split(".")]
    while len(parts) > 1 and parts[-1] == 0:
        parts.pop()
    return tuple(parts)


@dataclass(frozen=True)
class Requirement:
    name: str
    floor: str | None  # the version after `>=`, None without one
    text: str


def parse_requirement(text: str) -> Requirement:
    name = _NAME.match(text)
    if name is None:
        raise LockError(f"cannot read the requirement {text!r}")
    floor = _FLOOR.search(text)
    return Requirement(normalize(name.group(1)), floor.group(1) if floor else None, text)


def declared(pyproject: Path = PYPROJECT) -> list[Requirement]:
    """The package's runtime dependencies and those of each extra."""
    project = tomllib.loads(pyproject.read_text())["project"]
    texts = list(project["dependencies"])
    for extra in project.get("optional-dependencies", {}).values():
        texts += extra
    return [parse_requirement(t) for t in texts]


def group(name: str, pyproject: Path = PYPROJECT) -> list[str]:
    """A dependency group's requirements, its `include-group`s expanded."""
    groups = tomllib.loads(pyproject.read_text())["dependency-groups"]
    out: list[str] = []
    for item in groups[name]:
        out += group(item["include-group"], pyproject) if isinstance(item, dict) else [item]
    return out


def pins(text: str) -> dict[str, str]:
    """`name==version` lines of a requirements file, by normalized name."""
    return {normalize(name): version for name, version in _PIN.findall(text)}


def uv() -> str:
    found = os.environ.get("UV") or shutil.which("uv", path=str(ROOT / ".venv-tools" / "bin"))
    found = found or shutil.which("uv")
    if not found:
        raise LockError("uv not found: run `make uv` (or set UV=/path/to/uv)")
    return found


def run_uv(*args: str) -> str:
    result = subprocess.run(
        [uv(), *args], cwd=ROOT, capture_output=True, text=True, check=False, timeout=900
    )
    if result.returncode != 0:
        raise LockError(f"uv {' '.join(args[:2])} failed:\n{result.stderr.strip()}")
    return result.stdout


def export(*args: str) -> str:
    return run_uv(
        "export", "--frozen", "--format=requirements-txt", "--no-header", "--no-emit-project",
        *args,
    )  # fmt: skip


def compile_requirements(
    source: Path, *extra: str, output: Path | None = None, upgrade: bool = False
) -> str:
    """`uv pip compile` of `source` for Python 3.11, with hashes. Written to `output` when
    given, whose current pins uv keeps unless `upgrade` (or unless they no longer fit)."""
    with tempfile.TemporaryDirectory() as tmp:
        target = output or Path(tmp) / "requirements.txt"
        run_uv(
            "pip", "compile", str(source.relative_to(ROOT)), f"--python-version={FLOOR_PYTHON}",
            "--generate-hashes", "--quiet", "--custom-compile-command=make lock",
            f"--output-file={target}", *(["--upgrade"] if upgrade else []), *extra,
        )  # fmt: skip
        return target.read_text()


def write_source(path: Path, lines: Iterable[str], why: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        f"# Written by `make lock` from pyproject.toml: {why}\n"
        + "".join(f"{line}\n" for line in lines)
    )
    return path


def floor_pins() -> dict[str, str]:
    """What uv's `--resolution lowest-direct` picks for the declared ranges."""
    requirements = declared()
    with tempfile.TemporaryDirectory(dir=ROOT) as tmp:
        source = write_source(Path(tmp) / "declared.in", [r.text for r in requirements], "")
        resolved = pins(compile_requirements(source, "--resolution=lowest-direct"))
    names = {r.name for r in requirements}
    # psycopg[binary] is psycopg-binary at the same release: pinned with it.
    names |= {"psycopg-binary"} if "psycopg" in names else set()
    return {name: version for name, version in resolved.items() if name in names}


def write_floor(*, upgrade: bool) -> None:
    tools = [line for g in FLOOR_GROUPS for line in group(g)]
    floors = [f"{name}=={version}" for name, version in sorted(floor_pins().items())]
    source = write_source(
        FLOOR_IN, [*floors, *tools],
        "the lowest release of every range;\n# then the test, typecheck and build groups.",
    )  # fmt: skip
    compile_requirements(source, output=FLOOR_TXT, upgrade=upgrade)


def check_floor_file(text: str, requirements: Sequence[Requirement]) -> list[str]:
    """Problems with `requirements/floor.txt`: every declared floor pinned at its own release,
    so a floor raised in pyproject.toml without `make lock` is caught without resolving."""
    pinned = pins(text)
    problems = []
    for req in requirements:
        if req.floor is None:
            problems.append(f"{req.text}: no floor (`>=`) declared")
        elif req.name not in pinned:
            problems.append(f"{req.name} is not in requirements/floor.txt")
        elif release(pinned[req.name]) != release(req.floor):
            problems.append(
                f"{req.name}: pyproject.toml says >={req.floor}, requirements/floor.txt pins "
                f"{pinned[req.name]} (the lowest release that fits: say >={pinned[req.name]})"
            )
    return problems


def write_uv(*, upgrade: bool) -> None:
    version = run_uv("--version").split()[1]
    source = write_source(UV_IN, [f"uv=={version}"], "the uv that ran it.")
    compile_requirements(source, "--universal", output=UV_REQUIREMENTS, upgrade=upgrade)


def write_peers(*, upgrade: bool) -> None:
    # Their own pins need a compiler (psycopg2 2.8.5): installed with --no-deps, the binary
    # build of the same module beside it (bench/install-peers.sh).
    compile_requirements(PEERS_IN, "--no-deps", output=PEERS_TXT, upgrade=upgrade)


def derived() -> dict[Path, str]:
    """The files exported from uv.lock: a function of it alone."""
    return {
        REQUIREMENTS / "runtime.txt": HEADER + export("--no-dev"),
        REQUIREMENTS / "build.txt": HEADER + export("--only-group=build"),
    }


def write(files: dict[Path, str]) -> None:
    for path, text in files.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        print(f"wrote {path.relative_to(ROOT)}")


def refresh(*, upgrade: bool) -> None:
    run_uv("lock", *(["--upgrade"] if upgrade else []))
    write(derived())
    write_floor(upgrade=upgrade)
    write_uv(upgrade=upgrade)
    write_peers(upgrade=upgrade)
    for path in (FLOOR_TXT, UV_REQUIREMENTS, PEERS_TXT):
        print(f"wrote {path.relative_to(ROOT)}")


def check() -> list[str]:
    """What no longer matches: uv.lock against pyproject.toml (uv checks), the exports against
    uv.lock, the floor file against the declared floors."""
    problems = []
    try:
        run_uv("lock", "--check")
    except LockError as exc:
        problems.append(f"uv.lock does not match pyproject.toml: {exc}")
        return problems
    for path, wanted in derived().items():
        current = path.read_text() if path.exists() else ""
        if current != wanted:
            diff = difflib.unified_diff(
                current.splitlines(), wanted.splitlines(), str(path), "uv export", lineterm=""
            )
            problems.append(f"{path.relative_to(ROOT)} differs from uv.lock:\n" + "\n".join(diff))
    floor = FLOOR_TXT.read_text() if FLOOR_TXT.exists() else ""
    problems += check_floor_file(floor, declared())
    return problems


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    action = parser.add_mutually_exclusive_group()
    action.add_argument("--check", action="store_true", help="check, write nothing")
    action.add_argument(
        "--upgrade", action="store_true", help="newest releases, not only what changed"
    )
    args = parser.parse_args(argv)
    try:
        if not args.check:
            refresh(upgrade=args.upgrade)
            return 0
        problems = check()
    except LockError as exc:
        print(f"lock: {exc}", file=sys.stderr)
        return 1
    for problem in problems:
        print(f"lock: {problem}", file=sys.stderr)
    if problems:
        print("lock: run `make lock` and commit what it writes", file=sys.stderr)
        return 1
    print("lock: uv.lock and requirements/ match pyproject.toml")
    return 0


if __name__ == "__main__":
    sys.exit(main())
