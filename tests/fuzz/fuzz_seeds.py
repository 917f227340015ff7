"""Seed corpus for the reader fuzzers, made by code (small synthetic arrays, no patient data).

Each seed is ``(name, suffix, bytes)``; the suffix chooses the reader. The set covers
what the readers meet in practice: uncompressed, deflate-, LZMA- and PackBits-style
TIFFs, strips and tiles, big-endian and BigTIFF; ``.npy`` v1/v2, Fortran order and
big-endian; DICOM in the three uncompressed transfer syntaxes, deflated and RLE; PNG
in every grayscale mode; and ``case.json``.
"""
from __future__ import annotations

import io
import json

import numpy as np
import tifffile

__all__ = ["tiff_seeds", "npy_seeds", "dicom_seeds", "png_seeds", "case_json_seeds",
           "all_seeds", "CASE_DICT"]

CASE_DICT = {
    "schema_version": 1, "case_id": "FZ-CASE-1", "subject_id": "F001", "eye": "OD",
    "location_deg": {"horizontal": 2.0, "vertical": 0.0}, "axial_length_mm": 24.0,
    "scan_field_deg": {"bscan": 1.0, "aline": 1.0}, "depth_um_per_px": 2.0,
    "um_per_px": {"bscan": 1.1, "aline": 1.1}, "volumes": ["vol_00.npy"],
    "acquired_at": "2026-01-31", "notes": "fuzz seed",
}


