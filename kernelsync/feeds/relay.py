"""``kernelsync exabgp --relay SOCKET``: pass ExaBGP's stream to a long-running ``kernelsync run``.

ExaBGP restarts (and restarts its processes); the FIB manager should not.  The relay is the
process ExaBGP runs: it forwards every stdin line to the daemon's Unix socket (``[exabgp]
listen``, root only) and every line the daemon sends back (commands: route-refresh requests,
announcements) to stdout, flushed.

* stdin is read by its own thread, which never stops reading (ExaBGP writes with blocking
  writes and freezes its BGP sessions on a full pipe), into a bounded queue
  (:class:`~kernelsync.feeds.channels.LineQueue`: MAX_QUEUED_LINES lines, MAX_QUEUED_BYTES
  bytes; a full table fits whole).  A line over MAX_LINE bytes is skipped, logged and counted.
  When the daemon is so slow that the queue fills, lines are dropped and counted, and once
  there is room the relay tells the daemon in-band (``#kernelsync dropped N {peer: families}``):
  the daemon asks ExaBGP for a route-refresh, which re-sends them.
* While the daemon is unreachable the relay keeps draining stdin, counts the lines it cannot
  deliver (logged), and reconnects with backoff (0.1 s doubling to 2 s).  On every connection the
  daemon asks ExaBGP for a route-refresh (``[exabgp] route_refresh_on_start``), so nothing
  dropped meanwhile is lost for good.
* stdin closed (ExaBGP stopping), or reading it failed in any way (logged): the relay closes the
  connection (the daemon keeps the paths as stale for ``restart_hold_time``) and exits 0.
"""
from __future__ import annotations

import logging
import socket
import sys
import threading
import time
from typing import List, Optional

from .channels import LineQueue, LineSplitter, Lost, pump_lines

log = logging.getLogger("kernelsync.relay")


class StdinReader:
    """The reader thread: ``rfile`` (ExaBGP's pipe) -> :attr:`lines` (bounded), :attr:`ready`
    set whenever lines (or the end, None) were queued."""

    def __init__(self, rfile, lines: LineQueue, max_line: Optional[int] = None) -> None:
        self.rfile = rfile
        self.lines = lines
        self.splitter = LineSplitter("relay stdin") if max_line is None else LineSplitter("relay stdin", max_line)
        self.ready = threading.Event()
        self.thread = threading.Thread(target=self._run, name="stdin-reader", daemon=True)

    def start(self) -> "StdinReader":
        self.thread.start()
        return self

    def _run(self) -> None:
        pump_lines(self.rfile, self.splitter, self.lines, self.ready.set, self.ready.set)

    def take(self, timeout: Optional[float]) -> List[Optional[bytes]]:
        """What was queued (waits up to ``timeout`` seconds for something; None: forever)."""
        if not self.ready.wait(timeout):
            return []
        self.ready.clear()  # before taking: what comes after sets it again
        return self.lines.take()


def _commands_to_stdout(sock: socket.socket, out, closed: List[socket.socket], wake: threading.Event) -> None:
    """The command thread: the daemon's lines -> ExaBGP's stdin.  When the daemon closes the
    connection, ``sock`` goes on ``closed`` and the main loop is woken to reconnect now rather
    than at ExaBGP's next line (a quiet stream: a minute or more)."""
    out = out if out is not None else sys.stdout.buffer
    reader = sock.makefile("rb")
    try:
        for line in reader:
            out.write(line)
            out.flush()
    except Exception as exc:  # the daemon went away, or stdout did: logged, the main loop reconnects
        log.warning("passing commands to ExaBGP stopped: %s: %s", type(exc).__name__, exc)
    closed.append(sock)
    wake.set()


def _connect(path: str) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
    try:
        sock.connect(path)
    except OSError:
        sock.close()
        raise
    return sock


def _close(sock: socket.socket) -> None:
    """Close the connection now (the command thread's makefile() would keep it open)."""
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    sock.close()


def main(path: str, rfile=None, lines: Optional[LineQueue] = None, out=None) -> int:
    """Relay until stdin ends (exit status 0).  ``rfile``/``lines``/``out``: stdin, the queue
    and stdout, for tests."""
    queue = lines if lines is not None else LineQueue()
    reader = StdinReader(rfile if rfile is not None else sys.stdin.buffer, queue).start()
    sock: Optional[socket.socket] = None
    delay = 0.1
    next_try = 0.0
    dropped = 0  # while the daemon was unreachable
    unsent: Optional[Lost] = None  # a drop notice not delivered yet
    closed: List[socket.socket] = []  # connections the daemon closed (the command thread's word)
    while True:
        while closed:
            if closed.pop() is sock:
                log.warning("the kernelsync daemon closed the connection; reconnecting")
                _close(sock)
                sock = None
                next_try = 0.0
        if sock is None and time.monotonic() >= next_try:
            try:
                sock = _connect(path)
                threading.Thread(target=_commands_to_stdout, args=(sock, out, closed, reader.ready),
                                 daemon=True).start()
                log.info("relaying ExaBGP to %s%s", path,
                         " (%d lines were dropped while it was unreachable)" % dropped if dropped else "")
                delay, dropped = 0.1, 0
            except OSError as exc:
                if delay == 0.1:
                    log.warning("kernelsync daemon at %s unreachable (%s); retrying", path, exc.strerror or exc)
                next_try = time.monotonic() + delay
                delay = min(delay * 2, 2.0)
        batch = reader.take(None if sock is not None else max(0.0, next_try - time.monotonic()))
        end = bool(batch) and batch[-1] is None
        data = [line for line in batch if line is not None]
        if sock is None:
            dropped += len(data)
        elif data or queue.lost.count or unsent is not None:
            if queue.lost.count:
                lost = queue.take_lost()
                log.error("%d line(s) from ExaBGP were dropped (the daemon was too slow to take them); telling it",
                          lost.count)
                if unsent is not None:
                    lost.merge(unsent.count, unsent.affected)
                unsent = lost
            payload = b"".join(line + b"\n" for line in data)
            if unsent is not None:  # the queue was full: the daemon asks ExaBGP to send them again
                payload = unsent.encode() + b"\n" + payload
            try:
                sock.sendall(payload)
                unsent = None
            except OSError as exc:
                log.warning("lost the kernelsync daemon (%s); reconnecting", exc.strerror or exc)
                _close(sock)
                sock = None
                dropped += len(data)
                next_try = 0.0
        if end:
            if sock is not None:
                _close(sock)
            log.info("ExaBGP closed stdin: relay exits%s",
                     " (%d lines dropped in all)" % queue.dropped if queue.dropped else "")
            return 0


__all__ = ["main", "StdinReader"]
