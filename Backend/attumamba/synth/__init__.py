"""Synthetic whole-body PET/CT studies with exact lesion ground truth.

Anatomy, uptake and lesions are analytic solids in LPS millimetres, rasterised on each
scanner grid separately (never by resampling labels); PET gets the scanner's blur, partial
volume and count-dependent noise. Everything is deterministic for (seed, case index).
"""

from .follow_up import FollowUpPair, generate_pair
from .study import PROFILES, SyntheticStudy, generate_study
from .writer import synthesize, write_pair, write_study

__all__ = ["PROFILES", "FollowUpPair", "SyntheticStudy", "generate_pair", "generate_study", "synthesize", "write_pair",
           "write_study"]
