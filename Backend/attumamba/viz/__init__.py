"""Figures for humans: PET MIPs over CT, with lesion outlines."""

from .mip import render_pet_ct_mip

__all__ = ["render_pet_ct_mip"]
