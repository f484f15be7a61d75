"""The control socket: ``kernelsync show ...`` asks the running daemon.

A Unix stream socket reachable by root only (``[control] socket``, mode 0600 in a 0700
directory).  Protocol: one request line (``show rib``, ``show fib`` (both may be followed by ``PREFIX``
and/or ``family 4|6``: :func:`route_filter`), ``show nexthops``, ``show stats``, ``show bgp``,
``show export``, ``show feeds [routes [PREFIX]]``, ``resync``, ``reload``: re-read the config
file and apply the difference, :meth:`kernelsync.daemon.Daemon.reload`), one JSON document
back, then the server closes the connection.

Served from the daemon's loop without ever waiting on a client: connections are non-blocking,
the request is read as it comes (at most MAX_REQUEST bytes, else an error reply), the answer is
written as the client takes it, and a client that makes no progress for IDLE_TIMEOUT seconds
is closed.  At most MAX_CLIENTS connections at once (more are closed at once, logged).
"""
from __future__ import annotations

import json
import logging
import os
import selectors
import socket
from typing import Callable, Dict, List, Optional

from .core.model import AF_INET, AF_INET6, Prefix, format_prefix, parse_prefix, prefix_within
from .feeds.channels import listen_unix

log = logging.getLogger("kernelsync.control")
FILTER_USAGE = "[PREFIX] [family 4|6]"

MAX_REQUEST = 4096  # bytes of a request line
IDLE_TIMEOUT = 5.0  # seconds a client may make no progress (send nothing, read nothing)
MAX_CLIENTS = 32


class _Client:
    __slots__ = ("sock", "rbuf", "wbuf", "sent", "last", "writing")

    def __init__(self, sock: socket.socket, now: float) -> None:
        self.sock = sock
        self.rbuf = bytearray()
        self.wbuf = b""
        self.sent = 0
        self.last = now
        self.writing = False


