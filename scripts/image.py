"""Build the Dockerfile's image with podman, with no container registry (`make image`).

    python -m scripts.image       # build, save as dist/resilience-exporter-<version>.oci.tar
    podman load -i dist/resilience-exporter-<version>.oci.tar  # or skopeo copy oci-archive:...

How, on a machine that reaches only Debian's and PyPI's package registries:
1. the base: a Debian bookworm root filesystem with Python made by `mmdebstrap`, imported with
   `podman import` and passed to the Dockerfile as PYTHON_IMAGE (its FROM);
2. the wheels: the locked set downloaded for the base's Python (`pip download
   --require-hashes` of requirements/runtime.txt and build.txt, exported from uv.lock, with the
   base's version and platform), then checked by the base's own pip; the build installs them
   offline (`--no-index --find-links`) and builds the package from the source with them;
3. `podman build --pull=never`, version, revision and build time as the OCI labels' build args.

Everything podman keeps (storage, run state, its containers.conf) lives in one temporary
directory that is removed afterwards. Pitfalls measured on the project's machines: crun fails
there, so runc with cgroupfs; podman's default ulimits exceed the host's; Debian's Python
refuses a system-wide pip install, hence the venv in the Dockerfile.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from packaging.markers import Marker, default_environment

import resilience_exporter

ROOT = Path(__file__).resolve().parent.parent
DIST = ROOT / "dist"
REPOSITORY = "ghcr.io/resilience-exporter/resilience-exporter"  # the chart's image.repository
BASE_IMAGE = "localhost/resilience-exporter-base:bookworm"
TOOLS = ("podman", "runc", "mmdebstrap")
CONTAINERS_CONF = """\
[containers]
default_ulimits = ["nofile=20000:20000", "nproc=32768:32768"]

