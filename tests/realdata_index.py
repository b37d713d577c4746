"""What the real-data tests read off INDEX.csv: which reader reads a row's format, and which
vs30_method values mean the label travels in the file itself."""

from __future__ import annotations

# INDEX.csv format text (its start) -> the reader that reads every such row whole.
READS_WHOLE = {
    "MATLAB v5": "afad-mat",
    "AFAD/NSMN": "nsmn",
    "gmpe-smtk ASCII": "itaca",
    "NIED K-NET": "knet",
    "K-NET/KiK-net ASCII (NIED)": "knet",
    "ESM/DYNA 1.2 ASCII (AFAD TADAS": "esm",
    "miniSEED (FLOAT64), processed by datools": "mseed",
}
# INDEX vs30_method values whose label is carried by the record file.
LABEL_IN_FILE = ("AFAD .mat field", "ITACA/ESM", "ESM ASCII header")
