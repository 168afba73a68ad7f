"""support.cpu_budget: an unmarked test that spends more CPU than the budget fails; a slow-marked
one, or one that only waits (wall time), passes."""

from __future__ import annotations

import pytest

from support.cpu_budget import ENV

pytest_plugins = ["pytester"]

TESTS = '''
import time

import pytest


def burn(seconds):
    start = time.process_time()
    while time.process_time() - start < seconds:
        pass


def test_burns_unmarked():
    burn(0.25)


@pytest.mark.slow
def test_burns_marked_slow():
    burn(0.25)


def test_waits_without_cpu():
    time.sleep(0.25)  # wall time, not CPU: what a loaded machine adds


def test_fails_on_its_own():
    burn(0.25)
    assert False, "its own failure"
'''


@pytest.fixture
def suite(pytester: pytest.Pytester) -> pytest.Pytester:
    # in-process: the inner run's CPU time is this process's, measured by the inner plugin
    pytester.makeini("[pytest]\nmarkers =\n    slow: slow\n")
    pytester.makepyfile(test_budget=TESTS)
    return pytester


def test_an_unmarked_test_over_the_cpu_budget_fails(suite: pytest.Pytester,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ENV, "0.1")
    result = suite.runpytest_inprocess("-p", "support.cpu_budget", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=2, failed=2)
    result.stdout.fnmatch_lines([
        "*test_burns_unmarked used 0.* s of CPU, over the 0.1 s budget of an unmarked test: "
        "mark it @pytest.mark.slow*",
    ])
    # a test's own failure is reported as it is, not replaced by the budget's
    result.stdout.fnmatch_lines(["*its own failure*"])
    assert "test_fails_on_its_own used" not in result.stdout.str()
    assert "test_burns_marked_slow used" not in result.stdout.str()


@pytest.mark.slow
def test_zero_turns_the_check_off(suite: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ENV, "0")
    result = suite.runpytest_inprocess("-p", "support.cpu_budget", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=3, failed=1)


def test_a_bad_budget_is_one_usage_error(suite: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ENV, "ten")
    result = suite.runpytest_inprocess("-p", "support.cpu_budget", "-p", "no:cacheprovider")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert f"{ENV}='ten': expected CPU seconds" in result.stderr.str() + result.stdout.str()
