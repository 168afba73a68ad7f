"""support.fast_set: what the fast set keeps of a parametrized or Hypothesis test, and when a run is
the fast set."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from support import fast_set
from support.fast_set import examples, fast_first

pytest_plugins = ["pytester"]


def marks_of(value: object) -> list[str]:
    return [mark.name for mark in value.marks] if isinstance(value, type(pytest.param(None))) else []


def test_the_first_cases_stay_and_the_others_are_slow() -> None:
    kept = fast_first(["run", "resync", "checkpoints"])
    assert kept[0] == "run" and marks_of(kept[0]) == []
    assert [(p.values, marks_of(p)) for p in kept[1:]] == [(("resync",), ["slow"]),
                                                            (("checkpoints",), ["slow"])]
    assert [marks_of(v) for v in fast_first(range(5), 3)] == [[], [], [], ["slow"], ["slow"]]
    assert fast_first([], 2) == [] and fast_first(["only"]) == ["only"]


def test_tuples_are_one_cases_values_and_a_param_keeps_its_id_and_marks() -> None:
    kept = fast_first([("a", 1), ("b", 2), pytest.param("c", 3, id="third",
                                                           marks=pytest.mark.xfail)])
    assert kept[0] == ("a", 1)
    assert kept[1].values == ("b", 2) and marks_of(kept[1]) == ["slow"]
    assert kept[2].values == ("c", 3) and kept[2].id == "third"
    assert marks_of(kept[2]) == ["xfail", "slow"]


def test_examples_are_a_fifth_in_the_fast_set_with_a_floor(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(fast_set, "_fast_set", False)
    assert [examples(n) for n in (400, 150, 10)] == [400, 150, 10]
    monkeypatch.setattr(fast_set, "_fast_set", True)
    assert [examples(n) for n in (400, 150, 50, 10)] == [80, 30, 20, 10]  # never above the full


@pytest.mark.slow
@pytest.mark.parametrize("argv, fast", [(["-m", "not slow and not docker"], True),
                                        (["-m", "not docker"], False), ([], False)])
def test_a_run_that_deselects_slow_tests_is_the_fast_set(pytester: pytest.Pytester,
                                                         monkeypatch: pytest.MonkeyPatch,
                                                         argv: list[str], fast: bool) -> None:
    # a subprocess: the plugin's state is this process's (the outer run's) own
    tests = str(Path(__file__).resolve().parent)
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(
        [tests, *filter(None, [os.environ.get("PYTHONPATH")])]))
    pytester.makepyfile(test_probe=f"""
        from support.fast_set import examples, in_fast_set

        COUNT = examples(100)

        def test_probe():
            assert (in_fast_set(), COUNT) == ({fast!r}, {20 if fast else 100})
    """)
    result = pytester.runpytest_subprocess("-p", "support.fast_set", *argv)
    result.assert_outcomes(passed=1)
