"""The control socket: ``kernelsync show ...`` asks the running daemon.

A Unix stream socket reachable by root only (``[control] socket``, mode 0600 in a 0700
directory).  Protocol: one request line (``show rib``, ``show fib``, ``show nexthops``, ``show
stats``, ``show bgp``, ``show export``, ``show feeds``, ``resync``), one JSON document back,
then the server closes the connection.
"""
from __future__ import annotations

import json
import logging
import os
import selectors
import socket
from typing import Callable, Optional

from .feeds.channels import listen_unix

log = logging.getLogger("kernelsync.control")


class ControlServer:
    """Serves ``answer(request) -> JSON-able`` on ``path`` from the daemon's loop."""

    def __init__(self, path: str, answer: Callable[[str], object]) -> None:
        self.path = path
        self.answer = answer
        self.sock: Optional[socket.socket] = None

    def start(self, sel: selectors.BaseSelector) -> None:
        self.sock = listen_unix(self.path, 8)
        sel.register(self.sock, selectors.EVENT_READ, self._on_accept)

    def _on_accept(self, now: float) -> None:
        try:
            conn, _ = self.sock.accept()
        except BlockingIOError:
            return
        with conn:
            conn.settimeout(2.0)
            request = ""
            try:
                request = conn.makefile("r").readline().strip()
                conn.sendall(json.dumps(self.answer(request), indent=1).encode() + b"\n")
            except OSError as exc:
                log.warning("control request failed: %s", exc)
            except Exception:  # a bug in a view must not take the FIB manager down
                log.exception("control request %r failed", request)

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
            try:
                os.unlink(self.path)
            except OSError:
                pass


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


__all__ = ["ControlServer", "query"]
