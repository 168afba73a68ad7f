"""Baselines the harness runs beside the replicator (``harness run --handler baseline``)."""
