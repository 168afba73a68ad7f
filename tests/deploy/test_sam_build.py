"""deploy/template.yaml as a user builds it: the real AWS SAM CLI (PyPI ``aws-sam-cli``) runs
``sam build`` (no container: deploy/Makefile with this machine's Python, the template's runtime),
and the built function's folder, alone on ``sys.path`` of an isolated interpreter, replicates a
stream event into mongoeco. Also ``sam validate --lint``.

The SAM CLI is not a dependency of the project (its pins would clash with the dev kit's): it lives
in its own virtualenv, found through ``SAM_CLI`` (the ``sam`` executable) or ``PATH``. Without it
these tests skip, except in CI (``CI`` set), where .ci/run installs it and a missing CLI fails.
"""

from __future__ import annotations

import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from harness.esm.template import load_template
from support.lambda_isolated import handle_isolated

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = ROOT / "deploy" / "template.yaml"
MAKEFILE = ROOT / "deploy" / "Makefile"
FUNCTION = "ReplicatorFunction"
#: ELF e_machine of each Lambda architecture
ELF_MACHINE = {"x86_64": 62, "arm64": 183}


def sam_cli() -> str:
    """The ``sam`` executable: $SAM_CLI, else PATH's; skip without it, fail in CI."""
    found = os.environ.get("SAM_CLI") or shutil.which("sam")
    if found and Path(found).is_file():
        return found
    message = ("the AWS SAM CLI is not installed: python3.13 -m venv /path/venv-sam && "
               "/path/venv-sam/bin/pip install aws-sam-cli, then SAM_CLI=/path/venv-sam/bin/sam")
    if os.environ.get("CI"):
        pytest.fail(f"CI: {message}")
    pytest.skip(message)


def sam_environment(**extra: str) -> dict[str, str]:
    # sam validate needs a region (not an account); telemetry off in tests
    return {**os.environ, "AWS_DEFAULT_REGION": os.environ.get("AWS_DEFAULT_REGION", "us-east-1"),
            "SAM_CLI_TELEMETRY": "0", **extra}


def a_checkout(into: Path) -> Path:
    """The project as a clone holds it: no virtualenvs, caches, builds or compiled extensions
    (SAM copies CodeUri, the project root, before the Makefile runs)."""
    ignore = shutil.ignore_patterns(
        ".git", ".venv*", ".nox", ".ci", "__pycache__", "*.so", "build", "dist", "*.egg-info",
        ".aws-sam", ".mypy_cache", ".ruff_cache", ".pytest_cache", ".hypothesis", "reports",
        "node_modules", "chaos-recordings")
    shutil.copytree(ROOT, into, ignore=ignore, symlinks=True)
    return into


def template_runtime() -> str:
    runtime: str = load_template(TEMPLATE)["Resources"][FUNCTION]["Properties"]["Runtime"]
    return runtime


# -- what can be checked without the SAM CLI --------------------------------------------------------
def test_the_makefile_builds_the_templates_function_with_its_runtime() -> None:
    function = load_template(TEMPLATE)["Resources"][FUNCTION]
    assert function["Metadata"] == {"BuildMethod": "makefile", "ContextPath": "."}
    # CodeUri is the project root (pyproject.toml, setup.py): the Makefile builds its wheel
    assert (TEMPLATE.parent / function["Properties"]["CodeUri"] / "pyproject.toml").is_file()
    makefile = MAKEFILE.read_text()
    assert re.search(rf"^build-{FUNCTION}:", makefile, re.MULTILINE)
    (python,) = re.findall(r"^PYTHON \?= (\S+)$", makefile, re.MULTILINE)
    assert python == template_runtime()  # python3.13: the interpreter the build uses by default


def run_make(tmp_path: Path, *, dry_run: bool = True,
             **variables: str) -> subprocess.CompletedProcess[str]:
    """``make [-n] build-ReplicatorFunction`` of deploy/Makefile (``-n``: the commands it would
    run, none run)."""
    if shutil.which("make") is None:
        if os.environ.get("CI"):
            pytest.fail("CI: make is not installed (sam build runs deploy/Makefile)")
        pytest.skip("make is not installed")
    environment = {k: v for k, v in os.environ.items() if k != "REPLICATOR_PURE_PYTHON"}
    return subprocess.run(
        ["make", *(["-n"] if dry_run else []), "-f", str(MAKEFILE), f"build-{FUNCTION}",
         f"ARTIFACTS_DIR={tmp_path / 'artifacts'}", *(f"{k}={v}" for k, v in variables.items())],
        capture_output=True, text=True, cwd=tmp_path, env=environment, timeout=60, check=False)


