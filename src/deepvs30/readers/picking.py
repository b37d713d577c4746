"""P/S arrivals of a record: given by the source, picked from the waveform, or predicted.

Status per phase: ``given`` (from the source file), ``picked`` (from the waveform), ``predicted``
(from iasp91 travel times), ``failed`` (blank arrival, reason in ``note``). Times are seconds after
the record's first sample.

Onset function: energy of the band-passed (1–20 Hz, causal) trace, forward STA over backward LTA.
The LTA grows from the first live sample, so a record that starts 1 s before P still has one; a
dead head (zero padding, a constant, or content outside the band) is skipped.

P: the earliest strong STA/LTA onset on the vertical before its peak that keeps the energy up
(not a spike), refined by a Maeda (1985) AIC onset (for an emergent P that never triggers: the
AIC onset of the whole head up to the vertical peak). ObsPy's AR-AIC ``ar_pick`` P is kept where
it is plausible, i.e. within ``agree_s`` of that onset. With event and station coordinates, an
onset with no S onset at the iasp91 S−P after it that looks like S itself (horizontals dominate)
is taken as S: P is then the AIC onset one S−P earlier, or predicted there, or failed when that
is before the first sample (the record starts after P, as S-triggered K-NET records do). Where
origin time and record start are both known to the second, the travel-time P picks the onset
near it and replaces a missing or unconfirmed pick (status ``predicted``).

S: the AIC onset of the horizontals between P and their peak (S leads the strongest shaking),
when the energy stays up after it. With coordinates it must lie within the tolerance of
P + (tS − tP) (iasp91, first of ``p``/``P``/``Pn`` and ``s``/``S``/``Sn``), else the AIC onset
inside that window if it is one, else S = P + (tS − tP) (``predicted``). Without coordinates the
AIC onset or failed.

Sanity everywhere: 0 < P < duration, P < S < duration; a P after S is refused.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cache

import numpy as np

from deepvs30.readers.base import RawRecord

EPS = 1e-30  # energy floor: flat (zero) stretches must not give log(0) or 0/0
FAILED = "failed"


@dataclass(frozen=True)
class PickParams:
    """Picker settings. Defaults suit 50–200 Hz strong-motion accelerograms."""

    # band of every picker (f2 capped at 0.45 × sampling rate)
    f1_hz: float = 1.0
    f2_hz: float = 20.0
    # ObsPy ar_pick: STA/LTA windows, AR orders, AR windows
    lta_p_s: float = 1.0
    sta_p_s: float = 0.1
    lta_s_s: float = 4.0
    sta_s_s: float = 1.0
    m_p: int = 2
    m_s: int = 8
    l_p_s: float = 0.1
    l_s_s: float = 0.2
    # onset function: forward STA / backward LTA of the energy
    sta_s: float = 0.5
    lta_s: float = 3.0  # at most; shorter near the first live sample
    lead_s: float = 0.3  # no onset this soon after the first live sample (LTA too short)
    dead_band_frac: float = 0.02  # head window with less band energy than this × its raw: dead
    p_ratio: float = 6.0  # STA/LTA of a P onset on the vertical (noise alone stays below ~3.5)
    p_frac_of_max: float = 0.05  # P: earliest onset with this fraction of the strongest one
    sustain_s: float = 2.0  # a P onset keeps the median energy over this long after it ...
    sustain_ratio: float = 20.0  # ... this many times the median over lta_s before it
    s_ratio: float = 2.0  # STA/LTA of an S onset on the horizontals (LTA from P on)
    s_confirm_ratio: float = 3.0  # horizontal STA/LTA near P + S−P that confirms a P onset
    aic_pre_s: float = 1.0  # AIC refinement window starts this long before the STA/LTA peak
    agree_s: float = 0.5  # ar_pick P this close to the onset pick: ar_pick's value is kept
    hv_s_min: float = 2.0  # horizontal/vertical energy after an onset above which it looks like S
    # travel times
    taup_model: str = "iasp91"
    sp_tol_frac: float = 0.35  # picked S−P within this fraction of the travel-time S−P ...
    sp_tol_min_s: float = 1.0  # ... or within this many seconds
    p_abs_tol_s: float = 3.0  # an onset this close to origin time + travel time is the P ...
    p_abs_tol_frac: float = 0.15  # ... or within this fraction of the P travel time
    min_sp_s: float = 0.3  # shortest S−P accepted from a pick (about 2.5 km hypocentral)
    min_duration_s: float = 10.0


@dataclass(frozen=True)
class Picks:
    p_arrival_s: float | None
    s_arrival_s: float | None
    p_status: str
    s_status: str
    note: str = ""
    sp_travel_time_s: float | None = None  # iasp91 tS − tP, where the geometry is known


@dataclass(frozen=True)
class Phase:
    time_s: float | None
    status: str
    note: str = ""


def _join(*notes: str) -> str:
    return "; ".join(n for n in notes if n)


# ---------------------------------------------------------------- entry points


def given_or_picked(record: RawRecord, params: PickParams | None = None) -> Picks:
    """The source's arrivals where it has them; the rest picked or predicted (or failed)."""
    p = params or PickParams()
    given_p, given_s = record.p_arrival_s, record.s_arrival_s
    if given_p is not None and given_s is not None:
        return Picks(given_p, given_s, "given", "given")  # no travel times: nothing to check
    if given_p is None and given_s is None:
        return pick_arrivals(record, p)
    if record.duration_s < p.min_duration_s:
        return _too_short(record, given_p, given_s)
    sig = _signals(record, p)
    sp_s = _sp_travel_time(record, p)
    if given_p is not None:  # keep the given P, pick S after it
        s = _s_phase(sig, given_p, sp_s, p)
        return _sane(Picks(given_p, s.time_s, "given", s.status, s.note, sp_s), sig.duration_s)
    pp, _ = _p_phase(record, sig, p)  # given S only: pick P, which must come before it
    if pp.time_s is not None and pp.time_s < given_s:
        return Picks(pp.time_s, given_s, pp.status, "given", pp.note, sp_s)
    return Picks(None, given_s, FAILED, "given", _join(pp.note, "no P before the given S"), sp_s)


