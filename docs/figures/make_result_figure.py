"""The README's result figure: what the Slicer module shows after Segment, rendered offscreen.

A held-out synthetic study (seed 2, never used in training) is segmented by a model package in
process (the backend's own pipeline); the result is turned into MRML nodes by the module's Logic
on slicer-core (the same ``build_result`` the Segment button calls), and the figure is drawn
from those nodes: segment colours and voxels, RECIST line end points, the lesion table, and the
closed-surface representation Slicer converts the segments to (rendered with VTK, EGL offscreen).
Ground-truth outlines are dashed, so the figure shows the model's quality as it is.

    .venv/bin/python docs/figures/make_result_figure.py [--model attumamba-synth] [-o docs/figures/slicer_result.png]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import SimpleITK as sitk  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "Testing" / "slicer"))

from mrml_helpers import headless_scene, load_logic, load_volume, segment_voxels  # noqa: E402

TABLE_COLUMNS = (("lesion", "#", "{:.0f}"), ("volume_ml", "Volume mL", "{:.1f}"), ("suv_max", "SUVmax", "{:.1f}"),
                 ("suv_peak", "SUVpeak", "{:.1f}"), ("tlg", "TLG g", "{:.0f}"), ("long_axis_mm", "Long mm", "{:.0f}"),
                 ("short_axis_mm", "Short mm", "{:.0f}"), ("measurable", "Measurable", "{}"))


def segment_study(model: str, folder: Path, seed: int, tracer: str):
    """Synthesize one study, segment it in process; the CT, PET, labelmap files and the report."""
    from attumamba import synth
    from attumamba.inference import Segmenter, resolve_model
    from attumamba.inference.pipeline import SegmentOptions, run_study

    (study,) = synth.synthesize(folder / "studies", 1, fmt="nifti", tracer=tracer, seed=seed, profile="compact")
    ct, pet = sitk.ReadImage(str(study / "CT.nii.gz")), sitk.ReadImage(str(study / "SUV.nii.gz"))
    result = run_study(Segmenter(resolve_model(model), "cpu"), ct, pet, SegmentOptions())
    files = {"ct": folder / "ct.nrrd", "pet": folder / "pet.nrrd", "labels": folder / "lesions.nrrd"}
    for key, image in (("ct", ct), ("pet", pet), ("labels", result.instances)):
        sitk.WriteImage(image, str(files[key]))
    truth = sitk.ReadImage(str(study / "SEG.nii.gz")) > 0
    return files, result.report, truth


def slicer_result(files: dict, report: dict):
    """The nodes the module makes: CT and PET volumes, segmentation, RECIST lines, table."""
    logic = load_logic()
    from AttUMambaSegLib.logic.results import build_result

    scene = headless_scene()
    ct_node, pet_node = load_volume(scene, files["ct"], "CT"), load_volume(scene, files["pet"], "PET")
    return scene, build_result(scene, ct_node, files["labels"], report, pet_node=pet_node), logic


def segment_layers(result, ct: sitk.Image) -> list[tuple[str, tuple, np.ndarray]]:
    """(name, colour, mask on the CT grid) per segment, read from the segmentation node."""
    segmentation = result.segmentation.GetSegmentation()
    layers = []
    for index in range(segmentation.GetNumberOfSegments()):
        segment_id = segmentation.GetNthSegmentID(index)
        image, voxels = segment_voxels(result.segmentation, segment_id)
        e = image.GetExtent()
        mask = np.zeros(sitk.GetArrayViewFromImage(ct).shape, bool)
        mask[e[4]:e[5] + 1, e[2]:e[3] + 1, e[0]:e[1] + 1] = voxels > 0
        segment = segmentation.GetSegment(segment_id)
        layers.append((segment.GetName(), tuple(segment.GetColor()), mask))
    return layers


def shown_slice(ct, truth_on_ct, layers, rows, lines) -> int:
    """The axial slice of the long axis of the lesion that overlaps the ground truth most (else the largest)."""
    truth = sitk.GetArrayViewFromImage(truth_on_ct) > 0
    lesion_of = {row["segment"]: int(row["lesion"]) for row in rows}
    overlaps = [(int((mask & truth).sum()), int(mask.sum()), lesion_of.get(name)) for name, _c, mask in layers]
    best = max(overlaps, default=None)
    if best is None or (best[2], "long") not in lines:
        return int(np.argmax(truth.sum(axis=(1, 2))))
    x, y, z = lines[(best[2], "long")][0]
    return int(round(ct.TransformPhysicalPointToContinuousIndex((-x, -y, z))[2]))


def draw_axial(ax, ct, pet_on_ct, truth_on_ct, layers, lines, k: int) -> None:
    """CT/PET fusion of slice ``k`` with segment outlines, ground truth dashed, RECIST lines."""
    sx, sy, sz = ct.GetSpacing()
    ox, oy, oz = ct.GetOrigin()
    nx, ny = ct.GetSize()[:2]
    extent = (ox - sx / 2, ox + (nx - 0.5) * sx, oy + (ny - 0.5) * sy, oy - sy / 2)  # patient right on the left
    ax.imshow(np.clip(sitk.GetArrayViewFromImage(ct)[k], -160, 240), cmap="gray", extent=extent)
    suv = sitk.GetArrayViewFromImage(pet_on_ct)[k]
    ax.imshow(np.ma.masked_less(suv, 1.0), cmap="hot", vmin=0, vmax=12, alpha=0.55, extent=extent)
    xs, ys = ox + np.arange(nx) * sx, oy + np.arange(ny) * sy
    ax.contour(xs, ys, sitk.GetArrayViewFromImage(truth_on_ct)[k], levels=[0.5], colors="white",
               linestyles="dashed", linewidths=0.8)
    for _name, colour, mask in layers:
        if mask[k].any():
            ax.contour(xs, ys, mask[k], levels=[0.5], colors=[colour], linewidths=1.4)
    z = oz + k * sz
    for (_lesion, axis), ends in lines.items():
        (x0, y0, z0), (x1, y1, _) = [(-p[0], -p[1], p[2]) for p in ends]  # RAS -> LPS
        if abs(z0 - z) <= sz / 2:
            ax.plot([x0, x1], [y0, y1], color="cyan" if axis == "long" else "yellow", linewidth=1.6)
    body = np.argwhere(sitk.GetArrayViewFromImage(ct)[k] > -500)
    if len(body):
        (j0, i0), (j1, i1) = body.min(axis=0) - 4, body.max(axis=0) + 4
        ax.set_xlim(ox + i0 * sx, ox + i1 * sx)
        ax.set_ylim(oy + j1 * sy, oy + j0 * sy)
    ax.set_axis_off()


def draw_mip(ax, pet, layers, ct, truth) -> None:
    """Coronal PET MIP (inverted grey) with each segment's projection in its colour, the truth's dashed."""
    from attumamba.viz.mip import coronal_extent

    sx, _, sz = ct.GetSpacing()
    ox, _, oz = ct.GetOrigin()
    nx, _, nz = ct.GetSize()
    mip = sitk.GetArrayViewFromImage(pet).max(axis=1)
    ax.imshow(mip, cmap="gray_r", vmin=0, vmax=10, extent=coronal_extent(pet), origin="lower", aspect="equal")
    xs, zs = ox + np.arange(nx) * sx, oz + np.arange(nz) * sz
    for _name, colour, mask in layers:
        ax.contourf(xs, zs, mask.any(axis=1), levels=[0.5, 1.5], colors=[colour], alpha=0.8)
    (tx, _, tz), (ux, _, uz), (mx, _, mz) = truth.GetSpacing(), truth.GetOrigin(), truth.GetSize()
    ax.contour(ux + np.arange(mx) * tx, uz + np.arange(mz) * tz, sitk.GetArrayViewFromImage(truth).any(axis=1),
               levels=[0.5], colors="tab:blue", linestyles="dashed", linewidths=0.8)
    ax.set_axis_off()


def render_surfaces(result, ct_file: Path, lines: dict, size=(520, 900)) -> np.ndarray:
    """Segments as Slicer's closed surfaces, the skin and the RECIST lines, seen from the front (VTK, offscreen)."""
    import vtk
    from vtk.util import numpy_support

    renderer = vtk.vtkRenderer()
    renderer.SetBackground(1, 1, 1)
    node = result.segmentation
    node.CreateClosedSurfaceRepresentation()
    segmentation = node.GetSegmentation()
    for index in range(segmentation.GetNumberOfSegments()):
        segment_id = segmentation.GetNthSegmentID(index)
        surface = vtk.vtkPolyData()
        node.GetClosedSurfaceRepresentation(segment_id, surface)
        renderer.AddActor(_actor(surface, segmentation.GetSegment(segment_id).GetColor(), 1.0))
    reader = vtk.vtkNrrdReader()  # the skin: CT at -400 HU, moved from LPS voxel space to RAS
    reader.SetFileName(str(ct_file))
    reader.Update()
    skin = vtk.vtkFlyingEdges3D()
    skin.SetInputConnection(reader.GetOutputPort())
    skin.SetValue(0, -400.0)
    to_ras = vtk.vtkTransform()
    to_ras.Scale(-1, -1, 1)
    placed = vtk.vtkTransformPolyDataFilter()
    placed.SetInputConnection(skin.GetOutputPort())
    placed.SetTransform(to_ras)
    placed.Update()
    renderer.AddActor(_actor(placed.GetOutput(), (0.75, 0.7, 0.65), 0.12))
    for (_lesion, axis), ends in lines.items():
        source = vtk.vtkLineSource()
        source.SetPoint1(*ends[0])
        source.SetPoint2(*ends[1])
        source.Update()
        renderer.AddActor(_actor(source.GetOutput(), (0, 0.8, 0.9) if axis == "long" else (0.9, 0.8, 0), 1.0, 3))
    camera = renderer.GetActiveCamera()
    camera.SetPosition(0, 1, 0)  # anterior (+A) looking back; head up
    camera.SetFocalPoint(0, 0, 0)
    camera.SetViewUp(0, 0, 1)
    renderer.ResetCamera()
    camera.Zoom(1.35)
    window = vtk.vtkRenderWindow()
    window.SetOffScreenRendering(1)
    window.AddRenderer(renderer)
    window.SetSize(*size)
    window.Render()
    grab = vtk.vtkWindowToImageFilter()
    grab.SetInput(window)
    grab.Update()
    image = grab.GetOutput()
    width, height, _ = image.GetDimensions()
    pixels = numpy_support.vtk_to_numpy(image.GetPointData().GetScalars()).reshape(height, width, -1)
    return pixels[::-1, :, :3]


