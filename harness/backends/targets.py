"""Imports every target backend module so that each registers itself."""

import importlib

for _module in ("mongoeco_target", "mongomock_target", "uri_target", "testcontainers_target"):
    try:
        importlib.import_module(f"harness.backends.{_module}")
    except ModuleNotFoundError as _error:
        if _error.name != f"harness.backends.{_module}":
            raise
