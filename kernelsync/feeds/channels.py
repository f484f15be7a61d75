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
matches ExaBGP's ``done``/``error`` replies to them (:class:`AckTracker`).

Every buffer is bounded (issue 12):

* a line longer than MAX_LINE is skipped whole (:class:`LineSplitter`: chunks are joined once,
  never re-copied per read), logged with its start (control bytes escaped) and counted
  (``lines_too_long``);
* the stdin line queue holds at most MAX_QUEUED_LINES lines and MAX_QUEUED_BYTES bytes.  The
  reader never stops reading (ExaBGP writes with blocking writes and freezes its sessions on a
  full pipe): when the queue is full a line is dropped and counted (``lines_dropped``).  Once
  the queue is below half of its bounds again, :class:`ExabgpStreams` tells its
  :attr:`~ExabgpStreams.on_lost` listeners which peers and families the dropped UPDATEs were
  for (:class:`Lost`), or that anything else was dropped (a state change, an end-of-RIB, a
  reply): the BGP feed asks ExaBGP for a route-refresh of those peers' families, or of every
  family from every peer, whose begin/end window re-sends and sweeps what was lost (and replies
  are no longer matched to commands).  A full-table burst (130,000 one-prefix UPDATEs, about
  100 MB of JSON) fits whole;
* a relay (``kernelsync exabgp --relay``) that dropped lines says so in-band
  (:data:`RELAY_DROPPED` line) and the daemon recovers the same way;
* commands waiting for ExaBGP (stdout) or a relay: at most MAX_QUEUED_COMMANDS, resp.
  MAX_RELAY_WBUF bytes; more are dropped, counted (``commands_dropped``) and logged.
