"""Readers for the ECG files hospital systems export: DICOM, HL7 aECG, GE MUSE, Philips, SCP-ECG, EDF/BDF.

Each file is recognised from its content, never from its extension alone,
and is decoded by a well-kept library:

- ``dicom``: ``DICM`` at byte 128; ECGDataKit, with pydicom underneath.
- ``hl7_aecg``: root element ``AnnotatedECG``; ECGDataKit.
- ``ge_muse``: root element ``RestingECG``; ECGDataKit.
- ``philips_sierra``: root element ``restingecgdata``; ECGDataKit.
- ``scp_ecg``: section 0 at byte 6 (marker ``SCPECG``); ECGDataKit.
- ``edf`` and ``bdf``: the version field of the header (``0`` or ``BIOSEMI``);
  pyedflib, which reads EDF, EDF+, BDF and BDF+.

These libraries are optional: install them with ``pip install
"ecgsoup[hospital]"``.  They are imported only when such a file is read, and
a missing one is named in the error.

What a reader keeps: the samples in millivolts (every lead must state its
amplitude scale; a lead in raw counts is refused), the lead names, the
sampling rate, and non-identifying fields: ``age``, ``sex``, the device's
``manufacturer`` and ``device_model`` and, only when asked, the
``acquisition_date``.  Patient names, birth dates, patient and
record numbers, free-text fields (reason for the test, interpretation
statements, comments), device serial numbers and institution names are never
read out of the parsed file, so they cannot reach a dataset, a store, a cache
key or a message.  The record id is a hash of the file's bytes by default
(``id_from="hash"``) or the file's name (``id_from="name"``).

Hostile files are refused before they cost memory or run code: XML is parsed
with entity declarations and external references forbidden (an entity bomb
is refused, never expanded), a file larger than ``MAX_FILE_BYTES`` (512 MiB) is
refused unread, and an EDF/BDF header whose sample counts disagree with the
file's size is refused before any sample is allocated.
"""

from __future__ import annotations

import functools
import hashlib
import re
import warnings
from pathlib import Path

import numpy as np

from ecgsoup.io._units import TO_MV
from ecgsoup.io.records import ECGRecord, RecordError
from ecgsoup.leads import STANDARD_LEAD_ORDER, canonical_lead_name, canonical_lead_names

__all__ = ["FORMATS", "MAX_FILE_BYTES", "detect_format", "file_id", "read_file"]

#: format -> (description, the library that decodes it).
FORMATS = {
    "dicom": ("DICOM 12-lead / general ECG waveform", "ecgdatakit + pydicom"),
    "hl7_aecg": ("HL7 aECG (FDA annotated ECG) XML", "ecgdatakit"),
    "ge_muse": ("GE MUSE RestingECG XML", "ecgdatakit"),
    "philips_sierra": ("Philips SierraECG XML", "ecgdatakit"),
    "scp_ecg": ("SCP-ECG (EN 1064)", "ecgdatakit"),
    "edf": ("EDF / EDF+", "pyedflib"),
    "bdf": ("BDF / BDF+ (24-bit)", "pyedflib"),
}

#: Larger files are refused unread: a 12-lead resting ECG export is well under 10 MB,
#: and even a day-long Holter EDF fits.
MAX_FILE_BYTES = 512 * 2**20

_XML_ROOTS = {"restingecg": "ge_muse", "restingecgdata": "philips_sierra", "annotatedecg": "hl7_aecg"}
_XML_FORMATS = frozenset(_XML_ROOTS.values())
_ID_FROM = ("hash", "name")
_INSTALL = 'pip install "ecgsoup[hospital]"'
# EDF channel labels carry the modality in front of the lead ("ECG I", "EKG-V1").
_EDF_PREFIX = re.compile(r"^\s*(?:ECG|EKG)[\s_:.-]*", re.IGNORECASE)


# --- recognising a file ----------------------------------------------------------------


def _xml_root(head: bytes) -> str | None:
    """Local name of the first element of an XML document's first bytes (prolog, comments and DOCTYPE skipped)."""
    if head.startswith((b"\xff\xfe", b"\xfe\xff")):
        text = head.decode("utf-16", errors="ignore")
    else:
        text = head.decode("utf-8", errors="ignore").lstrip("\ufeff")
    if not text.lstrip().startswith("<"):
        return None
    text = re.sub(r"<\?.*?\?>|<!--.*?-->", "", text, flags=re.DOTALL)
    # A DOCTYPE may hold an internal subset in brackets; skip it whole.
    text = re.sub(r"<!DOCTYPE[^\[>]*(\[.*?\])?\s*>", "", text, flags=re.DOTALL | re.IGNORECASE)
    match = re.match(r"\s*<(?:[\w.-]+:)?([\w.-]+)", text)
    return match.group(1).lower() if match else None


