"""Baseline and follow-up coronal PET MIPs side by side, each lesion numbered by its match group."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import SimpleITK as sitk

from .mip import _axial, _project, coronal_extent

KIND_COLOURS = {"matched": "cyan", "split": "cyan", "merged": "cyan", "complex": "cyan", "disappeared": "lime",
                "new": "magenta"}


def render_response_mips(baseline: dict, follow_up: dict, groups: list[dict], out_png: str | Path, *,
                         suv_max: float = 10.0, dpi: int = 110) -> Path:
    """``baseline``/``follow_up``: {"ct", "pet", "labels" (SimpleITK images), "title"}; ``groups``: the
    matching's groups (``group_id``, ``kind``, ``baseline_ids``, ``follow_up_ids``)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 8))
    for ax, point, side in ((axes[0], baseline, "baseline_ids"), (axes[1], follow_up, "follow_up_ids")):
        ct, pet = _axial(point["ct"]), _axial(point["pet"])
        projection = _project(ct, "mean")
        low, high = np.percentile(projection, [1, 99.7])
        ax.imshow(projection, cmap="gray", origin="lower", extent=coronal_extent(ct), vmin=low, vmax=high)
        mip = _project(pet, "max")
        rgba = plt.get_cmap("hot")(np.clip(mip / suv_max, 0.0, 1.0))
        rgba[..., 3] = np.clip(mip / (0.25 * suv_max), 0.0, 1.0) * 0.85
        ax.imshow(rgba, origin="lower", extent=coronal_extent(pet), interpolation="bilinear")
        _number_groups(ax, _axial(point["labels"]), groups, side)
        ax.set_xlim(*coronal_extent(ct)[:2])
        ax.set_ylim(*coronal_extent(ct)[2:])
        ax.set_axis_off()
        ax.set_title(point.get("title", ""), fontsize=10)
        ax.text(0.01, 0.99, "R", color="white", transform=ax.transAxes, va="top", fontsize=11, weight="bold")
    handles = [plt.Line2D([], [], color=colour, lw=2, label=kind) for kind, colour in
               (("matched / split / merged", "cyan"), ("disappeared", "lime"), ("new", "magenta"))]
    fig.legend(handles=handles, loc="lower center", ncol=3, frameon=False, fontsize=9)
    out_png = Path(out_png)
    out_png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out_png, dpi=dpi, bbox_inches="tight")
    plt.close(fig)
    return out_png


def _number_groups(ax, labels: sitk.Image, groups: list[dict], side: str) -> None:
    projected = _project(labels, "max").astype(np.int64)
    extent = coronal_extent(labels)
    sx, _, sz = labels.GetSpacing()
    for group in groups:
        colour = KIND_COLOURS.get(group["kind"], "cyan")
        for lesion_id in group[side]:
            rows, cols = np.nonzero(projected == lesion_id)
            if rows.size == 0:
                continue
            ax.contour(projected == lesion_id, levels=[0.5], colors=colour, linewidths=0.8, origin="lower",
                       extent=extent)
            x = extent[0] + (cols.mean() + 0.5) * sx
            z = extent[2] + (rows.mean() + 0.5) * sz
            ax.text(x + 6 * sx, z, group["group_id"], color=colour, fontsize=7, va="center")
