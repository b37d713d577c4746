"""P/S arrivals for records whose source gives none: ObsPy's AR-AIC picker (``ar_pick``).

Status per phase: ``given`` (from the source file), ``picked`` (this module), ``failed`` (blank
arrival, reason in ``note``). Defaults suit 50–200 Hz strong-motion records: band 1–20 Hz
(capped below Nyquist), STA/LTA 0.1/1.0 s for P and 1.0/4.0 s for S, AR orders 2/8, windows
0.1/0.2 s. A pick is refused when it lies outside the record or when P is not before S.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from deepvs30.readers.base import RawRecord

MIN_DURATION_S = 10.0


@dataclass(frozen=True)
class PickParams:
    f1_hz: float = 1.0
    f2_hz: float = 20.0
    lta_p_s: float = 1.0
    sta_p_s: float = 0.1
    lta_s_s: float = 4.0
    sta_s_s: float = 1.0
    m_p: int = 2
    m_s: int = 8
    l_p_s: float = 0.1
    l_s_s: float = 0.2


@dataclass(frozen=True)
class Picks:
    p_arrival_s: float | None
    s_arrival_s: float | None
    p_status: str
    s_status: str
    note: str = ""


def _failed(note: str) -> Picks:
    return Picks(None, None, "failed", "failed", note)


def given_or_picked(record: RawRecord, params: PickParams | None = None) -> Picks:
    """The source's arrivals where it has both; otherwise picked ones (or failed, with a reason)."""
    if record.p_arrival_s is not None and record.s_arrival_s is not None:
        return Picks(record.p_arrival_s, record.s_arrival_s, "given", "given")
    picks = pick_arrivals(record, params)
    if record.p_arrival_s is not None:  # keep a given P, pick only S
        s_ok = picks.s_arrival_s is not None and picks.s_arrival_s > record.p_arrival_s
        return Picks(
            record.p_arrival_s,
            picks.s_arrival_s if s_ok else None,
            "given",
            "picked" if s_ok else "failed",
            "" if s_ok else "S pick missing or not after the given P",
        )
    return picks


def pick_arrivals(record: RawRecord, params: PickParams | None = None) -> Picks:
    from obspy.signal.trigger import ar_pick

    p = params or PickParams()
    fs_hz = record.sampling_rate_hz
    duration_s = record.duration_s
    if duration_s < MIN_DURATION_S:
        return _failed(f"record too short for picking ({duration_s:.1f} s)")
    f2_hz = min(p.f2_hz, 0.45 * fs_hz)
    z, n, e = (np.ascontiguousarray(c - np.mean(c), dtype=np.float32) for c in record.waveform_mps2)
    try:
        p_s, s_s = ar_pick(
            z,
            n,
            e,
            fs_hz,
            p.f1_hz,
            f2_hz,
            p.lta_p_s,
            p.sta_p_s,
            p.lta_s_s,
            p.sta_s_s,
            p.m_p,
            p.m_s,
            p.l_p_s,
            p.l_s_s,
            s_pick=True,
        )
    except Exception as exc:  # ar_pick fails in assorted ways on flat or short traces
        return _failed(f"ar_pick failed ({type(exc).__name__}: {exc})")
    p_s, s_s = float(p_s), float(s_s)
    if not (0 < p_s < duration_s) or not np.isfinite(p_s):
        return _failed(f"P pick {p_s:.2f} s outside the record")
    if not (0 < s_s < duration_s) or not np.isfinite(s_s) or s_s <= p_s:
        return Picks(p_s, None, "picked", "failed", f"S pick {s_s:.2f} s not after P {p_s:.2f} s")
    return Picks(p_s, s_s, "picked", "picked")
