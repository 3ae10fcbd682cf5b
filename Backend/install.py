"""Set up the backend's Python environment on Windows, macOS or Linux, without make.

    python Backend/install.py [--venv DIR] [--torch SPEC] [--dry-run]

Creates the virtual environment (``.venv`` at the top of the repository by default) with the
Python that runs this script, upgrades pip, installs torch (the CPU build by default; give
``--torch "torch==2.13.0 --index-url <CUDA wheel index>"`` for a CUDA one), the backend with its
test tools, and the nnU-Net packages without their dependencies (their ``timm`` requirement
would pull torchvision and a CUDA torch; what they need is listed in Backend/pyproject.toml).
It ends by touching ``<venv>/.installed``, the stamp ``make`` compares with pyproject.toml.
``--dry-run`` prints the commands instead of running them. The Makefile calls this script.
"""

from __future__ import annotations

import argparse
import shlex
import subprocess
import sys
from pathlib import Path

REPOSITORY = Path(__file__).resolve().parent.parent
DEFAULT_TORCH = "torch==2.13.0"
#: Installed with --no-deps (see the module's description).
NNUNET_PACKAGES = ("nnunetv2==2.8.1", "dynamic-network-architectures==0.4.4")
STAMP_NAME = ".installed"
MINIMUM_PYTHON = (3, 10)


def venv_python(venv: Path, windows: bool) -> Path:
    """Where a virtual environment keeps its interpreter on that platform."""
    return venv / "Scripts" / "python.exe" if windows else venv / "bin" / "python"


def install_commands(venv: Path, torch: str = DEFAULT_TORCH, *, windows: bool = sys.platform == "win32",
                     base_python: str = sys.executable, create: bool = True) -> list[list[str]]:
    """The commands that make the environment, in order (``create``: the venv does not exist yet)."""
    python = str(venv_python(venv, windows))
    pip = [python, "-m", "pip", "install", "--quiet"]
    commands = [[base_python, "-m", "venv", str(venv)]] if create else []
    return commands + [pip + ["--upgrade", "pip"],
                       pip + shlex.split(torch, posix=not windows),
                       pip + ["-e", f"{REPOSITORY / 'Backend'}[test]"],
                       pip + ["--no-deps", *NNUNET_PACKAGES]]


def parse_arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Create or update the backend's environment (see README).")
    parser.add_argument("--venv", type=Path, default=REPOSITORY / ".venv", help="environment folder (default .venv)")
    parser.add_argument("--torch", default=DEFAULT_TORCH,
                        help=f"torch requirement and pip options (default {DEFAULT_TORCH}, the CPU build on "
                             "Windows and Linux; e.g. \"torch==2.13.0 --index-url <CUDA wheel index>\")")
    parser.add_argument("--dry-run", action="store_true", help="print the commands, run nothing")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_arguments(argv)
    if sys.version_info < MINIMUM_PYTHON:
        print(f"install.py needs Python {'.'.join(map(str, MINIMUM_PYTHON))} or newer (this is "
              f"{sys.version.split()[0]}); run it with a newer python", file=sys.stderr)
        return 2
    venv = args.venv.absolute()
    windows = sys.platform == "win32"
    commands = install_commands(venv, args.torch, windows=windows, create=not venv_python(venv, windows).is_file())
    for command in commands:
        print("+ " + subprocess.list2cmdline(command) if windows else "+ " + shlex.join(command), flush=True)
        if not args.dry_run:
            finished = subprocess.run(command, check=False)
            if finished.returncode != 0:
                print(f"install.py: this step failed (exit code {finished.returncode}); the environment in {venv} "
                      "is incomplete. Fix the cause shown above and run install.py again.", file=sys.stderr)
                return finished.returncode
    if not args.dry_run:
        (venv / STAMP_NAME).touch()
        print(f"The backend's environment is ready: {venv_python(venv, windows)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
