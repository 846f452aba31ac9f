"""The local server: its routes, its refusals, a champion swapped in under concurrent load with
no failed request, and ``python -m retrain serve`` stopping cleanly on SIGINT and SIGTERM."""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from serving_helpers import NAME, Registry

from retrain.serving.local import LocalServing
from retrain.serving.payload import Limits
from retrain.serving.sample import post_images, serve_and_score
from retrain.serving.scoring import load_model

ROOT = Path(__file__).resolve().parent.parent
BATCH = np.random.default_rng(0).integers(0, 256, (16, 28, 28), dtype=np.uint8)


@pytest.fixture
def registry(tmp_path: Path) -> Registry:
    registry = Registry(tmp_path)
    registry.add("v1", seed=1)
    return registry


def request(
    url: str, method: str, path: str, body: bytes | None = None, headers: dict | None = None
) -> tuple[int, dict | str]:
    host, port = url.removeprefix("http://").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=30)
    try:
        connection.request(method, path, body=body, headers=headers or {})
        response = connection.getresponse()
        raw = response.read()
        kind = response.getheader("Content-Type", "")
        return response.status, json.loads(raw) if "json" in kind else raw.decode()
    finally:
        connection.close()


def score(url: str, images: np.ndarray) -> tuple[int, dict | str]:
    body = json.dumps({"images": images.tolist()}).encode()
    return request(url, "POST", "/score", body, {"Content-Type": "application/json"})


def test_routes(registry: Registry) -> None:
    with LocalServing(registry.models_dir, NAME, port=0, limits=Limits(4)) as serving:
        status, health = request(serving.url, "GET", "/healthz")
        assert status == 200 and health["model"] == {"name": NAME, "version": "v1"}
        status, page = request(serving.url, "GET", "/")
        assert status == 200 and "POST /score" in page and f"{NAME}:v1" in page
        assert "at most 4 images" in page
        status, answer = score(serving.url, BATCH[:3])
        assert status == 200 and answer["count"] == 3
        assert answer["model"] == {"name": NAME, "version": "v1"}


@pytest.mark.parametrize(
    ("method", "path", "body", "headers", "status", "error"),
    [
        ("POST", "/score", b"{", {"Content-Type": "application/json"}, 400, "not valid JSON"),
        ("POST", "/score", b"x", {"Content-Type": "text/csv"}, 400, "'text/csv' is not accepted"),
        ("POST", "/score", b"[]" * 50_000, {"Content-Type": "application/json"}, 400,
         "body too large: 100000 bytes; at most 81920"),
        ("POST", "/nope", b"{}", {}, 404, "no such route: POST /nope"),
        ("GET", "/nope", None, {}, 404, "no such page: GET /nope"),
        ("PUT", "/score", b"{}", {}, 405, "PUT is not served"),
    ],
)  # fmt: skip
def test_refusals_are_one_line_json(
    registry: Registry, method, path, body, headers, status: int, error: str
) -> None:
    with LocalServing(registry.models_dir, NAME, port=0, limits=Limits(1)) as serving:
        got, answer = request(serving.url, method, path, body, headers)
    assert got == status
    assert isinstance(answer, dict) and set(answer) == {"error"} and error in answer["error"]


def raw_exchange(url: str, data: bytes) -> bytes:
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=30) as sock:
        sock.sendall(data)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


def test_requests_the_http_layer_refuses_get_json_too(registry: Registry) -> None:
    with LocalServing(registry.models_dir, NAME, port=0) as serving:
        missing = raw_exchange(serving.url, b"POST /score HTTP/1.0\r\n\r\n")
        chunked = raw_exchange(
            serving.url,
            b"POST /score HTTP/1.1\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
            b"0\r\n\r\n",
        )
        garbage = raw_exchange(serving.url, b"\x16\x03\x01 nonsense\r\n\r\n")
    assert missing.startswith(b"HTTP/1.0 400") and b'"Content-Length: required' in missing
    assert chunked.startswith(b"HTTP/1.0 400") and b"not chunked" in chunked
    head, _, body = garbage.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.0 400") and json.loads(body)["error"]
    assert b"Traceback" not in garbage + missing + chunked


