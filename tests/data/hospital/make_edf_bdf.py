"""Write ``ludb1_generated.edf`` and ``ludb1_generated.bdf`` with pyedflib's own writer.

No public, redistributable 12-lead ECG in EDF or BDF small enough to ship was
found, so these two files are generated: the signal is the real LUDB record 1
(12 leads, 500 Hz, 10 s, microvolts; ODC-By 1.0) from the project's shared data,
written as physical millivolts.  The patient fields hold a fictitious name,
code and birth date on purpose: the privacy test checks that none of them
reaches ecgsoup's output.

Run from the repository root:  python tests/data/hospital/make_edf_bdf.py
"""

import datetime
from pathlib import Path

import numpy as np
import pyedflib

HERE = Path(__file__).resolve().parent
SHARED = HERE.parents[3] / "shared" / "data" / "ludb" / "ludb_12lead_500hz.npz"


def main():
    data = np.load(SHARED)
    x_mv = data["x"][0].astype(np.float64) / 1000.0  # record 1, (5000, 12), uV -> mV
    names = [str(n) for n in data["lead_names"]]
    for suffix, filetype, digital in (("edf", pyedflib.FILETYPE_EDFPLUS, 2**15),
                                      ("bdf", pyedflib.FILETYPE_BDFPLUS, 2**23)):  # fmt: skip
        writer = pyedflib.EdfWriter(str(HERE / f"ludb1_generated.{suffix}"), len(names), file_type=filetype)
        writer.setSignalHeaders([
            dict(label=f"ECG {name}", dimension="mV", sample_frequency=500, physical_max=5.0,
                 physical_min=-5.0, digital_max=digital - 1, digital_min=-digital, transducer="", prefilter="")
            for name in names
        ])  # fmt: skip
        writer.setStartdatetime(datetime.datetime(2020, 1, 2, 3, 4, 5))
        writer.setPatientName("Doe^Jane")
        writer.setPatientCode("MRN-0042")
        writer.setBirthdate(datetime.date(1961, 2, 3))
        writer.writeSamples([np.ascontiguousarray(x_mv[:, k]) for k in range(len(names))])
        writer.close()


if __name__ == "__main__":
    main()
