"""scripts/check_layout.py: the repository keeps the layout rules, and each rule catches its
breach in a small tree made for it."""

from __future__ import annotations

from pathlib import Path

from scripts import check_layout

REPO = Path(__file__).resolve().parents[2]


def make_tree(root: Path, files: dict[str, str]) -> Path:
    """A tree outside git (the check then reads every file under it)."""
    for name, text in {"resilience_exporter/__init__.py": "", **files}.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return root


def test_the_repository_keeps_the_layout() -> None:
    assert check_layout.breaches(REPO) == []


def test_a_file_over_the_limit(tmp_path: Path) -> None:
    body = "x = 1\n" * (check_layout.MAX_FILE_LINES + 1)
    root = make_tree(tmp_path, {"resilience_exporter/big.py": body, "tools/fine.py": "x = 1\n"})
    assert check_layout.breaches(root) == [
        f"resilience_exporter/big.py: {check_layout.MAX_FILE_LINES + 1} lines "
        f"(at most {check_layout.MAX_FILE_LINES})"
    ]


def test_a_function_over_the_limit(tmp_path: Path) -> None:
    body = "def long() -> None:\n" + "    pass\n" * check_layout.MAX_FUNCTION_LINES
    root = make_tree(tmp_path, {"resilience_exporter/long.py": body})
    (breach,) = check_layout.breaches(root)
    assert breach.startswith("resilience_exporter/long.py:1: long() is 81 lines")


def test_a_cycle_through_an_import_for_types_only(tmp_path: Path) -> None:
    root = make_tree(
        tmp_path,
        {
            "resilience_exporter/loader.py": "from resilience_exporter import registry\n",
            "resilience_exporter/registry.py": (
                "from typing import TYPE_CHECKING\n"
                "if TYPE_CHECKING:\n"
                "    from resilience_exporter.loader import Config\n"
            ),
        },
    )
    assert check_layout.breaches(root) == [
        "import cycle: resilience_exporter.loader ↔ resilience_exporter.registry"
    ]


def test_a_cycle_through_a_package_init(tmp_path: Path) -> None:
    """Importing room.leaf runs room/__init__.py, which imports the importer back."""
    root = make_tree(
        tmp_path,
        {
            "resilience_exporter/top.py": "from resilience_exporter.room.leaf import x\n",
            "resilience_exporter/room/__init__.py": "from resilience_exporter import top\n",
            "resilience_exporter/room/leaf.py": "x = 1\n",
            # A package's own modules import each other freely.
            "resilience_exporter/room/sibling.py": "from resilience_exporter.room import leaf\n",
        },
    )
    assert check_layout.breaches(root) == [
        "import cycle: resilience_exporter.room ↔ resilience_exporter.top"
    ]


def test_a_room_importing_one_above_it(tmp_path: Path) -> None:
    root = make_tree(
        tmp_path,
        {
            "resilience_exporter/web/__init__.py": "",
            "resilience_exporter/web/app.py": "",
            "resilience_exporter/metrics/__init__.py": "",
            "resilience_exporter/metrics/exposition.py": (
                "from resilience_exporter.web import app\n"
            ),
            # The one import the flow needs upwards: the loader asks the registry.
            "resilience_exporter/probing/__init__.py": "",
            "resilience_exporter/probing/registry.py": "",
            "resilience_exporter/configuration/__init__.py": "",
            "resilience_exporter/configuration/loader.py": (
                "from resilience_exporter.probing import registry\n"
            ),
        },
    )
    assert check_layout.breaches(root) == [
        "resilience_exporter.metrics.exposition imports resilience_exporter.web: "
        "room web is above metrics",
        "resilience_exporter.metrics.exposition imports resilience_exporter.web.app: "
        "room web is above metrics",
    ]


def test_two_modules_with_one_name(tmp_path: Path) -> None:
    root = make_tree(
        tmp_path,
        {
            "resilience_exporter/metrics/pools.py": "",
            "resilience_exporter/instrument/pools.py": "",
            # The kinds' packages mirror each other on purpose.
            "resilience_exporter/probes/redis/probe.py": "",
            "resilience_exporter/probes/postgres/probe.py": "",
        },
    )
    assert check_layout.breaches(root) == [
        "module name 'pools' used by resilience_exporter/instrument/pools.py, "
        "resilience_exporter/metrics/pools.py"
    ]


def test_a_test_module_importing_another(tmp_path: Path) -> None:
    root = make_tree(
        tmp_path,
        {
            "tests/tooling/test_helm.py": "def render() -> None: ...\n",
            "tests/test_chart.py": "from test_helm import render\n",
            "tests/chart_support.py": "",
            "tests/test_rules.py": "from chart_support import render\n",
        },
    )
    assert check_layout.breaches(root) == [
        "tests/test_chart.py imports the test module test_helm: share through a support module"
    ]


def test_docs_naming_a_module_that_does_not_exist(tmp_path: Path) -> None:
    root = make_tree(
        tmp_path,
        {
            "resilience_exporter/web/__init__.py": '"""The web room: its server."""\n',
            "resilience_exporter/web/app.py": "def make_app() -> None: ...\n",
            "README.md": (
                "The app (`web/app.py`, `app.py`, `resilience_exporter.web.app.make_app`).\n"
                "Gone: `web/server.py` and `resilience_exporter.web.server`.\n"
                "A template is no name: `probes/<kind>.py`.\n"
            ),
            "bench/results/old.md": "Lab notes may name `exporter/collector.py`.\n",
        },
    )
    assert check_layout.breaches(root) == [
        "README.md:2: names web/server.py, which does not exist",
        "README.md:2: names resilience_exporter.web.server, which does not exist",
    ]


def test_main_says_so_in_its_exit_code(tmp_path: Path) -> None:
    assert check_layout.main([str(make_tree(tmp_path / "fine", {}))]) == 0
    broken = make_tree(tmp_path / "broken", {"README.md": "`gone.py`\n"})
    assert check_layout.main([str(broken)]) == 1