def test_a_swap_under_concurrent_load_fails_no_request(registry: Registry) -> None:
    """Eight clients post without pause while v2 is promoted: every request succeeds, and each
    answer is exactly what the version it names predicts (never half of one, half of another)."""
    folders = {"v1": registry.models_dir / NAME / "v1", "v2": registry.add("v2", 2, champion=False)}
    expected = {
        version: [
            p["label"] for p in load_model(folder, NAME, version).answer(BATCH)["predictions"]
        ]
        for version, folder in folders.items()
    }
    assert expected["v1"] != expected["v2"]  # the two models can be told apart

    failures: list[str] = []
    seen: dict[str, int] = {"v1": 0, "v2": 0}
    stop = threading.Event()

    def client() -> None:
        while not stop.is_set():
            try:
                status, answer = score(serving.url, BATCH)
            except OSError as exc:
                failures.append(f"{type(exc).__name__}: {exc}")
                continue
            if status != 200 or not isinstance(answer, dict):
                failures.append(f"{status}: {answer}")
                continue
            version = answer["model"]["version"]
            if [p["label"] for p in answer["predictions"]] != expected[version]:
                failures.append(f"{version} answered another model's predictions")
            seen[version] += 1

    with LocalServing(registry.models_dir, NAME, port=0, poll_seconds=0.05) as serving:
        clients = [threading.Thread(target=client) for _ in range(8)]
        for thread in clients:
            thread.start()
        _wait(lambda: seen["v1"] >= 20)
        registry.registry.mark_champion(NAME, "v2")
        _wait(lambda: seen["v2"] >= 20)
        stop.set()
        for thread in clients:
            thread.join()
        assert serving.slot.swaps == 1
        assert request(serving.url, "GET", "/healthz")[1]["model"]["version"] == "v2"
    assert failures == []


def test_the_watcher_keeps_serving_when_the_champion_cannot_be_loaded(
    registry: Registry, caplog: pytest.LogCaptureFixture
) -> None:
    broken = registry.add("v2", seed=2, champion=False)
    (broken / "predictor.pt").write_bytes(b"not a model")
    with LocalServing(registry.models_dir, NAME, port=0, poll_seconds=3600) as serving:
        registry.registry.mark_champion(NAME, "v2")
        assert serving.watcher.check() is False
        assert serving.watcher.check() is False  # logged once, not retried every poll
        assert score(serving.url, BATCH[:1])[1]["model"]["version"] == "v1"
        registry.add("v3", seed=3)
        assert serving.watcher.check() is True
        assert score(serving.url, BATCH[:1])[1]["model"]["version"] == "v3"
    errors = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
    assert len(errors) == 1 and "champion fashion-mnist-cnn:v2 cannot be served" in errors[0]
    assert "still serving fashion-mnist-cnn:v1" in errors[0]


def test_no_champion_tagged_for_a_moment_keeps_the_served_model(registry: Registry) -> None:
    with LocalServing(registry.models_dir, NAME, port=0, poll_seconds=3600) as serving:
        registry.registry._set_tag(NAME, "v1", None)  # the instant a tag moves
        assert serving.watcher.check() is False
        assert serving.slot.model.version == "v1"


def test_the_sample_scores_a_runs_test_images(registry: Registry, tmp_path: Path) -> None:
    test_data = tmp_path / "run" / "prepare_data_node" / "test_data"
    test_data.mkdir(parents=True)
    np.save(test_data / "images.npy", BATCH)
    np.save(test_data / "labels.npy", np.arange(16) % 10)
    lines: list[str] = []
    document = serve_and_score(
        registry.models_dir, NAME, tmp_path / "run", count=3, say=lines.append
    )
    assert document["count"] == 3 and document["model"]["version"] == "v1"
    assert lines[0].startswith(f"serving {NAME}:v1 on http://127.0.0.1:")
    assert "POST /score with 3 of the run's test images" in lines[1]
    assert len(lines) == 5 and lines[2].startswith("   image 0: ")


