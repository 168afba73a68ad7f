"""Run ``replicator.handler.lambda_handler`` from a Lambda package folder in an isolated interpreter:
``python -I -S`` (no PYTHONPATH, no user or site-packages), the folder first on ``sys.path``, so
only the package and the standard library can be imported -- as in Lambda, where the function's
folder (``/var/task``) is on the path beside the runtime's own modules."""

from __future__ import annotations

import json
import subprocess
import sys
import sysconfig
from dataclasses import dataclass
from pathlib import Path
from typing import Any

#: argv: the package folder, the event (JSON). Prints, last, one JSON line of what happened.
HANDLE_ONE_EVENT = """
import json, sys
sys.path[:0] = [sys.argv[1]]
import replicator.handler as handler
from replicator import accelerator
import bson
event = json.loads(sys.argv[2])
response = handler.lambda_handler(event)
collection = handler._get_replicator().collection
print(json.dumps({
    "response": response,
    "native": accelerator.native is not None,
    "unavailable": accelerator.unavailable,
    "bson_c": bson.has_c(),
    "documents": [{k: v for k, v in d.items() if k != "_ddb_seq"} for d in collection.find()],
    "files": sorted({getattr(m, "__file__", None) or "" for m in list(sys.modules.values())} - {""}),
    "path": sys.path,
}))
"""


@dataclass(frozen=True)
class Handled:
    """What one isolated invocation printed and answered."""

    response: dict[str, Any]
    #: the C accelerator planned (replicator.accelerator.native is loaded)
    native: bool
    unavailable: str
    #: pymongo's bson C extension loaded (False: pymongo's pure-Python fallback)
    bson_c: bool
    documents: list[dict[str, Any]]
    #: every imported module's file
    files: list[str]
    path: list[str]
    stdout: str

    def imported_from_elsewhere(self, site: Path) -> list[str]:
        """Imported module files that are neither in ``site`` nor in the interpreter's stdlib."""
        stdlib = (sysconfig.get_paths()["stdlib"], sysconfig.get_paths()["platstdlib"])
        return [f for f in self.files
                if not f.startswith(str(site)) and not f.startswith(stdlib)]


def handle_isolated(site: Path, event: dict[str, Any], environment: dict[str, str], *,
                    cwd: Path, python: str = sys.executable) -> Handled:
    """Run HANDLE_ONE_EVENT with ``site`` as the function's folder; AssertionError with stderr if
    the interpreter fails."""
    done = subprocess.run(
        [python, "-I", "-S", "-c", HANDLE_ONE_EVENT, str(site), json.dumps(event)],
        capture_output=True, text=True, env={"PATH": "/usr/bin:/bin", **environment}, cwd=cwd,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    answer = json.loads(done.stdout.splitlines()[-1])
    return Handled(stdout=done.stdout, **answer)


#: argv: the package folder, the event (JSON). The export copy's child
#: (``replicator.export_copy_handler.load_file``) on one data file; prints, last, one JSON line.
LOAD_ONE_FILE = """
import json, sys
sys.path[:0] = [sys.argv[1]]
import replicator.export_copy_handler as handler
answer = handler.load_file(json.loads(sys.argv[2]))
collection = handler._get_replicator().collection
print(json.dumps({
    "answer": answer,
    "documents": collection.count_documents({}),
    "files": sorted({getattr(m, "__file__", None) or "" for m in list(sys.modules.values())} - {""}),
}))
"""


def load_file_isolated(site: Path, event: dict[str, Any], environment: dict[str, str], *,
                       cwd: Path, python: str = sys.executable) -> dict[str, Any]:
    """Run LOAD_ONE_FILE with ``site`` as the function's folder: its answer, the collection's
    document count, the imported files. AssertionError with stderr if the interpreter fails."""
    done = subprocess.run(
        [python, "-I", "-S", "-c", LOAD_ONE_FILE, str(site), json.dumps(event)],
        capture_output=True, text=True, env={"PATH": "/usr/bin:/bin", **environment}, cwd=cwd,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    found: dict[str, Any] = json.loads(done.stdout.splitlines()[-1])
    return found
