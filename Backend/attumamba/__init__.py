"""AttUMambaSeg backend: Mamba U-Nets for whole-body PET/CT lesion segmentation.

Importing the package is cheap: torch, SimpleITK and friends load only in the
sub-packages that need them, so ``attumamba-seg --help`` answers at once.
"""

__version__ = "0.1.0"
