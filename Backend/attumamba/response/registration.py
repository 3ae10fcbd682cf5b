"""Follow-up onto baseline: rigid on CT, then a B-spline where it improves the match.

SimpleITK's registration framework with Mattes mutual information on the CT (the same
patient's anatomy, so CT aligns better than PET, whose uptake changes with response). Rigid:
a 3D Euler transform initialised by the images' centres, three resolution levels. Deformable
(optional): a coarse B-spline on top of the rigid result, kept only when it improves the
metric — breathing moves the diaphragm by centimetres; a bone lesion does not move at all.

The transform maps baseline points to follow-up points (SimpleITK's fixed → moving convention),
which is what resampling the follow-up onto the baseline grid and matching lesions need. It is
saved with ``sitk.WriteTransform`` (``.tfm``/``.h5``) and can be loaded in Slicer.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from ..errors import CancelledError, InputError
from ..io._callbacks import ProgressCallback, report


@dataclass
class Registration:
    transform: sitk.Transform            # baseline (fixed) point → follow-up (moving) point
    kind: str                            # "rigid" or "rigid+bspline"
    metric_rigid: float
    metric_final: float
    seconds: float
    notes: list[str] = field(default_factory=list)

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        sitk.WriteTransform(self.transform, str(path))
        return path

    def describe(self) -> dict:
        return {"kind": self.kind, "metric": "Mattes mutual information (lower is better)",
                "metric_rigid": round(self.metric_rigid, 5), "metric_final": round(self.metric_final, 5),
                "seconds": round(self.seconds, 2), "notes": self.notes}


def register_follow_up(baseline_ct: sitk.Image, follow_up_ct: sitk.Image, *, deformable: bool = True,
                       progress: ProgressCallback = None, should_cancel=None, seed: int = 1) -> Registration:
    """Register the follow-up CT onto the baseline CT (HU images of one patient)."""
    started = time.perf_counter()
    fixed, moving = (sitk.Cast(image, sitk.sitkFloat32) for image in (baseline_ct, follow_up_ct))
    if fixed.GetDimension() != 3 or moving.GetDimension() != 3:
        raise InputError("registration needs two 3D CT volumes")
    initial = sitk.CenteredTransformInitializer(fixed, moving, sitk.Euler3DTransform(),
                                                sitk.CenteredTransformInitializerFilter.GEOMETRY)
    report(progress, 0.02, "rigid registration")
    rigid, metric_rigid = _run(fixed, moving, initial, rigid=True, progress=progress, span=(0.02, 0.5),
                               should_cancel=should_cancel, seed=seed)
    result = Registration(rigid, "rigid", metric_rigid, metric_rigid, 0.0)
    if deformable:
        report(progress, 0.5, "deformable registration")
        mesh = [max(1, int(round(n * s / 120.0))) for n, s in zip(fixed.GetSize(), fixed.GetSpacing())]
        bspline = sitk.BSplineTransformInitializer(fixed, mesh, order=3)
        composite = sitk.CompositeTransform([rigid, bspline])
        combined, metric = _run(fixed, moving, composite, rigid=False, progress=progress, span=(0.5, 0.98),
                                should_cancel=should_cancel, seed=seed)
        if metric < metric_rigid - 1e-3 * abs(metric_rigid):
            result = Registration(combined, "rigid+bspline", metric_rigid, metric, 0.0)
        else:
            result.notes.append(f"the B-spline did not improve the match ({metric:.4f} vs rigid {metric_rigid:.4f}); "
                                "kept the rigid transform")
    result.seconds = time.perf_counter() - started
    report(progress, 1.0, f"registered ({result.kind})")
    return result


def _run(fixed: sitk.Image, moving: sitk.Image, transform: sitk.Transform, *, rigid: bool, progress,
         span: tuple[float, float], should_cancel, seed: int) -> tuple[sitk.Transform, float]:
    method = sitk.ImageRegistrationMethod()
    method.SetMetricAsMattesMutualInformation(numberOfHistogramBins=32)
    method.SetMetricSamplingStrategy(method.RANDOM)
    # about the same number of samples whatever the grid (a whole-body CT has 10^7–10^8 voxels)
    voxels = float(np.prod(fixed.GetSize()))
    method.SetMetricSamplingPercentage(min(0.05, (1e5 if rigid else 2e5) / voxels), seed)
    method.SetInterpolator(sitk.sitkLinear)
    # only the body: air outside it carries no alignment information
    method.SetMetricFixedMask(sitk.Cast(fixed > -500, sitk.sitkUInt8))
    if rigid:
        method.SetOptimizerAsRegularStepGradientDescent(learningRate=2.0, minStep=1e-3, numberOfIterations=150,
                                                         gradientMagnitudeTolerance=1e-6)
        method.SetOptimizerScalesFromPhysicalShift()
        method.SetShrinkFactorsPerLevel([4, 2, 1])
        method.SetSmoothingSigmasPerLevel([2.0, 1.0, 0.0])
        method.SetInitialTransform(transform, inPlace=False)
    else:
        method.SetOptimizerAsLBFGSB(gradientConvergenceTolerance=1e-5, numberOfIterations=40,
                                    maximumNumberOfCorrections=5)
        method.SetShrinkFactorsPerLevel([2, 1])
        method.SetSmoothingSigmasPerLevel([1.0, 0.0])
        method.SetInitialTransform(transform, inPlace=False)
    method.SmoothingSigmasAreSpecifiedInPhysicalUnitsOff()
    steps = {"n": 0}

    def iteration() -> None:
        steps["n"] += 1
        if should_cancel is not None and should_cancel():
            method.StopRegistration()
            return
        report(progress, span[0] + (span[1] - span[0]) * min(0.95, steps["n"] / 200.0),
               f"{'rigid' if rigid else 'deformable'} registration, metric {method.GetMetricValue():.4f}")

    method.AddCommand(sitk.sitkIterationEvent, iteration)
    try:
        found = method.Execute(fixed, moving)
    except RuntimeError as error:
        raise InputError(f"registration failed: {error}; check that both CTs show the same body region") from None
    if should_cancel is not None and should_cancel():
        raise CancelledError("registration cancelled")
    if isinstance(found, sitk.CompositeTransform) and found.GetNumberOfTransforms() == 1:
        found = found.GetNthTransform(0)
    return found, float(method.GetMetricValue())


def point_error_mm(transform: sitk.Transform, truth: sitk.Transform, points: list) -> np.ndarray:
    """Distances (mm) between where ``transform`` and ``truth`` send each point."""
    return np.array([np.linalg.norm(np.subtract(transform.TransformPoint(tuple(map(float, p))),
                                                truth.TransformPoint(tuple(map(float, p))))) for p in points])
