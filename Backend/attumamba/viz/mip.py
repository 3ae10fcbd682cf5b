"""Coronal PET maximum-intensity projection over a CT projection, as a PNG.

A nuclear-medicine reader's first look at a whole-body study is the coronal PET MIP. We draw
it over a CT mean-intensity projection (a radiograph-like backdrop that shows where the
uptake sits) and, when given, outline the lesions with their numbers. Each volume is drawn
at its own physical extent, so PET and CT grids need not match.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import SimpleITK as sitk


def _axial(image: sitk.Image) -> sitk.Image:
    """Reorient to LPS index order (axis flips/permutations only) so projections are well defined."""
    return sitk.DICOMOrient(image, "LPS")


def coronal_extent(image: sitk.Image) -> tuple[float, float, float, float]:
    """(left, right, bottom, top) in mm of voxel edges, x along columns and z along rows."""
    sx, _, sz = image.GetSpacing()
    ox, _, oz = image.GetOrigin()
    nx, _, nz = image.GetSize()
    return (ox - sx / 2, ox + (nx - 0.5) * sx, oz - sz / 2, oz + (nz - 0.5) * sz)


def _project(image: sitk.Image, how: str) -> np.ndarray:
    """Project along the anterior-posterior axis (array axis 1 of [z, y, x])."""
    array = sitk.GetArrayViewFromImage(image)
    projected = array.max(axis=1) if how == "max" else array.mean(axis=1)
    return np.asarray(projected, dtype=np.float32)


def render_pet_ct_mip(
    ct: sitk.Image,
    suv: sitk.Image,
    out_png: str | Path,
    *,
    labels: sitk.Image | None = None,
    suv_max: float = 10.0,
    title: str | None = None,
    colorbar: bool = True,
    dpi: int = 110,
) -> Path:
    """Write a coronal PET MIP (SUV 0..``suv_max``) over a CT projection to ``out_png``.

    ``labels`` (instance labelmap on any grid of the same frame of reference) adds outlines and
    lesion numbers. The patient's right is on the viewer's left, head at the top.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ct, suv = _axial(ct), _axial(suv)
    ct_projection = _project(ct, "mean")
    pet_mip = _project(suv, "max")

    width_mm = ct.GetSpacing()[0] * ct.GetSize()[0]
    height_mm = ct.GetSpacing()[2] * ct.GetSize()[2]
    fig_height = 7.5
    fig, ax = plt.subplots(figsize=(fig_height * width_mm / height_mm + 0.6, fig_height))
    low, high = np.percentile(ct_projection, [1, 99.7])
    ax.imshow(ct_projection, cmap="gray", origin="lower", extent=coronal_extent(ct), vmin=low, vmax=high)
    pet_rgba = plt.get_cmap("hot")(np.clip(pet_mip / suv_max, 0.0, 1.0))
    pet_rgba[..., 3] = np.clip(pet_mip / (0.25 * suv_max), 0.0, 1.0) * 0.85
    ax.imshow(pet_rgba, origin="lower", extent=coronal_extent(suv), interpolation="bilinear")

    if labels is not None:
        _draw_lesions(ax, _axial(labels))

    ax.set_xlim(*coronal_extent(ct)[:2])
    ax.set_ylim(*coronal_extent(ct)[2:])
    ax.set_axis_off()
    ax.text(0.01, 0.99, "R", color="white", transform=ax.transAxes, va="top", fontsize=11, weight="bold")
    ax.text(0.99, 0.99, "L", color="white", transform=ax.transAxes, va="top", ha="right", fontsize=11, weight="bold")
    if title:
        ax.set_title(title, fontsize=10)
    if colorbar:
        scale = plt.cm.ScalarMappable(cmap="hot", norm=plt.Normalize(0, suv_max))
        fig.colorbar(scale, ax=ax, fraction=0.04, pad=0.01, label="SUV (MIP)")
    out_png = Path(out_png)
    out_png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out_png, dpi=dpi, bbox_inches="tight", pad_inches=0 if not (title or colorbar) else 0.1)
    plt.close(fig)
    return out_png


def _draw_lesions(ax, labels: sitk.Image) -> None:
    """Outline each lesion's projection in cyan and number it at its projected centroid."""
    projected = _project(labels, "max").astype(np.int32)
    extent = coronal_extent(labels)
    ids = [int(i) for i in np.unique(projected) if i > 0]
    if not ids:
        return
    ax.contour(
        projected > 0, levels=[0.5], colors="cyan", linewidths=0.8, origin="lower", extent=extent,
    )
    sx, _, sz = labels.GetSpacing()
    for lesion_id in ids:
        rows, cols = np.nonzero(projected == lesion_id)
        x = extent[0] + (cols.mean() + 0.5) * sx
        z = extent[2] + (rows.mean() + 0.5) * sz
        ax.text(x + 6 * sx, z, str(lesion_id), color="cyan", fontsize=7, va="center")