def _wait(condition, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out waiting"
        time.sleep(0.01)


def _start_cli(registry: Registry) -> tuple[subprocess.Popen, str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "LOCAL_MODELS_DIR": str(registry.models_dir)}
    process = subprocess.Popen(
        [sys.executable, "-m", "retrain", "serve", "--port", "0"],
        cwd=ROOT,
        env=env,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stderr is not None
    banner = process.stderr.readline()
    assert banner.startswith(f"serving {NAME}:v1 on http://127.0.0.1:"), banner
    return process, banner.split(" on ", 1)[1].split(" ", 1)[0]


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_the_command_serves_and_stops_cleanly_on_a_signal(registry: Registry, sig) -> None:
    process, url = _start_cli(registry)
    try:
        assert post_images(f"{url}/score", BATCH[:2])["count"] == 2
        process.send_signal(sig)
        _, err = process.communicate(timeout=60)
    finally:
        process.kill()
    assert process.returncode == 0, err
    assert f"{sig.name}: stopping" in err and err.rstrip().endswith("serve: stopped")
    assert "Traceback" not in err
    with pytest.raises(OSError):
        post_images(f"{url}/score", BATCH[:1], timeout=5)
    assert not list((registry.models_dir / NAME / ".serving").glob("*.json"))  # forgotten


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["--port", "70000"], "argument --port: expected 0-65535 (0: any free port), got 70000"),
        (["--port", "http"], "argument --port: expected a port number, got 'http'"),
        (["--poll", "0"], "argument --poll: must be positive, got 0"),
    ],
)
def test_bad_flags_are_one_line(argv: list[str], expected: str, capsys) -> None:
    from retrain.cli.main import main

    with pytest.raises(SystemExit) as exit_:
        main(["serve", *argv])
    assert exit_.value.code == 2 and capsys.readouterr().err.strip().endswith(expected)


def test_no_champion_is_one_line_naming_the_setting(tmp_path: Path, monkeypatch, capsys) -> None:
    from retrain.cli.main import main

    monkeypatch.setenv("LOCAL_MODELS_DIR", str(tmp_path))
    assert main(["serve", "--port", "0"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"error: LOCAL_MODELS_DIR: no champion of {NAME}")


def test_a_port_in_use_is_one_line(registry: Registry) -> None:
    from retrain.errors import ConfigurationError

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(ConfigurationError, match=rf"--port {port}: cannot listen on 127.0.0.1"):
            LocalServing(registry.models_dir, NAME, port=port)


def test_where_it_serves_is_on_record_while_it_runs(registry: Registry) -> None:
    from retrain.cli.models import serving_lines
    from retrain.serving.where import served

    settings = registry.settings
    with LocalServing(registry.models_dir, NAME, port=0, poll_seconds=3600) as serving:
        (record,) = served(registry.models_dir, NAME)
        assert record["version"] == "v1" and record["url"] == serving.url
        assert record["pid"] == os.getpid()
        registry.add("v2", seed=2)
        assert serving.watcher.check() is True
        assert [r["version"] for r in served(registry.models_dir, NAME)] == ["v2"]
        (line,) = serving_lines(settings)
        assert line.startswith(f"served by python -m retrain serve: version v2 on {serving.url}")
    assert served(registry.models_dir, NAME) == []
    assert serving_lines(settings) == []


def test_a_server_that_vanished_is_not_listed(registry: Registry) -> None:
    from retrain.serving.where import record_serving, served

    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)  # fmt: skip
    record_serving(registry.models_dir, NAME, "v1", "http://127.0.0.1:1", 1)
    path = registry.models_dir / NAME / ".serving" / "1.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), "pid": int(gone.stdout)}))
    assert served(registry.models_dir, NAME) == []
