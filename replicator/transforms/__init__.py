"""Example transforms, off by default.

Enable with ``Settings(transforms=("replicator.transforms.example",))``.
"""

from replicator.baselines.original import example_transform as example

__all__ = ["example"]
