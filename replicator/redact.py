"""The one secret redaction of the project: MongoDB URI passwords and AWS credentials.

Used by the Lambda handler, the ``replicator`` CLI, :mod:`replicator.mongo` and the harness:

* :func:`redact` -- ``user:password@`` of a MongoDB URI -> ``***@``; the parts of a SigV4-signed
  request botocore logs at DEBUG (``x-amz-security-token`` header or query parameter, the access
  key id in ``Credential=``, the signature); and every given literal secret -> ``***``.
* :func:`secrets_of` / :func:`secrets_in_argv` -- the literal secrets of a URI, of the
  environment (``AWS_SECRET_ACCESS_KEY``, ``AWS_SESSION_TOKEN``, ``AWS_ACCESS_KEY_ID``,
  ``MONGODB_URI``'s password) and of a command line.
* :func:`install_log_redaction` -- a :func:`logging.setLogRecordFactory` wrapper that redacts
  every record's message, traceback and stack when it is created, whatever handler or formatter
  later prints it (Lambda's own, ``logging.basicConfig``, pytest's caplog). botocore logs the
  signed request (canonical request, headers) at DEBUG, and ``AWS_LAMBDA_LOG_LEVEL=DEBUG`` puts
  the root logger at DEBUG: without this the session token and the access key id reach the logs.
"""

from __future__ import annotations

import logging
import os
import re
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any
from urllib.parse import unquote

MASK = "***"

# Greedy to the last "@" of the token: a password with an unescaped "@", "/" or ":" is covered.
_URI_USERINFO = re.compile(r"((?:mongodb(?:\+srv)?)://)[^\s'\"<>]*@", re.IGNORECASE)
# Any other scheme: up to the first "/" (a path or query may hold an "@" that is no userinfo).
_OTHER_USERINFO = re.compile(r"(\b[a-z][a-z0-9+.-]*://)(?!\*\*\*@)[^@/\s'\"<>]+@", re.IGNORECASE)
# SigV4 (https://docs.aws.amazon.com/IAM/latest/UserGuide/create-signed-request.html): the
# session token travels as the X-Amz-Security-Token header or query parameter; the access key id
# is the first part of the credential scope ("Credential=AKIA.../date/region/service/...").
# botocore logs the canonical request ("x-amz-security-token:<token>"), the headers dict
# ("'X-Amz-Security-Token': b'<token>'") and "Signature:\n<hex>" at DEBUG.
_SECURITY_TOKEN = re.compile(r"(security-token['\"]?\s*[:=]\s*(?:b?['\"])?)[^'\"\s&,;}]+",
                             re.IGNORECASE)
_CREDENTIAL = re.compile(r"(credential=)[^/%\s,'\"&]+", re.IGNORECASE)
_SIGNATURE = re.compile(r"(signature['\"]?\s*[:=]\s*(?:b?['\"])?)[0-9a-f]{64}", re.IGNORECASE)
# Credentials as fields: an STS AssumeRole response body (botocore logs bodies at DEBUG; a profile
# with role_arn makes one), "<SecretAccessKey>", '"SessionToken": "..."', "aws_secret_access_key=".
_CREDENTIAL_FIELD = re.compile(
    r"((?:secret_?access_?key|session_?token)['\"]?\s*(?:[:=]|>)\s*(?:b?['\"])?)[^'\"<\s,;}&]+",
    re.IGNORECASE)

# Literal values never shown. An access key id is not secret on its own but identifies the
# account and user; AWS's are 16..128 characters (IAM API AccessKey.AccessKeyId), so shorter
# values (moto's "testing", the CLI's "local") are left alone rather than masking common words.
_SECRET_VARIABLES = ("AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN")
_KEY_ID_VARIABLE = "AWS_ACCESS_KEY_ID"
_MIN_SECRET = 3
_MIN_KEY_ID = 16


def _longest_first(secret: str) -> tuple[int, str]:
    # Longest first, so a secret containing another is masked whole; then by text (a stable order).
    return -len(secret), secret


def uri_password(uri: str | None) -> list[str]:
    """The password of a MongoDB URI, as written and percent-decoded (empty if none)."""
    if not uri or "://" not in uri:
        return []
    # Up to the last "@" before the options: a password with an unescaped "/" or "@" is found.
    userinfo = uri.split("://", 1)[1].split("?", 1)[0].rpartition("@")[0]
    if ":" not in userinfo:
        return []
    password = userinfo.split(":", 1)[1]
    return [s for s in {password, unquote(password)} if len(s) >= _MIN_SECRET]


def secrets_of(uri: str | None, environ: Mapping[str, str]) -> list[str]:
    """The strings that must never reach a log line or an error: the password of ``uri`` and of
    ``MONGODB_URI`` (as written and decoded), the AWS secret key, session token and access key id
    of ``environ``. Longest first, so a secret containing another is masked whole."""
    found = uri_password(uri) + uri_password(environ.get("MONGODB_URI"))
    for name in _SECRET_VARIABLES:
        value = environ.get(name)
        if value and len(value) >= _MIN_SECRET:
            found.append(value)
    key_id = environ.get(_KEY_ID_VARIABLE)
    if key_id and len(key_id) >= _MIN_KEY_ID:
        found.append(key_id)
    return sorted(set(found), key=_longest_first)