def _actor(polydata, colour, opacity: float, line_width: float = 1.0):
    import vtk

    mapper = vtk.vtkPolyDataMapper()
    mapper.SetInputData(polydata)
    actor = vtk.vtkActor()
    actor.SetMapper(mapper)
    actor.GetProperty().SetColor(*colour)
    actor.GetProperty().SetOpacity(opacity)
    actor.GetProperty().SetLineWidth(line_width)
    return actor


def _cell(fmt: str, value) -> str:
    missing = value is None or (isinstance(value, float) and not np.isfinite(value))
    return "–" if missing else fmt.format(value)


def draw_table(ax, rows: list[dict], limit: int = 8) -> None:
    cells = [[_cell(fmt, row.get(key)) for key, _title, fmt in TABLE_COLUMNS] for row in rows[:limit]]
    if cells:
        table = ax.table(cellText=cells, colLabels=[title for _k, title, _f in TABLE_COLUMNS], loc="upper center")
        table.auto_set_font_size(False)
        table.set_fontsize(8)
        table.scale(1, 1.3)
    more = f" (first {limit} of {len(rows)})" if len(rows) > limit else ""
    ax.set_title(f"Lesion table node{more}", fontsize=9)
    ax.set_axis_off()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="attumamba-synth")
    parser.add_argument("--seed", type=int, default=2, help="synthetic seed (2: the held-out set)")
    parser.add_argument("--tracer", default="psma", choices=("psma", "fdg"))
    parser.add_argument("-o", "--out", type=Path, default=REPO / "docs" / "figures" / "slicer_result.png")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="attumamba-figure-") as temporary:
        files, report, truth = segment_study(args.model, Path(temporary), args.seed, args.tracer)
        scene, result, logic = slicer_result(files, report)
        ct, pet = sitk.ReadImage(str(files["ct"])), sitk.ReadImage(str(files["pet"]))
        layers = segment_layers(result, ct)
        lines = {key: logic.axes.ends_ras(line) for key, line in result.lines.items()}
        rows = logic.tables.table_rows(result.table)
        surfaces = render_surfaces(result, files["ct"], lines)
        pet_on_ct = sitk.Resample(pet, ct, sitk.Transform(), sitk.sitkLinear, 0.0)
        truth_on_ct = sitk.Resample(truth, ct, sitk.Transform(), sitk.sitkNearestNeighbor, 0)
        k = shown_slice(ct, truth_on_ct, layers, rows, lines)
        figure = plt.figure(figsize=(13, 7.4), dpi=110)
        grid = figure.add_gridspec(2, 3, height_ratios=[3, 1.2], width_ratios=[1.5, 0.8, 0.8])
        draw_axial(figure.add_subplot(grid[0, 0]), ct, pet_on_ct, truth_on_ct, layers, lines, k)
        draw_mip(figure.add_subplot(grid[0, 1]), pet, layers, ct, truth)
        view = figure.add_subplot(grid[0, 2])
        view.imshow(surfaces)
        view.set_axis_off()
        draw_table(figure.add_subplot(grid[1, :]), rows)
        totals = report["totals"]
        figure.suptitle(f"{args.model} on a held-out synthetic {args.tracer.upper()} study: {totals['n_lesions']} lesions, "
                        f"MTV {totals['mtv_ml']:.1f} mL (ground truth {float(sitk.GetArrayViewFromImage(truth).sum()) * np.prod(truth.GetSpacing()) / 1000:.1f} mL)\n"
                        "axial CT/PET with segments (solid), ground truth (dashed), RECIST long (cyan) and short (yellow) axes"
                        " | coronal PET MIP with segments, truth dashed | closed surfaces and axes", fontsize=9)
        figure.tight_layout()
        args.out.parent.mkdir(parents=True, exist_ok=True)
        figure.savefig(args.out)
        scene.Clear(True)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
