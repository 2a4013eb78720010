"""Readers for ECG files: WFDB, PhysioNet/CinC Challenge, PTB-XL, hospital exports, numpy arrays.

Every reader returns signals in **millivolts**, ``float32``, **time-major**
``(time, leads)`` per record (the layout of ``wfdb.rdsamp``), with canonical
lead names (:func:`ecgsoup.leads.canonical_lead_names`), the sampling rate and
the units.  A record that cannot be read raises :class:`RecordError` naming
the file and the problem; the collecting readers can instead skip it
(``on_error="skip"``), which lists it in :attr:`ECGDataset.errors` and warns -
a bad record is never dropped silently.

A folder may mix WFDB records with hospital exports (DICOM, HL7 aECG, GE
MUSE and Philips XML, SCP-ECG, EDF/BDF; see :mod:`ecgsoup.io.hospital`): each
file's format is recognised from its content.  Leads missing from a record
are never filled in, except the limb leads III, aVR, aVL and aVF when
``derive_leads=True`` asks for them to be computed from I and II.

Missing samples (NaN, e.g. WFDB's "invalid sample" code) are kept as NaN:
the reader reports the data as it is, and :class:`ecgsoup.preprocessing.ECGPreprocessor`
refuses NaN with the record's index.
"""

from ecgsoup.io import hospital
from ecgsoup.io.arrays import from_array
from ecgsoup.io.folders import read_challenge, read_dataset, read_records
from ecgsoup.io.ids import check_ids, ids_list
from ecgsoup.io.listing import RecordList, RecordSource, list_records
from ecgsoup.io.npz import NpzRows, npz_members, open_npz, read_npz
from ecgsoup.io.ptbxl import read_ptbxl
from ecgsoup.io.records import ECGDataset, ECGRecord, RecordError
from ecgsoup.io.sample import load_sample
from ecgsoup.io.wfdb import read_wfdb

__all__ = [
    "RecordError",
    "ECGRecord",
    "ECGDataset",
    "read_wfdb",
    "read_records",
    "read_dataset",
    "read_challenge",
    "read_ptbxl",
    "list_records",
    "RecordSource",
    "RecordList",
    "from_array",
    "load_sample",
    "check_ids",
    "ids_list",
    "open_npz",
    "npz_members",
    "read_npz",
    "NpzRows",
    "hospital",
]
