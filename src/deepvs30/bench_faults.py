"""Fault benchmarks (issue 15, item 5): mutated real files through the readers, and the served
model under concurrent load.

- :func:`fuzz_real_files`: record files named in ``INDEX.csv`` of the real archive (archive
  members read in place with :func:`deepvs30.readers.archives.opened`) are written into a
  scratch folder with their sibling components and sidecars, one file of each record mutated
  (truncated at a random offset, bytes flipped, ``NaN`` written over numbers of a text file, a
  block zeroed), and read the way ``deepvs30 ingest`` reads a folder
  (:func:`~deepvs30.readers.group_files` then :func:`~deepvs30.readers.read_group`) in a child
  process with a time limit per file. Each file ends ok, as a named error
  (:class:`~deepvs30.errors.DeepVs30Error`, naming the file and the reason), a crash (any other
  exception, or the reading process dying) or a hang.
- :func:`serve_load`: ``mlflow models serve`` (the project's serve command, README) on
  127.0.0.1, ``clients`` threads posting a valid record for ``seconds``; requests, 5xx, other
  errors and the p50/p99 latency in ms.
- :func:`bench_faults`: both at bench size (1,000 files; 50 clients x 60 s) or quick size (30
  files; 5 clients x 5 s), each skipped with a note where its input is missing.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import logging
import math
import multiprocessing
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import urllib.error
import urllib.request
import warnings
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

FULL_SIZE = {"fuzz_files": 1000, "clients": 50, "seconds": 60.0}
QUICK_SIZE = {"fuzz_files": 30, "clients": 5, "seconds": 5.0}
FUZZ_SEED = 15
FUZZ_TIMEOUT_S = 20.0  # a reader taking longer on one mutated record is counted as a hang
DEFAULT_MODEL = Path("models/current")  # train.out of params.yaml
MUTATIONS = ("truncate", "flip", "nan_text", "zero_block")
OUTCOMES = ("ok", "named_errors", "crashes", "hangs")
MAX_EXAMPLES = 10
MAX_SIDECAR_BYTES = 5 * 1024**2
CHILD_MEMORY_LIMIT_BYTES = 8 * 1024**3  # a runaway allocation is a MemoryError, not an OOM kill
CHILD_START_TIMEOUT_S = 120.0
SERVE_START_TIMEOUT_S = 180.0
REQUEST_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 15.0
_NUMBER = re.compile(rb"[-+]?\d+\.\d*(?:[eE][-+]?\d+)?|[-+]?\d+")


# ---------------------------------------------------------------- fuzz: cases


@dataclass(frozen=True)
class FuzzCase:
    """One record of INDEX.csv with one of its files (``target``) to mutate."""

    fmt: str  # INDEX.csv format column
    files: tuple[str, ...]  # INDEX.csv names: relative paths or ``archive:member``
    target: str
    mutation: str

    @property
    def archive(self) -> str | None:
        """The archive the record's files are members of (None for plain files)."""
        from deepvs30.readers.archives import split_member

        inside = split_member(self.files[0])
        return None if inside is None else str(inside[0])


def index_records(realdata: Path) -> list[tuple[str, tuple[str, ...]]]:
    """(format, files) of every INDEX.csv row."""
    import pandas as pd

    index = pd.read_csv(realdata / "INDEX.csv", dtype=str).fillna("")
    return [
        (row.format, tuple(f for f in row.files.split(";") if f))
        for row in index.itertuples(index=False)
        if row.files
    ]


def pick_cases(
    records: list[tuple[str, tuple[str, ...]]], n_files: int, seed: int
) -> list[FuzzCase]:
    """``n_files`` cases: the format drawn uniformly (K-NET does not crowd out the rarer
    formats), then a record of it and one of its files; the mutations in turn."""
    rng = np.random.default_rng(seed)
    by_format: dict[str, list[tuple[str, ...]]] = {}
    for fmt, files in records:
        by_format.setdefault(fmt, []).append(files)
    formats = sorted(by_format)
    cases = []
    for i in range(n_files):
        fmt = formats[rng.integers(len(formats))]
        files = by_format[fmt][rng.integers(len(by_format[fmt]))]
        target = files[rng.integers(len(files))]
        cases.append(FuzzCase(fmt, files, target, MUTATIONS[i % len(MUTATIONS)]))
    return cases


# ---------------------------------------------------------------- fuzz: mutations