def secrets_in_argv(argv: Iterable[str]) -> list[str]:
    """Passwords of the URIs on a command line (``--mongodb-uri URI``, ``--opt=URI``, a stray
    positional URI): what argparse or click may echo back in a usage error."""
    found: list[str] = []
    for argument in argv:
        if "://" in argument:
            found += uri_password(argument.partition("=")[2] if argument.startswith("-")
                                  and "=" in argument.split("://", 1)[0] else argument)
    return sorted(set(found), key=_longest_first)


def redact(text: str, secrets: Iterable[str] = ()) -> str:
    """``text`` without URI userinfo (MongoDB's, or any scheme's: ``DOCKER_HOST`` may be
    ``tcp://user:password@host``), SigV4 token/credential/signature, or ``secrets``."""
    if "://" in text:
        text = _URI_USERINFO.sub(rf"\1{MASK}@", text)
        text = _OTHER_USERINFO.sub(rf"\1{MASK}@", text)
    lowered = text.lower()
    if "security-token" in lowered:
        text = _SECURITY_TOKEN.sub(rf"\1{MASK}", text)
    if "credential=" in lowered:
        text = _CREDENTIAL.sub(rf"\1{MASK}", text)
    if "signature" in lowered:
        text = _SIGNATURE.sub(rf"\1{MASK}", text)
    if "secret" in lowered or "session" in lowered:
        text = _CREDENTIAL_FIELD.sub(rf"\1{MASK}", text)
    for secret in secrets:
        if secret in text:
            text = text.replace(secret, MASK)
    return text


# -- logging ---------------------------------------------------------------------------------------
_lock = threading.Lock()
_extra_secrets: set[str] = set()
_extras_version = 0
_MARK = "_replicator_redacts"
_cache: tuple[tuple[Any, ...], list[str]] = ((), [])


def known_secrets() -> list[str]:
    """The environment's secrets (read now: a changed environment is followed) plus those given
    to :func:`install_log_redaction`."""
    global _cache
    environ = os.environ
    key = (*(environ.get(name) for name in (*_SECRET_VARIABLES, _KEY_ID_VARIABLE, "MONGODB_URI")),
           _extras_version)
    cached_key, cached = _cache
    if cached_key != key:
        cached = sorted({*secrets_of(None, environ), *_extra_secrets}, key=_longest_first)
        _cache = (key, cached)
    return cached


def redact_known(text: str) -> str:
    """:func:`redact` with :func:`known_secrets`."""
    return redact(text, known_secrets())


def redact_uri(text: str, uri: str | None = None) -> str:
    """``text`` without URI userinfo, the password of ``uri`` (as written and decoded) or the
    environment's secrets: for messages that may quote the URI a client was built from."""
    return redact_known(redact(text, uri_password(uri)))


def error_detail(error: BaseException, uri: str) -> str:
    """pymongo's message about a client of ``uri``, redacted, and withheld (only the error's type)
    if it still quotes any piece of the URI's credentials.

    With an unescaped "@" in a password pymongo takes part of the password for a host name and
    names it in its error, where no pattern can recognise it.
    """
    # pymongo appends the whole topology description: the first reason is the useful part
    detail = redact_uri(str(error), uri).split(", Timeout:")[0]
    userinfo = uri.split("://", 1)[-1].rpartition("@")[0]
    pieces = [p for p in re.split(r"[:@/]", userinfo) if len(p) >= 2]
    if any(piece in detail for piece in pieces):
        return f"{type(error).__name__} (details withheld: they quote part of the credentials)"
    return detail


def redact_record(record: logging.LogRecord) -> None:
    """Redact a record in place: message (args merged into it when anything was masked),
    traceback text and stack."""
    try:
        message = record.getMessage()
    except Exception:  # a bad format string: logging reports it when the record is emitted
        return
    redacted = redact_known(message)
    if redacted != message:
        record.msg, record.args = redacted, None
    if record.exc_info and record.exc_info[0] is not None and not record.exc_text:
        # Formatter.format() uses exc_text when set: the traceback is formatted once, redacted.
        record.exc_text = redact_known(logging.Formatter().formatException(record.exc_info))
    if record.stack_info:
        record.stack_info = redact_known(record.stack_info)


def install_log_redaction(extra_secrets: Iterable[str] = ()) -> None:
    """Redact every log record from now on (see the module docstring). Idempotent: a second call
    only adds ``extra_secrets``; the factory in place before is kept and called first. Records are
    only created for enabled levels, so this costs nothing when nothing is logged."""
    global _extras_version
    with _lock:
        _extra_secrets.update(s for s in extra_secrets if len(s) >= _MIN_SECRET)
        _extras_version += 1
        previous = logging.getLogRecordFactory()
        if getattr(previous, _MARK, False):
            return

        def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
            record = previous(*args, **kwargs)
            redact_record(record)
            return record

        setattr(factory, _MARK, previous)
        logging.setLogRecordFactory(factory)


def uninstall_log_redaction() -> None:
    """Undo :func:`install_log_redaction` when its factory is the current one (tests)."""
    global _extras_version
    with _lock:
        previous: Callable[..., logging.LogRecord] | None = getattr(
            logging.getLogRecordFactory(), _MARK, None)
        if previous is not None:
            logging.setLogRecordFactory(previous)
        _extra_secrets.clear()
        _extras_version += 1


class RedactingFormatter(logging.Formatter):
    """Redacts the whole formatted record, traceback included (a second line of defence behind
    the record factory, for the secrets given here)."""

    def __init__(self, fmt: str, secrets: Sequence[str]) -> None:
        super().__init__(fmt)
        self.secrets = list(secrets)

    def format(self, record: logging.LogRecord) -> str:
        return redact(super().format(record), [*self.secrets, *known_secrets()])
