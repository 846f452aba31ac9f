"""Azurite, the storage emulator (an npm dev dependency), for the demo, the benchmarks and the
tests: blob, queue and table services on 127.0.0.1, on free ports, stopped when the block ends.

``--skipApiVersionCheck`` because newer SDKs send API versions Azurite does not know yet.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from ..settings import PROJECT_ROOT

ACCOUNT = "devstoreaccount1"
KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
SERVICES = ("blob", "queue", "table")
START_TIMEOUT_S = 30


class AzuriteError(RuntimeError):
    """Azurite is missing, or did not start."""


@dataclass(frozen=True)
class Azurite:
    """A running Azurite: one loopback port per service."""

    ports: dict[str, int]

    def endpoint(self, service: str) -> str:
        return f"http://127.0.0.1:{self.ports[service]}/{ACCOUNT}"

    @property
    def blob_endpoint(self) -> str:
        return self.endpoint("blob")

    @property
    def connection_string(self) -> str:
        endpoints = "".join(f"{s.capitalize()}Endpoint={self.endpoint(s)};" for s in SERVICES)
        return f"DefaultEndpointsProtocol=http;AccountName={ACCOUNT};AccountKey={KEY};{endpoints}"


def binary() -> str:
    local = PROJECT_ROOT / "node_modules" / ".bin" / "azurite"
    found = str(local) if local.exists() else shutil.which("azurite")
    if not found:
        raise AzuriteError("Azurite is not installed; run `npm ci` (make does this)")
    return found


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def running(location: Path | None = None) -> Iterator[Azurite]:
    """Azurite for the block: kept in memory, or in ``location`` when given."""
    ports = {service: _free_port() for service in SERVICES}
    argv = [binary(), "--skipApiVersionCheck", "--disableTelemetry", "--silent"]
    for service, port in ports.items():
        argv += [f"--{service}Host", "127.0.0.1", f"--{service}Port", str(port)]
    argv += ["--location", str(location)] if location else ["--inMemoryPersistence"]
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        _wait_until_listening(proc, ports.values())
        yield Azurite(ports)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()


def _wait_until_listening(proc: subprocess.Popen[bytes], ports: Iterable[int]) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    pending = list(ports)
    while pending:
        if proc.poll() is not None:
            err = proc.stderr.read().decode().strip() if proc.stderr else ""
            raise AzuriteError(f"Azurite exited early: {err}")
        try:
            with socket.create_connection(("127.0.0.1", pending[0]), timeout=0.2):
                pending.pop(0)
        except OSError:
            if time.monotonic() > deadline:
                raise AzuriteError(f"Azurite did not start within {START_TIMEOUT_S} s") from None
            time.sleep(0.1)