def _sniff(head: bytes, size: int) -> str | None:
    if len(head) >= 132 and head[128:132] == b"DICM":
        return "dicom"
    if head[:8] == b"0       " and len(head) >= 256:
        return "edf"
    if head[:8] == b"\xffBIOSEMI" and len(head) >= 256:
        return "bdf"
    if len(head) >= 22 and (
        head[16:22] == b"SCPECG"
        # Some writers leave the reserved bytes blank: section 0 (id 0) at byte 6 and a
        # file-size field equal to the size on disk identify the file as well.
        or (head[8:10] == b"\x00\x00" and int.from_bytes(head[2:6], "little") == size > 22)
    ):
        return "scp_ecg"
    return _XML_ROOTS.get(_xml_root(head) or "")


def detect_format(path) -> str | None:
    """The hospital format of ``path`` from its first bytes, or ``None`` when it is none of them.

    Parameters
    ----------
    path : str or Path
        A file.

    Returns
    -------
    format : {"dicom", "hl7_aecg", "ge_muse", "philips_sierra", "scp_ecg", "edf", "bdf"} or None
        Decided from the content: a ``.xml`` that is no ECG export, or a
        renamed file, is recognised (or not) for what it holds.
    """
    path = Path(path)
    try:
        size = path.stat().st_size
        with open(path, "rb") as handle:
            head = handle.read(4096)
    except OSError:
        return None
    return _sniff(head, size)


@functools.lru_cache(maxsize=65536)
def _sha256(path: str, size: int, mtime_ns: int) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def file_id(path, id_from="hash") -> str:
    """The record id of a file: its content hash (16 hex digits of sha256) or its name without extension.

    The hash is what to share: it carries nothing of the file name, which
    exports often build from the patient's name or number, and it is the
    same for the same file wherever it lies.
    """
    if id_from not in _ID_FROM:
        raise ValueError(f"id_from={id_from!r}; expected 'hash' (of the file's bytes) or 'name' (the file name).")
    path = Path(path)
    if id_from == "name":
        return path.stem
    stat = path.stat()
    return _sha256(str(path.resolve()), stat.st_size, stat.st_mtime_ns)[:16]


# --- reading -----------------------------------------------------------------------------


def _check_size(path: Path) -> int:
    size = path.stat().st_size
    if size > MAX_FILE_BYTES:
        raise RecordError(
            f"{path}: {size / 2**20:.0f} MiB, more than the {MAX_FILE_BYTES // 2**20} MiB an ECG export "
            "can hold; it is refused unread. Split the recording, or check that this is the right file."
        )
    if size == 0:
        raise RecordError(f"{path}: the file is empty; export it again.")
    return size


def _check_xml(path: Path, fmt: str) -> None:
    """Refuse an XML document that declares entities or is not well-formed, before any reader sees it."""
    try:
        from defusedxml import DefusedXmlException
        from defusedxml.ElementTree import fromstring
    except ImportError:
        raise ImportError(f"Reading {FORMATS[fmt][0]} files needs defusedxml: {_INSTALL}.") from None
    import xml.etree.ElementTree as ET

    raw = path.read_bytes()
    try:
        fromstring(raw, forbid_dtd=False, forbid_entities=True, forbid_external=True)
    except DefusedXmlException:
        raise RecordError(
            f"{path}: the XML declares entities or external references, which are refused (never expanded) "
            "because they can exhaust memory or read other files; export the ECG again without them."
        ) from None
    except ET.ParseError as exc:
        raise RecordError(f"{path}: malformed XML ({exc}); the file is truncated or damaged, export it again.") from None


