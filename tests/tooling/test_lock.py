"""scripts/lock.py's own checks, which `make lock-check` runs on every `make test`: a floor
raised in pyproject.toml without `make lock` is caught without resolving anything."""

from __future__ import annotations

import pytest

from scripts.lock import LockError, check_floor_file, parse_requirement, pins, release

FLOOR_FILE = """\
redis==6.0.0 \\
    --hash=sha256:00
sqlalchemy==2.0.5.post1 \\
    --hash=sha256:01
    # via -r requirements/floor.in
"""


@pytest.mark.parametrize(
    ("a", "b"), [("3.3", "3.3.0"), ("2.0.5", "2.0.5.post1"), ("1.0", "v1.0.0")]
)
def test_the_same_release(a: str, b: str) -> None:
    assert release(a) == release(b)


def test_a_version_with_no_release_is_an_error() -> None:
    with pytest.raises(LockError, match="cannot read the version"):
        release("dev")


def test_pins_by_normalized_name() -> None:
    assert pins("Foo_Bar==1.2 \\\n    --hash=sha256:00\nbaz==3 ; python_version < '3.12'\n") == {
        "foo-bar": "1.2",
        "baz": "3",
    }


def test_floors_that_match_the_file() -> None:
    declared = [parse_requirement("redis>=6.0"), parse_requirement("SQLAlchemy>=2.0.5")]
    assert check_floor_file(FLOOR_FILE, declared) == []


def test_a_raised_floor_a_missing_pin_and_no_floor_are_each_named() -> None:
    declared = [
        parse_requirement("redis>=6.1"),
        parse_requirement("aiohttp>=3.11"),
        parse_requirement("jmespath"),
    ]
    assert check_floor_file(FLOOR_FILE, declared) == [
        "redis: pyproject.toml says >=6.1, requirements/floor.txt pins 6.0.0 (the lowest "
        "release that fits: say >=6.0.0)",
        "aiohttp is not in requirements/floor.txt",
        "jmespath: no floor (`>=`) declared",
    ]
