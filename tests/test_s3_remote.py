"""docs/scale-out.md's object-store steps, on a local S3 endpoint.

moto's S3 server (PyPI, test-only) on 127.0.0.1 stands in for MinIO or AWS S3; the commands are
the recipe's own:

- DVC: ``dvc remote add -d team s3://deepvs30/dvc``, ``dvc remote modify team endpointurl ...``,
  ``dvc push``; with the cache and the data deleted, ``dvc pull`` brings back the same bytes.
- MLflow: ``mlflow server --artifacts-destination s3://deepvs30/mlruns`` (with
  ``MLFLOW_S3_ENDPOINT_URL``); a client holding no S3 credentials logs an artifact through the
  server, the object lies in the bucket, and it downloads back byte for byte.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest
from moto.server import ThreadedMotoServer

from deepvs30.screenshots import free_port, server, tool

BUCKET = "deepvs30"
CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
}


@pytest.fixture(scope="module")
def s3_endpoint() -> Iterator[str]:
    """http://127.0.0.1:PORT of a fresh S3 server holding the empty bucket ``deepvs30``."""
    port = free_port()
    s3 = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    s3.start()
    endpoint = f"http://127.0.0.1:{port}"
    try:
        _s3_client(endpoint).create_bucket(Bucket=BUCKET)
        yield endpoint
    finally:
        s3.stop()


def _s3_client(endpoint: str):
    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        aws_access_key_id=CREDENTIALS["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
        region_name=CREDENTIALS["AWS_DEFAULT_REGION"],
    )


def _keys(endpoint: str, prefix: str) -> list[str]:
    found = _s3_client(endpoint).list_objects_v2(Bucket=BUCKET, Prefix=prefix)
    return [item["Key"] for item in found.get("Contents", [])]


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "MLFLOW_"))}
    return {**env, "DVC_NO_ANALYTICS": "1", **extra}


def _dvc(cwd: Path, *args: str, env: dict[str, str]) -> None:
    done = subprocess.run([tool("dvc"), *args], cwd=cwd, env=env, capture_output=True, text=True)
    assert done.returncode == 0, f"dvc {' '.join(args)}:\n{done.stdout}\n{done.stderr}"


def test_dvc_remote_on_s3_pushes_and_pulls_the_same_bytes(s3_endpoint: str, tmp_path: Path):
    repo = tmp_path / "repo"
    (repo / "data").mkdir(parents=True)
    payload = {
        "data/metadata.csv": b"trace_name,vs30_mps\nA,412.0\n",
        "data/w.bin": os.urandom(70_000),
    }
    for name, content in payload.items():
        (repo / name).write_bytes(content)
    env = _env(**CREDENTIALS)
    _dvc(repo, "init", "--no-scm", env=env)
    _dvc(repo, "add", "data", env=env)
    _dvc(repo, "remote", "add", "-d", "team", f"s3://{BUCKET}/dvc", env=env)
    _dvc(repo, "remote", "modify", "team", "endpointurl", s3_endpoint, env=env)
    _dvc(repo, "push", env=env)
    assert len(_keys(s3_endpoint, "dvc/")) >= len(payload)  # the files and the folder's listing

    for path in (repo / "data", repo / ".dvc" / "cache"):
        shutil.rmtree(path)
    _dvc(repo, "pull", env=env)
    for name, content in payload.items():
        assert (repo / name).read_bytes() == content


@pytest.fixture()
def mlflow_server(s3_endpoint: str, tmp_path: Path) -> Iterator[str]:
    """http://127.0.0.1:PORT of ``mlflow server`` with its artifacts in the S3 bucket."""
    port = free_port()
    env = _env(**CREDENTIALS, MLFLOW_S3_ENDPOINT_URL=s3_endpoint)
    command = [
        tool("mlflow"), "server", "--host", "127.0.0.1", "--port", str(port),
        "--backend-store-uri", f"sqlite:///{tmp_path / 'mlflow.db'}",
        "--artifacts-destination", f"s3://{BUCKET}/mlruns", "--workers", "1",
    ]  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    with server(command, f"{url}/health", env=env):
        yield url


def test_mlflow_artifacts_go_through_the_server_to_s3(
    mlflow_server: str, s3_endpoint: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    import mlflow

    for key in CREDENTIALS:
        monkeypatch.delenv(key, raising=False)  # a worker node holds no S3 credentials
    monkeypatch.delenv("MLFLOW_S3_ENDPOINT_URL", raising=False)
    report = tmp_path / "metrics.json"
    report.write_text('{"station_mape_pct": 27.4}')
    client = mlflow.MlflowClient(tracking_uri=mlflow_server)
    experiment_id = client.create_experiment("scale-out-s3")
    run = client.create_run(experiment_id)
    client.log_artifact(run.info.run_id, str(report), artifact_path="reports")
    client.set_terminated(run.info.run_id)

    stored = _keys(s3_endpoint, "mlruns/")
    assert [k for k in stored if k.endswith(f"{run.info.run_id}/artifacts/reports/metrics.json")]
    back = Path(
        client.download_artifacts(run.info.run_id, "reports/metrics.json", str(tmp_path / "dl"))
    )
    assert back.read_text() == report.read_text()
