"""``attumamba-seg compare``: response assessment between a baseline and a follow-up study."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from ..errors import InputError


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "compare", help="response between two time points (RECIST 1.1, PERCIST 1.0, Deauville)",
        description="Registers the follow-up onto the baseline (CT), matches lesions, places the PERCIST reference "
                    "regions and reports RECIST 1.1, PERCIST 1.0 and Deauville categories with the rule and numbers "
                    "behind each. B and F: a segment/batch result folder (lesions.nii.gz + study.json), or a study "
                    "folder (segmented with --model first, or measured with --baseline-labels/--follow-up-labels).")
    parser.add_argument("--baseline", required=True, type=Path, help="the baseline (B)")
    parser.add_argument("--follow-up", required=True, type=Path, help="the follow-up (F)")
    parser.add_argument("-o", "--out", required=True, type=Path, help="folder for response.json/.csv/.png")
    parser.add_argument("--baseline-labels", type=Path, help="a labelmap to use for the baseline instead of segmenting")
    parser.add_argument("--follow-up-labels", type=Path, help="a labelmap to use for the follow-up")
    parser.add_argument("--model", default=None, help="model for studies without a labelmap (default: the default)")
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    parser.add_argument("--reader", type=Path, help="JSON with the reader's choices: targets (baseline ids), "
                        "lesion_info {id: {organ, nodal}}, not_lesions (follow-up ids), liver / blood_pool "
                        "{baseline|follow_up: [x, y, z] LPS mm}, liver_normal, non_target_progression")
    parser.add_argument("--rigid-only", action="store_true", help="skip the deformable registration step")
    parser.set_defaults(func=run)


def reader_inputs(path: Path | None):
    """The reader's choices from a JSON file (InputError for anything unknown or unreadable)."""
    if path is None:
        return reader_from_dict({})
    try:
        given = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise InputError(f"--reader {path} is not a readable JSON file ({error})") from None
    return reader_from_dict(given, where="--reader")


def reader_from_dict(given: object, where: str = "reader"):
    """:class:`ReaderInputs` from JSON-like values, every key and type checked."""
    from .assess import ReaderInputs

    if not isinstance(given, dict):
        raise InputError(f"{where}: give a JSON object")
    known = set(ReaderInputs.__dataclass_fields__)
    unknown = sorted(set(given) - known)
    if unknown:
        raise InputError(f"{where}: unknown key(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
    given = dict(given)
    try:
        if "lesion_info" in given:
            given["lesion_info"] = {int(k): dict(v) for k, v in given["lesion_info"].items()}
        for key in ("targets", "not_lesions"):
            if given.get(key) is not None:
                given[key] = [int(i) for i in given[key]]
        for key in ("liver", "blood_pool"):
            given[key] = {when: (None if xyz is None else tuple(float(c) for c in xyz))
                          for when, xyz in (given.get(key) or {}).items() if when in ("baseline", "follow_up")}
        if given.get("tracer") is not None and not isinstance(given["tracer"], str):
            raise TypeError("tracer must be a name such as FDG or PSMA-11")
    except (TypeError, ValueError, AttributeError) as error:
        raise InputError(f"{where}: a value has the wrong type ({error}); see compare --help") from None
    return ReaderInputs(**given)


def run(args: argparse.Namespace) -> int:
    from ..progress import progress_bar
    from .assess import assess_response
    from .outputs import write_response
    from .registration import register_follow_up
    from .timepoint import load_time_point

    reader = reader_inputs(args.reader)
    with progress_bar("compare", total=1.0) as progress:
        baseline = load_time_point("baseline", args.baseline, labels=args.baseline_labels, model=args.model,
                                   device=args.device, progress=lambda f, s: progress(0.3 * f, f"baseline: {s}"))
        follow_up = load_time_point("follow-up", args.follow_up, labels=args.follow_up_labels, model=args.model,
                                    device=args.device, progress=lambda f, s: progress(0.3 + 0.3 * f, f"follow-up: {s}"))
        registration = register_follow_up(baseline.ct, follow_up.ct, deformable=not args.rigid_only,
                                          progress=lambda f, s: progress(0.6 + 0.3 * f, s))
        response = assess_response(baseline, follow_up, reader, registration=registration)
        paths = write_response(response, baseline, follow_up, args.out, registration.transform)
        progress(1.0, "written")
    for category in response["categories"].values():
        if category:
            print(f"{category['system']}: {category['category']} — {category['rule']}")
    counts = response["matching"]["counts"]
    print("lesions: " + ", ".join(f"{n} {kind}" for kind, n in counts.items() if n))
    for note in response["notes"]:
        print(f"note: {note}")
    print(f"written: {', '.join(str(p) for p in paths.values())}")
    return 0
