"""Training on a user's data with the unmodified nnU-Net v2 pipeline: dataset conversion first."""

from .dataset import DatasetReport, convert_studies

__all__ = ["DatasetReport", "convert_studies"]
