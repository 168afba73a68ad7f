"""Builds the optional C accelerator replicator._speedups and maps the scenarios into the package;
all other metadata is in pyproject.toml.

``optional=True``: without a C compiler the install still succeeds and replicator/convert.py runs
its pure-Python converter (the reference) alone. ``REPLICATOR_PURE_PYTHON=1`` at build time (the
switch :mod:`replicator.accelerator` reads at run time) leaves the extension out: a pure
``py3-none-any`` wheel, installable for any platform (deploy/Makefile builds one for a Lambda
architecture other than the build machine's).

The scenarios live once, in ``scenarios/`` at the root (where ``harness run scenarios/x.toml`` and the
docs find them); the wheel carries them as the package ``harness.data.scenarios``, mapped to that
folder with ``package_dir`` (setuptools' "Package Discovery": a package may live in any folder), so
``harness.scenario`` finds them installed outside a checkout.
"""

import os

from setuptools import Extension, find_packages, setup

PURE_PYTHON = os.environ.get("REPLICATOR_PURE_PYTHON", "") not in ("", "0")

setup(
    # harness.schema: JSON only, no __init__.py, so find_packages skips it
    packages=[*find_packages(include=["replicator*", "harness*"]), "harness.schema",
              "harness.data.scenarios"],
    package_dir={"harness.data.scenarios": "scenarios"},
    ext_modules=[] if PURE_PYTHON else [
        Extension("replicator._speedups", ["replicator/_speedups.c"], optional=True)],
)
