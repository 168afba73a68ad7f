"""Keep secrets out of logs, errors and reports."""

from __future__ import annotations

import re

# Greedy to the last "@" of the URI: a password with an unescaped "@" or "/" is still covered.
_USERINFO = re.compile(r"(mongodb(?:\+srv)?://)([^\s]*)@")


def redact_uri(text: str, uri: str | None = None) -> str:
    """Replace ``user:password@`` in MongoDB URIs (and the exact password, if given) with ``***``."""
    redacted = _USERINFO.sub(r"\1***@", text)
    if uri:
        match = _USERINFO.search(uri)
        if match and ":" in match.group(2):
            password = match.group(2).split(":", 1)[1]
            if password:
                redacted = redacted.replace(password, "***")
    return redacted