"""
from __future__ import annotations

import collections
import errno
import fcntl
import logging
import json
import os
import queue
import re
import selectors
import socket
import stat
import struct
import sys
import threading
import time
from typing import Callable, Deque, Dict, List, Optional, Set, Tuple, Union

from .base import BaseFeed, earliest

log = logging.getLogger("kernelsync.exabgp")
MAX_LOGGED_LINE = 300  # characters of a bad line kept in the log
MAX_LINE = 16 << 20  # bytes; a longer line is skipped, logged and counted (lines_too_long)
MAX_QUEUED_LINES = 400_000  # lines the stdin queue holds (a full table is 130,000 UPDATEs)
MAX_QUEUED_BYTES = 256 << 20  # bytes the stdin queue holds (a full table: about 100 MB of JSON)
MAX_QUEUED_COMMANDS = 1_000_000  # commands waiting for stdout (ExaBGP)
MAX_RELAY_WBUF = 64 << 20  # bytes of commands waiting for one relay
MAX_RELAY_READ = 4 << 20  # bytes read from one relay per turn of the loop (the others get theirs)
#: what a relay sends (instead of ExaBGP's lines) when it had to drop some: ``#kernelsync dropped N``
RELAY_DROPPED = b"#kernelsync dropped "
_UPDATE = b'"type": "update"'  # as ExaBGP 4.2 and 5.0 write it
_PEER = re.compile(rb'"peer"\s*:\s*"([0-9A-Fa-f:.]{2,45})"')
_FAMILY = re.compile(rb'"(ipv[46] unicast)"\s*:')
MAX_AFFECTED = 10_000  # (peer, family) pairs remembered; more: everything is refreshed
RECOVERY_POLL = 0.1  # seconds between looks at a stream that dropped lines, until it has room
READ_NAP = 0.01  # seconds the stdin reader waits after a short read (fewer, larger reads)
PIPE_SIZE = 1 << 20  # bytes the stdin pipe may hold (F_SETPIPE_SZ): ExaBGP never waits for a nap


def truncate(line: str) -> str:
    """``line`` cut to MAX_LOGGED_LINE characters for a log message."""
    return line if len(line) <= MAX_LOGGED_LINE else "%s... (%d characters)" % (line[:MAX_LOGGED_LINE], len(line))


def escape(data: bytes, limit: int = MAX_LOGGED_LINE) -> str:
    """The first ``limit`` bytes of ``data`` as printable text for a log line: control bytes and
    invalid UTF-8 escaped (``\\x1b``), the total length said when cut."""
    text = data[:limit].decode("utf-8", errors="backslashreplace")
    text = "".join(c if c.isprintable() else "\\x%02x" % ord(c) if ord(c) < 256 else "\\u%04x" % ord(c)
                   for c in text)
    return text if len(data) <= limit else "%s... (%d bytes)" % (text, len(data))


class LineSplitter:
    """Bytes in, complete lines out (without their ``\\n``), in linear time: the pieces of a
    line that spans reads are kept in a list and joined once.  A line longer than
    ``max_line`` bytes is skipped whole; it is logged with its start (escaped) as soon as it
    ends and counted in :attr:`too_long`.  ``name``: the stream, for the log."""

    def __init__(self, name: str, max_line: int = MAX_LINE) -> None:
        self.name = name
        self.max_line = max_line
        self.parts: List[bytes] = []
        self.size = 0
        self.skipping: Optional[bytes] = None  # the start of the line being skipped
        self.too_long = 0

    def feed(self, data: bytes) -> List[bytes]:
        pieces = data.split(b"\n")
        tail = pieces.pop()
        out: List[bytes] = pieces
        if pieces and (self.parts or self.skipping is not None):
            first = pieces[0]
            if self.skipping is not None:
                self._skipped(self.size + len(first))
                del pieces[0]
            else:
                self.parts.append(first)
                line = b"".join(self.parts)
                if len(line) > self.max_line:
                    self.skipping = line[:MAX_LOGGED_LINE]
                    self._skipped(len(line))
                    del pieces[0]
                else:
                    pieces[0] = line
            self.parts, self.size = [], 0
        if pieces and max(map(len, pieces)) > self.max_line:  # a whole long line in one read
            out = []
            for line in pieces:
                if len(line) > self.max_line:
                    self.skipping = line[:MAX_LOGGED_LINE]
                    self._skipped(len(line))
                else:
                    out.append(line)
        if tail:
            self.size += len(tail)
            if self.skipping is None:
                self.parts.append(tail)
                if self.size > self.max_line:
                    self.skipping = b"".join(self.parts)[:MAX_LOGGED_LINE]
                    self.parts = []
        return out

    def end(self) -> List[bytes]:
        """The stream ended: the last line if it had no ``\\n``."""
        if self.skipping is not None:
            self._skipped(self.size)
            return []
        rest = b"".join(self.parts)
        self.parts, self.size = [], 0
        return [rest] if rest else []

    def _skipped(self, size: int) -> None:
        self.too_long += 1
        log.error("%s: skipped a line of %d bytes (over %d): %s", self.name, size, self.max_line,
                  escape(self.skipping or b""))
        self.skipping = None
        self.size = 0


class Lost:
    """What dropped lines were about: ``count`` lines; ``affected``: peer address -> families
    of the UPDATEs among them, or None when anything else was dropped too (or could not be
    told): then every peer and family is affected."""

    def __init__(self) -> None:
        self.count = 0
        self.affected: Optional[Dict[str, Set[str]]] = {}
        self.pairs = 0

    def note(self, line: bytes) -> None:
        self.count += 1
        if self.affected is None:
            return
        peer = _PEER.search(line) if _UPDATE in line else None
        families = _FAMILY.findall(line) if peer is not None else ()
        if not families:  # a state change, an end-of-RIB, a reply, a line we cannot tell
            self.affected = None
            return
        known = self.affected.setdefault(peer.group(1).decode(), set())
        for family in families:
            if family.decode() not in known:
                known.add(family.decode())
                self.pairs += 1
        if self.pairs > MAX_AFFECTED:
            self.affected = None

    def merge(self, count: int, affected: Optional[Dict[str, Set[str]]]) -> None:
        self.count += count
        if self.affected is None or affected is None:
            self.affected = None
            return
        for peer, families in affected.items():
            self.affected.setdefault(peer, set()).update(families)

    def encode(self) -> bytes:
        """The relay's in-band notice: ``#kernelsync dropped N [{"peer": [families]}]``."""
        text = RELAY_DROPPED + b"%d" % self.count
        if self.affected is not None:
            text += b" " + json.dumps({p: sorted(f) for p, f in self.affected.items()}).encode()
        return text

    @staticmethod
    def decode(line: bytes) -> Tuple[int, Optional[Dict[str, Set[str]]]]:
        """(count, affected) of a notice :meth:`encode` wrote (anything unreadable: everything)."""
        count, _, rest = line[len(RELAY_DROPPED):].strip().partition(b" ")
        affected: Optional[Dict[str, Set[str]]] = None
        if rest:
            try:
                data = json.loads(rest)
                affected = {str(p): {str(f) for f in fams} for p, fams in data.items()}
            except (ValueError, TypeError, AttributeError):
                affected = None
        return (int(count) if count.isdigit() else 1), affected


