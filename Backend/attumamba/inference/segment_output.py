"""The output folder of ``attumamba-seg segment -o OUT``: whole results, never over another study's.

The files are written into a hidden folder beside OUT (``.OUT.<random>.partial``), flushed to the
disk and moved into place (:func:`attumamba.durable_files.replace_folder`): earlier results are
replaced only once the new ones are complete, and an interrupted run leaves them as they were.
``OUT/study.json`` records what the results are made from (absolute CT and PET paths, their
content fingerprint), the model and the options.

An existing OUT is replaced when it is empty, when its ``study.json`` names the same CT and PET
(a re-run, with another model or after the files changed), or with ``--overwrite``. A folder
holding any file ``segment`` does not write is never replaced, not even with ``--overwrite``:
deleting it could lose someone's work.
"""

from __future__ import annotations

import json
import secrets
import shutil
from pathlib import Path

from .. import __version__
from ..durable_files import replace_folder, seal_folder, write_durably
from ..errors import InputError
from ..io.study_inputs import ROLES, absolute, path_fingerprint
from .pipeline import LABELMAP_NAME, StudyResult, write_outputs

RECORD_NAME = "study.json"
OWN_FILES = frozenset({LABELMAP_NAME, "lesions.json", "lesions.csv", "timings.json", RECORD_NAME})


def segment_inputs(ct: str | Path, pet: str | Path) -> dict:
    """The record of a ``segment`` run's inputs: absolute paths and a content fingerprint."""
    return {"ct": absolute(ct), "pet": absolute(pet),
            "fingerprint": {"ct": path_fingerprint(Path(ct)), "pet": path_fingerprint(Path(pet))}}


def check_output_folder(out: Path, inputs: dict, overwrite: bool) -> None:
    """InputError when writing the results of ``inputs`` to ``out`` would replace what it must not."""
    if not out.exists():
        return
    if not out.is_dir():
        raise InputError(f"{out} is a file; give -o a folder for the results")
    names = {path.name for path in out.iterdir()}
    foreign = sorted(names - OWN_FILES)
    if foreign:
        shown = ", ".join(foreign[:5]) + (", ..." if len(foreign) > 5 else "")
        raise InputError(f"{out} holds files that segment does not write ({shown}), so it is never replaced, "
                         "not even with --overwrite; choose a new or empty folder")
    if not names or overwrite:
        return
    try:
        recorded = json.loads((out / RECORD_NAME).read_text()).get("inputs") or {}
    except (OSError, ValueError, AttributeError):
        raise InputError(f"{out} holds results whose inputs are not recorded (no readable {RECORD_NAME}); pass "
                         "--overwrite to replace them, or choose another folder") from None
    if any(absolute(recorded.get(role) or "") != inputs[role] for role in ROLES):
        raise InputError(f"{out} holds the results of another study (CT {recorded.get('ct')}, PET "
                         f"{recorded.get('pet')}); pass --overwrite to replace them, or choose another folder")


def publish_results(result: StudyResult, out: Path, inputs: dict, overwrite: bool) -> dict[str, Path]:
    """Write ``result`` beside ``out``, flush it, check ``out`` again and move the results into place."""
    out = Path(absolute(out))
    out.parent.mkdir(parents=True, exist_ok=True)
    temporary = out.parent / f".{out.name}.{secrets.token_hex(6)}.partial"
    temporary.mkdir()
    try:
        written = write_outputs(result, temporary)
        record = {"attumamba_version": __version__, "inputs": inputs, "model": result.report.get("model"),
                  "options": result.report.get("options")}
        write_durably(temporary / RECORD_NAME, json.dumps(record, indent=2, default=str))
        seal_folder(temporary)
        check_output_folder(out, inputs, overwrite)  # again: OUT may have changed while the model ran
        replace_folder(temporary, out)
    except BaseException:
        shutil.rmtree(temporary, ignore_errors=True)
        raise
    return {key: out / path.name for key, path in written.items()}
