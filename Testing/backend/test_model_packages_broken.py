"""Damaged model packages and unpacked zips: a broken package is listed as broken with its reason
and never stops the others; listing unpacks nothing; a failed extraction leaves nothing; every
extraction is gone at exit, and a dead process's leftovers at the next start (a live one's stay)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

import httpx
import pytest
from loopback import serving
from tiny_model import make_tiny_package, small_study

from attumamba.cli import main as cli_main
from attumamba.errors import InputError
from attumamba.inference import open_model
from attumamba.server import ServerState, create_app, image_bytes

TOKEN = "packages-token-0123456789abcdef0123456789"


def zip_package(folder: Path, archive: Path, name: str | None = None, stored: bool = False) -> Path:
    """``folder`` zipped (inside a sub-folder, as users zip it), its manifest renamed to ``name``."""
    compression = zipfile.ZIP_STORED if stored else zipfile.ZIP_DEFLATED
    with zipfile.ZipFile(archive, "w", compression) as handle:
        for path in sorted(folder.rglob("*")):
            inside = f"{archive.stem}/{path.relative_to(folder).as_posix()}"
            if path.name == "model.json" and name:
                handle.writestr(inside, json.dumps({**json.loads(path.read_text()), "name": name}))
            elif path.is_file():
                handle.write(path, inside)
    return archive


def with_bad_crc(folder: Path, archive: Path, name: str) -> Path:
    """A zip whose checkpoint bytes were changed after it was written: the CRC no longer matches."""
    zip_package(folder, archive, name, stored=True)
    data = bytearray(archive.read_bytes())
    checkpoint = (folder / "fold_all" / "checkpoint_final.pth").read_bytes()
    at = data.index(checkpoint[:64]) + len(checkpoint) // 2
    data[at] ^= 0xFF
    archive.write_bytes(bytes(data))
    return archive


@pytest.fixture
def installed(tmp_path, monkeypatch):
    """A model folder with a good package, a good zip and three broken zips; a private temp folder."""
    models = tmp_path / "models"
    good = make_tiny_package(tmp_path / "source" / "tiny")
    make_tiny_package(models / "tiny")
    zip_package(good, models / "zipped.zip", "zipped")
    with_bad_crc(good, models / "crc.zip", "crc")
    unreadable = make_tiny_package(tmp_path / "source" / "badjson")
    (unreadable / "model.json").write_text("{ not json")
    zip_package(unreadable, models / "badjson.zip")
    (models / "random.zip").write_bytes(os.urandom(4096))
    monkeypatch.setenv("ATTUMAMBA_MODELS", str(models))
    temporary = tmp_path / "tmp"
    temporary.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(temporary))
    return {"models": models, "good": good, "tmp": temporary}


def leftovers(temporary: Path) -> list[Path]:
    """Files and unpacked packages under the temp folder (this process's empty model folder does not count)."""
    return sorted(p for p in temporary.rglob("*") if p.is_file() or p.name.startswith("package-"))


def wait(client, job_id, timeout=120):
    deadline = time.monotonic() + timeout
    while (status := client.get(f"/v1/jobs/{job_id}").json())["state"] not in ("done", "failed", "cancelled"):
        assert time.monotonic() < deadline, status
        time.sleep(0.05)
    return status


def test_broken_zip_is_listed_and_others_run(installed, capsys):
    with serving(create_app(ServerState(token=TOKEN))) as url, \
            httpx.Client(base_url=url, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=60) as client:
        answer = client.get("/v1/models")
        assert answer.status_code == 200, answer.text
        listed = {m["name"]: m for m in answer.json()}
        assert not listed["tiny"]["broken"] and not listed["zipped"]["broken"]
        assert listed["zipped"]["path"].endswith("zipped.zip") and listed["zipped"]["folds"] == ["fold_all"]
        assert listed["crc"]["broken"] and "bad CRC" in listed["crc"]["reason"]
        assert "cannot be used" in listed["crc"]["description"]
        assert listed["badjson"]["broken"] and "not valid JSON" in listed["badjson"]["reason"]
        assert listed["random"]["broken"] and "not a zip" in listed["random"]["reason"]

        ct, pet = small_study()
        files = {"ct": ("ct.nrrd", image_bytes(ct)), "pet": ("pet.nrrd", image_bytes(pet))}
        study_id = client.post("/v1/studies", files=files).json()["study_id"]
        refused = client.post("/v1/jobs", json={"study_id": study_id, "model": "crc"})
        assert refused.status_code == 422 and "cannot be used" in refused.json()["detail"]
        assert "bad CRC" in refused.json()["detail"]
        for model in ("tiny", "zipped"):  # the others still run
            job = client.post("/v1/jobs", json={"study_id": study_id, "model": model}).json()
            assert wait(client, job["job_id"])["state"] == "done", model
        assert client.get("/v1/health").status_code == 200

    assert cli_main(["models"]) == 0
    printed = capsys.readouterr().out
    assert "crc: BROKEN" in printed and "bad CRC" in printed and "tiny: Tiny test model" in printed


def test_listing_models_unpacks_nothing(installed):
    with serving(create_app(ServerState(token=TOKEN))) as url, \
            httpx.Client(base_url=url, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=60) as client:
        before = sorted(installed["tmp"].iterdir())
        for _ in range(50):
            assert client.get("/v1/models").status_code == 200
        assert sorted(installed["tmp"].iterdir()) == before and leftovers(installed["tmp"]) == []


def test_failed_extraction_leaves_nothing(installed):
    with pytest.raises(InputError, match="damaged"):
        open_model(installed["models"] / "crc.zip")
    with pytest.raises(InputError, match="not valid JSON"):
        open_model(installed["models"] / "badjson.zip")
    with pytest.raises(InputError, match="not a zip"):
        open_model(installed["models"] / "random.zip")
    assert leftovers(installed["tmp"]) == []
    package = open_model(installed["models"] / "zipped.zip")
    unpacked = package.root
    assert unpacked.is_dir() and installed["tmp"] in unpacked.parents
    del package  # the unpacked copy lives as long as the package
    assert not unpacked.exists() and leftovers(installed["tmp"]) == []


CHILD = "import sys; from attumamba.inference import open_model; " \
        "p = open_model(sys.argv[1]); print(p.root, flush=True); sys.stdin.read()"


def child(archive: Path, temporary: Path) -> tuple[subprocess.Popen, Path]:
    """A process that unpacks ``archive`` and waits for its stdin to close; (process, its unpacked root)."""
    process = subprocess.Popen([sys.executable, "-c", CHILD, str(archive)], stdin=subprocess.PIPE,
                               stdout=subprocess.PIPE, text=True, env={**os.environ, "TMPDIR": str(temporary)})
    return process, Path(process.stdout.readline().strip())


def process_folder(unpacked: Path, temporary: Path) -> Path:
    return next(p for p in unpacked.parents if p.parent == temporary)


def test_extractions_removed_at_exit_and_start(installed):
    archive, temporary = installed["models"] / "zipped.zip", installed["tmp"]
    (ends, ends_root), (killed, killed_root), (lives, lives_root) = (child(archive, temporary) for _ in range(3))
    assert ends_root.is_dir() and killed_root.is_dir() and lives_root.is_dir()
    ends.stdin.close()
    assert ends.wait(60) == 0
    assert not process_folder(ends_root, temporary).exists()  # removed at exit
    killed.kill()
    killed.wait(60)
    assert killed_root.is_dir()  # a killed process cannot clean up...
    live_folder = process_folder(lives_root, temporary)
    pid = live_folder.name.split("-")[2]
    reused = temporary / f"attumamba-models-{pid}-12345-stale"  # a dead process's folder whose pid runs again
    reused.mkdir()
    elsewhere = temporary.parent / "not-ours"
    elsewhere.mkdir()
    (elsewhere / "keep.txt").write_text("a user's file")
    (temporary / "attumamba-models-1-1-link").symlink_to(elsewhere, target_is_directory=True)

    with serving(create_app(ServerState(token=TOKEN))):  # ...the next start removes its leftovers
        pass
    assert not process_folder(killed_root, temporary).exists() and not reused.exists()
    assert lives_root.is_dir() and (lives_root / "model.json").is_file()  # a live process's folder stays
    assert (elsewhere / "keep.txt").read_text() == "a user's file"  # links are never followed
    lives.stdin.close()
    assert lives.wait(60) == 0
    assert not live_folder.exists()
    (temporary / "attumamba-models-1-1-link").unlink()
    assert leftovers(temporary) == []