def mutate(data: bytes, mutation: str, rng: np.random.Generator) -> tuple[bytes, str]:
    """``data`` mutated; and what was done, in words (enough to redo it)."""
    if not data:
        return data, "empty file left empty"
    if mutation == "nan_text" and _is_text(data):
        return _nan_text(data, rng)
    if mutation == "truncate":
        cut = int(rng.integers(len(data)))
        return data[:cut], f"truncated at byte {cut} of {len(data)}"
    if mutation == "zero_block":
        start = int(rng.integers(len(data)))
        size = int(rng.integers(1, min(4096, len(data) - start) + 1))
        return data[:start] + bytes(size) + data[start + size :], f"{size} bytes zeroed at {start}"
    return _flip(data, rng)  # flip, and nan_text of a binary file


def _is_text(data: bytes) -> bool:
    head = data[:4096]
    printable = sum(32 <= b < 127 or b in b"\r\n\t" for b in head)
    return b"\0" not in head and printable > 0.95 * len(head)


def _flip(data: bytes, rng: np.random.Generator) -> tuple[bytes, str]:
    out = bytearray(data)
    at = sorted(int(i) for i in rng.integers(len(data), size=int(rng.integers(1, 17))))
    for i in at:
        out[i] ^= int(rng.integers(1, 256))
    return bytes(out), f"bytes flipped at {at}"


def _nan_text(data: bytes, rng: np.random.Generator) -> tuple[bytes, str]:
    numbers = list(_NUMBER.finditer(data))
    if not numbers:
        return _flip(data, rng)
    chosen = sorted(int(i) for i in rng.choice(len(numbers), min(8, len(numbers)), replace=False))
    out, last = [], 0
    for k in chosen:
        match = numbers[k]
        out += [data[last : match.start()], b"NaN" if k % 2 else b"nan"]
        last = match.end()
    out.append(data[last:])
    where = [numbers[k].start() for k in chosen]
    return b"".join(out), f"NaN written over numbers at bytes {where}"


# ---------------------------------------------------------------- fuzz: the reading child


def _reader_worker(conn: Any) -> None:
    """Child process: read each list of paths it is sent, answer with the outcome."""
    import resource

    with contextlib.suppress(ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_AS, (CHILD_MEMORY_LIMIT_BYTES,) * 2)
    import deepvs30.readers  # noqa: F401 - imported before "ready": not charged to a file

    conn.send({"outcome": "ready"})
    while True:
        paths = conn.recv()
        if paths is None:
            return
        conn.send(read_like_ingest(paths))


def read_like_ingest(paths: list[str]) -> dict:
    """The outcome of reading ``paths`` as ``deepvs30 ingest`` reads a folder's data files."""
    from deepvs30.errors import DeepVs30Error
    from deepvs30.readers import group_files, read_group

    try:
        groups, rejected = group_files(paths)
        records = [record for group in groups for record in read_group(group)]
    except DeepVs30Error as exc:
        return _named(exc)
    except BaseException:  # noqa: BLE001 - anything else is what this benchmark looks for
        return {"outcome": "crashes", "detail": traceback.format_exc()}
    if rejected:
        return _named(rejected[0][1])
    return {"outcome": "ok", "detail": _odd_records(records)}


def _named(exc: Exception) -> dict:
    """A named error; ``masked`` when it is read_group's wrapper around another exception
    (a reader bug that the ingest survives, but a bug)."""
    cause = exc.__cause__
    masked = "reader failed:" in str(exc) and cause is not None
    detail = "".join(traceback.format_exception(cause)) if masked else str(exc)
    return {"outcome": "named_errors", "detail": detail, "masked": masked}


def _odd_records(records: list) -> str:
    """Why records read from a mutated file look wrong ("" when they look sane)."""
    if not records:
        return "no records"
    for record in records:
        wave = np.asarray(record.waveform_mps2)
        if wave.ndim != 2 or wave.shape[0] != 3 or wave.shape[1] == 0:
            return f"waveform of shape {wave.shape}"
        if not (np.isfinite(record.sampling_rate_hz) and record.sampling_rate_hz > 0):
            return f"sampling rate {record.sampling_rate_hz}"
        if not np.isfinite(wave).all():
            return "non-finite samples"
    return ""


