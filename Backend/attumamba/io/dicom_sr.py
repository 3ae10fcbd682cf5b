"""The lesion report as a DICOM SR TID 1500 Measurement Report (Comprehensive 3D SR).

A PACS, OHIF or Slicer reads the numbers of ``lesions.json`` from it, tied to the lesions of
the DICOM SEG they were measured on. Per lesion there are two measurement groups with the
same tracking identifier ("Lesion <id>") and tracking UID (the SEG segment's when it has one):

- TID 1411 Volumetric ROI: the ROI is the lesion's SEG segment (Referenced Segment, whose
  source images are the CT slices), with volume, SUVbw max/mean/peak, SUL max/mean/peak
  when known, TLG and mean CT attenuation.
- TID 1501 Measurement group: the RECIST 1.1 long and short axes, each a linear measurement
  whose two end points are a SCOORD3D POLYLINE in the CT's frame of reference. TID 1411
  forbids coordinates on its measurements (the segment is their ROI), hence the second group.

Codes, each checked in pydicom 3's dictionary of the DICOM standard's code tables (the CID
it is listed in), in highdicom, or in the cited source:

- finding type SCT 108369006 Neoplasm and category SCT 49755003 Morphologically abnormal
  structure: the SEG's segment codes (CID 7151 / 7150). No finding site: the lesion's organ
  is not known to the report.
- volume: SCT 118565006 Volume (CID 7469), method DCM 126030 "Sum of segmented voxel method
  for volume" (CID 7474), unit UCUM ``cm3`` (CID 7181; pydicom lists no ``ml``: 1 mL = 1 cm3).
- SUV: DCM 126401 SUVbw (CID 7180/7469) with the derivation (CID 7464) SCT 56851009 Maximum,
  SCT 373098007 Mean or DCM 126031 Peak Value Within ROI; unit UCUM ``g/ml{SUVbw}`` (CID 85
  SUV Units as the current standard, pydicom and DCMTK spell it; older editions and dcmqi
  wrote ``{SUVbw}g/ml``).
- SUL (Janmahasatian lean body mass): DCM 126405 SUVlbm(Janma), unit ``g/ml{SUVlbm(Janma)}``
  (CID 85), same derivations.
- TLG: DCM 126033 Total Lesion Glycolysis (CID 7466), unit UCUM ``g`` (SUV g/ml x mL; the
  unit Slicer's PET-IndiC writes; no CID lists a TLG unit).
- mean HU: DCM 112031 Attenuation Coefficient (CID 7469), derivation Mean, unit UCUM
  ``[hnsf'U]`` Hounsfield unit (CID 7181).
- RECIST: SCT 103339001 Long axis and SCT 103340004 Short axis (CID 7469/7470), unit UCUM
  ``mm``; group method DCM 126081 RECIST 1.1 (CID 6147 Response Criteria).
- procedure reported: LN 44139-4 PET whole body (CID 100), whatever the tracer.
- algorithm: AttUMambaSeg, its version, and the model's name as a parameter.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pydicom
from pydicom.dataset import Dataset

from .. import __version__
from ..errors import InputError
from .dicom_headers import DicomSeries
from .segmentation_files import LESION_NAME, _atomic_target, _image_series, write_dicom_seg

SEG_FILE = "lesions_seg.dcm"
SR_FILE = "lesions_sr.dcm"


def write_dicom_seg_and_sr(
    instances,
    report: dict,
    ct: Path | DicomSeries,
    folder: Path,
    *,
    ct_series_uid: str | None = None,
    pet: Path | DicomSeries | None = None,
    pet_series_uid: str | None = None,
    model_name: str = "",
) -> tuple[Path, Path] | None:
    """``folder``/lesions_seg.dcm and lesions_sr.dcm of the lesions ``instances`` and their ``report``.

    ``ct``, ``pet``: a DICOM series folder (``*_series_uid`` choosing among several) or the
    series' headers (:func:`.dicom_references.series_from_references`). ``instances`` lie on
    the CT's grid and ``report`` numbers them (segment number = lesion id). None, nothing
    written, when there is no lesion.
    """
    ct_series = ct if isinstance(ct, DicomSeries) else _image_series(Path(ct), ct_series_uid)
    pet_series = pet if isinstance(pet, DicomSeries) or pet is None else _image_series(Path(pet), pet_series_uid)
    seg = write_dicom_seg(instances, ct_series, Path(folder) / SEG_FILE, model_name=model_name)
    if seg is None:
        return None
    sr = write_dicom_sr(report, seg, ct_series.headers, Path(folder) / SR_FILE,
                        pet_images=pet_series.headers if pet_series else (), model_name=model_name)
    if sr is None:  # a labelmap with lesions but a report without: they do not belong together
        seg.unlink()
        raise InputError("the lesion report lists no lesion while the labelmap holds some: measure the labelmap "
                         "that is exported")
    return seg, sr


def write_dicom_sr(
    report: dict,
    seg_path: Path,
    ct_images: Sequence[Dataset],
    path: Path,
    *,
    pet_images: Sequence[Dataset] = (),
    model_name: str = "",
    software_version: str = __version__ or "0.1.0",
    series_number: int = 901,
    series_description: str = "AttUMambaSeg lesion measurements",
) -> Path | None:
    """Write the TID 1500 report of ``report`` (DESIGN.md §4) measured on the SEG at ``seg_path``.

    ``ct_images`` are the headers of the CT slices the SEG references (its frame of reference
    holds the RECIST end points), ``pet_images`` those of the PET the SUVs come from: both are
    listed as evidence and in the report's image library. Returns None and writes nothing
    when the report has no lesion, as :func:`write_dicom_seg` writes no SEG then.
    """
    import highdicom as hd  # heavy, and only DICOM output needs it

    lesions = report.get("lesions") or []
    if not lesions:
        return None
    if not ct_images:
        raise InputError("a DICOM SR needs the headers of the CT series the lesions were measured on")
    seg = pydicom.dcmread(seg_path)
    frame_of_reference = str(ct_images[0].FrameOfReferenceUID)
    if str(seg.get("FrameOfReferenceUID", "")) != frame_of_reference:
        raise InputError(f"the DICOM SEG {seg_path} is not in the CT's frame of reference {frame_of_reference}")
    segments = {int(item.SegmentNumber): item for item in seg.SegmentSequence}
    missing = [lesion["id"] for lesion in lesions if int(lesion["id"]) not in segments]
    if missing:
        raise InputError(f"lesions {missing} of the report have no segment in the DICOM SEG {seg_path}: write the "
                         "SEG and the report from the same labelmap")
    algorithm = hd.sr.AlgorithmIdentification(
        name="AttUMambaSeg", version=software_version, parameters=[f"model={model_name}"] if model_name else None)
    groups = []
    for lesion in lesions:
        number = int(lesion["id"])
        segment = segments[number]
        tracking = hd.sr.TrackingIdentifier(uid=str(segment.get("TrackingUID", "")) or hd.UID(),
                                            identifier=str(segment.get("TrackingID", "")) or LESION_NAME.format(number))
        groups.append(_volumetric_group(hd, lesion, seg, tracking, algorithm))
        groups.append(_recist_group(hd, lesion, tracking, algorithm, frame_of_reference))
    content = hd.sr.MeasurementReport(
        observation_context=_device_context(hd, model_name),
        procedure_reported=_codes().cid100.PETWholeBody,
        imaging_measurements=groups,
        referenced_images=[*ct_images, *pet_images],
    )
    sr = hd.sr.Comprehensive3DSR(
        evidence=[*ct_images, *pet_images, seg], content=content[0],
        series_instance_uid=hd.UID(), series_number=series_number, sop_instance_uid=hd.UID(), instance_number=1,
        manufacturer="AttUMambaSeg", is_complete=True, is_final=False, is_verified=False)
    sr.SeriesDescription = series_description[:64]
    with _atomic_target(Path(path), ".dcm") as temporary:
        pydicom.dcmwrite(temporary, sr, enforce_file_format=True)
    return Path(path)


def _codes():
    from pydicom.sr.codedict import codes

    return codes


def _concept(hd, value: str, scheme: str, meaning: str):
    return hd.sr.CodedConcept(value=value, scheme_designator=scheme, meaning=meaning)


def _volumetric_group(hd, lesion: dict, seg: Dataset, tracking, algorithm):
    """TID 1411 on the lesion's segment: volume, SUVbw, SUL, TLG and mean HU (those measured)."""
    codes = _codes()
    suv = (codes.DCM.Suvbw, codes.UCUM.StandardizedUptakeValueBodyWeight)
    sul = (codes.DCM.SuvlbmJanma, codes.UCUM.StandardizedUptakeValueLeanBodyMassJanma)
    derivations = {"max": codes.SCT.Maximum, "mean": codes.SCT.Mean, "peak": codes.DCM.PeakValueWithinROI}
    wanted = [(lesion.get("volume_ml"), codes.SCT.Volume, codes.UCUM.CubicCentimeter, None,
               codes.DCM.SumOfSegmentedVoxelMethodForVolume)]
    for prefix, (name, unit) in (("suv", suv), ("sul", sul)):
        wanted += [(lesion.get(f"{prefix}_{what}"), name, unit, derivation, None)
                   for what, derivation in derivations.items()]
    wanted += [(lesion.get("tlg"), codes.DCM.TotalLesionGlycolysis, _concept(hd, "g", "UCUM", "gram"), None, None),
               (lesion.get("ct_mean_hu"), codes.DCM.AttenuationCoefficient, codes.UCUM.HounsfieldUnit,
                codes.SCT.Mean, None)]
    measurements = [hd.sr.Measurement(name=name, value=float(value), unit=unit, derivation=derivation, method=method,
                                      algorithm_id=algorithm)
                    for value, name, unit, derivation, method in wanted if value is not None]
    return hd.sr.VolumetricROIMeasurementsAndQualitativeEvaluations(
        tracking_identifier=tracking,
        referenced_segment=_referenced_segment(hd, seg, int(lesion["id"])),
        finding_type=codes.SCT.Neoplasm, finding_category=codes.SCT.MorphologicallyAbnormalStructure,
        algorithm_id=algorithm, measurements=measurements)


