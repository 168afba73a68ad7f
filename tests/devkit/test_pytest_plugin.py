"""The pytest plugin as a user meets it: the example project passes with only its fixtures, a typo
in an option is one usage line, and the replication fixture sees what a handler gets wrong."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest
import tomllib

from harness.backends.base import TARGETS, _load_targets
from harness.pytest_plugin import default_target, parse_target

pytest_plugins = ["pytester"]

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "orders-transform"


@pytest.fixture
def example(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> pytest.Pytester:
    for path in EXAMPLE.glob("*.py"):
        shutil.copy(path, pytester.path / path.name)
    # The subprocess imports harness from this checkout, as an installed copy would provide it.
    monkeypatch.setenv("PYTHONPATH", str(ROOT))
    return pytester


def test_the_example_project_passes_with_only_the_plugins_fixtures(example: pytest.Pytester) -> None:
    assert not (example.path / "conftest.py").exists()
    result = example.runpytest_subprocess(
        "-p", "harness.pytest_plugin", "--replication-target", "mongomock", "-p", "no:cacheprovider",
    )
    result.assert_outcomes(passed=3)
    result.stdout.fnmatch_lines(["replication: source=moto target=mongomock"])


def test_a_broken_transform_fails_the_example_with_the_field_path(example: pytest.Pytester) -> None:
    # The example's tests can fail: a transform that forgets to lower-case the email is caught.
    transform = example.path / "orders_transform.py"
    transform.write_text(transform.read_text().replace(
        'shaped["email"] = shaped["email"].lower()', 'shaped["email"] = shaped["email"]'))
    result = example.runpytest_subprocess(
        "-p", "harness.pytest_plugin", "--replication-target", "mongomock", "-p", "no:cacheprovider",
        "-k", "shaped_by_the_transform",
    )
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*assert 'Ada@Example.COM' == 'ada@example.com'*"])


@pytest.mark.parametrize("option", [
    ["--replication-target", "mongomok"],
    ["--replication-target", "uri:localhost:27017"],
    ["--replication-source", "motto"],
])
def test_a_typo_in_an_option_is_one_usage_error(example: pytest.Pytester, option: list[str]) -> None:
    result = example.runpytest_subprocess("-p", "harness.pytest_plugin", *option)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert "Traceback" not in result.stderr.str() + result.stdout.str()
    result.stderr.fnmatch_lines(["*--replication-*"])


def test_the_report_header_never_shows_a_uri(example: pytest.Pytester) -> None:
    result = example.runpytest_subprocess(
        "-p", "harness.pytest_plugin", "--collect-only", "-q",
        "--replication-target", "uri:mongodb://user:s3cret@127.0.0.1:1/",
    )
    assert "s3cret" not in result.stdout.str() + result.stderr.str()


def test_target_names() -> None:
    assert parse_target("uri:mongodb://h:1/?directConnection=true") == (
        "uri", {"uri": "mongodb://h:1/?directConnection=true"})
    assert parse_target("mongomock") == ("mongomock", {})
    _load_targets()
    expected = "mongoeco" if sys.version_info >= (3, 13) and "mongoeco" in TARGETS else "mongomock"
    assert default_target() == expected


def test_the_entry_point_is_declared() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert project["entry-points"]["pytest11"] == {"harness.pytest_plugin": "harness.pytest_plugin"}
