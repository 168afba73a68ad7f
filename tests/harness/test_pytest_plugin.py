"""The pytest plugin as a user meets it: the example project passes with only its fixtures, a typo
in an option is one usage line, and the replication fixture sees what a handler gets wrong."""

from __future__ import annotations

import shutil
import sys
import tomllib
from pathlib import Path

import pytest

from harness.backends.base import TARGETS, load_targets
from harness.pytest_plugin import default_target, parse_target
from support.fast_set import fast_first

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


@pytest.mark.slow
def test_the_example_project_passes_with_only_the_plugins_fixtures(example: pytest.Pytester) -> None:
    assert not (example.path / "conftest.py").exists()
    result = example.runpytest_subprocess(
        "-p", "harness.pytest_plugin", "--replication-target", "mongomock", "-p", "no:cacheprovider",
    )
    result.assert_outcomes(passed=3)
    result.stdout.fnmatch_lines(["replication: source=moto target=mongomock"])


@pytest.mark.slow
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


@pytest.mark.parametrize("option", fast_first([
    ["--replication-target", "mongomok"],
    ["--replication-target", "uri:localhost:27017"],
    ["--replication-source", "motto"],
]))
def test_a_typo_in_an_option_is_one_usage_error(example: pytest.Pytester, option: list[str]) -> None:
    result = example.runpytest_subprocess("-p", "harness.pytest_plugin", *option)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert "Traceback" not in result.stderr.str() + result.stdout.str()
    result.stderr.fnmatch_lines(["*--replication-*"])


@pytest.mark.slow
def test_the_report_header_never_shows_a_uri(example: pytest.Pytester) -> None:
    result = example.runpytest_subprocess(
        "-p", "harness.pytest_plugin", "--collect-only", "-q",
        "--replication-target", "uri:mongodb://user:s3cret@127.0.0.1:1/",
    )
    assert "s3cret" not in result.stdout.str() + result.stderr.str()


@pytest.mark.slow
def test_a_chosen_target_that_does_not_answer_fails_the_run(example: pytest.Pytester) -> None:
    # Port 1 on the loopback refuses at once: the CI job with a wrong URI must go red, not skip.
    result = example.runpytest_subprocess(
        "-p", "harness.pytest_plugin", "-p", "no:cacheprovider",
        "--replication-target", "uri:mongodb://user:s3cret@127.0.0.1:1/?serverSelectionTimeoutMS=500",
    )
    outcomes = result.parseoutcomes()
    assert outcomes.get("errors") == 3 and "skipped" not in outcomes, outcomes
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines(["*replication target 'uri' unavailable: cannot reach MongoDB*"
                                 "chosen with --replication-target*"])
    assert "s3cret" not in result.stdout.str() + result.stderr.str()


def test_target_names() -> None:
    assert parse_target("uri:mongodb://h:1/?directConnection=true") == (
        "uri", {"uri": "mongodb://h:1/?directConnection=true"})
    assert parse_target("mongomock") == ("mongomock", {})
    load_targets()
    expected = "mongoeco" if sys.version_info >= (3, 13) and "mongoeco" in TARGETS else "mongomock"
    assert default_target() == expected


def test_the_entry_point_is_declared() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert project["entry-points"]["pytest11"] == {"harness.pytest_plugin": "harness.pytest_plugin"}


USER_SUITE = '''
from harness.esm.config import EsmConfig
from replicator.core import Replicator
from replicator.settings import Settings

TEMPLATE = {template!r}


def test_my_own_lambda_handler(dynamodb_table, target_collection, replication):
    table = dynamodb_table("users", partition_key=("pk", "S"), sort_key=("sk", "N"))
    collection = target_collection()
    replicator = Replicator(collection, Settings(key_schema=("pk", "sk")))
    calls = []

    def lambda_handler(event, context):
        calls.append(len(event["Records"]))
        return replicator.handle(event, context)

    users = replication(table, handler=lambda_handler, collection=collection,
                        esm={{"BatchSize": 2, "FunctionResponseTypes": ["ReportBatchItemFailures"]}})
    for n in range(5):
        users.dynamodb.put_item(TableName=users.table_name,
                                Item={{"pk": {{"S": "u"}}, "sk": {{"N": str(n)}}}})
    users.assert_converged()
    assert calls == [2, 2, 1]
    assert users.document({{"pk": "u", "sk": 3}}) is not None


def test_the_deployed_mapping_settings(dynamodb_table, replication):
    orders = replication(dynamodb_table("orders"), esm=TEMPLATE)
    assert orders.esm.batch_size == 100 and orders.esm.bisect_batch_on_function_error
    orders.dynamodb.put_item(TableName=orders.table_name, Item={{"id": {{"S": "a"}}}})
    assert orders.sync() == 1
    assert orders.sync() == 0  # nothing read twice
    orders.assert_converged()
    assert orders.report.invocations == 1


def test_a_divergence_is_reported_not_hidden(dynamodb_table, replication):
    broken = replication(dynamodb_table("t"), handler=lambda event, context: None)
    broken.dynamodb.put_item(TableName=broken.table_name, Item={{"id": {{"S": "a"}}}})
    diff = broken.wait_until_converged()
    assert diff.missing == ["a"]
'''


@pytest.mark.slow
def test_user_handlers_esm_settings_and_diffs(pytester: pytest.Pytester,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PYTHONPATH", str(ROOT))
    pytester.makepyfile(test_user=USER_SUITE.format(
        template=str(ROOT / "deploy" / "template.yaml")))
    result = pytester.runpytest_subprocess(
        "-p", "harness.pytest_plugin", "--replication-target", "mongomock", "-p", "no:cacheprovider",
    )
    result.assert_outcomes(passed=3)


@pytest.mark.dynamodb_local
@pytest.mark.slow
def test_the_example_passes_on_dynamodb_local(example: pytest.Pytester) -> None:
    result = example.runpytest_subprocess(
        "-p", "harness.pytest_plugin", "--replication-source", "dynamodb-local",
        "--replication-target", "mongomock", "-p", "no:cacheprovider", "-rs",
    )
    outcomes = result.parseoutcomes()
    if outcomes.get("errors") == 3 and "unavailable" in result.stdout.str():
        # chosen explicitly, an unavailable source fails the run (it no longer skips)
        pytest.skip("DynamoDB Local cannot start here: " + result.stdout.str()[-300:])
    result.assert_outcomes(passed=3)
