"""``kernelsync exabgp --relay SOCKET``: pass ExaBGP's stream to a long-running ``kernelsync run``.

ExaBGP restarts (and restarts its processes); the FIB manager should not.  The relay is the
process ExaBGP runs: it forwards every stdin line to the daemon's Unix socket (``[exabgp]
listen``, root only) and every line the daemon sends back (commands: route-refresh requests,
announcements) to stdout, flushed.

* stdin is read by its own thread into an unbounded queue: ExaBGP never blocks on us, whatever
  the daemon's speed.
* While the daemon is unreachable the relay keeps draining stdin, counts the lines it cannot
  deliver (logged), and reconnects with backoff (0.1 s doubling to 2 s).  On every connection the
  daemon asks ExaBGP for a route-refresh, so nothing dropped meanwhile is lost for good.
* stdin closed (ExaBGP stopping): the relay closes the connection (the daemon keeps the paths as
  stale for ``restart_hold_time``) and exits 0.
"""
from __future__ import annotations

import logging
import queue
import socket
import sys
import threading
import time
from typing import Optional

log = logging.getLogger("kernelsync.relay")


def _read_stdin(q: "queue.Queue[Optional[bytes]]") -> None:
    stdin = sys.stdin.buffer
    while True:
        line = stdin.readline()
        if not line:
            break
        q.put(line)
    q.put(None)


def _commands_to_stdout(sock: socket.socket, lines: "queue.Queue") -> None:
    out = sys.stdout.buffer
    reader = sock.makefile("rb")
    try:
        for line in reader:
            out.write(line)
            out.flush()
    except (OSError, ValueError):
        pass
    lines.put(("closed", sock))  # the daemon is gone: reconnect now, not at ExaBGP's next line


def _connect(path: str) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
    try:
        sock.connect(path)
    except OSError:
        sock.close()
        raise
    return sock


def main(path: str) -> int:
    lines: "queue.Queue[Optional[bytes]]" = queue.Queue()
    threading.Thread(target=_read_stdin, args=(lines,), name="stdin-reader", daemon=True).start()
    sock: Optional[socket.socket] = None
    delay = 0.1
    next_try = 0.0
    dropped = 0
    while True:
        if sock is None and time.monotonic() >= next_try:
            try:
                sock = _connect(path)
                threading.Thread(target=_commands_to_stdout, args=(sock, lines), daemon=True).start()
                log.info("relaying ExaBGP to %s%s", path,
                         " (%d lines were dropped while it was unreachable)" % dropped if dropped else "")
                delay, dropped = 0.1, 0
            except OSError as exc:
                if delay == 0.1:
                    log.warning("kernelsync daemon at %s unreachable (%s); retrying", path, exc.strerror or exc)
                next_try = time.monotonic() + delay
                delay = min(delay * 2, 2.0)
        try:
            line = lines.get(timeout=None if sock is not None else max(0.0, next_try - time.monotonic()))
        except queue.Empty:
            continue
        if isinstance(line, tuple):  # ("closed", socket): the daemon closed that connection
            if line[1] is sock:
                log.warning("the kernelsync daemon closed the connection; reconnecting")
                sock.close()
                sock = None
                next_try = 0.0
            continue
        if line is None:
            if sock is not None:
                sock.close()
            log.info("ExaBGP closed stdin: relay exits")
            return 0
        if sock is None:
            dropped += 1
            continue
        try:
            sock.sendall(line)
        except OSError as exc:
            log.warning("lost the kernelsync daemon (%s); reconnecting", exc.strerror or exc)
            sock.close()
            sock = None
            dropped += 1
            next_try = 0.0


__all__ = ["main"]