class ReaderChild:
    """A reading process reused from file to file; killed and replaced when it hangs or dies."""

    def __init__(self) -> None:
        self._ctx = multiprocessing.get_context("spawn")  # no fork of a threaded parent
        self._proc: Any = None
        self._conn: Any = None
        self._start()

    def _start(self) -> None:
        self._conn, child_conn = self._ctx.Pipe()
        self._proc = self._ctx.Process(target=_reader_worker, args=(child_conn,), daemon=True)
        self._proc.start()
        child_conn.close()
        if not self._conn.poll(CHILD_START_TIMEOUT_S) or self._conn.recv()["outcome"] != "ready":
            raise RuntimeError(f"reader process not ready after {CHILD_START_TIMEOUT_S} s")

    def read(self, paths: list[str], timeout_s: float) -> dict:
        self._conn.send(paths)
        if self._conn.poll(timeout_s):
            try:
                return self._conn.recv()
            except EOFError:
                pass
            self._proc.join(5)
            died = {"outcome": "crashes", "detail": f"reader died ({self._proc.exitcode})"}
            self._restart()
            return died
        self._restart()
        return {"outcome": "hangs", "detail": f"no answer in {timeout_s} s"}

    def _restart(self) -> None:
        self._kill()
        self._start()

    def _kill(self) -> None:
        if self._proc.is_alive():
            self._proc.kill()
        self._proc.join(10)
        self._conn.close()

    def close(self) -> None:
        with contextlib.suppress(OSError, BrokenPipeError):
            self._conn.send(None)
        self._proc.join(5)
        self._kill()


# ---------------------------------------------------------------- fuzz: scratch copies


def _relative(name: str) -> str:
    from deepvs30.readers.archives import split_member

    inside = split_member(name)
    return name if inside is None else inside[1]


def _sidecars(realdata: Path, case: FuzzCase) -> list[str]:
    """Metadata files next to a plain record's files (StationXML, .metadata): readers use them."""
    from deepvs30.readers import is_sidecar

    if case.archive is not None:
        return []
    folders = {(realdata / name).parent for name in case.files}
    return sorted(
        str(p.relative_to(realdata))
        for folder in folders
        for p in folder.iterdir()
        if p.is_file() and is_sidecar(p) and p.stat().st_size <= MAX_SIDECAR_BYTES
        and str(p.relative_to(realdata)) not in case.files
    )  # fmt: skip


ReadBytes = Callable[[list[str]], list[bytes]]  # INDEX names -> their bytes


def materialise(
    realdata: Path, case: FuzzCase, dest: Path, read: ReadBytes, rng: np.random.Generator | None
) -> tuple[list[str], str]:
    """The record's files written under ``dest`` (folders below their common parent kept), the
    target mutated unless ``rng`` is None. Returns (data files to read, the mutation done)."""
    from deepvs30.readers import is_sidecar

    sidecars = _sidecars(realdata, case)
    names = [*case.files, *sidecars]
    common = os.path.commonpath([os.path.dirname(_relative(n)) or "." for n in names])
    sources = read(list(case.files)) + [(realdata / n).read_bytes() for n in sidecars]
    data_paths, done = [], "none"
    for name, data in zip(names, sources, strict=True):
        out = dest / os.path.relpath(_relative(name), common)
        out.parent.mkdir(parents=True, exist_ok=True)
        if name == case.target and rng is not None:
            data, done = mutate(data, case.mutation, rng)
        out.write_bytes(data)
        if not is_sidecar(out):
            data_paths.append(str(out))
    return data_paths, done


@contextlib.contextmanager
def _reading(realdata: Path, archive: str | None) -> Iterator[ReadBytes]:
    """How to get the bytes of files named in INDEX.csv: from disk, or the members of
    ``archive`` read in place with :func:`deepvs30.readers.archives.opened` (as ingest does)."""
    if archive is None:
        yield lambda names: [(realdata / n).read_bytes() for n in names]
        return
    from deepvs30.readers.archives import normalised, opened

    with opened(realdata / archive) as source:
        members = {f.member: f for f, _ in source.scan(0)}

        def read(names: list[str]) -> list[bytes]:
            files = source.load([members[normalised(_relative(n))] for n in names])
            return [f.data or b"" for f in files]

        yield read


# ---------------------------------------------------------------- fuzz: the run


def readable_formats(realdata: Path, records: list, child: ReaderChild, scratch: Path) -> dict:
    """Format -> "" where the first record of that format reads unmutated, else why not (the
    readers do not read every format of the archive; those are not fuzzed)."""
    first: dict[str, tuple[str, ...]] = {}
    for fmt, files in records:
        first.setdefault(fmt, files)
    verdict = {}
    for k, (fmt, files) in enumerate(sorted(first.items())):
        case = FuzzCase(fmt, files, files[0], "none")
        with _reading(realdata, case.archive) as read:
            paths, _ = materialise(realdata, case, scratch / f"base_{k}", read, None)
            result = child.read(paths, FUZZ_TIMEOUT_S)
        ok = result["outcome"] == "ok" and not result.get("detail")
        verdict[fmt] = "" if ok else f"{result['outcome']}: {str(result.get('detail'))[:200]}"
    return verdict