def pick_arrivals(record: RawRecord, params: PickParams | None = None) -> Picks:
    """P and S from the waveform and travel times alone (given arrivals ignored)."""
    p = params or PickParams()
    if record.duration_s < p.min_duration_s:
        return _too_short(record, None, None)
    sig = _signals(record, p)
    sp_s = _sp_travel_time(record, p)
    pp, s_instead = _p_phase(record, sig, p)
    if pp.time_s is None:
        s = s_instead or Phase(None, FAILED)
        picks = Picks(None, s.time_s, FAILED, s.status, _join(pp.note, s.note), sp_s)
    else:
        s = _s_phase(sig, pp.time_s, sp_s, p)
        picks = Picks(pp.time_s, s.time_s, pp.status, s.status, _join(pp.note, s.note), sp_s)
    return _sane(picks, sig.duration_s)


def _too_short(record: RawRecord, given_p: float | None, given_s: float | None) -> Picks:
    note = f"record too short for picking ({record.duration_s:.1f} s)"
    return Picks(given_p, given_s, "given" if given_p is not None else FAILED,
                 "given" if given_s is not None else FAILED, note)  # fmt: skip


def _sane(picks: Picks, duration_s: float) -> Picks:
    """Refuse what no record can have: P outside (0, duration), S outside (P, duration)."""
    p_s, s_s, p_st, s_st, notes = (picks.p_arrival_s, picks.s_arrival_s, picks.p_status,
                                   picks.s_status, [picks.note])  # fmt: skip
    if p_s is not None and not 0 < p_s < duration_s:
        notes.append(f"P {p_s:.2f} s outside the record refused")
        p_s, p_st = None, FAILED
    lower = p_s if p_s is not None else 0.0
    if s_s is not None and not lower < s_s < duration_s:
        notes.append(f"S {s_s:.2f} s not between P and the record end refused")
        s_s, s_st = None, FAILED
    if (p_s, s_s) == (picks.p_arrival_s, picks.s_arrival_s):
        return picks
    return Picks(p_s, s_s, p_st, s_st, _join(*notes), picks.sp_travel_time_s)


# ---------------------------------------------------------------- onset functions

Z, H = slice(0, 1), slice(1, 3)  # rows of Signals.wf


