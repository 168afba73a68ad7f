"""Moving a live table into MongoDB: initial copy with handover, verification, gap recovery.

* :func:`replicator.migrate.sync.sync_scan` / :func:`~replicator.migrate.sync.sync_export` --
  ``replicator sync``: positions first, copy (Parallel Scan or an export to S3), handover.
* :class:`replicator.migrate.verify.Verifier` -- ``replicator verify`` under live writes.
* :func:`replicator.migrate.gap.recover` -- ``replicator recover`` after a gap past 24 hours.

See docs/migration.md.
"""
