"""Batch outputs under unlucky input (issue 15, items 2 and 12): study ids that do not shift,
resume that never hands one study's results to another, outputs that survive a power loss,
one permission rule, one run per output folder.

Real files, the real ``run_batch`` and CLI, the tiny test model (lesion logit +20: every voxel
is lesion, so a study's lesions are what the SUVmax ≥ 3 filter keeps).
"""

from __future__ import annotations

import csv
import dataclasses
import json
import os
import stat
import threading
from pathlib import Path

import pytest
import SimpleITK as sitk
from tiny_model import make_tiny_package, small_study

from attumamba.batch import BatchSettings, run_batch
from attumamba.cli import main as cli_main
from attumamba.errors import InputError
from attumamba.io import find_studies


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return make_tiny_package(tmp_path_factory.mktemp("model") / "tiny", bias_lesion=20.0)


def settings(model) -> BatchSettings:
    return BatchSettings(model=str(model), device="cpu", min_suv_max=3.0)


def write_pair(folder: Path, case: str, seed: int = 0, cold: bool = False) -> None:
    """``<case>_ct.nii.gz`` + ``<case>_pet.nii.gz``; a cold PET (SUV 1) gives no lesion."""
    folder.mkdir(parents=True, exist_ok=True)
    ct, pet = small_study(seed)
    sitk.WriteImage(ct, str(folder / f"{case}_ct.nii.gz"))
    sitk.WriteImage(pet * 0.0 + 1.0 if cold else pet, str(folder / f"{case}_pet.nii.gz"))


def ids_by_ct(root: Path) -> dict[str, str]:
    """Study id of each study, keyed by its CT file relative to ``root``."""
    return {study.ct.relative_to(root).as_posix(): study.study_id for study in find_studies(root)}


def recorded_ct(out: Path, study_id: str) -> str:
    return json.loads((out / "studies" / study_id / "study.json").read_text())["inputs"]["ct"]


def assert_every_folder_is_its_own_studys(root: Path, out: Path) -> None:
    """Each study's folder, cohort row and labelmap come from that study's own CT."""
    with open(out / "cohort_studies.csv", newline="") as handle:
        rows = {row["study_id"]: row for row in csv.DictReader(handle)}
    for study in find_studies(root):
        assert recorded_ct(out, study.study_id) == str(study.ct), study.study_id
        assert rows[study.study_id]["ct"] == str(study.ct) and rows[study.study_id]["status"] == "done"


def test_ids_do_not_shift_when_a_study_is_added(model, tmp_path):
    root, out = tmp_path / "in", tmp_path / "out"
    write_pair(root / "a", "case1", seed=0)
    write_pair(root / "c", "case1", seed=1, cold=True)
    before = ids_by_ct(root)
    assert len(set(before.values())) == 2 and all(i.startswith("case1_") for i in before.values())
    assert run_batch(root, out, settings(model)).ok

    write_pair(root / "b", "case1", seed=2)  # sorts between the two: sorted suffixes would shift
    after = ids_by_ct(root)
    assert {ct: after[ct] for ct in before} == before and len(set(after.values())) == 3
    summary = run_batch(root, out, settings(model), resume=True)
    assert sorted(summary.already_done) == sorted(before.values()) and summary.done == [after["b/case1_ct.nii.gz"]]
    assert_every_folder_is_its_own_studys(root, out)
    cold = json.loads((out / "studies" / before["c/case1_ct.nii.gz"] / "lesions.json").read_text())
    assert cold["totals"]["n_lesions"] == 0  # c's own (cold) results, not b's


def test_colliding_dicom_ids_come_from_their_uids(tmp_path, write_dicom_pair, study_info):
    root = tmp_path / "in"
    for folder, seed in (("p1", 1), ("p3", 3)):  # same patient and date: one readable id for both
        info = dataclasses.replace(study_info, study_uid=f"1.2.826.0.1.3680043.8.498.{seed}1",
                                   frame_of_reference_uid=f"1.2.826.0.1.3680043.8.498.{seed}2")
        write_dicom_pair(root / folder, study=info, seed=seed)
    before = ids_by_ct(root)
    info = dataclasses.replace(study_info, study_uid="1.2.826.0.1.3680043.8.498.21",
                               frame_of_reference_uid="1.2.826.0.1.3680043.8.498.22")
    write_dicom_pair(root / "p2", study=info, seed=2)
    after = ids_by_ct(root)
    assert {ct: after[ct] for ct in before} == before and len(set(after.values())) == 3
    assert all(i.startswith("TEST001_20240305_") for i in after.values())


