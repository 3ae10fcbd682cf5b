"""What ``compare`` writes: ``response.json`` (everything), ``response.csv`` (one row per lesion
group), ``response.png`` (both coronal MIPs, lesions numbered by group) and the registration."""

from __future__ import annotations

import csv
import json
from pathlib import Path

from .timepoint import TimePoint

CSV_COLUMNS = ("group", "kind", "baseline_ids", "follow_up_ids", "baseline_volume_ml", "follow_up_volume_ml",
               "volume_change_pct", "baseline_suv_max", "follow_up_suv_max", "baseline_sul_peak", "follow_up_sul_peak",
               "baseline_long_axis_mm", "follow_up_long_axis_mm", "baseline_short_axis_mm", "follow_up_short_axis_mm")


def csv_rows(response: dict) -> list[dict]:
    result = []
    for row in response["lesions"]:
        flat = {"group": row["group"], "kind": row["kind"], "volume_change_pct": row["volume_change_pct"],
                "baseline_ids": " ".join(map(str, row["baseline_ids"])),
                "follow_up_ids": " ".join(map(str, row["follow_up_ids"]))}
        for when in ("baseline", "follow_up"):
            for measure in ("volume_ml", "suv_max", "sul_peak", "long_axis_mm", "short_axis_mm"):
                value = row[when][measure]
                flat[f"{when}_{measure}"] = round(value, 3) if isinstance(value, float) else value
        result.append(flat)
    return result


def write_response(response: dict, baseline: TimePoint, follow_up: TimePoint, out: Path, transform=None) -> dict:
    """Write the response files into ``out``; returns their paths by name."""
    import SimpleITK as sitk

    from ..viz.response_figure import render_response_mips

    out.mkdir(parents=True, exist_ok=True)
    paths = {"json": out / "response.json", "csv": out / "response.csv", "png": out / "response.png"}
    paths["json"].write_text(json.dumps(response, indent=2, allow_nan=False))
    with paths["csv"].open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=CSV_COLUMNS)
        writer.writeheader()
        writer.writerows(csv_rows(response))
    categories = response["categories"]
    title = " · ".join(f"{c['system']}: {c['category']}" for c in categories.values() if c)
    render_response_mips({"ct": baseline.ct, "pet": baseline.pet, "labels": baseline.labels, "title": "baseline"},
                         {"ct": follow_up.ct, "pet": follow_up.pet, "labels": follow_up.labels,
                          "title": f"follow-up — {title}"}, response["matching"]["groups"], paths["png"])
    if transform is not None:
        paths["transform"] = out / "registration.h5"   # baseline point -> follow-up point (resamples F onto B)
        sitk.WriteTransform(transform, str(paths["transform"]))
    return paths
