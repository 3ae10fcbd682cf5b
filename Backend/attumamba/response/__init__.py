"""Response assessment between two time points: SUL, and the RECIST 1.1, PERCIST 1.0 and
Deauville/Lugano criteria, each returning its category with the rule and numbers behind it."""

from . import deauville, percist, recist
from .assessment import Assessment
from .sul import SulScale, lean_body_mass_kg, sul_scale

__all__ = ["Assessment", "SulScale", "deauville", "lean_body_mass_kg", "percist", "recist", "sul_scale"]