[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
"""
# Leave documentation and translations out of the base: smaller, nothing runs them.
DPKG_EXCLUDES = ("/usr/share/doc/*", "/usr/share/man/*", "/usr/share/locale/*",
                 "/usr/share/info/*")  # fmt: skip
# What the image installs, exported from uv.lock by `make lock`: the package's dependencies and
# its build backend.
LOCKED = (ROOT / "requirements" / "runtime.txt", ROOT / "requirements" / "build.txt")


class ImageError(Exception):
    pass


def image_ref(version: str = resilience_exporter.__version__) -> str:
    return f"{REPOSITORY}:{version}"


@dataclass
class Podman:
    """podman with its own storage, run state and configuration under `home`."""

    home: Path

    @property
    def env(self) -> dict[str, str]:
        return {**os.environ, "CONTAINERS_CONF": str(self.home / "containers.conf")}

    def call(self, *args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
        argv = ["podman", "--root", str(self.home / "storage"),
                "--runroot", str(self.home / "run"), *args]  # fmt: skip
        return subprocess.run(
            argv, capture_output=True, text=True, timeout=timeout, env=self.env, check=False
        )

    def run(self, *args: str, timeout: float = 600, check: bool = True) -> str:
        result = self.call(*args, timeout=timeout)
        if check and result.returncode != 0:
            raise ImageError(f"podman {' '.join(args[:2])} failed:\n{result.stderr[-4000:]}")
        return result.stdout

    def remove_container(self, name: str) -> None:
        self.run("rm", "-f", "-t", "0", name, check=False, timeout=60)

    def inspect(self, ref: str) -> dict[str, object]:
        found: list[dict[str, object]] = json.loads(self.run("image", "inspect", ref))
        return found[0]


@contextmanager
def podman_home() -> Iterator[Podman]:
    missing = [tool for tool in TOOLS if shutil.which(tool) is None]
    if missing:
        raise ImageError(f"missing {', '.join(missing)}: run `make image-tools` (as root)")
    home = Path(tempfile.mkdtemp(prefix="resilience-image-"))
    (home / "containers.conf").write_text(CONTAINERS_CONF)
    podman = Podman(home)
    try:
        yield podman
    finally:
        # Only what lives in this storage: `system reset` would also drop networks of the
        # machine's podman, which are not ours.
        podman.run("rm", "--all", "--force", "--time", "0", check=False, timeout=120)
        podman.run("rmi", "--all", "--force", check=False, timeout=300)
        _unmount_under(home)  # the overlay driver keeps a private mount of its directory
        shutil.rmtree(home, ignore_errors=True)


def _unmount_under(directory: Path) -> None:
    mountpoints = [
        line.split()[1]
        for line in Path("/proc/self/mounts").read_text().splitlines()
        if line.split()[1].startswith(f"{directory}/")
    ]
    for mountpoint in sorted(mountpoints, reverse=True):
        subprocess.run(["umount", "--lazy", mountpoint], check=False, timeout=60)


def make_base(podman: Podman) -> None:
    rootfs = podman.home / "rootfs.tar"
    subprocess.run(
        ["mmdebstrap", "--variant=apt", "--include=python3,python3-venv,ca-certificates",
         *(f"--dpkgopt=path-exclude={path}" for path in DPKG_EXCLUDES),
         "bookworm", str(rootfs)],
        check=True, capture_output=True, timeout=900,
    )  # fmt: skip
    podman.run("import", str(rootfs), BASE_IMAGE)
    rootfs.unlink()


def base_python(podman: Podman) -> tuple[str, str]:
    """The base's Python version and glibc version."""
    out = podman.run(
        "run", "--rm", "--network=host", BASE_IMAGE, "python3", "-c",
        "import platform; print(platform.python_version(), platform.libc_ver()[1])",
    )  # fmt: skip
    python, glibc = out.split()
    return python, glibc


def _pip(*args: str) -> None:
    subprocess.run(
        [sys.executable, "-m", "pip", "--disable-pip-version-check", "--quiet", *args],
        check=True, timeout=900,
    )  # fmt: skip


def make_wheels(podman: Podman, wheels: Path) -> None:
    """The locked set the package runs with and the locked build backend (the Dockerfile
    builds the package from the source), as wheels for the base's Python."""
    python, glibc = base_python(podman)
    major, minor = python.split(".")[:2]
    glibc_minor = int(glibc.split(".")[1])
    platforms = [f"--platform=manylinux_2_{m}_x86_64" for m in range(glibc_minor, 4, -1)]
    target = ["--only-binary=:all:", f"--python-version={python}", "--implementation=cp",
              f"--abi=cp{major}{minor}", "--abi=abi3", "--abi=none", *platforms]  # fmt: skip
    decided = podman.home / "requirements-for-base.txt"
    decided.write_text("".join(for_python(r.read_text(), python) for r in LOCKED))
    _pip("download", f"--dest={wheels}", "--require-hashes", "--no-deps", *target,
         f"--requirement={decided}")  # fmt: skip
    _check_in_base(podman, wheels)


def for_python(requirements: str, python: str) -> str:
    """A requirements file with each entry's marker decided for `python` on this platform:
    pip on the host applies --python-version to python_version markers but its own Python to
    python_full_version ones (the base's 3.11.2 needs async-timeout, below 3.11.3)."""
    environment = {key: str(value) for key, value in default_environment().items()}
    environment["python_full_version"] = python
    environment["python_version"] = ".".join(python.split(".")[:2])
    kept: list[str] = []
    for entry in re.split(r"\n(?=[^\s#])", requirements):
        first, _, rest = entry.partition("\n")
        requirement, marker_found, marker = first.partition(";")
        if marker_found and not first.startswith("#"):
            if not Marker(marker.rstrip(" \\")).evaluate(environment):
                continue
            first = requirement.rstrip() + " \\"
        kept.append(f"{first}\n{rest}" if rest else first)
    return "\n".join(kept).rstrip("\n") + "\n"


def _check_in_base(podman: Podman, wheels: Path) -> None:
    """The base's own pip installs the lock from the wheels: pip on the host applies
    --python-version to python_version markers but its own Python to python_full_version ones."""
    check = (
        "python3 -m venv /tmp/venv && /tmp/venv/bin/pip install --quiet --no-index "
        "--find-links=/wheels --dry-run --ignore-installed --require-hashes --no-deps "
        + " ".join(f"--requirement=/requirements/{r.name}" for r in LOCKED)
    )
    result = podman.call(
        "run", "--rm", "--network=none", "-v", f"{wheels}:/wheels:ro",
        "-v", f"{LOCKED[0].parent}:/requirements:ro", BASE_IMAGE, "sh", "-c", check,
    )  # fmt: skip
    if result.returncode != 0:
        raise ImageError(f"the base's pip refused the locked wheels:\n{result.stderr[-4000:]}")


def revision() -> str:
    result = subprocess.run(
        ["git", "-C", str(ROOT), "rev-parse", "HEAD"],
        capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
    return result.stdout.strip() if result.returncode == 0 else "unknown"


def build(podman: Podman, *, version: str = resilience_exporter.__version__) -> str:
    """Build the image into `podman`'s storage; its reference."""
    make_base(podman)
    wheels = podman.home / "wheels"
    wheels.mkdir()
    make_wheels(podman, wheels)
    ref = image_ref(version)
    created = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    podman.run(
        "build", "--pull=never", "--network=none",
        f"--build-arg=PYTHON_IMAGE={BASE_IMAGE}",
        "--build-arg=PIP_INSTALL_OPTIONS=--no-index --find-links=/wheels",
        f"--build-arg=VERSION={version}", f"--build-arg=REVISION={revision()}",
        f"--build-arg=CREATED={created}",
        "-v", f"{wheels}:/wheels:ro", "-t", ref, str(ROOT),
        timeout=1200,
    )  # fmt: skip
    return ref


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=DIST, help="where the OCI archive goes")
    args = parser.parse_args(argv)
    try:
        with podman_home() as podman:
            ref = build(podman)
            args.out.mkdir(parents=True, exist_ok=True)
            archive = args.out / f"resilience-exporter-{resilience_exporter.__version__}.oci.tar"
            podman.run("save", "--format=oci-archive", "-o", str(archive), ref)
    except (ImageError, subprocess.SubprocessError) as exc:
        print(f"image: {exc}", file=sys.stderr)
        return 1
    print(f"{ref} saved as {archive}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
