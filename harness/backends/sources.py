"""Imports every source backend module so that each registers itself."""

import importlib

for _module in ("moto_source", "dynamodb_local"):
    try:
        importlib.import_module(f"harness.backends.{_module}")
    except ModuleNotFoundError as _error:  # a backend whose optional dependency is missing
        if _error.name != f"harness.backends.{_module}":
            raise