def fuzz_real_files(realdata: Path, n_files: int, seed: int, timeout_s: float) -> dict:
    """Mutated copies of ``n_files`` real record files read like ``deepvs30 ingest`` reads them,
    each in a child process limited to ``timeout_s``: counts of ok, named errors, crashes and
    hangs, by mutation, with examples of crashes, hangs and masked reader bugs."""
    t0 = time.perf_counter()
    log.info("faults: %d mutated real files, %.0f s per file at most", n_files, timeout_s)
    records = index_records(realdata)
    child = ReaderChild()
    try:
        with tempfile.TemporaryDirectory(prefix="deepvs30-fuzz-") as tmp:
            formats = readable_formats(realdata, records, child, Path(tmp))
            fuzzed = [(fmt, files) for fmt, files in records if not formats[fmt]]
            cases = pick_cases(fuzzed, n_files, seed)
            results = _run_cases(realdata, cases, child, Path(tmp), seed, timeout_s)
    finally:
        child.close()
    summary = summarise(results)
    summary.update(
        timeout_s=timeout_s,
        seed=seed,
        formats_fuzzed=sorted(f for f, why in formats.items() if not why),
        formats_not_read={f: why for f, why in formats.items() if why},
        seconds=round(time.perf_counter() - t0, 1),
    )
    return summary


def _run_cases(
    realdata: Path, cases: list[FuzzCase], child: ReaderChild, tmp: Path, seed: int,
    timeout_s: float,
) -> list[dict]:  # fmt: skip
    """Every case, archive by archive (each opened once, its members read in name order: one
    decompression pass through a NIED tar.gz), plain files first."""
    by_archive: dict[str, list[int]] = {}
    for i in sorted(range(len(cases)), key=lambda i: cases[i].files):
        by_archive.setdefault(cases[i].archive or "", []).append(i)
    results: list[dict] = [{}] * len(cases)
    for archive, indices in sorted(by_archive.items()):
        with _reading(realdata, archive or None) as read:
            for i in indices:
                results[i] = _run_case(realdata, cases[i], child, tmp / f"case_{i}", read,
                                       seed + i, timeout_s)  # fmt: skip
    return results


def _run_case(
    realdata: Path, case: FuzzCase, child: ReaderChild, dest: Path, read: ReadBytes, seed: int,
    timeout_s: float,
) -> dict:  # fmt: skip
    paths, done = materialise(realdata, case, dest, read, np.random.default_rng(seed))
    t0 = time.perf_counter()
    result = child.read(paths, timeout_s)
    shutil.rmtree(dest, ignore_errors=True)
    return {**result, "file": case.target, "format": case.fmt, "mutation": case.mutation,
            "done": done, "seconds": time.perf_counter() - t0}  # fmt: skip


def summarise(results: list[dict]) -> dict:
    """Counts by outcome and by mutation; examples of crashes, hangs, masked reader bugs and
    records that read but look wrong."""
    counts = Counter(r["outcome"] for r in results)
    by_mutation = {
        m: dict(Counter(r["outcome"] for r in results if r["mutation"] == m)) for m in MUTATIONS
    }
    return {
        "files": len(results),
        **{key: counts.get(key, 0) for key in OUTCOMES},
        "masked_errors": sum(bool(r.get("masked")) for r in results),
        "ok_but_odd": sum(r["outcome"] == "ok" and bool(r["detail"]) for r in results),
        "by_mutation": by_mutation,
        "max_file_s": round(max((r["seconds"] for r in results), default=0.0), 3),
        "crash_examples": _examples(results, lambda r: r["outcome"] == "crashes"),
        "hang_examples": _examples(results, lambda r: r["outcome"] == "hangs"),
        "masked_examples": _examples(results, lambda r: bool(r.get("masked"))),
        "odd_examples": _examples(results, lambda r: r["outcome"] == "ok" and bool(r["detail"])),
        "slowest": _slowest(results),
    }


def _slowest(results: list[dict], n: int = 3) -> list[dict]:
    keys = ("file", "mutation", "done", "outcome", "seconds")
    return [{k: r[k] for k in keys} for r in sorted(results, key=lambda r: -r["seconds"])[:n]]


