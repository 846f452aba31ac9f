"""A total deadline for one HTTP send, whatever the receiver does.

A socket timeout bounds each read, not a request: a receiver that trickles a byte every few
seconds keeps every read inside it and can hold a send for ever. Here the sockets of a
``session()`` register with the ``Deadline`` running on the thread that sends; when it passes,
they are shut down, which ends at once any read or write blocked on them (the send then fails
and the sink reports the deadline). Connecting is bounded apart from this, by azure-core's
``RetryPolicy`` ``timeout`` (the time left for all attempts), since no socket exists to shut
down while a connect waits.
"""

from __future__ import annotations

import socket
import threading
import time
from contextlib import suppress
from typing import Any

import requests
from requests.adapters import HTTPAdapter
from urllib3 import ProxyManager
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.util.retry import Retry

_running = threading.local()  # .deadline: the Deadline of the send on this thread, if any


class Deadline:
    """``with Deadline(s):`` around one send: its connections are shut down ``s`` seconds in."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self._expired = False
        self._ends = 0.0
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()
        self._timer = threading.Timer(seconds, self._expire)
        self._timer.daemon = True
        self._outer: Deadline | None = None

    def __enter__(self) -> Deadline:
        self._outer = getattr(_running, "deadline", None)
        _running.deadline = self
        self._ends = time.monotonic() + self.seconds
        self._timer.start()
        return self

    @property
    def expired(self) -> bool:
        """Whether the deadline has passed (its timer may be a moment behind the clock)."""
        return self._expired or time.monotonic() >= self._ends - 0.01

    def __exit__(self, *_: object) -> None:
        self._timer.cancel()
        _running.deadline = self._outer

    def watch(self, sock: socket.socket | None) -> None:
        """Shut ``sock`` down when the deadline passes (at once if it has)."""
        if sock is None:
            return
        with self._lock:
            if not self._expired:
                self._sockets.append(sock)
                return
        _shut(sock)

    def _expire(self) -> None:
        with self._lock:
            self._expired = True
            sockets, self._sockets = self._sockets, []
        for sock in sockets:
            _shut(sock)


def _shut(sock: socket.socket) -> None:
    with suppress(OSError):  # already closed
        sock.shutdown(socket.SHUT_RDWR)


def _watch(sock: socket.socket | None) -> None:
    deadline: Deadline | None = getattr(_running, "deadline", None)
    if deadline is not None:
        deadline.watch(sock)


class _HTTPConnection(HTTPConnection):
    def connect(self) -> None:
        super().connect()
        _watch(self.sock)

    def request(self, *args: Any, **kwargs: Any) -> None:
        _watch(self.sock)  # a kept-alive connection, reused by a later send
        super().request(*args, **kwargs)


class _HTTPSConnection(HTTPSConnection):
    def connect(self) -> None:
        super().connect()
        _watch(self.sock)

    def request(self, *args: Any, **kwargs: Any) -> None:
        _watch(self.sock)
        super().request(*args, **kwargs)


class _HTTPPool(HTTPConnectionPool):
    ConnectionCls = _HTTPConnection


class _HTTPSPool(HTTPSConnectionPool):
    ConnectionCls = _HTTPSConnection


POOLS: dict[str, type[HTTPConnectionPool]] = {"http": _HTTPPool, "https": _HTTPSPool}


class _Adapter(HTTPAdapter):
    """requests' adapter, with pools whose connections register their sockets."""

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = POOLS

    def proxy_manager_for(self, *args: Any, **kwargs: Any) -> Any:
        manager = super().proxy_manager_for(*args, **kwargs)
        if type(manager) is ProxyManager:  # an HTTP(S) proxy; SOCKS keeps its own pools
            manager.pool_classes_by_scheme = POOLS
        return manager


def session() -> requests.Session:
    """A requests session for azure-core's ``RequestsTransport`` whose sends obey the
    ``Deadline`` around them; like azure-core's own, it retries nothing itself."""
    made = requests.Session()
    adapter = _Adapter(max_retries=Retry(total=False, redirect=False, raise_on_status=False))
    for prefix in ("http://", "https://"):
        made.mount(prefix, adapter)
    return made