def _referenced_segment(hd, seg: Dataset, number: int):
    """The segment and the CT slices its frames were derived from.

    Not highdicom's ``ReferencedSegment.from_segmentation``: it fails on a SEG whose frames
    all belong to one segment (the segment identification is then shared, not per frame).
    """
    shared = seg.SharedFunctionalGroupsSequence[0]
    sources: dict[str, str] = {}
    for frame in seg.PerFrameFunctionalGroupsSequence:
        identification = frame.get("SegmentIdentificationSequence") or shared.SegmentIdentificationSequence
        if int(identification[0].ReferencedSegmentNumber) != number:
            continue
        for derivation in frame.get("DerivationImageSequence") or shared.get("DerivationImageSequence") or []:
            for source in derivation.SourceImageSequence:
                sources[source.ReferencedSOPInstanceUID] = source.ReferencedSOPClassUID
    if not sources:  # an empty segment (a lesion id missing from the labelmap): the series it lies on
        return hd.sr.ReferencedSegment(
            sop_class_uid=seg.SOPClassUID, sop_instance_uid=seg.SOPInstanceUID, segment_number=number,
            source_series=hd.sr.SourceSeriesForSegmentation(seg.ReferencedSeriesSequence[0].SeriesInstanceUID))
    return hd.sr.ReferencedSegment(
        sop_class_uid=seg.SOPClassUID, sop_instance_uid=seg.SOPInstanceUID, segment_number=number,
        source_images=[hd.sr.SourceImageForSegmentation(sop_class, sop) for sop, sop_class in sources.items()])


