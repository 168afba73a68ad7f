"""A minimal MongoDB wire-protocol responder, for measuring the CLIENT side's CPU only.

    python benchmarks/wire_responder.py [--port 0]

It listens on 127.0.0.1, prints ``READY <port>`` on stdout and answers every command at once with
a fixed, successful reply. It stores nothing and checks nothing: it is NOT a MongoDB, nor a mock of
one, and no test may use it as one (tests/harness/test_wire_responder.py tests the responder
itself). Its one purpose: let ``benchmarks/bench_wire.py`` time everything pymongo does for a
handler (command building, BSON encoding, sessions, socket syscalls, reply decoding) with
``time.process_time()`` in the measuring process, while the "server" burns its CPU in this other
process.

Replies model a standalone server (sessions supported, no transactions) whose collections are
always EMPTY (with ``--existing``: hold every upserted document, so an upsert matches and
modifies it and inserts nothing): every upsert inserts (``upserted`` lists it), every other
update and every delete matches nothing, ``find``/``aggregate`` return an empty cursor,
everything else is ``{"ok": 1}``.
That is the state of a first batch on an empty target, and it is what the replicator's tombstone
probe (replicator/tombstones.py) reads as "no tombstone blocks an upsert" -- replying ``n`` = all
updates instead would make every probe look matched and add a spurious read per batch.

Two commands exist for the benchmark: ``{"benchStats": 1}`` -> ``{"ok": 1, "counts": {command:
requests}, "ops": {command: statements}}`` (since the last reset; the two bench commands are not
counted) and ``{"benchReset": 1}``.

It stops on SIGTERM/SIGINT or when its stdin reaches EOF (so it never outlives its parent), and
prints nothing but the READY line.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import itertools
import os
import signal
import socket
import socketserver
import struct
import sys
import threading
from collections import Counter
from collections.abc import Mapping
from datetime import datetime, timezone
from types import FrameType
from typing import Any

import bson
from bson.objectid import ObjectId

# -- message layouts -------------------------------------------------------------------------------
# From the MongoDB Wire Protocol reference
# (https://www.mongodb.com/docs/manual/reference/mongodb-wire-protocol/); all integers little-endian.
#
# Standard message header (16 bytes), in front of every message:
#     int32 messageLength   total size in bytes, header included
#     int32 requestID       the sender's id for this message
#     int32 responseTo      in a reply: the requestID it answers
#     int32 opCode          2013 OP_MSG, 2004 OP_QUERY (legacy), 1 OP_REPLY (legacy)
HEADER = struct.Struct("<iiii")
OP_REPLY = 1
OP_QUERY = 2004
OP_MSG = 2013
# OP_MSG:
#     uint32 flagBits       bit 0 checksumPresent, bit 1 moreToCome, bit 16 exhaustAllowed
#     sections...           kind 0 (Body): byte 0, then one BSON document (the command);
#                           kind 1 (Document Sequence): byte 1, int32 size (itself included, not the
#                           kind byte), cstring identifier (e.g. "updates"), then BSON documents
#     [uint32 checksum]     CRC-32C of the message, present iff checksumPresent
CHECKSUM_PRESENT = 1 << 0
MORE_TO_COME = 1 << 1
# OP_QUERY (deprecated; pymongo still sends its first handshake this way unless told otherwise):
#     int32 flags, cstring fullCollectionName ("admin.$cmd"), int32 numberToSkip,
#     int32 numberToReturn, document query, [document returnFieldsSelector]
# OP_REPLY (the answer to an OP_QUERY):
#     int32 responseFlags, int64 cursorID, int32 startingFrom, int32 numberReturned, documents...
REPLY_FIELDS = struct.Struct("<iqii")
INT32 = struct.Struct("<i")
UINT32 = struct.Struct("<I")

MAX_MESSAGE = 48_000_000
HELLO_COMMANDS = frozenset({"hello", "ismaster", "isMaster"})
BENCH_COMMANDS = frozenset({"benchStats", "benchReset"})


class Stats:
    """Requests and statements per command name since the last reset (thread-safe)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.requests: Counter[str] = Counter()
        self.statements: Counter[str] = Counter()

    def count(self, command: str, statements: int) -> None:
        with self._lock:
            self.requests[command] += 1
            self.statements[command] += statements

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return {"counts": dict(self.requests), "ops": dict(self.statements)}

    def reset(self) -> None:
        with self._lock:
            self.requests.clear()
            self.statements.clear()


