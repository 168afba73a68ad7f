"""JUnit XML for CI systems: one test case per scenario and handler (a migration scenario: one,
``replicator``, failed by a failed check too)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any
from xml.etree import ElementTree as ET


def write_junit(path: Path, results: list[Any]) -> None:
    suite = ET.Element("testsuite", name="harness", tests="0", failures="0")
    tests = failures = 0
    for result in results:
        for outcome in result.outcomes or [None]:
            tests += 1
            name = f"{result.scenario}[{outcome.handler if outcome else 'setup'}]"
            case = ET.SubElement(suite, "testcase", classname="scenarios", name=name,
                                 time=str(sum(result.timings.values())))
            failed_checks = [name for name, passed in getattr(result, "checks", {}).items()
                             if not passed]
            if outcome is None or not outcome.met or result.error or failed_checks:
                failures += 1
                failure = ET.SubElement(case, "failure",
                                        message=_message(result, outcome, failed_checks))
                failure.text = json.dumps(outcome.diff.as_dict() if outcome else {}, indent=1,
                                          default=str)[:20000]
    suite.set("tests", str(tests))
    suite.set("failures", str(failures))
    ET.ElementTree(suite).write(path, encoding="utf-8", xml_declaration=True)


def _message(result: Any, outcome: Any, failed_checks: list[str]) -> str:
    if result.error:
        return str(result.error)
    if outcome is None:
        return "no outcome"
    if outcome.met and failed_checks:
        return f"converged, but failed: {', '.join(failed_checks)}"
    return f"expected {outcome.expectation}, got {'converge' if outcome.diff.converged else 'diverge'}"