def _examples(results: list[dict], keep: Any) -> list[dict]:
    keys = ("file", "format", "mutation", "done", "detail")
    return [{k: r[k] for k in keys} for r in results if keep(r)][:MAX_EXAMPLES]


# ---------------------------------------------------------------- serve under load


def servable_model(model_dir_or_uri: str | Path, tmp: Path) -> str:
    """What ``mlflow models serve -m`` takes: an MLflow model folder or URI as given; a bundle
    folder (``deepvs30 train``'s output) saved as the same pyfunc that training logs."""
    path = Path(model_dir_or_uri)
    if not path.is_dir() or (path / "MLmodel").is_file():
        return str(model_dir_or_uri)
    if not (path / "config.json").is_file():
        from deepvs30.errors import DeepVs30Error

        raise DeepVs30Error(f"{path}: neither an MLflow model (MLmodel) nor a model bundle")
    import mlflow

    from deepvs30 import pyfunc

    out = tmp / "model"
    with warnings.catch_warnings():  # "no input example": none is needed to serve it
        warnings.simplefilter("ignore", UserWarning)
        mlflow.pyfunc.save_model(  # the arguments of pyfunc.log_bundle, saved instead of logged
            path=str(out),
            python_model=str(Path(pyfunc.__file__).with_name("pyfunc_model.py")),
            artifacts={pyfunc.BUNDLE_ARTIFACT: str(path)},
            signature=pyfunc.signature(),
        )
    return str(out)


def valid_request(fs_hz: float = 100.0, record_s: float = 60.0) -> bytes:
    """A ``dataframe_split`` body of one well-formed 3-component record (the model's example)."""
    from deepvs30.pyfunc import example_input

    frame = example_input(fs_hz, record_s)
    split = frame.to_dict(orient="split")
    body = {"dataframe_split": {"columns": split["columns"], "data": split["data"]}}
    return json.dumps(body).encode()


def _ping(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/ping", timeout=2) as response:
            return response.status == 200
    except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
        return False


@contextlib.contextmanager
def served(model_dir_or_uri: str | Path) -> Iterator[tuple[str, float]]:
    """``mlflow models serve`` of the model on a free 127.0.0.1 port, in its own process group,
    stopped (the whole group) on exit. Yields (base URL, startup seconds)."""
    bin_dir = Path(sys.executable).parent  # mlflow and uvicorn of this environment
    with tempfile.TemporaryDirectory(prefix="deepvs30-serve-") as tmp:
        from deepvs30.screenshots import free_port

        uri, port = servable_model(model_dir_or_uri, Path(tmp)), free_port()
        log_path = Path(tmp) / "serve.log"
        command = [str(bin_dir / "mlflow"), "models", "serve", "-m", uri, "--env-manager",
                   "local", "--host", "127.0.0.1", "--port", str(port)]  # fmt: skip
        env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}"}
        t0 = time.perf_counter()
        with log_path.open("w") as log_file:
            proc = subprocess.Popen(command, env=env, stdout=log_file, stderr=subprocess.STDOUT,
                                    start_new_session=True)  # fmt: skip
        try:
            _wait_ready(proc, port, log_path)
            yield f"http://127.0.0.1:{port}", time.perf_counter() - t0
        finally:
            stop_group(proc)


def _wait_ready(proc: subprocess.Popen, port: int, log_path: Path) -> None:
    deadline = time.monotonic() + SERVE_START_TIMEOUT_S
    while not _ping(port):
        if proc.poll() is not None:
            raise RuntimeError(f"mlflow models serve exited {proc.returncode}: "
                               f"{log_path.read_text()[-2000:]}")  # fmt: skip
        if time.monotonic() > deadline:
            raise RuntimeError(f"no /ping after {SERVE_START_TIMEOUT_S} s: "
                               f"{log_path.read_text()[-2000:]}")  # fmt: skip
        time.sleep(0.25)


