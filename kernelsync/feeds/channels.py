"""ExaBGP's streams: lines of JSON in, text commands out (ExaBGP's process API).

A *channel* is one ExaBGP stream and the way back for commands:

* :class:`StdinChannel` (``kernelsync exabgp``, ExaBGP's own process): a thread reads stdin
  and only queues lines, so stdin is drained even while the kernel is slow (ExaBGP writes with
  blocking writes; a process that stops reading freezes its BGP sessions).  Another thread
  writes commands to stdout, flushed, so a slow stdout never blocks the loop.
* :class:`RelayChannel`: one connection of ``kernelsync exabgp --relay`` to the long-running
  ``kernelsync run`` (``[exabgp] listen``, a root-only Unix socket, :func:`listen_unix`).

:class:`ExabgpStreams` holds them all: it opens stdin and the relay listener, hands every line
to one consumer (the BGP feed), tells its listeners when a stream opens (the BGP feed asks
for ExaBGP's version and route-refreshes, export announces its set), sends commands and
matches ExaBGP's ``done``/``error`` replies to them (:class:`AckTracker`).  Every buffer is
bounded by what it holds: a line longer than MAX_LINE is cut off (and counted as bad by the
consumer).
"""
from __future__ import annotations

import collections
import fcntl
import logging
import os
import queue
import selectors
import socket
import stat
import struct
import sys
import threading
import time
from typing import Callable, Deque, Dict, List, Optional, Tuple, Union

from .base import BaseFeed, earliest

log = logging.getLogger("kernelsync.exabgp")
MAX_LOGGED_LINE = 300  # characters of a bad line kept in the log
MAX_LINE = 16 << 20  # a longer line is cut off and counted as bad
READ_NAP = 0.01  # seconds the stdin reader waits after a short read (fewer, larger reads)
PIPE_SIZE = 1 << 20  # bytes the stdin pipe may hold (F_SETPIPE_SZ): ExaBGP never waits for a nap


def truncate(line: str) -> str:
    """``line`` cut to MAX_LOGGED_LINE characters for a log message."""
    return line if len(line) <= MAX_LOGGED_LINE else "%s... (%d characters)" % (line[:MAX_LOGGED_LINE], len(line))


def listen_unix(path: str, backlog: int) -> socket.socket:
    """A non-blocking Unix stream socket listening at ``path``, reachable by root only: its
    directory is created 0700, the socket is bound under umask 077 and set to 0600.  An old
    socket at ``path`` is removed; anything else there is left and the bind fails."""
    os.makedirs(os.path.dirname(path) or ".", mode=0o700, exist_ok=True)
    try:
        if stat.S_ISSOCK(os.stat(path).st_mode):
            os.unlink(path)
    except FileNotFoundError:
        pass
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
    old = os.umask(0o077)
    try:
        sock.bind(path)
    finally:
        os.umask(old)
    os.chmod(path, 0o600)
    sock.listen(backlog)
    sock.setblocking(False)
    return sock


def unix_peer_uid(sock: socket.socket) -> int:
    """The uid of the process at the other end of a Unix socket (SO_PEERCRED)."""
    creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    return struct.unpack("3i", creds)[1]


class Waker:
    """A pipe the event loop selects on; threads write a byte to wake it."""

    def __init__(self) -> None:
        self.rfd, self.wfd = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)

    def wake(self) -> None:
        try:
            os.write(self.wfd, b"x")
        except BlockingIOError:
            pass  # already pending

    def drain(self) -> None:
        try:
            while os.read(self.rfd, 4096):
                pass
        except BlockingIOError:
            pass

    def close(self) -> None:
        os.close(self.rfd)
        os.close(self.wfd)


