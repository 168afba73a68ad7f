"""Keep secrets out of logs, errors and reports: the harness uses the core's one redaction
(:mod:`replicator.redact`), so both CLIs mask the same things the same way."""

from __future__ import annotations

from replicator.redact import install_log_redaction, redact, redact_known, secrets_in_argv, uri_password

__all__ = ["install_log_redaction", "redact", "redact_known", "redact_uri", "secrets_in_argv"]


def redact_uri(text: str, uri: str | None = None) -> str:
    """``text`` without MongoDB URI userinfo, the password of ``uri`` (as written and decoded)
    or the environment's secrets."""
    return redact_known(redact(text, uri_password(uri)))