def _recist_group(hd, lesion: dict, tracking, algorithm, frame_of_reference: str):
    """TID 1501: the RECIST long and short axes with their end points (SCOORD3D POLYLINE, LPS mm)."""
    codes = _codes()
    recist = lesion["recist"]
    measurements = []
    for name, key in ((codes.SCT.LongAxis, "long_axis"), (codes.SCT.ShortAxis, "short_axis")):
        ends = np.asarray(recist[f"{key}_lps"], dtype=float).reshape(2, 3)
        measurements.append(hd.sr.Measurement(
            name=name, value=float(recist[f"{key}_mm"]), unit=codes.UCUM.Millimeter, algorithm_id=algorithm,
            referenced_coordinates=[hd.sr.CoordinatesForMeasurement3D(
                graphic_type=hd.sr.GraphicTypeValues3D.POLYLINE, graphic_data=ends,
                frame_of_reference_uid=frame_of_reference)]))
    return hd.sr.MeasurementsAndQualitativeEvaluations(
        tracking_identifier=tracking, finding_type=codes.SCT.Neoplasm,
        finding_category=codes.SCT.MorphologicallyAbnormalStructure, method=codes.DCM.RECIST1Point1,
        algorithm_id=algorithm, measurements=measurements)


def _device_context(hd, model_name: str):
    """The observer is this software (a device), not a person: nobody verified the numbers."""
    device = hd.sr.DeviceObserverIdentifyingAttributes(
        uid=hd.UID(), name="AttUMambaSeg", manufacturer_name="AttUMambaSeg",
        model_name=(model_name or "AttUMambaSeg")[:64])
    return hd.sr.ObservationContext(observer_device_context=hd.sr.ObserverContext(
        observer_type=_codes().DCM.Device, observer_identifying_attributes=device))
