"""The main job (``attumamba-seg demo``) through the installed console script, as a user runs it."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest

SCRIPT = shutil.which("attumamba-seg", path=os.path.dirname(sys.executable))


def _run(*args: str) -> subprocess.CompletedProcess:
    assert SCRIPT, "the attumamba-seg console script is not installed in this environment"
    return subprocess.run([SCRIPT, *args], capture_output=True, text=True, timeout=600)


def test_help_lists_the_commands():
    result = _run("--help")
    assert result.returncode == 0
    for command in ("synth", "demo"):
        assert command in result.stdout


@pytest.mark.slow
def test_demo_segments_the_study_and_prints_the_lesion_table(tmp_path):
    out = tmp_path / "demo"
    result = _run("demo", "--out", str(out), "--device", "cpu")
    assert result.returncode == 0, result.stderr
    assert "Studies found" in result.stdout and ": 1" in result.stdout
    assert "PET in SUVbw" in result.stdout
    # Every ground-truth lesion got a row with an SUVmax read back from the DICOM PET.
    table = result.stdout.split("Ground-truth lesions")[1].split("Segmenting")[0]
    rows = [line for line in table.splitlines()[2:] if line.strip()]
    assert rows, "the default demo study must contain lesions"
    assert all(not row.rstrip().endswith("-") for row in rows)
    # The default model's lesion table and its scores against the ground truth.
    assert "SUVpeak" in result.stdout and "Against the ground truth" in result.stdout
    for name in ("lesions.nii.gz", "lesions.json", "lesions.csv"):
        assert (out / "segmentation" / name).is_file()
    png = out / "mip.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 20_000


def test_demo_replaces_only_its_own_previous_output(tmp_path):
    from attumamba.demo import MARKER, _prepare_output

    previous = tmp_path / "demo"
    previous.mkdir()
    (previous / MARKER).write_text("x")
    (previous / "old.txt").write_text("old")
    _prepare_output(previous)
    assert not (previous / "old.txt").exists() and (previous / MARKER).exists()


def test_demo_refuses_a_folder_it_did_not_write(tmp_path):
    precious = tmp_path / "precious.txt"
    precious.write_text("user data")
    result = _run("demo", "--out", str(tmp_path))
    assert result.returncode == 2
    assert "not a previous demo output" in result.stderr
    assert "Traceback" not in result.stderr
    assert precious.read_text() == "user data"