class LineQueue:
    """Lines from the stdin reader thread to the loop, bounded by ``max_lines`` and
    ``max_bytes``.  :meth:`put` never blocks: what does not fit is dropped and counted
    (:attr:`dropped` in all, :attr:`lost`: :class:`Lost` since :meth:`take_lost`); ``None`` (the end
    of the stream) always fits.  Thread-safe between one producer and one consumer."""

    def __init__(self, max_lines: int = MAX_QUEUED_LINES, max_bytes: int = MAX_QUEUED_BYTES) -> None:
        self.max_lines = max_lines
        self.max_bytes = max_bytes
        self.lock = threading.Lock()
        self.items: Deque[Optional[bytes]] = collections.deque()
        self.bytes = 0
        self.dropped = 0
        self.lost = Lost()

    def put(self, lines: List[bytes]) -> int:
        """Queue ``lines``; returns how many were dropped."""
        size = sum(map(len, lines))
        with self.lock:
            if len(self.items) + len(lines) <= self.max_lines and self.bytes + size <= self.max_bytes:
                self.items.extend(lines)
                self.bytes += size
                return 0
            kept = 0
            for line in lines:
                if len(self.items) < self.max_lines and self.bytes + len(line) <= self.max_bytes:
                    self.items.append(line)
                    self.bytes += len(line)
                    kept += 1
                else:
                    self.lost.note(line)
            dropped = len(lines) - kept
            self.dropped += dropped
            return dropped

    def take_lost(self) -> Lost:
        """What was dropped since the last call (and forget it)."""
        with self.lock:
            lost, self.lost = self.lost, Lost()
        return lost

    def end(self) -> None:
        with self.lock:
            self.items.append(None)

    def take(self) -> List[Optional[bytes]]:
        with self.lock:
            items, self.items = self.items, collections.deque()
            self.bytes = 0
        return list(items)

    def has_room(self) -> bool:
        """Below half of both bounds (a recovery now has room to arrive)."""
        with self.lock:
            return len(self.items) <= self.max_lines // 2 and self.bytes <= self.max_bytes // 2

    def __len__(self) -> int:
        return len(self.items)


def pump_lines(rfile, splitter: "LineSplitter", lines: "LineQueue", queued: Callable[[], None],
               ended: Callable[[], None], nap: float = 0.0) -> None:
    """A reader thread's body: ``rfile`` (ExaBGP's stdin pipe) read to its end, up to 64 KB per
    read, split by ``splitter`` and put on ``lines`` (bounded: what does not fit is dropped and
    counted there); ``queued()`` after lines were put, then, whatever ended the stream (EOF, an
    error of any kind: logged), the last partial line is flushed, ``lines.end()`` and
    ``ended()``, always: a reader that died silently left ExaBGP blocked on a full pipe.
    ``nap``: seconds to wait after a short read, so that lines gather (fewer, larger reads)."""
    try:
        while True:
            data = rfile.read1(1 << 16)
            if not data:
                break
            batch = splitter.feed(data)
            if batch:
                lines.put(batch)
                queued()
            if nap and len(data) < 1 << 16:
                time.sleep(nap)
    except BaseException as exc:  # noqa: B902 - the end is signalled whatever it was
        log.error("reading stdin failed: %s: %s", type(exc).__name__, exc, exc_info=not isinstance(exc, OSError))
    finally:
        try:
            rest = splitter.end()
            if rest:
                lines.put(rest)
        except Exception as exc:
            log.error("reading stdin: the last line is lost: %s: %s", type(exc).__name__, exc)
        lines.end()  # end of stream, always
        ended()


class SocketInUse(OSError):
    """Another process answers on the Unix socket path we were to listen on."""