@pytest.mark.parametrize("architecture", ["x86_64", "arm64"])
def test_the_makefile_compiles_only_for_the_machines_own_architecture(
    tmp_path: Path, architecture: str
) -> None:
    done = run_make(tmp_path, LAMBDA_ARCHITECTURE=architecture, PYTHON=sys.executable)
    assert done.returncode == 0, done.stderr
    host = {"aarch64": "arm64"}.get(platform.machine(), platform.machine())
    native = sys.platform == "linux" and host == architecture
    assert ("REPLICATOR_PURE_PYTHON=0" in done.stdout) is native, done.stdout
    assert ("REPLICATOR_PURE_PYTHON=1" in done.stdout) is not native, done.stdout
    # dependencies as wheels for the function's architecture, whatever the machine
    arch = {"x86_64": "x86_64", "arm64": "aarch64"}[architecture]
    assert f"--platform manylinux2014_{arch}" in done.stdout
    assert f"--python-version {sys.version_info[0]}.{sys.version_info[1]}" in done.stdout
    assert "--only-binary=:all:" in done.stdout
    pure = run_make(tmp_path, LAMBDA_ARCHITECTURE=architecture, PYTHON=sys.executable,
                    REPLICATOR_PURE_PYTHON="1")
    assert "REPLICATOR_PURE_PYTHON=1" in pure.stdout


def test_the_makefile_refuses_an_unknown_architecture_or_a_missing_python(tmp_path: Path) -> None:
    done = run_make(tmp_path, dry_run=False, LAMBDA_ARCHITECTURE="sparc")
    assert done.returncode == 2
    assert "LAMBDA_ARCHITECTURE must be x86_64 or arm64, not 'sparc'" in done.stderr
    done = run_make(tmp_path, dry_run=False, PYTHON="python3.99")
    assert done.returncode == 2
    assert "python3.99 is not on PATH" in done.stderr and "--use-container" in done.stderr
    assert not (tmp_path / "artifacts").exists()


# -- the SAM CLI --------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def sam() -> str:
    return sam_cli()


