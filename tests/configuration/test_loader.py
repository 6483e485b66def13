"""Config loading: every rejection names file, line and key; secrets are kept out of sight."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from exporter_process import run_exporter
from hypothesis import example, given, settings
from hypothesis import strategies as st

from resilience_exporter.configuration import loader
from resilience_exporter.configuration.models import parse_duration
from resilience_exporter.configuration.yamlfile import ConfigError, ConfigIssue
from resilience_exporter.probes.postgres import PostgresTarget
from resilience_exporter.probing import registry
from resilience_exporter.probing.sharding import Shard, assigned_targets

VALID = """\
defaults: {interval: 15s, timeout: 5s}
targets:
  - name: orders-db
    kind: postgres
    dsn: postgresql://monitor@127.0.0.1:5432/postgres
    password: ${ORDERS_DB_PASSWORD}
    pool: {min_size: 1, max_size: 2}
    labels: {team: payments}
host: {enabled: true}
"""


def test_valid_config_applies_defaults_and_hides_the_secret() -> None:
    cfg = loader.parse(VALID, "c.yml", env={"ORDERS_DB_PASSWORD": "s3cr3t-value"})
    (target,) = cfg.targets
    assert isinstance(target, PostgresTarget)
    assert target.interval_seconds == 15
    assert target.timeout_seconds == 5
    assert target.resolve_password() == "s3cr3t-value"
    assert "s3cr3t-value" not in repr(target)
    assert "s3cr3t-value" not in target.describe()
    assert target.labels == {"team": "payments"}
    assert [t.name for t in assigned_targets(cfg, Shard())] == ["host", "orders-db"]


@pytest.mark.parametrize(
    ("text", "line", "key", "message"),
    [
        ("targets:\n  - name: a\n    kind: postgres\n   dsn: x\n", 4, "", "invalid YAML"),
        (VALID.replace("labels:", "lables:"), 8, "targets[0].lables", "unknown key"),
        (
            VALID.replace("interval: 15s", "interval: 15 seconds"),
            1,
            "defaults.interval",
            "not a duration",
        ),
        (
            VALID.replace("max_size: 2", "max_size: two"),
            7,
            "targets[0].pool.max_size",
            "valid integer",
        ),
        (
            VALID.replace("${ORDERS_DB_PASSWORD}", "${MISSING_SECRET}"),
            6,
            "targets[0].password",
            "MISSING_SECRET is not set",
        ),
        (VALID.replace("kind: postgres", "kind: oracle"), 4, "targets[0].kind", "unknown kind"),
        (VALID + "extra: 1\n", 10, "extra", "unknown key"),
        (
            VALID.replace("timeout: 5s", "timeout: 20s"),
            3,
            "targets[0].timeout",
            "must not exceed the interval",
        ),
        (
            VALID.replace("team: payments", "target: x"),
            8,
            "targets[0].labels",
            "set by the exporter",
        ),
        (VALID.replace("min_size: 1", "min_size: 3"), 7, "targets[0].pool", "min_size"),
        (VALID.replace("enabled: true", "enabled: maybe"), 9, "host.enabled", "boolean"),
        (
            VALID.replace("  - name: orders-db", "  - name: orders-db\n    name: again"),
            4,
            "targets[0].name",
            "duplicate key",
        ),
    ],
    ids=[
        "bad-yaml",
        "unknown-key",
        "bad-duration",
        "wrong-type",
        "missing-env-secret",
        "unknown-kind",
        "unknown-top-level-key",
        "timeout-over-interval",
        "reserved-label",
        "pool-min-over-max",
        "host-wrong-type",
        "duplicate-key",
    ],
)
def test_rejections_name_file_line_and_key(text: str, line: int, key: str, message: str) -> None:
    with pytest.raises(ConfigError) as raised:
        loader.parse(text, "conf/exporter.yml", env={"ORDERS_DB_PASSWORD": "pw"})
    issue = raised.value.issues[0]
    assert (issue.file, issue.line) == ("conf/exporter.yml", line), str(raised.value)
    assert issue.key == key
    assert message in issue.message
    assert str(issue).startswith(f"conf/exporter.yml:{line}: ")


def test_password_in_dsn_moves_to_the_secret() -> None:
    text = "targets:\n  - {name: a, kind: postgres, dsn: 'postgresql://u:Pa55word-x@h/db'}\n"
    (target,) = loader.parse(text, "c.yml").targets
    assert isinstance(target, PostgresTarget)
    assert "Pa55word-x" not in target.dsn
    assert target.resolve_password() == "Pa55word-x"


def test_password_in_dsn_and_key_conflict() -> None:
    text = "targets:\n  - {name: a, kind: postgres, dsn: 'postgresql://u:pw1@h/db', password: x}\n"
    with pytest.raises(ConfigError, match="dsn holds a password"):
        loader.parse(text, "c.yml")


def test_password_file_is_read_at_use(tmp_path: Path) -> None:
    secret = tmp_path / "pw"
    secret.write_text("first-secret\n")
    text = f"targets:\n  - {{name: a, kind: postgres, dsn: 'host=h', password_file: {secret}}}\n"
    (target,) = loader.parse(text, "c.yml").targets
    assert isinstance(target, PostgresTarget)
    assert target.resolve_password() == "first-secret"
    secret.write_text("rotated-secret\n")
    assert target.resolve_password() == "rotated-secret"


def test_missing_password_file_is_rejected(tmp_path: Path) -> None:
    text = "targets:\n  - name: a\n    kind: postgres\n    dsn: host=h\n    password_file: /nope\n"
    with pytest.raises(ConfigError) as raised:
        loader.parse(text, "c.yml")
    assert raised.value.issues[0].line == 2
    assert "/nope" in raised.value.issues[0].message


def test_literal_dollar_brace_is_escaped() -> None:
    text = "targets:\n  - {name: a, kind: postgres, dsn: host=h, password: 'a$${B}'}\n"
    (target,) = loader.parse(text, "c.yml", env={}).targets
    assert isinstance(target, PostgresTarget)
    assert target.resolve_password() == "a${B}"


def test_invalid_dsn_does_not_echo_it() -> None:
    text = "targets:\n  - {name: a, kind: postgres, dsn: 'host=h password=Leak-Me-99 =bad'}\n"
    with pytest.raises(ConfigError) as raised:
        loader.parse(text, "c.yml")
    assert "Leak-Me-99" not in str(raised.value)


def test_embedded_default_takes_database_url() -> None:
    cfg = loader.embedded_default({"DATABASE_URL": "postgresql://app:Env-Pw-1@db:5432/app"})
    (target,) = cfg.targets
    assert target.kind == "postgres"
    assert target.name == "database"
    assert "Env-Pw-1" not in repr(cfg)


def test_each_embedded_variable_names_a_kind_that_reads_urls() -> None:
    kinds = {spec.kind for spec in registry.all_kinds() if spec.from_env_url is not None}
    assert set(loader.EMBEDDED_URL_VARIABLES.values()) == kinds


@pytest.mark.slow
def test_embedded_default_imports_only_the_kinds_it_is_given() -> None:
    """A kind's client library is loaded only when a configuration names the kind: checked
    in a fresh interpreter, whose modules are the ones this import loads."""
    script = (
        "import sys; from resilience_exporter.configuration import loader; "
        "loader.embedded_default({'REDIS_URL': 'redis://cache:6379/0'}); "
        "print(' '.join(sorted(m for m in ('redis', 'psycopg', 'psycopg_pool', 'aiohttp', "
        "'jmespath') if m in sys.modules)))"
    )
    loaded = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True
    ).stdout.split()
    assert loaded == ["redis"]


def test_durations() -> None:
    assert parse_duration("1m30s") == 90
    assert parse_duration("500ms") == 0.5
    assert parse_duration("2h") == 7200
    for bad in ("", "15", "1.5s", "s", "0s", "-1s"):
        with pytest.raises(ValueError, match="duration"):
            parse_duration(bad)


@pytest.mark.slow
@pytest.mark.parametrize("case", ["bad-yaml", "unknown-key", "bad-duration", "missing-env-secret"])
def test_cli_exits_2_naming_file_line_and_key(case: str, tmp_path: Path) -> None:
    text = {
        "bad-yaml": "targets: [\n",
        "unknown-key": VALID.replace("labels:", "lables:"),
        "bad-duration": VALID.replace("timeout: 5s", "timeout: soon"),
        "missing-env-secret": VALID,
    }[case]
    expected = {
        "bad-yaml": ":2: ",
        "unknown-key": ":8: targets[0].lables: unknown key",
        "bad-duration": ":1: defaults.timeout: ",
        "missing-env-secret": ":6: targets[0].password: environment variable ORDERS_DB_PASSWORD",
    }[case]
    path = tmp_path / "exporter.yml"
    path.write_text(text)
    result = run_exporter(
        [f"--config.file={path}", "--config.check"],
        env={"ORDERS_DB_PASSWORD": ""} if case != "missing-env-secret" else {},
    )
    assert result.returncode == 2, result.stderr
    assert f"{path}{expected}" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.slow
def test_unreadable_config_file_exits_2(tmp_path: Path) -> None:
    result = run_exporter([f"--config.file={tmp_path / 'absent.yml'}"])
    assert result.returncode == 2
    assert "absent.yml" in result.stderr
    assert "cannot read" in result.stderr


_KEYS = ["defaults", "targets", "host", "modules", "name", "kind", "dsn", "password",
         "password_file", "pool", "min_size", "max_size", "interval", "timeout", "labels",
         "enabled", "allow", "allow_ports", "postgres", "x"]  # fmt: skip
_SCALARS = st.one_of(
    st.none(), st.booleans(), st.integers(-5, 10**6), st.floats(allow_nan=True),
    st.sampled_from(["15s", "0s", "1m", "postgres", "host", "${UNSET_VAR}", "$${x}", "{address}",
                     "postgresql://u:pw@h/db", "127.0.0.1/32", "[", "-1s"]),
    st.text(max_size=12),
)  # fmt: skip
_DOCUMENTS = st.recursive(
    _SCALARS,
    lambda children: st.one_of(
        st.lists(children, max_size=4),
        st.dictionaries(st.sampled_from(_KEYS), children, max_size=5),
    ),
    max_leaves=25,
)


def load_issues(text: str) -> list[ConfigIssue] | None:
    """None when the text loads; the issues when it is rejected. Any other exception escapes."""
    try:
        loader.parse(text, "fuzz.yml", env={})
    except ConfigError as exc:
        return exc.issues
    return None


@settings(max_examples=300, deadline=None)
@given(document=st.dictionaries(st.sampled_from(_KEYS), _DOCUMENTS, max_size=4))
def test_any_document_loads_or_gets_a_clean_config_error(document: dict[str, object]) -> None:
    issues = load_issues(yaml.safe_dump(document))
    if issues is not None:
        assert issues
        assert all(issue.file == "fuzz.yml" and issue.message for issue in issues)


@settings(max_examples=200, deadline=None)
@given(text=st.text(max_size=200))
@example(text="?")  # a mapping with a null key: found by this test
@example(text="=")  # a YAML value tag with no constructor: found by this test
def test_any_text_loads_or_gets_a_clean_config_error(text: str) -> None:
    issues = load_issues(text)
    assert issues is None or len(issues) > 0


def test_module_targets_get_the_same_defaults_as_configured_targets() -> None:
    text = """\
defaults: {interval: 20s, timeout: 4s}
targets:
  - {name: db, kind: postgres, dsn: 'postgresql://m@db/postgres', breaker: {window: 10}}
modules:
  pg:
    kind: postgres
    dsn: postgresql://m@{address}/postgres
    breaker: {consecutive_failures: 1}
    allow: [10.0.0.0/8]
"""
    cfg = loader.parse(text, "c.yml", env={})
    from_module = cfg.modules["pg"].target("10.1.2.3:5432")
    (configured,) = cfg.targets
    for target in (configured, from_module):
        assert target.interval_seconds == 20
        assert target.timeout_seconds == 4
        assert target.breaker.backoff_base_seconds == 20
    assert from_module.name == "10.1.2.3:5432"
    assert from_module.breaker.consecutive_failures == 1
