"""Analytic solids: ellipsoids (any orientation), elliptic cylinders, and lobulated unions.

Each solid answers ``inside(x, y, z)`` on broadcast coordinate arrays (mm) and gives a
bounding box, and knows its volume — exactly for ellipsoids, by Monte Carlo for unions —
so ground-truth volumes do not depend on any grid.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


def random_rotation(rng: np.random.Generator) -> np.ndarray:
    """A uniformly random 3×3 rotation matrix (QR of a Gaussian matrix, sign-fixed)."""
    q, r = np.linalg.qr(rng.standard_normal((3, 3)))
    q = q @ np.diag(np.sign(np.diag(r)))
    if np.linalg.det(q) < 0:
        q[:, 0] = -q[:, 0]
    return q


def rotation_z(angle_rad: float) -> np.ndarray:
    c, s = np.cos(angle_rad), np.sin(angle_rad)
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


@dataclass
class Ellipsoid:
    centre: np.ndarray
    semi_axes: np.ndarray
    rotation: np.ndarray = field(default_factory=lambda: np.eye(3))

    def __post_init__(self):
        self.centre = np.asarray(self.centre, float)
        self.semi_axes = np.asarray(self.semi_axes, float)
        self.rotation = np.asarray(self.rotation, float)

    def inside(self, x, y, z, scale: float = 1.0):
        # body coordinates u = R^T (p - c); columns of R are the ellipsoid's axes
        d = (x - self.centre[0], y - self.centre[1], z - self.centre[2])
        total = 0.0
        for axis in range(3):
            r = self.rotation[:, axis]
            u = d[0] * r[0] + d[1] * r[1] + d[2] * r[2]
            total = total + (u / (self.semi_axes[axis] * scale)) ** 2
        return total <= 1.0

    def bbox(self, scale: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
        half = np.sqrt(((self.rotation * (self.semi_axes * scale)) ** 2).sum(axis=1))
        return self.centre - half, self.centre + half

    @property
    def volume_mm3(self) -> float:
        return float(4.0 / 3.0 * np.pi * np.prod(self.semi_axes))

    def to_json(self) -> dict:
        return {
            "centre_lps_mm": self.centre.round(3).tolist(),
            "semi_axes_mm": self.semi_axes.round(3).tolist(),
            "rotation": self.rotation.round(6).tolist(),
        }


@dataclass
class Cylinder:
    """Elliptic cylinder along z: centre (x, y), semi-axes (a, b), z range."""

    cx: float
    cy: float
    a: float
    b: float
    z0: float
    z1: float

    def inside(self, x, y, z):
        return (((x - self.cx) / self.a) ** 2 + ((y - self.cy) / self.b) ** 2 <= 1.0) & (z >= self.z0) & (z <= self.z1)

    def bbox(self):
        return np.array([self.cx - self.a, self.cy - self.b, self.z0]), np.array([self.cx + self.a, self.cy + self.b, self.z1])


@dataclass
class Lobulated:
    """A main ellipsoid with smaller lobes centred on its surface: an irregular, lobulated mass."""

    main: Ellipsoid
    lobes: list[Ellipsoid]
    _volume: float | None = None

    @property
    def centre(self) -> np.ndarray:
        return self.main.centre

    def inside(self, x, y, z):
        mask = self.main.inside(x, y, z)
        for lobe in self.lobes:
            mask = mask | lobe.inside(x, y, z)
        return mask

    def bbox(self):
        boxes = [self.main.bbox()] + [lobe.bbox() for lobe in self.lobes]
        return np.min([b[0] for b in boxes], axis=0), np.max([b[1] for b in boxes], axis=0)

    @property
    def volume_mm3(self) -> float:
        """Monte-Carlo volume with a fixed stream (2e5 points: relative error about 0.3 %)."""
        if self._volume is None:
            low, high = self.bbox()
            points = np.random.default_rng(12345).uniform(low, high, size=(200_000, 3))
            hits = self.inside(points[:, 0], points[:, 1], points[:, 2]).mean()
            self._volume = float(hits * np.prod(high - low))
        return self._volume

    def to_json(self) -> dict:
        return {**self.main.to_json(), "lobes": [lobe.to_json() for lobe in self.lobes]}