@pytest.mark.slow
@pytest.mark.parametrize("lint", [False, True], ids=["validate", "validate-lint"])
def test_sam_validate(sam: str, lint: bool) -> None:
    done = subprocess.run(
        [sam, "validate", "--template-file", str(TEMPLATE), *(["--lint"] if lint else [])],
        capture_output=True, text=True, env=sam_environment(), timeout=300, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "is a valid SAM Template" in done.stdout + done.stderr


@pytest.fixture(scope="module")
def built(sam: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """``built(architecture)`` -> the function's build folder (one sam build per architecture)."""
    folders: dict[str, Path] = {}

    def build(architecture: str) -> Path:
        if architecture not in folders:
            work = tmp_path_factory.mktemp(f"sam-{architecture}")
            source = a_checkout(work / "source")
            runtime = template_runtime()
            if f"python{sys.version_info[0]}.{sys.version_info[1]}" != runtime:
                pytest.skip(f"the template's runtime is {runtime}; this interpreter is {sys.version}")
            done = subprocess.run(
                [sam, "build", "--template-file", str(source / "deploy" / "template.yaml"),
                 "--build-dir", str(work / "build"), "--parameter-overrides",
                 f"Architecture={architecture}"],
                capture_output=True, text=True, cwd=work, timeout=900, check=False,
                # the Makefile's interpreter: this one (a 3.13 with pip); the architecture: as
                # deploy/README.md says for a build without a container
                env=sam_environment(PYTHON=sys.executable, LAMBDA_ARCHITECTURE=architecture))
            output = done.stdout + done.stderr
            assert done.returncode == 0, output
            assert "Build Succeeded" in output
            folders[architecture] = work / "build" / FUNCTION
        return folders[architecture]

    yield build


def requirements(extra: str | None = None) -> set[str]:
    """The distributions a pyproject.toml requirement list names (normalized)."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    listed = project["dependencies"] if extra is None else project["optional-dependencies"].get(
        extra, [])
    return {re.split(r"[\s<>=!~;\[]", r, maxsplit=1)[0].lower().replace("_", "-") for r in listed}


def installed(folder: Path) -> set[str]:
    return {re.sub(r"-[^-]+\.dist-info$", "", p.name).lower().replace("_", "-")
            for p in folder.glob("*.dist-info")}


def elf_machine(path: Path) -> int:
    header = path.read_bytes()[:20]
    assert header[:4] == b"\x7fELF", path
    return int.from_bytes(header[18:20], "little")


def host_compiles_for(architecture: str) -> bool:
    """deploy/Makefile compiles the accelerator here: Linux of that architecture with a compiler,
    and REPLICATOR_PURE_PYTHON not set."""
    host = {"aarch64": "arm64", "arm64": "arm64"}.get(platform.machine(), platform.machine())
    return (sys.platform == "linux" and host == architecture
            and os.environ.get("REPLICATOR_PURE_PYTHON", "") in ("", "0")
            and bool(shutil.which("cc") or shutil.which("gcc")))


@pytest.mark.slow
@pytest.mark.parametrize("architecture", ["x86_64", "arm64"])
def test_the_built_function_holds_the_runtime_packages_only(built: Any, architecture: str) -> None:
    folder: Path = built(architecture)
    top = {p.name for p in folder.iterdir() if not p.name.endswith(".dist-info")}
    assert {"replicator", "pymongo", "bson", "dns"} <= top
    # none of the repository: tests, dev kit, benchmarks, deploy files, scripts
    assert not top & {"harness", "tests", "benchmarks", "deploy", "scenarios", "docs", "bin",
                      "pyproject.toml", "setup.py", "README.md", "noxfile.py"}, top
    assert "boto3" not in top and "botocore" not in top  # in Lambda's runtime
    # the core's requirements and the `lambda` extra's (Powertools), as distributions
    wanted = requirements() | requirements("lambda") | {"dnspython"}
    assert wanted <= installed(folder), wanted - installed(folder)
    # every compiled module is for the function's architecture
    machine = ELF_MACHINE[architecture]
    compiled = list(folder.rglob("*.so"))
    assert compiled and all(elf_machine(so) == machine for so in compiled), compiled
    accelerator = list((folder / "replicator").glob("_speedups*.so"))
    assert bool(accelerator) == host_compiles_for(architecture), accelerator


@pytest.mark.slow
@pytest.mark.parametrize("architecture", ["x86_64", "arm64"])
def test_the_built_handler_replicates_an_event_in_an_isolated_interpreter(
    built: Any, architecture: str, mongoeco_db: Any, stream_record: Any, tmp_path: Path
) -> None:
    folder: Path = built(architecture)
    host, port = mongoeco_db.client.address
    event = {"Records": [
        stream_record("100", "INSERT", {"id": {"S": "a"}}, new={"id": {"S": "a"}, "n": {"N": "1"}}),
        stream_record("200", "MODIFY", {"id": {"S": "a"}}, new={"id": {"S": "a"}, "n": {"N": "2"}}),
    ]}
    handled = handle_isolated(folder, event, {
        "MONGODB_URI": f"mongodb://{host}:{port}/",
        "MONGODB_DATABASE": mongoeco_db.name,
        "MONGODB_COLLECTION": "users",
    }, cwd=tmp_path)
    assert handled.response == {"batchItemFailures": []}
    assert handled.documents == [{"_id": "a", "id": "a", "n": 2}]
    assert handled.imported_from_elsewhere(folder) == []  # the build folder and the stdlib only
    assert not any(str(ROOT) in entry for entry in handled.path)
    # The accelerator runs where it was compiled for this machine; an arm64 build run here on
    # x86_64 falls back to pure Python (its .so files are for another machine), as it should.
    runs_here = host_compiles_for(architecture)
    assert handled.native is runs_here, handled.unavailable
    assert handled.bson_c is (ELF_MACHINE[architecture] == elf_machine(Path(sys.executable).resolve()))
    if (folder / "replicator" / "lambda_telemetry.py").exists():  # the handler's metrics (item 2)
        # The EMF line is what the template's Quarantined alarm watches: its namespace (the
        # MetricsNamespace parameter's default) and exactly its dimensions.
        (line,) = [json.loads(x) for x in handled.stdout.splitlines() if '"_aws"' in x]
        (directive,) = line["_aws"]["CloudWatchMetrics"]
        template = load_template(TEMPLATE)
        assert directive["Namespace"] == template["Parameters"]["MetricsNamespace"]["Default"]
        alarm = template["Resources"]["QuarantinedRecordsAlarm"]["Properties"]
        assert directive["Dimensions"] == [[d["Name"] for d in alarm["Dimensions"]]]
        assert "Quarantined" in {m["Name"] for m in directive["Metrics"]}
        assert (line["Table"], line["Collection"]) == ("users", "users")


# -- deploy/export-copy.yaml: the distributed export copy (issue 22) -------------------------------
EXPORT_COPY = ROOT / "deploy" / "export-copy.yaml"
EXPORT_COPY_FUNCTIONS = ("ExportFileFunction", "ExportStreamFunction")


def test_the_export_copy_functions_are_built_as_the_replicator_function_is(tmp_path: Path) -> None:
    template = load_template(EXPORT_COPY)
    assert template["Globals"]["Function"]["CodeUri"] == "../"  # the project root, as above
    for name in EXPORT_COPY_FUNCTIONS:
        function = template["Resources"][name]
        assert function["Metadata"] == {"BuildMethod": "makefile", "ContextPath": "."}
        done = subprocess.run(
            ["make", "-n", "-f", str(MAKEFILE), f"build-{name}",
             f"ARTIFACTS_DIR={tmp_path / name}", f"PYTHON={sys.executable}"],
            capture_output=True, text=True, cwd=tmp_path, timeout=60, check=False)
        assert done.returncode == 0, done.stderr
        assert f"--target \"{tmp_path / name}\"" in done.stdout  # its own build folder


@pytest.mark.slow
def test_sam_validate_lint_of_the_export_copy_template(sam: str) -> None:
    done = subprocess.run(
        [sam, "validate", "--lint", "--template-file", str(EXPORT_COPY)],
        capture_output=True, text=True, env=sam_environment(), timeout=300, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "is a valid SAM Template" in done.stdout + done.stderr


@pytest.mark.slow
def test_the_built_export_file_function_loads_a_data_file_in_an_isolated_interpreter(
    sam: str, tmp_path: Path, mongoeco_db: Any
) -> None:
    """``sam build`` of export-copy.yaml (this machine's architecture), then the child alone on
    ``sys.path`` loads one data file of a local export, twice: the second run skips it."""
    from replicator.migrate.export import write_export
    from support.lambda_isolated import load_file_isolated

    runtime = template_runtime()
    if f"python{sys.version_info[0]}.{sys.version_info[1]}" != runtime:
        pytest.skip(f"the template's runtime is {runtime}; this interpreter is {sys.version}")
    source = a_checkout(tmp_path / "source")
    done = subprocess.run(  # the one function run below (both: the same Makefile rule, tested above)
        [sam, "build", "ExportFileFunction", "--template-file",
         str(source / "deploy" / "export-copy.yaml"), "--build-dir", str(tmp_path / "build")],
        capture_output=True, text=True, cwd=tmp_path, timeout=900, check=False,
        env=sam_environment(PYTHON=sys.executable))
    assert done.returncode == 0, done.stdout + done.stderr
    folder = tmp_path / "build" / "ExportFileFunction"
    root = write_export(tmp_path / "export", [[{"Item": {"pk": {"S": f"k{n}"}, "n": {"N": str(n)}}}
                                              for n in range(30)]])
    entry = json.loads((root / "manifest-files.json").read_text().splitlines()[0])
    host, port = mongoeco_db.client.address
    environment = {"MONGODB_URI": f"mongodb://{host}:{port}/", "MONGODB_DATABASE": mongoeco_db.name,
                   "MONGODB_COLLECTION": "items", "REPLICATOR_KEY_SCHEMA": "pk"}
    event = {"Item": entry, "Export": str(root), "Index": 0}
    first = load_file_isolated(folder, event, environment, cwd=tmp_path)
    assert first["answer"]["Written"] == 30 and first["documents"] == 30
    assert not [f for f in first["files"] if str(ROOT) in f]  # nothing from this checkout
    again = load_file_isolated(folder, event, environment, cwd=tmp_path)
    assert again["answer"]["AlreadyLoaded"] is True and again["documents"] == 30