class StdinChannel:
    """ExaBGP's pipe: lines in on stdin (reader thread), commands out on stdout (writer thread).
    ``pending``: a wake-up is on its way (or the consumer will take the lines itself soon):
    the reader does not wake the loop again until :meth:`take` clears it."""

    name = "stdin"

    def __init__(self, waker: Waker, rfile=None, wfile=None) -> None:
        self.rfile = rfile if rfile is not None else sys.stdin.buffer
        self.wfile = wfile if wfile is not None else sys.stdout.buffer
        self.lines: Deque[Optional[bytes]] = collections.deque()
        self.waker = waker
        self.out: "queue.Queue[Optional[str]]" = queue.Queue()
        self.closed = False
        self.pending = False
        threading.Thread(target=self._read, name="stdin-reader", daemon=True).start()
        threading.Thread(target=self._write, name="stdout-writer", daemon=True).start()

    def _read(self) -> None:
        """What the pipe holds (up to 64 KB) in one read, split into lines in C: one system call,
        one GIL hand-over and at most one wake-up per chunk instead of per line.  After a short
        read, a nap of READ_NAP lets more lines gather (the pipe is enlarged to PIPE_SIZE where
        the kernel allows: ExaBGP fills 64 KB in >= 15 ms); the first line after a quiet spell is
        read at once."""
        try:
            fcntl.fcntl(self.rfile.fileno(), fcntl.F_SETPIPE_SZ, PIPE_SIZE)
        except (OSError, ValueError, AttributeError):
            pass  # not a pipe, or more than this process may have: the pipe stays as it is
        rest = b""
        try:
            while True:
                data = self.rfile.read1(1 << 16)
                if not data:
                    break
                lines = (rest + data if rest else data).split(b"\n")
                rest = lines.pop()
                if len(rest) > MAX_LINE:  # cut off, counted as bad by the feed
                    lines.append(rest[:MAX_LOGGED_LINE])
                    rest = b""
                if lines:
                    self.lines.extend(lines)
                    if not self.pending:  # one wake-up per burst
                        self.pending = True
                        self.waker.wake()
                if len(data) < 1 << 16:
                    time.sleep(READ_NAP)
        except (OSError, ValueError) as exc:
            log.error("reading stdin failed: %s", exc)
        if rest:
            self.lines.append(rest)
        self.lines.append(None)  # end of stream
        self.waker.wake()

    def _write(self) -> None:
        while True:
            command = self.out.get()
            if command is None:
                return
            try:
                self.wfile.write(command.encode() + b"\n")
                self.wfile.flush()
            except (OSError, ValueError) as exc:
                log.error("cannot write to ExaBGP (stdout): %s; command dropped: %s", exc, command)

    def send(self, command: str) -> None:
        self.out.put(command)

    def take(self) -> List[Optional[bytes]]:
        """Every queued line (None: the end of the stream)."""
        self.pending = False  # before draining: a line appended from now on wakes us again
        out = []
        lines = self.lines
        while lines:
            out.append(lines.popleft())
        return out

    def close(self) -> None:
        self.out.put(None)


class RelayChannel:
    """One relay connection (``kernelsync exabgp`` in relay mode) on the daemon's socket.
    ``events``: what the loop's selector waits for (writable too while commands wait)."""

    def __init__(self, sock: socket.socket, number: int) -> None:
        self.sock = sock
        self.name = "relay#%d" % number
        self.rbuf = b""
        self.wbuf = b""
        self.closed = False
        self.events = selectors.EVENT_READ
        self.callback: Optional[Callable[[float], None]] = None
        sock.setblocking(False)

    def send(self, command: str) -> None:
        self.wbuf += command.encode() + b"\n"
        self.flush()

    def flush(self) -> None:
        while self.wbuf and not self.closed:
            try:
                sent = self.sock.send(self.wbuf)
            except BlockingIOError:
                return
            except OSError:
                self.closed = True
                return
            self.wbuf = self.wbuf[sent:]

    def take(self) -> List[Optional[bytes]]:
        """Every complete line received (None at the end: the connection closed)."""
        chunks = []
        while True:
            try:
                data = self.sock.recv(1 << 20)
            except BlockingIOError:
                break
            except OSError:
                data = b""
            if not data:
                self.closed = True
                break
            chunks.append(data)
        data = self.rbuf + b"".join(chunks)
        lines: List[Optional[bytes]] = data.split(b"\n")
        self.rbuf = lines.pop()  # type: ignore[assignment]
        if len(self.rbuf) > MAX_LINE:
            lines.append(self.rbuf[:MAX_LOGGED_LINE])
            self.rbuf = b""
        if self.closed:
            lines.append(None)
        return lines

    def close(self) -> None:
        self.closed = True
        self.sock.close()


Channel = Union[StdinChannel, RelayChannel]