def _check_edf_header(path: Path, fmt: str, size: int) -> None:
    """Refuse an EDF/BDF whose header describes more (or fewer) samples than the file holds."""
    with open(path, "rb") as handle:
        fixed = handle.read(256)
        try:
            header_bytes, n_records, n_signals = int(fixed[184:192]), int(fixed[236:244]), int(fixed[252:256])
        except ValueError:
            raise RecordError(
                f"{path}: the {fmt.upper()} header's size fields are not numbers; the file is damaged or not {fmt.upper()}."
            ) from None
        if not 0 < n_signals <= 4096 or header_bytes != 256 * (n_signals + 1):
            raise RecordError(
                f"{path}: the {fmt.upper()} header announces {n_signals} signals in {header_bytes} header bytes, "
                "which do not fit together; the header is damaged. Export the file again."
            )
        handle.seek(256 + 216 * n_signals)
        counts_field = handle.read(8 * n_signals)
    try:
        per_record = [int(counts_field[8 * i : 8 * i + 8]) for i in range(n_signals)]
    except ValueError:
        raise RecordError(f"{path}: the {fmt.upper()} header's samples-per-record fields are damaged.") from None
    if n_records < 0:
        return  # "-1": still being recorded; pyedflib works the count out from the size
    bytes_per_sample = 3 if fmt == "bdf" else 2
    expected = header_bytes + n_records * sum(per_record) * bytes_per_sample
    if expected != size or any(n < 1 for n in per_record):
        raise RecordError(
            f"{path}: the {fmt.upper()} header announces {n_records} data records of {sum(per_record)} samples "
            f"({expected} bytes in all), but the file has {size} bytes: the header lies or the file is "
            "truncated. Export it again."
        )