class ControlServer:
    """Serves ``answer(request) -> JSON-able`` on ``path`` from the daemon's loop (see the
    module docstring).  The loop calls :meth:`deadline`/:meth:`commit` like a feed's: they
    close idle clients.  ``idle_timeout`` in seconds, on the loop's monotonic clock."""

    name = "control"
    ended = False

    def __init__(self, path: str, answer: Callable[[str], object], idle_timeout: float = IDLE_TIMEOUT) -> None:
        self.path = path
        self.answer = answer
        self.idle_timeout = idle_timeout
        self.sock: Optional[socket.socket] = None
        self.sel: Optional[selectors.BaseSelector] = None
        self.clients: Dict[int, _Client] = {}
        self.counters: Dict[str, int] = {"requests": 0, "idle_closed": 0, "too_large": 0, "refused": 0}

    def start(self, sel: selectors.BaseSelector, now: float = 0.0) -> None:
        """Listen (:class:`~kernelsync.feeds.channels.SocketInUse` if another instance does)."""
        self.sel = sel
        self.sock = listen_unix(self.path, 8)
        sel.register(self.sock, selectors.EVENT_READ, self._on_accept)

    def _on_accept(self, now: float) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:  # e.g. EMFILE: try again on the next readable event
                log.warning("control: accept failed: %s", exc)
                return
            if len(self.clients) >= MAX_CLIENTS:
                self.counters["refused"] += 1
                if self.counters["refused"] == 1 or self.counters["refused"] % 1000 == 0:
                    log.warning("control: %d clients connected already; connection closed (%d so far)",
                                MAX_CLIENTS, self.counters["refused"])
                conn.close()
                continue
            conn.setblocking(False)
            client = _Client(conn, now)
            self.clients[conn.fileno()] = client
            self.sel.register(conn, selectors.EVENT_READ, lambda t, c=client: self._on_client(c, t))

    def _on_client(self, client: _Client, now: float) -> None:
        if client.writing:
            self._write(client, now)
        else:
            self._read(client, now)

    def _read(self, client: _Client, now: float) -> None:
        try:
            data = client.sock.recv(MAX_REQUEST + 1)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:
            log.warning("control: reading a request failed: %s", exc)
            self._close(client)
            return
        client.last = now
        client.rbuf += data
        end = client.rbuf.find(b"\n")
        if end < 0 and len(client.rbuf) > MAX_REQUEST:
            self.counters["too_large"] += 1
            log.warning("control: request of more than %d bytes refused", MAX_REQUEST)
            self._drain(client)
            self._reply(client, {"error": "request longer than %d bytes" % MAX_REQUEST}, now)
            return
        if end < 0 and data:
            return  # more to come
        if end < 0 and not client.rbuf:  # closed without a request
            self._close(client)
            return
        line = bytes(client.rbuf[:end] if end >= 0 else client.rbuf)
        request = line.decode("utf-8", errors="replace").strip()
        self.counters["requests"] += 1
        try:
            answer = self.answer(request)
        except Exception:  # a bug in a view must not take the FIB manager down
            log.exception("control request %r failed", request[:200])
            answer = {"error": "request failed (see the daemon's log)"}
        self._reply(client, answer, now)

    @staticmethod
    def _drain(client: _Client) -> None:
        """Read (and drop) what is already there, at most 1 MB: a socket closed with unread data
        resets the connection, and the client would not see its error reply."""
        for _ in range(16):
            try:
                if not client.sock.recv(1 << 16):
                    return
            except OSError:
                return

    def _reply(self, client: _Client, answer: object, now: float) -> None:
        try:
            client.wbuf = json.dumps(answer, indent=1).encode() + b"\n"
        except (TypeError, ValueError) as exc:
            log.error("control: cannot encode the answer: %s", exc)
            client.wbuf = b'{"error": "answer not encodable"}\n'
        client.writing = True
        try:
            client.sock.shutdown(socket.SHUT_RD)  # nothing more is read from it
        except OSError:
            pass
        self.sel.modify(client.sock, selectors.EVENT_WRITE, lambda t, c=client: self._on_client(c, t))
        self._write(client, now)

    def _write(self, client: _Client, now: float) -> None:
        while client.sent < len(client.wbuf):
            try:
                sent = client.sock.send(memoryview(client.wbuf)[client.sent:client.sent + (1 << 20)])
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:  # the client went away
                log.debug("control: writing an answer failed: %s", exc)
                break
            client.sent += sent
            client.last = now
        self._close(client)

    def _close(self, client: _Client) -> None:
        self.clients.pop(client.sock.fileno(), None)
        try:
            self.sel.unregister(client.sock)
        except (KeyError, ValueError):
            pass
        client.sock.close()

    # loop ----------------------------------------------------------------------------------
    def deadline(self) -> Optional[float]:
        """When the first idle client is to be closed (None: no client)."""
        return min((c.last for c in self.clients.values()), default=None) + self.idle_timeout \
            if self.clients else None

    def commit(self, now: float) -> None:
        """Close the clients idle for ``idle_timeout``."""
        for client in list(self.clients.values()):
            if now >= client.last + self.idle_timeout:
                self.counters["idle_closed"] += 1
                log.warning("control: client idle for %.0f s (%s); closed", self.idle_timeout,
                            "answer not taken" if client.writing else "no request")
                self._close(client)

    def close(self) -> None:
        for client in list(self.clients.values()):
            self._close(client)
        if self.sock is not None:
            try:
                if self.sel is not None:
                    self.sel.unregister(self.sock)
            except (KeyError, ValueError):
                pass
            self.sock.close()
            self.sock = None
            try:
                os.unlink(self.path)
            except OSError:
                pass


def route_filter(words: List[str]) -> Optional[Callable[[Prefix], bool]]:
    """The prefix filter of ``show rib|fib [PREFIX] [family 4|6]`` (``words``: what follows the
    view's name) -> a predicate on a Prefix, or None (everything).  PREFIX selects that prefix
    and its more specifics (a bare address is a host route), as ``show feeds routes PREFIX``.
    Raises ValueError with the usage or the prefix's problem."""
    within: Optional[Prefix] = None
    family = 0
    rest = list(words)
    while rest:
        word = rest.pop(0)
        if word == "family" and rest and rest[0] in ("4", "6") and not family:
            family = AF_INET if rest.pop(0) == "4" else AF_INET6
        elif within is None and word != "family":
            within = parse_prefix(word)
        else:
            raise ValueError("usage: %s" % FILTER_USAGE)
    if within is not None:
        if family and within[0] != family:
            raise ValueError("%s is not of family %d" % (format_prefix(within), 4 if family == AF_INET else 6))
        outer = within
        return lambda prefix: prefix_within(prefix, outer)
    if family:
        return lambda prefix: prefix[0] == family
    return None


def query(path: str, request: str, timeout: float = 5.0):
    """Send one control request to a running daemon; returns the decoded JSON answer.
    OSError if no daemon listens at ``path``."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        sock.connect(path)
        sock.sendall(request.encode() + b"\n")
        chunks = []
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                break
            chunks.append(chunk)
    return json.loads(b"".join(chunks))


__all__ = ["ControlServer", "query", "route_filter", "MAX_REQUEST", "IDLE_TIMEOUT"]
