"""How the patient lies in the scanner at a follow-up: a rigid move plus breathing.

The phantom's anatomy is defined in the patient's own frame (the baseline scanner frame). At a
follow-up the patient lies shifted (up to 30 mm) and rotated (up to 5°), and breathes into a
different phase: the diaphragm region moves head-to-foot by a few millimetres, tapering off
towards the neck and the pelvis (arm positions are not modelled: the phantom has no arms).

``scanner_to_body`` is what resampling needs (for each scanner voxel, where it lies in the
patient); ``body_to_scanner`` moves analytic lesions and ground-truth points into the scanner.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import SimpleITK as sitk

from .grid import Grid


@dataclass(frozen=True)
class Pose:
    rotation_deg: tuple[float, float, float]     # about x, y, z (SimpleITK Euler3D angles)
    translation_mm: tuple[float, float, float]   # body → scanner
    breathing_mm: float                          # head-to-foot shift at the diaphragm (signed)
    diaphragm_z_mm: float                        # where breathing moves most (patient frame)

    @classmethod
    def sample(cls, rng: np.random.Generator, diaphragm_z_mm: float, *, max_shift_mm: float = 30.0,
               max_rotation_deg: float = 5.0, max_breathing_mm: float = 8.0) -> Pose:
        direction = rng.standard_normal(3)
        shift = direction / np.linalg.norm(direction) * rng.uniform(0.3, 1.0) * max_shift_mm
        angles = rng.uniform(-1.0, 1.0, 3) * np.array([0.4, 0.4, 1.0]) * max_rotation_deg
        return cls(tuple(float(a) for a in angles), tuple(float(s) for s in shift),
                   float(rng.uniform(-1.0, 1.0) * max_breathing_mm), float(diaphragm_z_mm))

    def rigid(self) -> sitk.Euler3DTransform:
        """Body → scanner, rigid part (rotation about the patient frame's origin, then the shift)."""
        euler = sitk.Euler3DTransform()
        euler.SetRotation(*(float(np.radians(a)) for a in self.rotation_deg))
        euler.SetTranslation(self.translation_mm)
        return euler

    def breathing(self, reference: Grid) -> sitk.DisplacementFieldTransform:
        """Scanner point → its position before breathing moved it (a smooth field on a 10 mm grid)."""
        low = np.array(reference.origin) - 60.0
        high = low + np.array(reference.size) * np.array(reference.spacing) + 120.0
        coarse = Grid.covering(low, high, (10.0, 10.0, 10.0))
        z = coarse.axis(2)[:, None, None]
        x = coarse.axis(0)[None, None, :]
        diaphragm = self.diaphragm_z_mm + self.translation_mm[2]
        profile = np.exp(-0.5 * ((z - diaphragm) / 90.0) ** 2) * np.exp(-0.5 * (x / 220.0) ** 2)
        field = np.zeros(coarse.shape + (3,), np.float64)
        field[..., 2] = -self.breathing_mm * np.broadcast_to(profile, coarse.shape)
        image = sitk.GetImageFromArray(field, isVector=True)
        image.SetSpacing(coarse.spacing)
        image.SetOrigin(coarse.origin)
        return sitk.DisplacementFieldTransform(image)

    def scanner_to_body(self, reference: Grid) -> sitk.CompositeTransform:
        """For resampling: scanner point → patient point (breathing undone, then the rigid move undone)."""
        # CompositeTransform applies the transform added last first
        return sitk.CompositeTransform([self.rigid().GetInverse(), self.breathing(reference)])

    def body_to_scanner(self, points: np.ndarray, reference: Grid) -> np.ndarray:
        """Patient points (N, 3) → scanner points: the preimages of :meth:`scanner_to_body`."""
        inverse = self.scanner_to_body(reference)
        rigid = self.rigid()
        rotation = np.array(rigid.GetMatrix()).reshape(3, 3)
        moved = []
        for point in np.atleast_2d(np.asarray(points, float)):
            guess = np.array(rigid.TransformPoint(point.tolist()))
            for _ in range(8):   # Newton-like steps: the Jacobian is the rotation up to the small breathing term
                error = np.array(inverse.TransformPoint(guess.tolist())) - point
                guess = guess - rotation @ error
            moved.append(guess)
        return np.array(moved)

    def rotation_matrix(self) -> np.ndarray:
        return np.array(self.rigid().GetMatrix()).reshape(3, 3)

    def to_json(self) -> dict:
        return {"rotation_deg_xyz": [round(a, 3) for a in self.rotation_deg],
                "translation_mm": [round(t, 3) for t in self.translation_mm],
                "breathing_mm": round(self.breathing_mm, 3), "diaphragm_z_mm": round(self.diaphragm_z_mm, 1),
                "convention": "body (baseline) point -> follow-up scanner point: rotate about the origin, shift, "
                              "then breathing moves points near the diaphragm head-to-foot"}
