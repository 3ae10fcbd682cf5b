"""Response assessment on synthetic follow-up pairs: the default model's masks and the ground-truth
masks through the same registration, matching and criteria, against the true categories.

    python Testing/benchmarks/bench_response.py [--pairs 20] [--first 0] [--seed 1818] [--profile compact] [--model NAME]

Seed 1818 is used nowhere else. Per pair: both studies segmented by the model, the follow-up
registered onto the baseline once (rigid + B-spline), then the response computed twice — from the
model's masks and from the ground truth. Printed: agreement with the true category per system and
its confusion table, registration error at the true lesion centres, and matching precision/recall
against the true correspondence (on the ground-truth masks, where the ids are the truth's). The
response logic on ground-truth masks must agree with the truth on every pair.
"""

from __future__ import annotations

import argparse
import time
from collections import Counter

import numpy as np

SYSTEMS = ("recist", "percist", "deauville")


def run_pair(seed: int, index: int, profile: str, model: str | None) -> dict:
    from attumamba.inference import Segmenter, resolve_model, run_study
    from attumamba.io.patient import set_tracer
    from attumamba.response.assess import assess_response
    from attumamba.response.registration import register_follow_up
    from attumamba.response.timepoint import measured
    from attumamba.synth import generate_pair

    started = time.perf_counter()
    pair = generate_pair(seed, index, profile=profile)
    segmenter = Segmenter(resolve_model(model), "cpu")
    points = {}
    for name, study in (("baseline", pair.baseline), ("follow-up", pair.follow_up)):
        set_tracer(study.suv, study.dose.radiopharmaceutical)   # as a PET read from DICOM carries it
        result = run_study(segmenter, study.ct, study.suv)
        patient = (study.dicom_study.patient_sex, study.dicom_study.patient_size_m, study.dicom_study.patient_weight_kg)
        points[name] = {"model": measured(name, study.ct, study.suv, result.instances, "model", patient),
                        "truth": measured(name, study.ct, study.suv, study.lesions_ct, "truth", patient)}
    registration = register_follow_up(pair.baseline.ct, pair.follow_up.ct)
    responses = {source: assess_response(points["baseline"][source], points["follow-up"][source],
                                         registration=registration) for source in ("model", "truth")}
    return {"truth": pair.truth, "responses": responses, "registration_error_mm": _registration_error(pair, registration),
            "matching": _matching_scores(pair.truth, responses["truth"]), "seconds": time.perf_counter() - started}


def _registration_error(pair, registration) -> list[float]:
    """Distance between where the registration and the truth send each baseline lesion centre."""
    errors = []
    for row in pair.truth["lesions"]:
        if row["kind"] == "matched":
            moved = np.array(registration.transform.TransformPoint(tuple(map(float, row["baseline"]["centre_lps_mm"]))))
            errors.append(float(np.linalg.norm(moved - np.array(row["follow_up"]["centre_lps_mm"]))))
    return errors


def _matching_scores(truth: dict, response: dict) -> tuple[int, int, int]:
    """(true positive, false positive, false negative) links between baseline and follow-up lesions."""
    true_links = {(r["baseline_id"], r["follow_up_id"]) for r in truth["lesions"] if r["kind"] == "matched"}
    found = {(b, f) for g in response["matching"]["groups"] for b in g["baseline_ids"] for f in g["follow_up_ids"]}
    return len(true_links & found), len(found - true_links), len(true_links - found)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pairs", type=int, default=20)
    parser.add_argument("--first", type=int, default=0, help="index of the first pair (to continue a run)")
    parser.add_argument("--seed", type=int, default=1818)
    parser.add_argument("--profile", default="compact")
    parser.add_argument("--model", default=None)
    args = parser.parse_args()
    results = []
    for index in range(args.first, args.first + args.pairs):
        result = run_pair(args.seed, index, args.profile, args.model)
        cats = {s: (result["truth"]["categories"][s] or {}).get("category") for s in SYSTEMS}
        found = {src: {s: (result["responses"][src]["categories"][s] or {}).get("category") for s in SYSTEMS}
                 for src in ("model", "truth")}
        print(f"pair {index}: scenario {result['truth']['scenario']}, true {cats}, from truth masks {found['truth']}, "
              f"from the model {found['model']} ({result['seconds']:.0f} s)", flush=True)
        results.append((cats, found, result))
    report(results)


def report(results) -> None:
    print("\n| system | source | agreement with the true category | pairs |\n|---|---|---|---|")
    for system in SYSTEMS:
        for source in ("truth", "model"):
            pairs = [(c[system], f[source][system]) for c, f, _ in results if c[system] is not None]
            agree = sum(a == b for a, b in pairs)
            print(f"| {system} | {source} masks | {agree}/{len(pairs)} = {agree / max(len(pairs), 1):.2f} | {len(pairs)} |")
    for system in SYSTEMS:
        table = Counter((c[system], f["model"][system]) for c, f, _ in results if c[system] is not None)
        print(f"\n{system}, model masks (true → found): " + ", ".join(f"{a}→{b}: {n}" for (a, b), n in sorted(table.items())))
    errors = np.concatenate([r["registration_error_mm"] for _, _, r in results if r["registration_error_mm"]] or [[]])
    tp, fp, fn = (sum(r["matching"][k] for _, _, r in results) for k in range(3))
    print(f"\nregistration error at true lesion centres: median {np.median(errors):.1f} mm, 95th percentile "
          f"{np.percentile(errors, 95):.1f} mm, max {errors.max():.1f} mm ({errors.size} lesions)" if errors.size else "")
    print(f"matching on ground-truth masks: precision {tp / max(tp + fp, 1):.3f}, recall {tp / max(tp + fn, 1):.3f} "
          f"({tp} true links found, {fp} wrong, {fn} missed)")


if __name__ == "__main__":
    main()
