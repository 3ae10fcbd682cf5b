"""Backend/install.py, the environment's set-up without make (issue 17, item 3): the commands it
would run per platform and its --dry-run; never a real install."""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPOSITORY = Path(__file__).resolve().parents[2]
SCRIPT = REPOSITORY / "Backend" / "install.py"


@pytest.fixture(scope="module")
def install():
    spec = importlib.util.spec_from_file_location("attumamba_install_script", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("windows, python", [(False, "bin/python"), (True, "Scripts/python.exe")],
                         ids=["posix", "windows"])
def test_the_steps_per_platform(install, tmp_path, windows, python):
    venv = tmp_path / "env"
    commands = install.install_commands(venv, "torch==2.13.0 --index-url https://example.test/cu", windows=windows,
                                        base_python="/base/python3")
    interpreter = str(venv / python)
    assert commands[0] == ["/base/python3", "-m", "venv", str(venv)]
    assert [c[:5] for c in commands[1:]] == [[interpreter, "-m", "pip", "install", "--quiet"]] * 4
    assert commands[1][5:] == ["--upgrade", "pip"]
    assert commands[2][5:] == ["torch==2.13.0", "--index-url", "https://example.test/cu"]  # the spec split in words
    assert commands[3][5:] == ["-e", f"{REPOSITORY / 'Backend'}[test]"]
    assert commands[4][5:] == ["--no-deps", "nnunetv2==2.8.1", "dynamic-network-architectures==0.4.4"]
    assert install.install_commands(venv, windows=windows, create=False) == [
        c for c in install.install_commands(venv, windows=windows) if "venv" not in c[1:3]]  # an existing venv is kept


def test_dry_run_prints_the_commands_and_makes_nothing(tmp_path):
    venv = tmp_path / "env"
    shown = subprocess.run([sys.executable, str(SCRIPT), "--venv", str(venv), "--torch", "torch==2.13.0", "--dry-run"],
                           capture_output=True, text=True, timeout=60)
    assert shown.returncode == 0, shown.stderr
    lines = shown.stdout.splitlines()
    assert len(lines) == 5 and all(line.startswith("+ ") for line in lines)
    assert f"-m venv {venv}" in lines[0] and "install --quiet torch==2.13.0" in lines[2]
    assert "--no-deps nnunetv2==2.8.1" in lines[4]
    assert not venv.exists()


def test_the_makefile_builds_the_environment_with_the_script():
    makefile = (REPOSITORY / "Makefile").read_text()
    rule = re.search(r"^\$\(STAMP\):(.*)\n\t(.*)$", makefile, re.MULTILINE)
    assert rule, "no rule for the stamp"
    assert set(rule.group(1).split()) >= {"Backend/pyproject.toml", "Makefile", "Backend/install.py"}
    assert rule.group(2) == '$(PYTHON) Backend/install.py --venv $(VENV) --torch "$(TORCH)"'
    assert "pip install" not in makefile  # one place for the steps: the script
