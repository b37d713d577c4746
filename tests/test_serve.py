"""The served champion (``mlflow models serve``) answers like ``deepvs30 predict``.

Starts the REST server on a free 127.0.0.1 port for the tiny test model, posts real AFAD
records read through the readers (``dataframe_split``, components as JSON arrays), compares
with ``deepvs30 predict`` on the same files, and checks that bad requests get 400 with our
message. The server is always stopped (its whole process group, which this test started).
"""

from __future__ import annotations

import json
import math
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from deepvs30.cli import main
from deepvs30.predict import input_frame, read_inputs
from model_fixture import served_champion

START_TIMEOUT_S = 120
AFAD_MAT = "afad_cnnlstm_deepeq"
pytestmark = pytest.mark.realdata


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def get(url: str, timeout: float = 2.0) -> int:
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return response.status


@pytest.fixture(scope="module")
def server(models, tmp_path_factory):
    uri = served_champion(models)
    port = free_port()
    log_path = tmp_path_factory.mktemp("serve") / "serve.log"
    bin_dir = str(Path(sys.executable).parent)  # mlflow and uvicorn of this environment
    env = {
        **os.environ,
        "MLFLOW_TRACKING_URI": models.mlflow.tracking_uri,
        "PATH": bin_dir + os.pathsep + os.environ.get("PATH", ""),
    }
    command = [
        os.path.join(bin_dir, "mlflow"), "models", "serve", "-m", uri, "--env-manager", "local",
        "--host", "127.0.0.1", "--port", str(port),
    ]  # fmt: skip
    with log_path.open("w") as log:
        proc = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)  # fmt: skip
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            if proc.poll() is not None:
                pytest.fail(
                    f"mlflow models serve exited {proc.returncode}:\n{log_path.read_text()}"
                )
            try:
                if get(f"http://127.0.0.1:{port}/ping") == 200:
                    break
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"no /ping after {START_TIMEOUT_S} s:\n{log_path.read_text()[-3000:]}")
            time.sleep(0.5)
        yield f"http://127.0.0.1:{port}"
    finally:
        _stop(proc)


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)  # the group of the server this fixture started
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=5)


def post(server: str, body: dict) -> tuple[int, dict]:
    request = urllib.request.Request(
        f"{server}/invocations",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def split_payload(frame) -> dict:
    """``dataframe_split`` JSON: arrays as lists, missing numbers as null."""

    def cell(value):
        if hasattr(value, "tolist"):
            return value.tolist()
        if isinstance(value, float) and math.isnan(value):
            return None
        return value

    rows = [[cell(v) for v in row] for row in frame.itertuples(index=False)]
    return {"dataframe_split": {"columns": list(frame.columns), "data": rows}}


def test_served_model_answers_like_deepvs30_predict(models, server, realdata_dir, tmp_path):
    files = sorted((realdata_dir / AFAD_MAT).glob("*.mat"))
    pairs, skipped = read_inputs(files)
    assert len(pairs) == 6 and not skipped
    status, answer = post(server, split_payload(input_frame(pairs)))
    assert status == 200, answer
    served = {row["record_id"]: row for row in answer["predictions"]}

    out = tmp_path / "pred.json"
    params = models.params_file("served")
    argv = ["--params", str(params), "predict", *map(str, files), "--format", "json"]
    assert main([*argv, "--model", served_champion(models), "--out", str(out)]) == 0
    cli = {row["record_id"]: row for row in json.loads(out.read_text())["records"]}

    assert set(served) == set(cli) and len(cli) == 6
    for record_id, row in cli.items():
        got = served[record_id]
        assert got["skipped"] == ""
        assert got["station"] == row["station"]
        assert got["nehrp_class"] == row["nehrp_class"]
        for key in ("ln_vs30", "sigma_ln", "vs30_mps", "vs30_p16_mps", "vs30_p84_mps"):
            assert got[key] == pytest.approx(row[key], rel=1e-6, abs=1e-6), (record_id, key)


BAD_REQUESTS = {
    "mismatched lengths": ({"n": [0.0] * 100}, "differ in length"),
    "NaN samples": ({"z": [0.0] * 2999 + [float("nan")]}, "non-finite sample"),
    "missing sampling rate": ({"sampling_rate_hz": None}, "sampling_rate_hz"),
    "wrong shape": ({"e": [[0.0] * 10, [0.0] * 10]}, "column e"),
    "not numbers": ({"z": ["x"] * 3000}, "column z"),
}


@pytest.mark.parametrize("case", list(BAD_REQUESTS))
def test_bad_requests_get_400_with_the_reason(server, case: str) -> None:
    changes, message = BAD_REQUESTS[case]
    row = {
        "record_id": "r", "station": "XX.TEST", "sampling_rate_hz": 100.0, "p_arrival_s": 5.0,
        "s_arrival_s": 8.0, "z": [0.001] * 3000, "n": [0.002] * 3000, "e": [0.003] * 3000,
        **changes,
    }  # fmt: skip
    body = {"dataframe_split": {"columns": list(row), "data": [list(row.values())]}}
    status, answer = post(server, body)
    assert status == 400, answer
    assert message in answer["message"]


def test_missing_column_and_malformed_body_get_400(server) -> None:
    body = {"dataframe_split": {"columns": ["sampling_rate_hz", "z", "n"],
                                "data": [[100.0, [0.0] * 3000, [0.0] * 3000]]}}  # fmt: skip
    status, answer = post(server, body)
    assert status == 400 and "missing inputs ['e']" in answer["message"]
    status, answer = post(server, {"records": []})
    assert status == 400
