"""The plumbing of ``python -m deepvs30.screenshots``: URLs, picking the version and the study,
and the servers it starts and stops (no browser: tests/test_report.py has the browser test)."""

from __future__ import annotations

import socket
import sys
import urllib.request

import pytest

from deepvs30.screenshots import (
    check_sqlite,
    dashboard_url,
    free_port,
    latest_version,
    model_version_url,
    server,
    study_id,
    trim_bottom,
)


def test_model_version_url_is_the_mlflow3_hash_route():
    url = model_version_url("http://127.0.0.1:5000/", "deepvs30", 3)
    assert url == "http://127.0.0.1:5000/#/models/deepvs30/versions/3"
    assert model_version_url("http://h", "my model/x", "1").endswith(
        "/models/my%20model%2Fx/versions/1"
    )


def test_latest_version_is_the_highest_number_not_the_last_listed():
    versions = [{"version": "9"}, {"version": "10"}, {"version": "2"}]
    assert latest_version(versions) == 10
    with pytest.raises(LookupError):
        latest_version([])


def test_study_id_by_name_and_a_missing_study_names_the_known_ones():
    studies = [{"study_id": 1, "study_name": "a"}, {"study_id": 4, "study_name": "deepvs30-search"}]
    assert study_id(studies, "deepvs30-search") == 4
    with pytest.raises(LookupError, match="a, deepvs30-search"):
        study_id(studies, "other")


def test_dashboard_url():
    assert dashboard_url("http://h:1/", 2) == "http://h:1/dashboard/studies/2"
    assert dashboard_url("http://h:1", 2, "trials") == "http://h:1/dashboard/studies/2/trials"


def test_trim_bottom_keeps_the_drawn_rows_and_a_margin():
    from PIL import Image, ImageDraw

    image = Image.new("RGB", (200, 300), "white")
    draw = ImageDraw.Draw(image)
    draw.rectangle((0, 0, 199, 299), outline="grey")  # a frame: its edges are not content
    draw.text((20, 100), "card", fill="black")
    trimmed = trim_bottom(image, pad_px=10)
    assert trimmed.width == 200
    assert 105 < trimmed.height < 130
    blank = Image.new("RGB", (50, 40), "white")
    assert trim_bottom(blank).size == (50, 40)


def test_check_sqlite_refuses_a_missing_file_that_a_server_would_create(tmp_path):
    db = tmp_path / "optuna.db"
    with pytest.raises(FileNotFoundError, match="optuna.db"):
        check_sqlite(f"sqlite:///{db}", "run `make tune`")
    assert not db.exists()
    db.write_bytes(b"")
    check_sqlite(f"sqlite:///{db}", "run `make tune`")
    check_sqlite("postgresql://u@h/db", "run `make tune`")  # not a file: the server says


def _listening(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


def test_server_waits_until_up_and_is_stopped_after(tmp_path):
    port = free_port()
    command = [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1",
               "--directory", str(tmp_path)]  # fmt: skip
    url = f"http://127.0.0.1:{port}/"
    with server(command, url, timeout_s=30) as proc, urllib.request.urlopen(url, timeout=5) as r:
        assert r.status == 200
    assert proc.poll() is not None
    assert not _listening(port)


def test_server_that_exits_says_so_with_its_output():
    command = [sys.executable, "-c", "import sys; print('no storage here'); sys.exit(3)"]
    url = f"http://127.0.0.1:{free_port()}/"
    with pytest.raises(RuntimeError, match="no storage here"), server(command, url, timeout_s=30):
        pass