STATS = Stats()
CONNECTION_IDS = itertools.count(1)


# -- replies ---------------------------------------------------------------------------------------


def hello_reply(connection_id: int) -> dict[str, Any]:
    """A writable standalone with sessions. No ``topologyVersion``: pymongo's monitor then polls
    (every heartbeatFrequencyMS) instead of holding a streaming ``hello`` open."""
    return {
        "ok": 1,
        "helloOk": True,
        "isWritablePrimary": True,
        "ismaster": True,
        "maxWireVersion": 21,
        "minWireVersion": 0,
        "maxBsonObjectSize": 16 * 1024 * 1024,
        "maxMessageSizeBytes": MAX_MESSAGE,
        "maxWriteBatchSize": 100_000,
        "localTime": datetime.now(timezone.utc),
        "logicalSessionTimeoutMinutes": 30,
        "connectionId": connection_id,
        "readOnly": False,
    }


def statements(command: Mapping[str, Any], sequences: Mapping[str, list[Any]], field: str) -> list[Any]:
    """The statements of a write command: a document sequence section, or an array in the body."""
    if field in sequences:
        return sequences[field]
    value = command.get(field)
    return list(value) if isinstance(value, list) else []


def upserted_id(update: Mapping[str, Any]) -> Any:
    """The _id an upsert into an empty collection would insert: the filter's plain ``_id`` (as
    the server takes it from an equality), else a new ObjectId."""
    query = update.get("q")
    value = query.get("_id", None) if isinstance(query, Mapping) else None
    if value is None or (isinstance(value, Mapping) and any(str(k).startswith("$") for k in value)):
        return ObjectId()
    return value


#: --existing: upserts match an existing document (modified, nothing inserted) instead of
#: inserting: the replies to a batch of MODIFYs of documents the target holds
EXISTING = False


def reply_to(
    command: Mapping[str, Any], sequences: Mapping[str, list[Any]], connection_id: int
) -> dict[str, Any]:
    name = next(iter(command), "")
    if name in HELLO_COMMANDS:
        STATS.count(name, 1)
        return hello_reply(connection_id)
    if name == "benchStats":
        return {"ok": 1, **STATS.snapshot()}
    if name == "benchReset":
        STATS.reset()
        return {"ok": 1}
    if name == "update":
        updates = statements(command, sequences, "updates")
        STATS.count(name, len(updates))
        if EXISTING:  # --existing: every upsert finds its document and replaces it
            matched = sum(1 for update in updates if update.get("upsert"))
            return {"ok": 1, "n": matched, "nModified": matched}
        upserted = [
            {"index": index, "_id": upserted_id(update)}
            for index, update in enumerate(updates)
            if update.get("upsert")
        ]
        reply: dict[str, Any] = {"ok": 1, "n": len(upserted), "nModified": 0}
        if upserted:
            reply["upserted"] = upserted
        return reply
    if name == "delete":
        STATS.count(name, len(statements(command, sequences, "deletes")))
        return {"ok": 1, "n": 0}
    if name == "insert":
        documents = statements(command, sequences, "documents")
        STATS.count(name, len(documents))
        return {"ok": 1, "n": len(documents)}
    if name in ("find", "aggregate", "listIndexes"):
        STATS.count(name, 1)
        collection = command[name] if isinstance(command[name], str) else "$cmd.aggregate"
        namespace = f"{command.get('$db', 'test')}.{collection}"
        return {"ok": 1, "cursor": {"id": 0, "ns": namespace, "firstBatch": []}}
    # createIndexes, ping, buildInfo, endSessions, abortTransaction, commitTransaction, ...
    STATS.count(name, 1)
    return {"ok": 1}


# -- framing ---------------------------------------------------------------------------------------


def parse_op_msg(payload: bytes) -> tuple[int, dict[str, Any], dict[str, list[Any]]]:
    """(flagBits, the body document, the document sequences by identifier) of an OP_MSG body."""
    (flags,) = UINT32.unpack_from(payload, 0)
    end = len(payload) - (4 if flags & CHECKSUM_PRESENT else 0)  # checksum not verified
    position = 4
    body: dict[str, Any] = {}
    sequences: dict[str, list[Any]] = {}
    while position < end:
        kind = payload[position]
        position += 1
        if kind == 0:
            (size,) = INT32.unpack_from(payload, position)
            body = bson.decode(payload[position:position + size])
            position += size
        elif kind == 1:
            (size,) = INT32.unpack_from(payload, position)
            section_end = position + size
            name_end = payload.index(b"\x00", position + 4)
            identifier = payload[position + 4:name_end].decode()
            sequences[identifier] = bson.decode_all(payload[name_end + 1:section_end])
            position = section_end
        else:
            raise ValueError(f"unknown OP_MSG section kind {kind}")
    return flags, body, sequences


