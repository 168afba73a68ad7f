"""The `replicator` command as a user runs it: a subprocess of this checkout, with an environment
holding no AWS, MongoDB or REPLICATOR_ settings of the machine running the tests."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]


def child_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("AWS_", "MONGODB_", "REPLICATOR_"))}
    env.update(PYTHONPATH=str(ROOT), AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing",
               AWS_CONFIG_FILE=os.devnull, AWS_SHARED_CREDENTIALS_FILE=os.devnull)
    env.update(extra)
    return env


def replicator_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "replicator.cli", *args]


def run_replicator(*args: str, timeout_s: float = 300.0) -> subprocess.CompletedProcess[str]:
    """Run ``replicator ARGS`` to its end (``timeout_s`` is a safety net, not a measure)."""
    return subprocess.run(replicator_command(*args), capture_output=True, text=True,
                          env=child_env(), cwd=ROOT, timeout=timeout_s, check=False)


class LineWatcher:
    """Reads a process's stderr in a thread; ``wait_for(text)`` returns once a line holds it (or
    the process ended, or the safety-net timeout passed: the caller then fails with the lines)."""

    def __init__(self, stream: Any) -> None:
        self.lines: list[str] = []
        self._changed = threading.Condition()
        self._ended = False
        self._thread = threading.Thread(target=self._read, args=(stream,), daemon=True)
        self._thread.start()

    def _read(self, stream: Any) -> None:
        for line in stream:
            with self._changed:
                self.lines.append(line)
                self._changed.notify_all()
        with self._changed:
            self._ended = True
            self._changed.notify_all()

    def wait_for(self, text: str, safety_net_s: float = 300.0) -> bool:
        with self._changed:
            self._changed.wait_for(
                lambda: self._ended or any(text in line for line in self.lines), safety_net_s)
            return any(text in line for line in self.lines)

    def rest(self) -> str:
        self._thread.join(timeout=300)  # the process has exited: its stderr ends
        return "".join(self.lines)


@contextmanager
def running_replicator(*args: str, ready: str) -> Iterator[LineWatcher]:
    """``replicator ARGS`` in the background, yielded once its stderr holds ``ready``; then
    SIGTERM, and it must exit 0 (finishing its batch)."""
    process = subprocess.Popen(replicator_command(*args), stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE, text=True, env=child_env(), cwd=ROOT)
    try:
        assert process.stderr is not None
        watcher = LineWatcher(process.stderr)
        if not watcher.wait_for(ready):
            raise AssertionError(f"`replicator {args[0]}` never said {ready!r}:\n"
                                 + "".join(watcher.lines))
        yield watcher
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=300)  # a safety net: it exits after its current batch
        output = watcher.rest()
        assert process.returncode == 0, output
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