def _volume(shape=(3, 8, 6), dtype=np.uint16, seed=0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    vol = rng.integers(0, 200, size=shape)
    return vol.astype(dtype)


def _tiff(write) -> bytes:
    buf = io.BytesIO()
    write(buf)
    return buf.getvalue()


def tiff_seeds() -> list[tuple[str, str, bytes]]:
    vol = _volume()
    out = []

    def add(name, data, **kw):
        out.append((name, ".tif", _tiff(lambda b: tifffile.imwrite(b, data, **kw))))

    add("tiff_contig_f32", vol.astype(np.float32), photometric="minisblack", contiguous=True)
    add("tiff_u16", vol, photometric="minisblack")
    add("tiff_u8_bigendian", vol.astype(np.uint8), photometric="minisblack", byteorder=">")
    add("tiff_bigtiff", vol, photometric="minisblack", bigtiff=True)
    add("tiff_deflate", vol, photometric="minisblack", compression="zlib")
    add("tiff_deflate_predictor", vol, photometric="minisblack", compression="zlib",
        predictor=True)
    add("tiff_lzma", vol, photometric="minisblack", compression="lzma")
    add("tiff_tiled", _volume((2, 16, 16)), photometric="minisblack", tile=(16, 16))
    add("tiff_volumetric", _volume((2, 16, 16)), photometric="minisblack", tile=(16, 16),
        volumetric=True)
    add("tiff_strips", vol, photometric="minisblack", rowsperstrip=2)
    add("tiff_imagej", vol, imagej=True)
    add("tiff_f64", vol.astype(np.float64), photometric="minisblack")
    add("tiff_2d", vol[0], photometric="minisblack")  # an en face image
    add("tiff_2d_deflate", vol[0].astype(np.float32), photometric="minisblack",
        compression="zlib")
    # page by page, as other writers do
    buf = io.BytesIO()
    with tifffile.TiffWriter(buf) as tw:
        for page in vol:
            tw.write(page, photometric="minisblack")
    out.append(("tiff_pages", ".tif", buf.getvalue()))
    return out


def npy_seeds() -> list[tuple[str, str, bytes]]:
    vol = _volume()
    out = []

    def add(name, arr, version=None):
        buf = io.BytesIO()
        np.lib.format.write_array(buf, arr, version=version, allow_pickle=False)
        out.append((name, ".npy", buf.getvalue()))

    add("npy_u16", vol)
    add("npy_f32", vol.astype(np.float32))
    add("npy_v2", vol.astype(np.int16), version=(2, 0))
    add("npy_fortran", np.asfortranarray(vol.astype(np.float64)))
    add("npy_bigendian", vol.astype(">f4"))
    add("npy_bool", vol > 100)
    add("npy_2d", vol[0].astype(np.uint8))
    return out


def _dicom_dataset(frames: np.ndarray, *, syntax, phi: bool = True, signed: bool = False):
    import pydicom
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.77.1.5.4"
    meta.MediaStorageSOPInstanceUID = generate_uid(entropy_srcs=["fuzz"])
    meta.TransferSyntaxUID = syntax
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.Modality = "OPT"
    if phi:
        ds.PatientName = "Fuzz^Seed"
        ds.PatientID = "F001"
        ds.InstitutionName = "Nowhere"
        ref = Dataset()
        ref.PatientName = "Nested^Name"
        ds.ReferencedPatientSequence = [ref]
    ds.NumberOfFrames = frames.shape[0]
    ds.Rows, ds.Columns = frames.shape[1:]
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    bits = frames.dtype.itemsize * 8
    ds.BitsAllocated = bits
    ds.BitsStored = bits
    ds.HighBit = bits - 1
    ds.PixelRepresentation = int(signed)
    ds.PixelSpacing = [0.002, 0.0011]
    ds.SliceThickness = 0.0011
    measures = Dataset()
    measures.PixelSpacing = [0.002, 0.0011]
    shared = Dataset()
    shared.PixelMeasuresSequence = [measures]
    ds.SharedFunctionalGroupsSequence = [shared]
    ds.RescaleSlope = "1.5"
    ds.RescaleIntercept = "-2"
    ds.PixelData = frames.tobytes() if syntax != pydicom.uid.ExplicitVRBigEndian \
        else frames.astype(frames.dtype.newbyteorder(">")).tobytes()
    return ds


def dicom_seeds() -> list[tuple[str, str, bytes]]:
    from pydicom import uid

    vol = _volume((3, 8, 6))
    out = []

    def add(name, ds, **kw):
        buf = io.BytesIO()
        ds.save_as(buf, enforce_file_format=True, **kw)
        out.append((name, ".dcm", buf.getvalue()))

    add("dcm_explicit_u16", _dicom_dataset(vol, syntax=uid.ExplicitVRLittleEndian))
    add("dcm_implicit_u8", _dicom_dataset(vol.astype(np.uint8), syntax=uid.ImplicitVRLittleEndian,
                                          phi=False))
    add("dcm_bigendian_i16", _dicom_dataset(vol.astype(np.int16),
                                            syntax=uid.ExplicitVRBigEndian, signed=True))
    add("dcm_deflated", _dicom_dataset(vol, syntax=uid.DeflatedExplicitVRLittleEndian))
    rle = _dicom_dataset(vol, syntax=uid.ExplicitVRLittleEndian)
    rle.compress(uid.RLELossless, vol, encoding_plugin="pydicom")
    add("dcm_rle", rle)
    return out


def png_seeds() -> list[tuple[str, str, bytes]]:
    from PIL import Image

    img = _volume((1, 12, 10), dtype=np.uint8)[0]
    out = []

    def add(name, pil, fmt="PNG"):
        buf = io.BytesIO()
        pil.save(buf, format=fmt)
        out.append((name, ".png", buf.getvalue()))

    add("png_l", Image.fromarray(img, mode="L"))
    add("png_i16", Image.fromarray(img.astype(np.uint16) * 200))
    add("png_rgb_gray", Image.fromarray(np.stack([img] * 3, axis=-1), mode="RGB"))
    add("png_la", Image.fromarray(np.stack([img, img], axis=-1), mode="LA"))
    add("png_palette", Image.fromarray(img, mode="L").convert("P"))
    # other formats behind a .png name: what PIL would sniff if we let it
    add("png_named_bmp", Image.fromarray(img, mode="L"), fmt="BMP")
    add("png_named_gif", Image.fromarray(img, mode="L"), fmt="GIF")
    return out


def case_json_seeds() -> list[tuple[str, str, bytes]]:
    minimal = {k: v for k, v in CASE_DICT.items() if k not in ("um_per_px", "acquired_at", "notes")}
    return [
        ("case_full", ".json", json.dumps(CASE_DICT, indent=2).encode()),
        ("case_minimal", ".json", json.dumps(minimal).encode()),
        ("case_compact", ".json", json.dumps(CASE_DICT, separators=(",", ":")).encode()),
    ]


def all_seeds() -> list[tuple[str, str, bytes]]:
    return tiff_seeds() + npy_seeds() + dicom_seeds() + png_seeds() + case_json_seeds()