def parse_op_query(payload: bytes) -> dict[str, Any]:
    """The query document of an OP_QUERY body (a command on ``<db>.$cmd``)."""
    name_end = payload.index(b"\x00", 4)  # after int32 flags: cstring fullCollectionName
    position = name_end + 1 + 8  # int32 numberToSkip, int32 numberToReturn
    (size,) = INT32.unpack_from(payload, position)
    query = bson.decode(payload[position:position + size])
    # A legacy command may wrap itself as {"$query": {...}, "$readPreference": ...}.
    inner = query.get("$query")
    return dict(inner) if isinstance(inner, Mapping) else query


_request_ids = itertools.count(1)


def op_msg(response_to: int, document: Mapping[str, Any]) -> bytes:
    body = b"\x00\x00\x00\x00" + b"\x00" + bson.encode(document)  # flagBits 0, one kind-0 section
    return HEADER.pack(HEADER.size + len(body), next(_request_ids), response_to, OP_MSG) + body


def op_reply(response_to: int, document: Mapping[str, Any]) -> bytes:
    body = REPLY_FIELDS.pack(0, 0, 0, 1) + bson.encode(document)
    return HEADER.pack(HEADER.size + len(body), next(_request_ids), response_to, OP_REPLY) + body


def read_exactly(stream: io.BufferedIOBase, size: int) -> bytes | None:
    data = stream.read(size)
    return data if data is not None and len(data) == size else None


class Handler(socketserver.StreamRequestHandler):
    """One client connection: read a message, answer it, until the client hangs up."""

    def setup(self) -> None:
        self.request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        super().setup()

    def handle(self) -> None:
        with contextlib.suppress(ConnectionError):  # the client went away mid-message
            self.serve(next(CONNECTION_IDS))

    def serve(self, connection_id: int) -> None:
        while True:
            header = read_exactly(self.rfile, HEADER.size)
            if header is None:
                return
            length, request_id, _, op_code = HEADER.unpack(header)
            if not HEADER.size <= length <= MAX_MESSAGE:
                return
            payload = read_exactly(self.rfile, length - HEADER.size)
            if payload is None:
                return
            if op_code == OP_MSG:
                flags, command, sequences = parse_op_msg(payload)
                document = reply_to(command, sequences, connection_id)
                if not flags & MORE_TO_COME:  # moreToCome: the client expects no reply (w: 0)
                    self.wfile.write(op_msg(request_id, document))
            elif op_code == OP_QUERY:
                document = reply_to(parse_op_query(payload), {}, connection_id)
                self.wfile.write(op_reply(request_id, document))
            else:  # OP_COMPRESSED and the removed legacy opcodes: never negotiated here
                return


class Server(socketserver.ThreadingTCPServer):
    allow_reuse_address = True
    daemon_threads = True  # open client connections do not keep the process alive


def stop_on_eof(server: Server) -> None:
    """Block until stdin reaches EOF (the parent closed it or died), then stop serving.

    Reads the raw file descriptor: a daemon thread blocked inside ``sys.stdin.buffer`` would hold
    its lock and make the interpreter abort at shutdown (on SIGTERM)."""
    try:
        while os.read(sys.stdin.fileno(), 65536):
            pass
    except (OSError, ValueError):
        pass
    server.shutdown()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, default=0, help="TCP port on 127.0.0.1 (0: a free one)")
    parser.add_argument("--existing", action="store_true",
                        help="every upsert matches an existing document instead of inserting")
    args = parser.parse_args(argv)
    global EXISTING
    EXISTING = args.existing

    def quit_quietly(signum: int, frame: FrameType | None) -> None:
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, quit_quietly)
    signal.signal(signal.SIGINT, quit_quietly)
    with Server(("127.0.0.1", args.port), Handler) as server:
        threading.Thread(target=stop_on_eof, args=(server,), daemon=True, name="stdin-eof").start()
        print(f"READY {server.server_address[1]}", flush=True)
        server.serve_forever(poll_interval=0.2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
