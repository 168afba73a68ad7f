"""cfn-lint on a template, one way for every test that lints (deploy/template.yaml,
deploy/export-copy.yaml and the state machine definition lifted from it)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest


def cfn_lint(path: Path) -> tuple[int, str]:
    """Run cfn-lint (PyPI ``cfn-lint``, in the dev extra): this interpreter's, else the one on PATH."""
    try:
        import cfnlint  # noqa: F401

        # cfn-lint's console script (cfnlint has no __main__ module).
        command = [sys.executable, "-c", "import sys; from cfnlint.runner import main; sys.exit(main())"]
    except ImportError:
        executable = shutil.which("cfn-lint")
        if executable is None:
            pytest.skip("cfn-lint is not installed (pip install cfn-lint; it is in the dev extra)")
        command = [executable]
    done = subprocess.run([*command, str(path)], capture_output=True, text=True, check=False)
    return done.returncode, done.stdout + done.stderr