def test_real_case1_2_beside_a_colliding_case1(model, tmp_path):
    root, out = tmp_path / "in", tmp_path / "out"
    write_pair(root / "a", "case1", seed=0)
    write_pair(root / "b", "case1", seed=1, cold=True)
    write_pair(root / "a", "case1_2", seed=2)  # a study really named case1_2
    ids = ids_by_ct(root)
    assert ids["a/case1_2_ct.nii.gz"] == "case1_2" and len(set(ids.values())) == 3
    assert "case1_2" not in (ids["a/case1_ct.nii.gz"], ids["b/case1_ct.nii.gz"])
    summary = run_batch(root, out, settings(model))
    assert sorted(summary.done) == sorted(ids.values())
    assert_every_folder_is_its_own_studys(root, out)


def test_resume_redoes_a_study_whose_inputs_changed(model, tmp_path):
    root, out = tmp_path / "in", tmp_path / "out"
    for name, seed in (("kept", 0), ("changed", 1), ("left", 2), ("right", 3)):
        write_pair(root, name, seed=seed)
    assert run_batch(root, out, settings(model)).ok
    untouched = {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in (out / "studies" / "kept").iterdir()}

    ct, pet = small_study(1)
    sitk.WriteImage(pet * 0.0 + 1.0, str(root / "changed_pet.nii.gz"))  # same name, new content: no lesion
    studies = out / "studies"  # what ids that shifted under an earlier version did: each folder is the other's
    os.rename(studies / "left", studies / "swap")
    os.rename(studies / "right", studies / "left")
    os.rename(studies / "swap", studies / "right")

    summary = run_batch(root, out, settings(model), resume=True)
    assert summary.already_done == ["kept"] and sorted(summary.done) == ["changed", "left", "right"]
    redone = json.loads((out / "batch.json").read_text())["redone"]
    assert redone == summary.redone and set(redone) == {"changed", "left", "right"}
    assert redone["changed"].startswith("inputs changed: PET")
    assert all(redone[side].startswith("the folder was another study's") for side in ("left", "right"))
    report = json.loads((studies / "changed" / "lesions.json").read_text())
    assert report["totals"]["n_lesions"] == 0  # made from the new PET
    assert_every_folder_is_its_own_studys(root, out)
    assert {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in untouched} == untouched
    assert not [p for p in studies.iterdir() if p.name.startswith(".")]  # nothing left aside


def test_unreadable_study_json_is_not_done(model, tmp_path):
    root, out = tmp_path / "in", tmp_path / "out"
    write_pair(root, "empty", seed=0)
    write_pair(root, "older", seed=1)
    assert run_batch(root, out, settings(model)).ok
    (out / "studies" / "empty" / "study.json").write_bytes(b"")  # what a power loss before the flush leaves
    older = out / "studies" / "older" / "study.json"
    record = json.loads(older.read_text())
    record["inputs"].pop("fingerprint", None)  # written by a version that recorded no fingerprint
    older.write_text(json.dumps(record))

    summary = run_batch(root, out, settings(model), resume=True)
    assert summary.ok and summary.already_done == [] and sorted(summary.done) == ["empty", "older"]
    assert "could not be read" in summary.redone["empty"]
    assert summary.redone["older"].startswith("inputs changed: no input fingerprint")
    for study_id in ("empty", "older"):
        assert json.loads((out / "studies" / study_id / "study.json").read_text())["inputs"]["fingerprint"]


def _modes(out: Path) -> dict[str, int]:
    found = {}
    for folder, dirs, files in os.walk(out):
        for name in dirs + files:
            path = Path(folder) / name
            found[path.relative_to(out).as_posix()] = stat.S_IMODE(path.lstat().st_mode)
    return found


