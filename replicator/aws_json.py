"""Scan and GetRecords pages read with ``json.loads`` instead of botocore's response parser.

Why: botocore's parser walks every value of a response against the service model (a Python
call per attribute value, base64-decoding every ``B``, building a datetime per record). On a Scan
page of ~1 KB items it costs ~120 µs per item against ~14 µs for ``json.loads`` of the same body
(GetRecords: 58 µs against 6.4 per record; BENCHMARKS.md, ``bench_parse.py``) -- most of the
copy's and the poller's client CPU. The replicator's core reads DynamoDB JSON as a Lambda event
carries it (``B`` as base64 text, ``ApproximateCreationDateTime`` as epoch seconds), so that walk
buys it nothing.

What is kept: everything botocore does before and after the body -- endpoints, credentials,
signing, retries (throttling, 5xx, CRC32 of the body), ``ResponseMetadata`` and the parsing of
every error response. Only a 200 response's JSON body of these two operations is read here, and
only inside :func:`scan` / :func:`get_records`: other callers of the same client (verify, diff,
tests) keep botocore's shapes.

How (botocore's documented event system, botocore/endpoint.py ``_do_get_response``): a handler of
``before-parse.<service>.<operation>`` may fill ``customized_response_dict``, which botocore
merges into the parsed response; the handler puts ``json.loads(body)`` there and hands the parser
an empty JSON object instead of the body, so the parser has nothing to walk.

Shapes that differ from botocore's, all of them read by the core as it reads a Lambda event:
``B``/``BS`` values stay base64 text; ``ApproximateCreationDateTime`` stays epoch seconds
(:func:`replicator.events.creation_time_of` reads both). ``LastEvaluatedKey`` gets botocore's shape
(``B`` as bytes), because it goes back to botocore as ``ExclusiveStartKey``, whose serializer
base64-encodes what it is given. ``ConsumedCapacity``, ``Count``, ``NextShardIterator``: the same.
"""

from __future__ import annotations

import base64
import contextvars
import json
from typing import Any

#: On while this thread's context is inside scan()/get_records(): the handlers act only then.
_RAW: contextvars.ContextVar[bool] = contextvars.ContextVar("replicator_raw_json", default=False)
_HANDLER_ID = "replicator.aws_json"
_EMPTY_BODY = b"{}"


def _raw_body(response_dict: dict[str, Any]) -> Any:
    """The decoded JSON object of a 200 response, or None (botocore then parses as usual)."""
    if not _RAW.get() or response_dict.get("status_code") != 200:
        return None
    body = response_dict.get("body")
    if not isinstance(body, (bytes, bytearray)) or not body:
        return None
    try:
        parsed = json.loads(body)
    except ValueError:  # not JSON (a proxy's page?): botocore's parser says what it is
        return None
    return parsed if isinstance(parsed, dict) else None


def _bytes_key(key: Any) -> Any:
    """A key in botocore's shape: ``B`` as bytes (key attributes are S, N or B only)."""
    if not isinstance(key, dict):
        return key
    out = {}
    for name, value in key.items():
        if isinstance(value, dict) and isinstance(value.get("B"), str):
            value = {"B": base64.b64decode(value["B"])}
        out[name] = value
    return out


def _scan_page(response_dict: dict[str, Any], customized_response_dict: dict[str, Any],
               **_: Any) -> None:
    parsed = _raw_body(response_dict)
    if parsed is None:
        return
    if "LastEvaluatedKey" in parsed:
        parsed["LastEvaluatedKey"] = _bytes_key(parsed["LastEvaluatedKey"])
    customized_response_dict.update(parsed)
    response_dict["body"] = _EMPTY_BODY


def _records_page(response_dict: dict[str, Any], customized_response_dict: dict[str, Any],
                  **_: Any) -> None:
    parsed = _raw_body(response_dict)
    if parsed is None:
        return
    customized_response_dict.update(parsed)
    response_dict["body"] = _EMPTY_BODY


def _install(client: Any, event: str, handler: Any) -> bool:
    """Register ``handler`` on this client's own event emitter (once); False when ``client`` is
    not a botocore client (a test double, a synthetic source): then it is called as it is."""
    meta = getattr(client, "meta", None)
    events = getattr(meta, "events", None)
    if events is None or not hasattr(events, "register"):
        return False
    events.register(event, handler, unique_id=f"{_HANDLER_ID}.{event}")
    return True


def scan(client: Any, **request: Any) -> dict[str, Any]:
    """``client.scan(**request)``, its items as DynamoDB JSON with ``B`` as base64 text (module
    docstring). Errors are botocore's (``ClientError`` etc.), retries botocore's."""
    if not _install(client, "before-parse.dynamodb.Scan", _scan_page):
        return client.scan(**request)  # type: ignore[no-any-return]
    token = _RAW.set(True)
    try:
        return client.scan(**request)  # type: ignore[no-any-return]
    finally:
        _RAW.reset(token)


def get_records(client: Any, **request: Any) -> dict[str, Any]:
    """``client.get_records(**request)``, records as a Lambda event carries them (``B`` as base64
    text, ``ApproximateCreationDateTime`` as epoch seconds; module docstring)."""
    if not _install(client, "before-parse.dynamodb-streams.GetRecords", _records_page):
        return client.get_records(**request)  # type: ignore[no-any-return]
    token = _RAW.set(True)
    try:
        return client.get_records(**request)  # type: ignore[no-any-return]
    finally:
        _RAW.reset(token)
