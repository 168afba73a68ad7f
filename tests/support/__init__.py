"""The one home of the test support code: fakes, source and target fixtures, Hypothesis strategies.

``tests/`` is on ``sys.path`` (pyproject's ``pythonpath``), so a test imports ``from
support.fake_streams import FakeStreams``; the fixtures of ``support.fixtures``, the CPU-time
check of ``support.cpu_budget`` and what the fast set keeps of a test (``support.fast_set``) are
plugins that ``tests/conftest.py`` loads by module name.
The package is not ``tests.support``: dynamodb-json installs a top-level ``tests`` package.
"""