def test_outputs_share_one_permission_rule(model, tmp_path):
    root, out = tmp_path / "in", tmp_path / "out"
    write_pair(root, "good", seed=0)
    write_pair(root, "broken", seed=1)
    (root / "broken_ct.nii.gz").write_bytes(b"\x1f\x8b not a volume")  # a failure record too
    previous = os.umask(0o027)
    try:
        run_batch(root, out, settings(model))
    finally:
        os.umask(previous)
    modes = _modes(out)
    assert {"cohort_studies.csv", "batch.json", "failed/broken.json", "studies/good/study.json"} <= set(modes)
    wrong = {name: oct(mode) for name, mode in modes.items()
             if mode != (0o750 if (out / name).is_dir() else 0o640)}
    assert not wrong, f"every output follows the umask (files 0640, folders 0750 here): {wrong}"


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="maps descriptors to paths through /proc")
def test_outputs_are_flushed_to_disk_before_their_rename(model, tmp_path, monkeypatch):
    root, out = tmp_path / "in", tmp_path / "out"
    write_pair(root, "good", seed=0)
    write_pair(root, "broken", seed=1)
    (root / "broken_ct.nii.gz").write_bytes(b"\x1f\x8b not a volume")
    events: list[tuple[str, str, str]] = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd):
        events.append(("fsync", os.readlink(f"/proc/self/fd/{fd}"), ""))
        return real_fsync(fd)

    def replace(source, target, **kwargs):
        events.append(("replace", str(source), str(target)))
        return real_replace(source, target, **kwargs)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    run_batch(root, out, settings(model))
    monkeypatch.undo()

    def position(kind: str, path: str, target: str = "") -> int:
        path = os.path.realpath(path) if kind == "fsync" else path
        matches = [i for i, event in enumerate(events) if event[:2] == (kind, path) and target in event[2]]
        assert matches, f"no {kind} of {path}"
        return matches[-1]

    studies = out / "studies"
    partial, final = studies / ".good.partial", studies / "good"
    renamed = position("replace", str(partial), str(final))
    for name in [p.name for p in final.iterdir()]:  # each file, then the folder, before the rename
        assert position("fsync", str(partial / name)) < renamed, name
    assert position("fsync", str(partial)) < renamed < position("fsync", str(studies))
    for target in (out / "failed" / "broken.json", out / "cohort_studies.csv", out / "cohort_lesions.csv",
                   out / "report.html", out / "batch.json"):
        temporaries = [e for e in events if e[0] == "replace" and e[2] == str(target)]
        assert temporaries, f"{target.name} was not replaced atomically"
        temporary = temporaries[-1][1]
        renamed = position("replace", temporary, str(target))
        assert position("fsync", temporary) < renamed < position("fsync", str(target.parent)), target.name


def test_second_run_on_the_same_folder_is_refused(model, tmp_path, capsys):
    root, out = tmp_path / "in", tmp_path / "out"
    write_pair(root, "first", seed=0)
    inside, release = threading.Event(), threading.Event()
    results: dict = {}

    def hold(study_id, fraction, stage):  # the first run waits inside its study
        inside.set()
        release.wait(60)

    def first_run():
        try:
            results["summary"] = run_batch(root, out, settings(model), on_progress=hold)
        except BaseException as error:  # noqa: BLE001 (reported below)
            results["error"] = error

    thread = threading.Thread(target=first_run)
    thread.start()
    try:
        assert inside.wait(60), "the first run never started its study"
        in_progress = out / "studies" / ".other.partial"  # work in progress of the first run
        in_progress.mkdir()
        (in_progress / "lesions.nii.gz").write_bytes(b"half")
        args = ["batch", str(root), "-o", str(out), "--model", str(model), "--device", "cpu", "--resume"]
        assert cli_main(args) == 2
        error = capsys.readouterr().err
        assert str(out) in error and "another batch run" in error and "Traceback" not in error
        with pytest.raises(InputError, match="another batch run"):
            run_batch(root, out, settings(model), resume=True)
        assert (in_progress / "lesions.nii.gz").read_bytes() == b"half"
    finally:
        release.set()
        thread.join(120)
    assert "error" not in results and results["summary"].done == ["first"]
    assert run_batch(root, out, settings(model), resume=True).already_done == ["first"]  # the lock is released