def _read_ecgdatakit(path: Path, fmt: str, acquisition_date: bool):
    try:
        from ecgdatakit import FileParser
        from ecgdatakit.exceptions import ECGDataKitError
    except ImportError:
        raise ImportError(f"Reading {FORMATS[fmt][0]} files needs ECGDataKit: {_INSTALL}.") from None
    if fmt in _XML_FORMATS:
        _check_xml(path, fmt)
    try:
        with warnings.catch_warnings():
            # The library's warnings may quote header fields; what matters is checked below.
            warnings.simplefilter("ignore")
            parsed = FileParser.parse(path, auto_scale=True, units="mV")
    except ImportError as exc:
        raise ImportError(f"Reading {FORMATS[fmt][0]} files needs {exc.name or 'pydicom'}: {_INSTALL}.") from None
    except (ECGDataKitError, ValueError, OSError, EOFError, KeyError, IndexError, TypeError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise RecordError(f"{path}: cannot read this {FORMATS[fmt][0]} file ({first}).") from None
    leads = list(parsed.leads)
    if not leads:
        raise RecordError(f"{path}: the {FORMATS[fmt][0]} file holds no waveform.")
    raw = [lead.label for lead in leads if lead.is_raw]
    if raw:
        raise RecordError(
            f"{path}: leads {raw} give no amplitude scale (raw ADC counts); ecgsoup never guesses units. "
            "Export the file with its calibration, or convert it to mV yourself and use from_array()."
        )
    rates = {float(lead.sampling_rate) for lead in leads}
    lengths = {len(lead.samples) for lead in leads}
    if len(rates) != 1 or len(lengths) != 1:
        raise RecordError(
            f"{path}: the leads have different sampling rates {sorted(rates)} or lengths {sorted(lengths)}; "
            "ecgsoup reads one rhythm strip at one rate."
        )
    units = {(lead.units or "mV") for lead in leads}
    if units != {"mV"}:
        raise RecordError(f"{path}: leads are in {sorted(units)}, not mV after scaling; the file's units are unclear.")
    signal = np.stack([np.asarray(lead.samples, dtype=np.float64) for lead in leads], axis=1)
    metadata = {
        "age": parsed.patient.age,
        "sex": parsed.patient.sex or None,
        "manufacturer": parsed.recording.device.manufacturer or None,
        "device_model": parsed.recording.device.model or None,
    }
    if parsed.raw_metadata.get("scale_warning"):
        # The parser took the amplitude scale from the format's specification, not from the file.
        metadata["amplitude_scale"] = "format default (the file states none)"
    if acquisition_date and parsed.recording.date is not None:
        metadata["acquisition_date"] = parsed.recording.date.date().isoformat()
    return signal, float(rates.pop()), [lead.label for lead in leads], metadata


def _edf_lead_name(label: str) -> str:
    label = label.strip()
    stripped = _EDF_PREFIX.sub("", label)
    return canonical_lead_name(stripped) or canonical_lead_name(label) or label


def _read_edf(path: Path, fmt: str, size: int, acquisition_date: bool):
    try:
        import pyedflib
    except ImportError:
        raise ImportError(f"Reading {FORMATS[fmt][0]} files needs pyedflib: {_INSTALL}.") from None
    _check_edf_header(path, fmt, size)
    try:
        reader = pyedflib.EdfReader(str(path))
    except OSError as exc:
        raise RecordError(f"{path}: cannot read this {FORMATS[fmt][0]} file ({exc}).") from None
    try:
        labels = reader.getSignalLabels()
        rates = [float(reader.getSampleFrequency(i)) for i in range(reader.signals_in_file)]
        dims = [reader.getPhysicalDimension(i).strip() for i in range(reader.signals_in_file)]
        names = [_edf_lead_name(label) for label in labels]
        voltage = [i for i, d in enumerate(dims) if d.lower() in TO_MV]
        skipped = {names[i]: dims[i] or "(no unit)" for i in range(len(names)) if i not in voltage}
        if not voltage:
            raise RecordError(f"{path}: no channel in a voltage unit (units {dims}); nothing to read as ECG.")
        # One rate per record: that of the first standard lead (else the first voltage channel).
        first = next((i for i in voltage if canonical_lead_name(names[i])), voltage[0])
        keep = [i for i in voltage if rates[i] == rates[first]]
        skipped.update({names[i]: f"{rates[i]:g} Hz" for i in voltage if i not in keep})
        signal = np.stack(
            [reader.readSignal(i, digital=False) * TO_MV[dims[i].lower()] for i in keep], axis=1
        )
        start = reader.getStartdatetime() if acquisition_date else None
    finally:
        reader.close()
    metadata = {}
    if skipped:
        metadata["skipped_channels"] = skipped
    if start is not None:
        metadata["acquisition_date"] = start.date().isoformat()
    return signal, rates[first], [names[i] for i in keep], metadata


def read_file(path, *, fmt=None, id_from="hash", acquisition_date=False):
    """Read one hospital ECG file into an :class:`~ecgsoup.io.ECGRecord` in millivolts.

    Parameters
    ----------
    path : str or Path
        A DICOM, HL7 aECG, GE MUSE, Philips SierraECG, SCP-ECG, EDF or BDF file.
    fmt : str, optional
        Its format as :func:`detect_format` gives it (detected when omitted).
    id_from : {"hash", "name"}, default="hash"
        Record id from the file's content hash, or from its name.
    acquisition_date : bool, default=False
        Keep the acquisition date (ISO ``YYYY-MM-DD``) in ``metadata``.

    Returns
    -------
    record : ECGRecord
        ``signal`` float32 ``(n_samples, n_leads)`` in mV, canonical lead
        names; ``metadata`` holds ``format``, ``path``, ``age``, ``sex``, the
        device's manufacturer and model, and never a name, birth date,
        patient number or free text.

    Raises
    ------
    RecordError
        A file that is not one of these formats, damaged, hostile (XML
        entities, a lying header, an absurd size) or without amplitude scale;
        the message names the file, the problem and what to do.
    ImportError
        The library that reads this format is not installed (the message
        says ``pip install "ecgsoup[hospital]"``).
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise RecordError(f"{path}: no such file.")
    size = _check_size(path)
    fmt = fmt or detect_format(path)
    if fmt not in FORMATS:
        raise RecordError(
            f"{path}: not a recognised ECG file (DICOM, HL7 aECG, GE MUSE or Philips XML, SCP-ECG, EDF/BDF, "
            "or a WFDB record); its content matches none of them."
        )
    if fmt in ("edf", "bdf"):
        signal, fs, labels, metadata = _read_edf(path, fmt, size, acquisition_date)
    else:
        signal, fs, labels, metadata = _read_ecgdatakit(path, fmt, acquisition_date)
    if not np.isfinite(fs) or fs <= 0:
        raise RecordError(f"{path}: the file states no valid sampling rate ({fs!r}).")
    if signal.shape[0] == 0:
        raise RecordError(f"{path}: the waveform holds no sample.")
    names = canonical_lead_names(labels)
    if len(set(names)) != len(names):
        raise RecordError(f"{path}: duplicate lead names {list(labels)}; ecgsoup matches leads by name.")
    # Standard leads in the standard order (machines store I, II, V1-V6 first), others after them:
    # files of one folder then share one lead order.
    rank = {name: i for i, name in enumerate(STANDARD_LEAD_ORDER)}
    order = sorted(range(len(names)), key=lambda i: (rank.get(names[i], len(rank)), i))
    signal, names = signal[:, order], tuple(names[i] for i in order)
    metadata = {k: v for k, v in metadata.items() if v is not None}
    metadata = {"format": fmt, "path": str(path), **metadata}
    return ECGRecord(
        record_id=file_id(path, id_from),
        signal=np.ascontiguousarray(signal, dtype=np.float32),
        fs=fs,
        lead_names=names,
        units="mV",
        metadata=metadata,
    )