def stop_group(proc: subprocess.Popen) -> None:
    """SIGTERM to the process group that ``proc`` leads (started here), SIGKILL if it lingers."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=5)


def _client(
    host: str, port: int, body: bytes, deadline: float, out: list, max_requests: float = math.inf
) -> None:
    """Post ``body`` on one keep-alive connection until ``deadline``; (status, ms) or
    (error text, ms) per request into ``out``."""
    conn = http.client.HTTPConnection(host, port, timeout=REQUEST_TIMEOUT_S)
    headers = {"Content-Type": "application/json"}
    while time.monotonic() < deadline and len(out) < max_requests:
        t0 = time.perf_counter()
        try:
            conn.request("POST", "/invocations", body=body, headers=headers)
            response = conn.getresponse()
            response.read()
            out.append((response.status, (time.perf_counter() - t0) * 1e3))
        except (OSError, http.client.HTTPException) as exc:
            out.append((f"{type(exc).__name__}: {exc}", (time.perf_counter() - t0) * 1e3))
            conn.close()
            conn = http.client.HTTPConnection(host, port, timeout=REQUEST_TIMEOUT_S)
    conn.close()


def post_once(url: str, body: bytes) -> int | str:
    """One request's status (or the error, in words)."""
    out: list = []
    host, port = url.removeprefix("http://").split(":")
    _client(host, int(port), body, math.inf, out, max_requests=1)
    return out[0][0]


def load(url: str, body: bytes, clients: int, seconds: float) -> list[tuple[Any, float]]:
    """``clients`` threads posting for ``seconds``; every request's (status or error, ms)."""
    host, port = url.removeprefix("http://").split(":")
    deadline = time.monotonic() + seconds
    outs: list[list] = [[] for _ in range(clients)]
    threads = [
        threading.Thread(target=_client, args=(host, int(port), body, deadline, out), daemon=True)
        for out in outs
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(seconds + REQUEST_TIMEOUT_S + 5)
    return [row for out in outs for row in out]


def load_summary(rows: list[tuple[Any, float]], clients: int, seconds: float) -> dict:
    answered = [ms for status, ms in rows if isinstance(status, int)]
    errors = [s if isinstance(s, str) else f"HTTP {s}" for s, _ in rows
              if not isinstance(s, int) or not 200 <= s < 300 and not 500 <= s < 600]  # fmt: skip
    return {
        "clients": clients,
        "seconds": seconds,
        "requests": len(rows),
        "requests_per_s": round(len(rows) / seconds, 2) if seconds else None,
        "status_5xx": sum(isinstance(s, int) and 500 <= s < 600 for s, _ in rows),
        "other_errors": len(errors),
        "error_examples": sorted(set(errors))[:MAX_EXAMPLES],
        "p50_ms": round(float(np.percentile(answered, 50)), 1) if answered else None,
        "p99_ms": round(float(np.percentile(answered, 99)), 1) if answered else None,
    }


def serve_load(model_dir_or_uri: str | Path, clients: int, seconds: float) -> dict:
    """The served model under ``clients`` concurrent clients for ``seconds``: requests, 5xx,
    other errors (other statuses, timeouts, refused connections), p50/p99 latency (ms).
    A ``models:/`` URI is resolved with ``MLFLOW_TRACKING_URI`` of the environment."""
    body = valid_request()
    log.info("faults: %s served to %d clients for %.0f s", model_dir_or_uri, clients, seconds)
    with served(model_dir_or_uri) as (url, startup_s):
        warmup = post_once(url, body)  # not counted: the first request pays for lazy set-up
        summary = load_summary(load(url, body, clients, seconds), clients, seconds)
    return {**summary, "startup_s": round(startup_s, 1), "warmup_status": warmup}


# ---------------------------------------------------------------- the bench section


def bench_faults(realdata: Path | None, quick: bool, model: str | Path | None = None) -> dict:
    """The faults section of ``deepvs30 bench``: {"fuzz": ..., "serve": ...} at bench size
    (1,000 files; 50 clients x 60 s) or, ``quick``, 30 files and 5 clients x 5 s. ``model``:
    what to serve (bundle folder or MLflow model URI; default models/current)."""
    size = QUICK_SIZE if quick else FULL_SIZE
    return {"fuzz": _fuzz_section(realdata, size), "serve": _serve_section(model, size)}


def _fuzz_section(realdata: Path | None, size: dict) -> dict:
    if realdata is None or not (Path(realdata) / "INDEX.csv").is_file():
        return {"skipped": f"no real records (INDEX.csv) at {realdata} (set DEEPVS30_REALDATA)"}
    return fuzz_real_files(Path(realdata), size["fuzz_files"], FUZZ_SEED, FUZZ_TIMEOUT_S)


def _serve_section(model: str | Path | None, size: dict) -> dict:
    if model is None:
        if not (DEFAULT_MODEL / "config.json").is_file():
            return {"skipped": f"no trained model at {DEFAULT_MODEL} (deepvs30 train)"}
        model = DEFAULT_MODEL
    return serve_load(model, size["clients"], size["seconds"])
