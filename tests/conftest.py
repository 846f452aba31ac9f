"""Shared fixtures. Azurite (the real storage emulator) is started by the suite itself, on
loopback, and stopped when the session ends."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
AZURITE_ACCOUNT = "devstoreaccount1"
AZURITE_KEY = (
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
)


@dataclass(frozen=True)
class Azurite:
    """A running Azurite: blob, queue and table services on three loopback ports."""

    blob_port: int
    queue_port: int
    table_port: int

    def endpoint(self, port: int) -> str:
        return f"http://127.0.0.1:{port}/{AZURITE_ACCOUNT}"

    @property
    def blob_endpoint(self) -> str:
        return self.endpoint(self.blob_port)

    @property
    def connection_string(self) -> str:
        return (
            f"DefaultEndpointsProtocol=http;AccountName={AZURITE_ACCOUNT};"
            f"AccountKey={AZURITE_KEY};BlobEndpoint={self.blob_endpoint};"
            f"QueueEndpoint={self.endpoint(self.queue_port)};"
            f"TableEndpoint={self.endpoint(self.table_port)};"
        )


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _azurite_binary() -> str:
    local = ROOT / "node_modules" / ".bin" / "azurite"
    if local.exists():
        return str(local)
    found = shutil.which("azurite")
    if not found:
        pytest.fail("Azurite is not installed: run `npm ci` (make test does this)")
    return found


@pytest.fixture(scope="session")
def azurite(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Azurite]:
    """Start Azurite (blob, queue, table) on 127.0.0.1 for the whole test session."""
    ports = {service: _free_port() for service in ("blob", "queue", "table")}
    addresses = [
        arg
        for service, port in ports.items()
        for arg in (f"--{service}Host", "127.0.0.1", f"--{service}Port", str(port))
    ]
    proc = subprocess.Popen(
        [
            _azurite_binary(),
            *addresses,
            "--skipApiVersionCheck",
            "--disableTelemetry",
            "--inMemoryPersistence",
            "--silent",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 30
    while True:
        if proc.poll() is not None:
            err = proc.stderr.read().decode() if proc.stderr else ""
            pytest.fail(f"Azurite exited early: {err.strip()}")
        try:
            for port in ports.values():
                with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                    pass
            break
        except OSError:
            if time.monotonic() > deadline:
                proc.kill()
                pytest.fail("Azurite did not start within 30 s")
            time.sleep(0.1)
    try:
        yield Azurite(ports["blob"], ports["queue"], ports["table"])
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