class AckTracker:
    """Matches ExaBGP's ``done``/``error`` replies to the commands of one channel.

    ExaBGP answers the commands of a process in the order it reads them (``exabgp.api.ack``,
    default true), so the oldest unanswered command is the one a reply is for.  ExaBGP 4.2
    sends no reply at all for a command it rejects, which would shift every later reply: once
    :meth:`version_seen` says 4.x, replies are only counted.  Commands left unanswered for
    ``timeout`` seconds (acks switched off, or a 4.2 we have not identified yet) are given up by
    :meth:`expire`, and replies are from then on only counted too.  ``now``: any monotonic
    clock, seconds."""

    def __init__(self, timeout: float = 10.0) -> None:
        self.timeout = timeout
        self.pending: "collections.deque[Tuple[str, float]]" = collections.deque()
        self.version: Optional[str] = None
        self.correlate = True

    def sent(self, command: str, now: float) -> None:
        if self.correlate:
            self.pending.append((command, now))

    def version_seen(self, version: str) -> None:
        self.version = version
        if version.startswith("4."):
            self.correlate = False
            self.pending.clear()

    def reply(self) -> Optional[str]:
        """A ``done``/``error`` arrived: the command it answers (None: not known)."""
        return self.pending.popleft()[0] if self.pending else None

    def expire(self, now: float) -> List[str]:
        """Commands unanswered for ``timeout``; after any, replies are only counted."""
        expired = []
        while self.pending and self.pending[0][1] + self.timeout <= now:
            expired.append(self.pending.popleft()[0])
        if expired:
            self.correlate = False
            self.pending.clear()
        return expired

    def deadline(self) -> Optional[float]:
        return self.pending[0][1] + self.timeout if self.pending else None


#: ``listener(channel, now)``, called when a stream opens
OpenListener = Callable[[Channel, float], None]
#: ``consumer(channel, lines, now)``: lines received (None: the end of the stream)
LineConsumer = Callable[[Channel, List[Optional[bytes]], float], None]


