"""Synthetic-study speed: generation and writing per study, full vs compact, NIfTI vs DICOM.

Run: .venv/bin/python Testing/benchmarks/bench_synth.py [--cases 3]
Prints a markdown table; the issue's target is 20 full studies in a few minutes on 2 cores.
"""

from __future__ import annotations

import argparse
import resource
import tempfile
import time

from attumamba.synth import generate_study, write_study


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--cases", type=int, default=3)
    args = parser.parse_args()
    rows = []
    for profile in ("full", "compact"):
        for fmt in ("nifti", "dicom"):
            generate_s, write_s = [], []
            with tempfile.TemporaryDirectory() as out:
                for index in range(args.cases):
                    start = time.perf_counter()
                    study = generate_study(2026, index, profile=profile)
                    generate_s.append(time.perf_counter() - start)
                    start = time.perf_counter()
                    write_study(study, out, fmt)
                    write_s.append(time.perf_counter() - start)
            gen, wrt = sum(generate_s) / len(generate_s), sum(write_s) / len(write_s)
            rows.append((profile, fmt, study.ct.GetSize(), study.suv.GetSize(), gen, wrt, 20 * (gen + wrt) / 60))
    peak_gib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    print("| profile | format | CT size (last) | PET size (last) | generate s/study | write s/study | 20 studies (min) |")
    print("|---|---|---|---|---|---|---|")
    for profile, fmt, ct, pet, gen, wrt, twenty in rows:
        print(f"| {profile} | {fmt} | {'x'.join(map(str, ct))} | {'x'.join(map(str, pet))} | {gen:.1f} | {wrt:.1f} | {twenty:.1f} |")
    print(f"\npeak RSS of the process: {peak_gib:.2f} GiB ({args.cases} studies per row)")


if __name__ == "__main__":
    main()