@dataclass(frozen=True)
class Signals:
    """A record made ready for picking: band-passed ZNE and STA/LTA onset functions."""

    wf: np.ndarray  # (3, n) band-passed ZNE
    fs_hz: float
    cf_z: np.ndarray  # STA/LTA of the vertical energy
    cf_h: np.ndarray  # STA/LTA of the horizontal energy (N² + E²)
    n_sta: int
    n_lead: int
    n_live: int  # first live sample (after a dead head)

    @property
    def n(self) -> int:
        return int(self.wf.shape[1])

    @property
    def duration_s(self) -> float:
        return self.n / self.fs_hz

    def energy(self, rows: slice) -> np.ndarray:
        return np.sum(self.wf[rows] ** 2, axis=0)


def _head_removed(record: RawRecord) -> np.ndarray:
    """The waveform less the mean of its first second (the pre-event level; a full-record mean
    would leave a step at the first sample that the filter turns into an onset)."""
    wf = np.asarray(record.waveform_mps2, dtype=np.float64)
    head = max(1, min(int(record.sampling_rate_hz), wf.shape[1] // 10))
    return wf - wf[:, :head].mean(axis=1, keepdims=True)


def _filtered(raw: np.ndarray, fs_hz: float, p: PickParams) -> np.ndarray:
    """(3, n) band-passed, causal (no energy leaks before an onset)."""
    from obspy.signal.filter import bandpass

    f2_hz = min(p.f2_hz, 0.45 * fs_hz)
    return np.vstack([bandpass(c, p.f1_hz, f2_hz, fs_hz, corners=2) for c in raw])


def live_start(raw: np.ndarray, band: np.ndarray, n_win: int, dead_frac: float) -> int:
    """First sample after a dead record head (0 if none): windows that are flat (zero padding, a
    constant) or whose band energy is below dead_frac × their raw energy (e.g. a pattern at
    Nyquist, as in the 2 s heads of some AFAD files). The first window, where the filter starts
    up, only counts as part of a dead run that goes on after it."""

    def dead(i: int) -> bool:
        seg = raw[:, i : i + n_win]
        raw_e = float(np.sum((seg - seg.mean(axis=1, keepdims=True)) ** 2))
        return raw_e <= EPS or float(np.sum(band[:, i : i + n_win] ** 2)) < dead_frac * raw_e

    starts = range(n_win, raw.shape[1] - n_win, n_win)
    if not starts or not dead(starts[0]):
        return 0
    return next((i for i in starts if not dead(i)), 0)


def sta_lta(energy: np.ndarray, n_sta: int, n_lta: int, i0: int, n_lead: int) -> np.ndarray:
    """Forward STA (mean of the next n_sta samples) over backward LTA (mean of the previous
    n_lta, never before sample i0: no long pre-event window needed); peaks at an onset. 0 before
    i0 + n_lead and in the last n_sta samples."""
    n = len(energy)
    cf = np.zeros(n)
    k = np.arange(max(i0 + n_lead, 1), n - n_sta)
    if len(k) == 0:
        return cf
    c = np.concatenate([[0.0], np.cumsum(energy)])
    lo = np.maximum(i0, k - n_lta)
    lta = (c[k] - c[lo]) / (k - lo)
    cf[k] = (c[k + n_sta] - c[k]) / n_sta / np.maximum(lta, EPS)
    return cf


def onsets(cf: np.ndarray, ratio: float, i0: int, i1: int, n_near: int | None = None) -> list[int]:
    """One sample per excursion of cf above ratio inside [i0, i1): where cf peaks (within its
    first n_near samples if given: a long excursion peaks late for an emergent onset)."""
    i0, i1 = max(0, i0), min(len(cf), i1)
    if i1 <= i0:
        return []
    above = np.concatenate([[0], (cf[i0:i1] >= ratio).astype(np.int8), [0]])
    edges = np.flatnonzero(np.diff(above))
    runs = zip(edges[::2], edges[1::2], strict=True)
    n_near = n_near or len(cf)
    return [i0 + a + int(np.argmax(cf[i0 + a : i0 + min(b, a + n_near)])) for a, b in runs]


def aic_curve(x: np.ndarray) -> np.ndarray:
    """Maeda (1985) AIC(k) = k·ln var(x[:k]) + (N−k−1)·ln var(x[k:]); its minimum is the onset
    (the best split into two stationary pieces). +inf at the ends (k < 2, k > N−2)."""
    x = np.asarray(x, dtype=np.float64)
    n = len(x)
    aic = np.full(n, np.inf)
    if n < 5:
        return aic
    c1, c2 = np.cumsum(x), np.cumsum(x * x)
    k = np.arange(2, n - 1)
    var_pre = c2[k - 1] / k - (c1[k - 1] / k) ** 2
    m = n - k
    var_post = (c2[-1] - c2[k - 1]) / m - ((c1[-1] - c1[k - 1]) / m) ** 2
    aic[k] = k * np.log(np.maximum(var_pre, EPS)) + (n - k - 1) * np.log(np.maximum(var_post, EPS))
    return aic


def aic_onset(traces: np.ndarray, i0: int, i1: int) -> int | None:
    """Sample of the minimum of the summed AIC of ``traces`` ((m, n) or (n,)) over [i0, i1)."""
    traces = np.atleast_2d(traces)
    i0, i1 = max(0, i0), min(traces.shape[1], i1)
    if i1 - i0 < 10:
        return None
    aic = np.sum([aic_curve(x[i0:i1]) for x in traces], axis=0)
    k = int(np.argmin(aic))
    return i0 + k if np.isfinite(aic[k]) else None


def sustained_ratio(energy: np.ndarray, k: int, n_after: int, n_before: int, i0: int = 0) -> float:
    """Median energy over n_after samples from k over the median over n_before before k (not
    before i0): high for an arrival (the energy stays up), about 1 for a spike or burst."""
    before = energy[max(i0, k - n_before) : k]
    if len(before) == 0 or k >= len(energy):
        return 0.0
    return float(np.median(energy[k : k + n_after])) / max(float(np.median(before)), EPS)


def _signals(record: RawRecord, p: PickParams) -> Signals:
    fs_hz = record.sampling_rate_hz
    raw = _head_removed(record)
    wf = _filtered(raw, fs_hz, p)
    n_sta, n_lta = max(1, round(p.sta_s * fs_hz)), max(1, round(p.lta_s * fs_hz))
    n_lead = max(1, round(p.lead_s * fs_hz))
    n_live = live_start(raw, wf, n_sta, p.dead_band_frac)
    cf_z = sta_lta(wf[0] ** 2, n_sta, n_lta, n_live, n_lead)
    cf_h = sta_lta(wf[1] ** 2 + wf[2] ** 2, n_sta, n_lta, n_live, n_lead)
    return Signals(wf, fs_hz, cf_z, cf_h, n_sta, n_lead, n_live)


def _refine(sig: Signals, rows: slice, k: int, p: PickParams, i_min: int = 0) -> int:
    """The AIC onset near an STA/LTA peak k (window from aic_pre_s before to n_sta after), not
    before i_min."""
    i0 = max(i_min, k - round(p.aic_pre_s * sig.fs_hz))
    j = aic_onset(sig.wf[rows], i0, k + sig.n_sta)
    return k if j is None else max(i_min, j)


def _hv(sig: Signals, k: int) -> float:
    """Horizontal (per component) over vertical energy in the STA window after sample k."""
    seg = sig.wf[:, k : k + sig.n_sta] ** 2
    return float(seg[1:].sum() / 2 / max(seg[0].sum(), EPS))


# ---------------------------------------------------------------- travel times


@cache
def _taup_model(name: str):  # -> obspy TauPyModel, loaded once per process
    from obspy.taup import TauPyModel

    return TauPyModel(name)


PHASES = ("p", "P", "Pn", "s", "S", "Sn")
CURVES_VERSION = 1  # of the cached curves: bump when PHASES or their sampling change


@cache
def _phase_curves(model: str, depth_km: float) -> tuple[tuple[np.ndarray, np.ndarray], ...]:
    """Sampled travel-time curves (distance rad, time s) of :data:`PHASES` for a source depth
    (per whole km of depth, good to ~0.1 s), kept on disk beside the station-table cache: building
    them is the slow part of TauP, and importing it (with matplotlib) most of a second."""
    target = _curves_path(model, depth_km)
    if target is not None and target.is_file():
        try:
            with np.load(target) as saved:
                return tuple((saved[f"d{i}"], saved[f"t{i}"]) for i in range(len(PHASES)))
        except Exception:  # truncated or foreign: build again
            pass
    curves = _taup_curves(model, depth_km)
    if target is not None:
        _save_curves(curves, target)
    return curves


def _curves_path(model: str, depth_km: float):  # -> Path | None
    """The cache file of one model, depth and ObsPy version (None: no usable cache folder)."""
    from importlib.metadata import version

    from deepvs30.readers.stations import cache_dir

    try:
        folder = cache_dir() / "taup"
    except (OSError, RuntimeError):  # no home directory
        return None
    return folder / f"{model}-{depth_km:g}km-v{CURVES_VERSION}-obspy{version('obspy')}.npz"


def _save_curves(curves: tuple[tuple[np.ndarray, np.ndarray], ...], target) -> None:
    """Through a temporary name, so a reader never sees half a file; failures are not errors."""
    import os

    partial = target.with_name(f"{target.stem}.{os.getpid()}.tmp.npz")
    arrays = {f"{k}{i}": a for i, (d, t) in enumerate(curves) for k, a in (("d", d), ("t", t))}
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        np.savez(partial, **arrays)
        partial.replace(target)
    except OSError:  # read-only home, full disk: the curves still serve this process
        partial.unlink(missing_ok=True)


def _taup_curves(model: str, depth_km: float) -> tuple[tuple[np.ndarray, np.ndarray], ...]:
    from obspy.taup.seismic_phase import SeismicPhase

    tau_model = _taup_model(model).model.depth_correct(depth_km)
    curves = []
    for name in PHASES:
        try:
            phase = SeismicPhase(name, tau_model, 0.0)
        except Exception:  # a phase that does not exist for this depth
            curves.append((np.zeros(0), np.zeros(0)))
            continue
        curves.append((np.asarray(phase.dist, float), np.asarray(phase.time, float)))
    return tuple(curves)


def _first_arrival(curves: tuple[tuple[np.ndarray, np.ndarray], ...], dist_rad: float) -> float:
    """Earliest time over the curves' branches at dist_rad (linear between samples; inf if none)."""
    best = math.inf
    for d, t in curves:
        if len(d) < 2:
            continue
        lo, hi = np.minimum(d[:-1], d[1:]), np.maximum(d[:-1], d[1:])
        seg = np.flatnonzero((lo <= dist_rad) & (dist_rad <= hi) & (hi > lo))
        if len(seg):
            frac = (dist_rad - d[seg]) / (d[seg + 1] - d[seg])
            best = min(best, float(np.min(t[seg] + frac * (t[seg + 1] - t[seg]))))
    return best


def travel_times(dist_deg: float, depth_km: float, model: str = "iasp91") -> tuple[float, float]:
    """(tP, tS) in s of the first P and S arrivals at epicentral distance dist_deg from a source
    at depth_km (inf where the model has none)."""
    curves = _phase_curves(model, round(min(max(depth_km, 0.0), 700.0)))
    dist_rad = math.radians(dist_deg)
    return _first_arrival(curves[:3], dist_rad), _first_arrival(curves[3:], dist_rad)


def _geometry(record: RawRecord) -> tuple[float, float] | None:
    """(epicentral distance deg, depth km), or None without event and station coordinates."""
    coords = (
        record.event_latitude_deg,
        record.event_longitude_deg,
        record.station_latitude_deg,
        record.station_longitude_deg,
    )
    if any(c is None or not math.isfinite(c) for c in coords):
        return None
    from obspy.geodetics import locations2degrees

    depth_km = record.event_depth_km if record.event_depth_km is not None else 10.0
    return float(locations2degrees(*coords)), float(depth_km)


def _travel_times(record: RawRecord, p: PickParams) -> tuple[float, float] | None:
    geom = _geometry(record)
    if geom is None:
        return None
    tp, ts = travel_times(*geom, model=p.taup_model)
    return (tp, ts) if math.isfinite(tp) and math.isfinite(ts) else None


def _sp_travel_time(record: RawRecord, p: PickParams) -> float | None:
    tt = _travel_times(record, p)
    return None if tt is None else tt[1] - tt[0]


def _start_after_origin_s(record: RawRecord) -> float | None:
    """Record start − origin time in s, where both are known well enough to predict arrivals.
    Refused: a missing time, a start flagged approximate or equal to the origin (a placeholder in
    AFAD .mat files), and an origin time on a whole minute (K-NET headers give it to the minute
    only: the true origin is 20–80 s later in the real records)."""
    if not record.start_time or not record.event_origin_time:
        return None
    if record.extra.get("start_time_approx"):
        return None
    from obspy import UTCDateTime

    try:
        start, origin = UTCDateTime(record.start_time), UTCDateTime(record.event_origin_time)
    except (TypeError, ValueError):
        return None
    if start == origin or (origin.second == 0 and origin.microsecond == 0):
        return None
    return float(start - origin)


# ---------------------------------------------------------------- P


def _ar_p(record: RawRecord, p: PickParams) -> float | None:
    """ObsPy's AR-AIC P (it filters itself; fed the offset-free record). None where it fails."""
    from obspy.signal.trigger import ar_pick

    fs_hz = record.sampling_rate_hz
    z, n, e = (np.ascontiguousarray(c, dtype=np.float32) for c in _head_removed(record))
    try:
        t_p, _ = ar_pick(z, n, e, fs_hz, p.f1_hz, min(p.f2_hz, 0.45 * fs_hz), p.lta_p_s,
                         p.sta_p_s, p.lta_s_s, p.sta_s_s, p.m_p, p.m_s, p.l_p_s, p.l_s_s,
                         s_pick=False)  # fmt: skip
    except Exception:  # ar_pick fails in assorted ways on flat or short traces
        return None
    t_p = float(t_p)
    return t_p if math.isfinite(t_p) else None


def _sustained(
    sig: Signals, energy: np.ndarray, k: int, p: PickParams, ratio: float | None = None
) -> bool:
    n_after, n_before = round(p.sustain_s * sig.fs_hz), round(p.lta_s * sig.fs_hz)
    level = sustained_ratio(energy, k, n_after, n_before, sig.n_live)
    return level >= (p.sustain_ratio if ratio is None else ratio)


def _p_candidates(sig: Signals, p: PickParams) -> list[int]:
    """Strong, sustained vertical onsets before the vertical peak, in time order, AIC-refined."""
    energy = sig.energy(Z)
    n_peak = int(np.argmax(energy))
    i0 = sig.n_live + sig.n_lead
    found = onsets(sig.cf_z, p.p_ratio, i0, n_peak + sig.n_sta, 2 * sig.n_sta)
    found = [k for k in found if _sustained(sig, energy, k, p)]
    if not found:
        return []
    strongest = max(sig.cf_z[k] for k in found)
    strong = [k for k in found if sig.cf_z[k] >= p.p_frac_of_max * strongest]
    return [_refine(sig, Z, k, p, i0) for k in strong]


def _emergent_p(sig: Signals, p: PickParams) -> int | None:
    """For a P that never triggers: the AIC onset of the whole head up to the vertical peak,
    where the energy rises there by p_ratio."""
    energy = sig.energy(Z)
    k = aic_onset(sig.wf[0], sig.n_live, int(np.argmax(energy)) + 1)
    if k is None or k < sig.n_live + sig.n_lead:
        return None
    return k if _sustained(sig, energy, k, p, p.p_ratio) else None


def _with_ar(record: RawRecord, sig: Signals, k: int, p: PickParams, note: str = "") -> Phase:
    """P at onset sample k, or ar_pick's P where it agrees (AR-AIC is the finer onset)."""
    t_p = k / sig.fs_hz
    t_ar = _ar_p(record, p)
    if t_ar is not None and abs(t_ar - t_p) <= p.agree_s and p.lead_s <= t_ar < sig.duration_s:
        return Phase(t_ar, "picked", note)
    return Phase(t_p, "picked", note)


def _confirmed(sig: Signals, k: int, sp_s: float, p: PickParams) -> bool:
    """Is there a horizontal onset near k + travel-time S−P?"""
    fs_hz = sig.fs_hz
    t_s, tol_s = k / fs_hz + sp_s, _sp_tol(sp_s, p)
    window = round((t_s - tol_s) * fs_hz), round((t_s + tol_s) * fs_hz)
    return bool(onsets(sig.cf_h, p.s_confirm_ratio, *window))


def _p_phase(record: RawRecord, sig: Signals, p: PickParams) -> tuple[Phase, Phase | None]:
    """(P, S where the P analysis already found it: a record that starts after P)."""
    tt = _travel_times(record, p)
    cands = _p_candidates(sig, p)
    emergent = _emergent_p(sig, p) if not cands else None
    if tt is None:
        if not cands and emergent is None:
            return Phase(None, FAILED, "no P onset on the vertical"), None
        return _with_ar(record, sig, cands[0] if cands else emergent, p), None
    sp_s = tt[1] - tt[0]
    if emergent is not None and _confirmed(sig, emergent, sp_s, p):
        cands = [emergent]  # with travel times, an emergent onset needs its S to count
    confirmed = [k for k in cands if _confirmed(sig, k, sp_s, p)]
    offset_s = _start_after_origin_s(record)
    if offset_s is not None:
        absolute = _absolute_p(record, sig, tt[0], offset_s, sp_s, cands, confirmed, p)
        if absolute is not None:
            return absolute
    return _p_by_s_minus_p(record, sig, sp_s, cands, confirmed, p)


def _p_by_s_minus_p(
    record: RawRecord,
    sig: Signals,
    sp_s: float,
    cands: list[int],
    confirmed: list[int],
    p: PickParams,
) -> tuple[Phase, Phase | None]:
    """The first onset, unless it has no S at the travel-time S−P after it and looks like S
    itself: then it (or, with no P onset, the first S-like horizontal onset) is S, and P is
    sought one S−P before it."""
    if cands and cands[0] in confirmed:
        return _with_ar(record, sig, cands[0], p), None
    s_like = _first_s_like(sig, p) if not cands else cands[0]
    if s_like is not None and _looks_like_s(sig, s_like, p):
        return _p_before_s(sig, _refine(sig, H, s_like, p, sig.n_live), sp_s, p)
    if not cands:
        return Phase(None, FAILED, "no P onset on the vertical"), None
    return _with_ar(record, sig, cands[0], p), None


def _looks_like_s(sig: Signals, k: int, p: PickParams) -> bool:
    """Horizontals dominate after k, a full LTA of record lies before it, and it is not after
    the horizontal peak (an S onset leads the strongest shaking)."""
    n_peak = int(np.argmax(sig.energy(H)))
    n_lta = round(p.lta_s * sig.fs_hz)
    return sig.n_live + n_lta <= k <= n_peak + sig.n_sta and _hv(sig, k) >= p.hv_s_min


def _first_s_like(sig: Signals, p: PickParams) -> int | None:
    """The first sustained horizontal onset (S-like or not: the caller checks H/V)."""
    energy = sig.energy(H)
    n_after, n_before = round(p.sustain_s * sig.fs_hz), round(p.lta_s * sig.fs_hz)
    i0 = sig.n_live + round(p.lta_s * sig.fs_hz)
    for k in onsets(sig.cf_h, p.s_confirm_ratio, i0, sig.n, 2 * sig.n_sta):
        if sustained_ratio(energy, k, n_after, n_before, sig.n_live) >= p.s_confirm_ratio:
            return k
    return None


def _p_before_s(sig: Signals, k_s: int, sp_s: float, p: PickParams) -> tuple[Phase, Phase]:
    """(P, S) for an S onset at sample k_s: P is the AIC onset on the vertical within the S−P
    tolerance of S − (tS − tP) where the energy rises there, else predicted; failed when that
    lies before the record (it started after P, as S-triggered K-NET records do)."""
    fs_hz, t_s = sig.fs_hz, k_s / sig.fs_hz
    s = Phase(t_s, "picked")
    t_p, tol_s = t_s - sp_s, _sp_tol(sp_s, p)
    i_first = sig.n_live + sig.n_lead
    if t_p * fs_hz < i_first:
        note = f"first onset {t_s:.2f} s is S (H/V {_hv(sig, k_s):.1f}): record starts after P"
        return Phase(None, FAILED, note), s
    i0 = max(i_first, round((t_p - tol_s) * fs_hz))
    k = aic_onset(sig.wf[0], i0, min(k_s - round(p.min_sp_s * fs_hz), round((t_p + tol_s) * fs_hz)))
    n_after, n_before = round(p.sustain_s * fs_hz), round(p.lta_s * fs_hz)
    energy = sig.energy(Z)
    if k is not None and sustained_ratio(energy, k, n_after, n_before, sig.n_live) >= p.p_ratio:
        return Phase(k / fs_hz, "picked", f"weak P found one S−P before S {t_s:.2f} s"), s
    return Phase(t_p, "predicted", f"P = S {t_s:.2f} s − iasp91 S−P"), s


def _absolute_p(
    record: RawRecord,
    sig: Signals,
    tp_s: float,
    offset_s: float,
    sp_s: float,
    cands: list[int],
    confirmed: list[int],
    p: PickParams,
) -> tuple[Phase, Phase | None] | None:
    """Origin time + travel time: chooses among the onsets and replaces a missing or unconfirmed
    pick. None where a clock must be wrong (P neither in the record nor just before it)."""
    fs_hz, t_pred = sig.fs_hz, tp_s - offset_s
    if not -sp_s < t_pred < sig.duration_s:
        return None
    tol_s = max(p.p_abs_tol_s, p.p_abs_tol_frac * tp_s)
    near = [k for k in cands if abs(k / fs_hz - t_pred) <= tol_s]
    if near:
        return _with_ar(record, sig, near[0], p), None
    if confirmed:  # the waveform has a consistent P and S: trust it over the clocks
        k = confirmed[0]
        note = f"P {k / fs_hz:.2f} s is {k / fs_hz - t_pred:+.1f} s off origin time + iasp91"
        return _with_ar(record, sig, k, p, note), None
    if t_pred <= 0:
        note = f"origin time + iasp91 P at {t_pred:.1f} s: record starts after P"
        return Phase(None, FAILED, note), _s_phase(sig, t_pred, sp_s, p)
    note = "no confirmed P onset: P from origin time + iasp91"
    return Phase(t_pred, "predicted", note), None


# ---------------------------------------------------------------- S


def _sp_tol(sp_s: float, p: PickParams) -> float:
    return max(p.sp_tol_min_s, p.sp_tol_frac * sp_s)


def _s_phase(sig: Signals, t_p: float, sp_s: float | None, p: PickParams) -> Phase:
    """S after a P at t_p (which may lie before the record)."""
    fs_hz = sig.fs_hz
    i_p = max(sig.n_live, round(t_p * fs_hz))
    i0 = i_p + max(sig.n_lead, round(p.min_sp_s * fs_hz))
    if i0 >= sig.n - sig.n_sta:
        return Phase(None, FAILED, "no S: P too close to the record end")
    k_aic = _s_aic(sig, i_p, i0, p)
    if sp_s is None:  # no travel time: the AIC onset, if it is one
        if k_aic is None:
            return Phase(None, FAILED, "no S onset on the horizontals between P and their peak")
        return Phase(k_aic / fs_hz, "picked")
    t_pred, tol_s = t_p + sp_s, _sp_tol(sp_s, p)
    if k_aic is not None and abs(k_aic / fs_hz - t_pred) <= tol_s:
        return Phase(k_aic / fs_hz, "picked")
    lo = max(i0, round((t_pred - tol_s) * fs_hz))
    k = _s_aic_in(sig, i_p, lo, round((t_pred + tol_s) * fs_hz), p)
    if k is not None:
        return Phase(k / fs_hz, "picked")
    if not 0 < t_pred < sig.duration_s:
        return Phase(None, FAILED, f"travel-time S {t_pred:.1f} s outside the record")
    return Phase(t_pred, "predicted", "no S onset near P + iasp91 S−P")


def _s_aic_in(sig: Signals, i_p: int, i0: int, i1: int, p: PickParams) -> int | None:
    """AIC onset of the horizontals inside the travel-time window [i0, i1): only where it is a
    rise of energy away from the window's edges (else the window holds no onset)."""
    k = aic_onset(sig.wf[H], i0, i1)
    if k is None or not i0 + sig.n_sta <= k <= i1 - sig.n_sta:
        return None
    n_after, n_before = round(p.sustain_s * sig.fs_hz), round(p.lta_s * sig.fs_hz)
    return k if sustained_ratio(sig.energy(H), k, n_after, n_before, i_p) >= p.s_ratio else None


def _s_aic(sig: Signals, i_p: int, i0: int, p: PickParams) -> int | None:
    """AIC onset of the horizontals between P (+ min S−P) and 1 s past their peak (S leads the
    strongest shaking, so it is the largest change of variance there); None unless the energy
    after it stays up over the P coda before it."""
    energy = sig.energy(H)
    i1 = i0 + int(np.argmax(energy[i0:])) + round(sig.fs_hz)
    k = aic_onset(sig.wf[H], i0, i1)
    if k is None:
        return None
    n_after, n_before = round(p.sustain_s * sig.fs_hz), round(p.lta_s * sig.fs_hz)
    return k if sustained_ratio(energy, k, n_after, n_before, i_p) >= p.s_ratio else None