def _stale_socket(path: str, probe_timeout: float) -> bool:
    """Whether the socket at ``path`` is stale (nobody accepts on it).  Raises
    :class:`SocketInUse` when someone answers (or might: the probe timed out, or was refused
    access)."""
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
    probe.settimeout(probe_timeout)
    try:
        probe.connect(path)
    except ConnectionRefusedError:  # bound, but nobody listens: left by a process that died
        return True
    except FileNotFoundError:
        return False
    except OSError as exc:  # a full backlog (timeout), a permission problem...: someone may be there
        raise SocketInUse(errno.EADDRINUSE, "%s: another process may be listening on it (%s); not removed"
                          % (path, exc.strerror or exc)) from None
    finally:
        probe.close()
    raise SocketInUse(errno.EADDRINUSE, "%s: another process is listening on it (another kernelsync instance?); "
                      "not removed: stop it, or give this instance another socket path" % path)


def listen_unix(path: str, backlog: int, probe_timeout: float = 1.0) -> socket.socket:
    """A non-blocking Unix stream socket listening at ``path``, reachable by root only: its
    directory is created 0700, the socket is bound under umask 077 and set to 0600.  A socket
    left at ``path`` by a process that died (a connection is refused) is removed; one that
    accepts a connection belongs to a live process (another instance): :class:`SocketInUse`
    names the path and nothing is removed.  Anything else there is left and the bind fails."""
    os.makedirs(os.path.dirname(path) or ".", mode=0o700, exist_ok=True)
    try:
        if stat.S_ISSOCK(os.lstat(path).st_mode) and _stale_socket(path, probe_timeout):
            os.unlink(path)
    except FileNotFoundError:
        pass
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
    old = os.umask(0o077)
    try:
        sock.bind(path)
    except OSError:
        sock.close()
        raise
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
    the reader does not wake the loop again until :meth:`take` clears it.  ``lines``: the
    bounded :class:`LineQueue`; ``out``: the bounded command queue."""

    name = "stdin"

    def __init__(self, waker: Waker, rfile=None, wfile=None, max_lines: int = MAX_QUEUED_LINES,
                 max_bytes: int = MAX_QUEUED_BYTES, max_commands: int = MAX_QUEUED_COMMANDS,
                 max_line: int = MAX_LINE) -> None:
        self.rfile = rfile if rfile is not None else sys.stdin.buffer
        self.wfile = wfile if wfile is not None else sys.stdout.buffer
        self.lines = LineQueue(max_lines, max_bytes)
        self.splitter = LineSplitter(self.name, max_line)
        self.waker = waker
        self.out: "queue.Queue[Optional[str]]" = queue.Queue(maxsize=max_commands)
        self.commands_dropped = 0
        self.closed = False
        self.pending = False
        self.reader = threading.Thread(target=self._read, name="stdin-reader", daemon=True)
        self.reader.start()
        threading.Thread(target=self._write, name="stdout-writer", daemon=True).start()

    @property
    def lost(self) -> int:
        """Lines dropped since the last recovery (:meth:`recovered`)."""
        return self.lines.lost.count

    def has_room(self) -> bool:
        return self.lines.has_room()

    def recovered(self) -> Lost:
        """A recovery is asked for: what was dropped since the last one."""
        return self.lines.take_lost()

    def _read(self) -> None:
        """What the pipe holds (up to 64 KB) in one read, split into lines in C: one system call,
        one GIL hand-over and at most one wake-up per chunk instead of per line.  After a short
        read, a nap of READ_NAP lets more lines gather (the pipe is enlarged to PIPE_SIZE where
        the kernel allows: ExaBGP fills 64 KB in >= 15 ms); the first line after a quiet spell is
        read at once.  Whatever goes wrong, the error is logged and the end of the stream is
        signalled (the daemon then stops or holds, instead of ExaBGP blocking on a pipe nobody
        reads)."""
        try:
            fcntl.fcntl(self.rfile.fileno(), fcntl.F_SETPIPE_SZ, PIPE_SIZE)
        except Exception:  # not a pipe, or more than this process may have: the pipe stays as it is
            pass
        pump_lines(self.rfile, self.splitter, self.lines, self._queued, self.waker.wake, READ_NAP)

    def _queued(self) -> None:
        if not self.pending:  # one wake-up per burst (a drop wakes too: the loop recovers)
            self.pending = True
            self.waker.wake()

    def _write(self) -> None:
        while True:
            command = self.out.get()
            if command is None:
                return
            try:
                self.wfile.write(command.encode() + b"\n")
                self.wfile.flush()
            except Exception as exc:  # the writer must live on: every later command gets its chance
                log.error("cannot write to ExaBGP (stdout): %s: %s; command dropped: %s",
                          type(exc).__name__, exc, command)

    def send(self, command: str) -> bool:
        """Queue ``command`` for stdout; False (dropped, counted, logged) when MAX_QUEUED_COMMANDS
        wait already (ExaBGP does not read its processes' output)."""
        try:
            self.out.put_nowait(command)
            return True
        except queue.Full:
            self.commands_dropped += 1
            if self.commands_dropped == 1 or self.commands_dropped % 10_000 == 0:
                log.error("stdin: %d commands wait for ExaBGP to read them; command dropped (%d so far): %s",
                          self.out.maxsize, self.commands_dropped, command)
            return False

    def take(self) -> List[Optional[bytes]]:
        """Every queued line (None: the end of the stream)."""
        self.pending = False  # before draining: a line appended from now on wakes us again
        return self.lines.take()

    @property
    def lines_too_long(self) -> int:
        return self.splitter.too_long

    def close(self) -> None:
        try:
            self.out.put_nowait(None)
        except queue.Full:
            pass  # the writer is stuck on a stdout nobody reads: it is a daemon thread


class RelayChannel:
    """One relay connection (``kernelsync exabgp`` in relay mode) on the daemon's socket.
    ``events``: what the loop's selector waits for (writable too while commands wait).
    ``lost``: lines the relay said it dropped (:data:`RELAY_DROPPED`), not recovered yet
    (:attr:`dropped`: what they were about)."""

    def __init__(self, sock: socket.socket, number: int, max_wbuf: int = MAX_RELAY_WBUF,
                 max_line: int = MAX_LINE) -> None:
        self.sock = sock
        self.name = "relay#%d" % number
        self.splitter = LineSplitter(self.name, max_line)
        self.wbuf = bytearray()
        self.max_wbuf = max_wbuf
        self.commands_dropped = 0
        self.dropped = Lost()
        self.closed = False
        self.events = selectors.EVENT_READ
        self.callback: Optional[Callable[[float], None]] = None
        sock.setblocking(False)

    def send(self, command: str) -> bool:
        """Queue and send what the socket takes; False (dropped, counted, logged) when more than
        ``max_wbuf`` bytes already wait (a relay that does not read)."""
        data = command.encode() + b"\n"
        if len(self.wbuf) + len(data) > self.max_wbuf:
            self.commands_dropped += 1
            if self.commands_dropped == 1 or self.commands_dropped % 10_000 == 0:
                log.error("%s: %d bytes of commands wait for the relay to read them; command dropped (%d so far): "
                          "%s", self.name, len(self.wbuf), self.commands_dropped, command)
            return False
        self.wbuf += data
        self.flush()
        return True

    def flush(self) -> None:
        while self.wbuf and not self.closed:
            try:
                sent = self.sock.send(self.wbuf)
            except BlockingIOError:
                return
            except OSError:
                self.closed = True
                return
            del self.wbuf[:sent]

    def has_room(self) -> bool:
        return True  # the relay sends its notice once it has room again

    @property
    def lost(self) -> int:
        return self.dropped.count

    def recovered(self) -> Lost:
        lost, self.dropped = self.dropped, Lost()
        return lost

    @property
    def lines_too_long(self) -> int:
        return self.splitter.too_long

    def take(self) -> List[Optional[bytes]]:
        """The complete lines received (None at the end: the connection closed); at most
        MAX_RELAY_READ bytes per call (the socket stays readable for the rest)."""
        lines: List[Optional[bytes]] = []
        got = 0
        while got < MAX_RELAY_READ:
            try:
                data = self.sock.recv(1 << 20)
            except BlockingIOError:
                break
            except OSError:
                data = b""
            if not data:
                self.closed = True
                break
            got += len(data)
            lines.extend(self.splitter.feed(data))
        if self.closed:
            lines.extend(self.splitter.end())
        if any(line.startswith(RELAY_DROPPED) for line in lines if line):
            kept: List[Optional[bytes]] = []
            for line in lines:
                if line and line.startswith(RELAY_DROPPED):
                    self.dropped.merge(*Lost.decode(line))
                else:
                    kept.append(line)
            lines = kept
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
#: ``listener(channel, now, affected)``, called when a stream that dropped lines has room again:
#: ``affected`` peer address -> families whose UPDATEs were dropped (None: every peer and family)
LostListener = Callable[[Channel, float, Optional[Dict[str, Set[str]]]], None]
#: ``consumer(channel, lines, now)``: lines received (None: the end of the stream)
LineConsumer = Callable[[Channel, List[Optional[bytes]], float], None]


class ExabgpStreams(BaseFeed):
    """Every open ExaBGP stream; see the module docstring.  ``stdin``: ExaBGP's pipe is ours
    (``kernelsync exabgp``); ``listen``: Unix socket path for relays (None: none).

    Consumers register before :meth:`start` (which opens stdin): :attr:`on_open` (called in
    order for every stream that opens) and :attr:`consumer` (every line).  It is driven by the
    daemon's loop like a feed: :meth:`commit` gives up on commands ExaBGP did not answer, and
    tells :attr:`on_lost` listeners when a stream that dropped lines has room again (they ask
    ExaBGP to send everything again)."""

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
        self.on_lost: List[LostListener] = []
        self.acks: Dict[Channel, AckTracker] = {}
        self.last_errors: Deque[str] = collections.deque(maxlen=20)
        self.counters: Dict[str, int] = {"acks_done": 0, "acks_error": 0, "relay_connections": 0, "commands": 0,
                                         "lines_dropped": 0, "lines_too_long": 0, "commands_dropped": 0,
                                         "loss_recoveries": 0}
        self._gone: Dict[str, int] = {"lines_too_long": 0, "commands_dropped": 0}  # of closed channels
        self._relays = 0
        self._now = 0.0

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
        if channel.send(command) is False:  # dropped (counted by the channel)
            return
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
        self._recover(now)

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
        self._recover(now)

    def _recover(self, now: float) -> None:
        """A stream that dropped lines and has room again: its :attr:`on_lost` listeners ask
        ExaBGP to send everything again."""
        for channel in list(self.channels):
            if getattr(channel, "lost", 0) and not channel.closed and channel.has_room():
                lost = channel.recovered()
                self.counters["lines_dropped"] += lost.count
                self.counters["loss_recoveries"] += 1
                if lost.affected is None:
                    tracker = self.acks.get(channel)
                    if tracker is not None and tracker.correlate:  # a reply may be among the lost lines
                        tracker.correlate = False
                        tracker.pending.clear()
                log.error("%s: %d line(s) from ExaBGP were dropped (kernelsync was too slow to take them): %s; "
                          "asking ExaBGP to send them again", channel.name, lost.count,
                          "UPDATEs of %d peer(s)" % len(lost.affected) if lost.affected is not None
                          else "not only UPDATEs (replies are no longer matched to commands)")
                for listener in self.on_lost:
                    listener(channel, now, lost.affected)

    def closed(self, channel: Channel) -> None:
        """The stream ended (its consumer saw the end): forget it."""
        log.warning("%s: ExaBGP stream ended", channel.name)
        channel.closed = True
        for key in self._gone:
            self._gone[key] += getattr(channel, key, 0)
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
        lost = any(getattr(c, "lost", 0) for c in self.channels)  # looked at again until the stream has room
        return earliest(*(t.deadline() for t in self.acks.values()), self._now + RECOVERY_POLL if lost else None)

    def commit(self, now: float) -> None:
        self._now = now
        self._recover(now)
        self._count()
        for channel, tracker in self.acks.items():
            expired = tracker.expire(now)
            if expired:
                log.warning("%s: ExaBGP did not answer %d command(s) within %.0f s (exabgp.api.ack off, or an "
                            "ExaBGP 4.2 that rejected one silently); replies are only counted from now on; "
                            "first: %s", channel.name, len(expired), tracker.timeout, expired[0])

    def _count(self) -> None:
        """Counters of the open channels and of those gone."""
        for key, gone in self._gone.items():
            self.counters[key] = gone + sum(getattr(c, key, 0) for c in self.channels)

    def show(self) -> dict:
        self._count()
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


__all__ = ["ExabgpStreams", "StdinChannel", "RelayChannel", "Channel", "Waker", "AckTracker", "LineSplitter",
           "LineQueue", "Lost", "SocketInUse", "listen_unix", "unix_peer_uid", "truncate", "escape", "MAX_LINE", "MAX_LOGGED_LINE",
           "MAX_QUEUED_LINES", "MAX_QUEUED_BYTES", "MAX_QUEUED_COMMANDS", "MAX_RELAY_WBUF", "RELAY_DROPPED"]
