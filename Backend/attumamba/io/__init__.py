"""Study input and output: volumes, PET SUV, DICOM series, study discovery, resampling,
and lesion segmentation files (3D Slicer ``.seg.nrrd``, DICOM SEG).

Everything the rest of the backend reads from a user's disk comes through here, so
geometry (LPS origin, spacing, direction) and PET units are right in one place.
"""

from .dicom_series import (
    KEY_FRAME_OF_REFERENCE_UID,
    KEY_MODALITY,
    KEY_SERIES_UID,
    KEY_STUDY_UID,
    KEY_SUV_FACTOR,
    KEY_UNITS,
)
from .dicom_write import DicomStudyInfo, PetDose, write_ct_series, write_pet_series
from .resample import check_same_space, overlap_fraction, resample_to
from .segmentation_files import write_dicom_seg, write_seg_nrrd
from .studies import find_studies
from .study_types import Skipped, Study, StudyScan
from .suv import SuvFactor, compute_suv_factor
from .volume import load_volume

__all__ = [
    "DicomStudyInfo",
    "KEY_FRAME_OF_REFERENCE_UID",
    "KEY_MODALITY",
    "KEY_SERIES_UID",
    "KEY_STUDY_UID",
    "KEY_SUV_FACTOR",
    "KEY_UNITS",
    "PetDose",
    "Skipped",
    "Study",
    "StudyScan",
    "SuvFactor",
    "check_same_space",
    "compute_suv_factor",
    "find_studies",
    "load_volume",
    "overlap_fraction",
    "resample_to",
    "write_ct_series",
    "write_dicom_seg",
    "write_pet_series",
    "write_seg_nrrd",
]