class ExabgpStreams(BaseFeed):
    """Every open ExaBGP stream; see the module docstring.  ``stdin``: ExaBGP's pipe is ours
    (``kernelsync exabgp``); ``listen``: Unix socket path for relays (None: none).

    Consumers register before :meth:`start` (which opens stdin): :attr:`on_open` (called in
    order for every stream that opens) and :attr:`consumer` (every line).  It is driven by the
    daemon's loop like a feed: :meth:`commit` gives up on commands ExaBGP did not answer."""

    name = "exabgp"

    def __init__(self, stdin: bool = False, listen: Optional[str] = None) -> None:
        self.want_stdin = stdin
        self.listen_path = listen
        self.waker = Waker()
        self.channels: List[Channel] = []
        self.stdin: Optional[StdinChannel] = None
        self.listener: Optional[socket.socket] = None
        self.sel: Optional[selectors.BaseSelector] = None
        self.on_open: List[OpenListener] = []
        self.consumer: Optional[LineConsumer] = None
        self.acks: Dict[Channel, AckTracker] = {}
        self.last_errors: Deque[str] = collections.deque(maxlen=20)
        self.counters: Dict[str, int] = {"acks_done": 0, "acks_error": 0, "relay_connections": 0, "commands": 0}
        self._relays = 0

    @property
    def ended(self) -> bool:  # type: ignore[override]
        """ExaBGP closed our stdin: it went away (the process should stop)."""
        return self.stdin is not None and self.stdin.closed

    def start(self, sel: selectors.BaseSelector, now: float) -> None:
        self.sel = sel
        sel.register(self.waker.rfd, selectors.EVENT_READ, self._on_wake)
        if self.listen_path:
            self.listener = listen_unix(self.listen_path, 4)  # root only: the relay socket writes the FIB
            sel.register(self.listener, selectors.EVENT_READ, self._on_accept)
            log.info("accepting ExaBGP relays on %s (mode 0600)", self.listen_path)
        if self.want_stdin:
            self.stdin = StdinChannel(self.waker)
            self.open_channel(self.stdin, now)

    def open_channel(self, channel: Channel, now: float) -> None:
        """A stream opened (stdin at start, a relay connected): its listeners greet it."""
        self.channels.append(channel)
        self.acks[channel] = AckTracker()
        for listener in self.on_open:
            listener(channel, now)

    # commands ------------------------------------------------------------------------------
    def send(self, channel: Channel, command: str, now: float) -> None:
        """One command to one stream (its reply is matched to it)."""
        self.counters["commands"] += 1
        channel.send(command)
        if isinstance(channel, RelayChannel):
            self._watch_writable(channel)
        tracker = self.acks.get(channel)
        if tracker is not None:
            tracker.sent(command, now)

    def broadcast(self, command: str, now: float) -> bool:
        """One command to every open stream; False if none is open."""
        for channel in self.channels:
            self.send(channel, command, now)
        return bool(self.channels)

    def ack(self, channel: Channel, ok: bool) -> None:
        """ExaBGP answered ``done`` (``ok``) or ``error``: an error is logged with its command."""
        self.counters["acks_done" if ok else "acks_error"] += 1
        tracker = self.acks.get(channel)
        command = tracker.reply() if tracker is not None else None
        if not ok:
            text = "%s: ExaBGP rejected the command: %s" % (channel.name, command or "(not known which)")
            self.last_errors.append(text)
            log.error("%s", text)

    def version_seen(self, channel: Channel, version: str) -> None:
        tracker = self.acks.get(channel)
        if tracker is not None:
            tracker.version_seen(version)
        log.info("%s: ExaBGP %s%s", channel.name, version,
                 " (it does not answer commands it rejects: errors are not reported)"
                 if version.startswith("4.") else "")

    # streams -------------------------------------------------------------------------------
    def _on_accept(self, now: float) -> None:
        try:
            conn, _ = self.listener.accept()
        except BlockingIOError:
            return
        uid = unix_peer_uid(conn)
        if uid != 0:
            log.warning("relay connection from uid %d refused (root only)", uid)
            conn.close()
            return
        self._relays += 1
        self.counters["relay_connections"] += 1
        channel = RelayChannel(conn, self._relays)
        channel.callback = lambda t, c=channel: self._on_relay(c, t)
        self.sel.register(channel.sock, selectors.EVENT_READ, channel.callback)
        log.info("%s connected", channel.name)
        self.open_channel(channel, now)

    def _on_relay(self, channel: RelayChannel, now: float) -> None:
        """Readable, or writable while commands wait: read what came, send what waits."""
        self.consumer(channel, channel.take(), now)
        channel.flush()
        self._watch_writable(channel)

    def _watch_writable(self, channel: RelayChannel) -> None:
        """Wait for the socket to take more only while commands are left over (a relay that
        does not read must not block us, nor be forgotten)."""
        want = selectors.EVENT_READ | (selectors.EVENT_WRITE if channel.wbuf else 0)
        if not channel.closed and want != channel.events:
            channel.events = want
            self.sel.modify(channel.sock, want, channel.callback)

    def _on_wake(self, now: float) -> None:
        self.waker.drain()
        if self.stdin is not None:
            self.consumer(self.stdin, self.stdin.take(), now)

    def closed(self, channel: Channel) -> None:
        """The stream ended (its consumer saw the end): forget it."""
        log.warning("%s: ExaBGP stream ended", channel.name)
        channel.closed = True
        if isinstance(channel, RelayChannel):
            try:
                self.sel.unregister(channel.sock)
            except (KeyError, ValueError):
                pass
            channel.close()
        if channel in self.channels:
            self.channels.remove(channel)
        self.acks.pop(channel, None)

    # cycle ---------------------------------------------------------------------------------
    def deadline(self) -> Optional[float]:
        return earliest(*(t.deadline() for t in self.acks.values()))

    def commit(self, now: float) -> None:
        for channel, tracker in self.acks.items():
            expired = tracker.expire(now)
            if expired:
                log.warning("%s: ExaBGP did not answer %d command(s) within %.0f s (exabgp.api.ack off, or an "
                            "ExaBGP 4.2 that rejected one silently); replies are only counted from now on; "
                            "first: %s", channel.name, len(expired), tracker.timeout, expired[0])

    def show(self) -> dict:
        return {"channels": [c.name for c in self.channels],
                "exabgp_versions": {c.name: t.version for c, t in self.acks.items()},
                "command_errors": list(self.last_errors)}

    def close(self) -> None:
        for channel in self.channels:
            channel.close()
        if self.listener is not None:
            self.listener.close()
            if self.listen_path:
                try:
                    os.unlink(self.listen_path)
                except OSError:
                    pass


__all__ = ["ExabgpStreams", "StdinChannel", "RelayChannel", "Channel", "Waker", "AckTracker", "listen_unix",
           "unix_peer_uid", "truncate", "MAX_LINE", "MAX_LOGGED_LINE"]
