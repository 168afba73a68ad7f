"""Builds the optional C accelerator replicator._speedups; all other metadata is in pyproject.toml.

``optional=True``: without a C compiler the install still succeeds and replicator/convert.py runs
its pure-Python converter (the reference) alone.
"""

from setuptools import Extension, setup

setup(ext_modules=[Extension("replicator._speedups", ["replicator/_speedups.c"], optional=True)])
