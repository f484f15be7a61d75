"""Who owns which routes: one kernelsync per ownership key, claimed at start.

The key is the network namespace (the inode of ``/proc/self/ns/net``), the route table and
the route protocol; the nexthop ID range is a second check (nexthop objects belong to no table:
two instances with the same protocol and overlapping ID ranges would delete each other's
objects, whatever their tables).  Two instances owning the same routes undo each other's
writes without end (issue 12: 26,828 netlink messages in 5 s), so the second one is refused at
start with an error naming the first.

The claim is an abstract Unix socket (``unix(7)``: no file, it vanishes with the process,
``kill -9`` included, and its name space is the network namespace's own) named after the key,
``@kernelsync/<netns inode>/owner/t<table>/p<protocol>/ids<first>-<last>``.  Owners are found
in ``/proc/net/unix`` (the names of the abstract sockets of this namespace); claims are
serialised by a second abstract socket held for the few milliseconds of a claim.  The owner
answers one request per connection, a line of text:

* ``who``: JSON ``{"pid", "config", "control_socket", "mode", "state"}`` (``state``:
  ``running``; ``lingering`` for ``kernelsync hold``, which keeps the BGP routes of an instance
  that stopped until their hold time ends; ``stopping``: on its way out).  An owner that does
  not answer (its loop is over) or is stopping is waited for, up to HANDOVER_WAIT;
* ``handover``: a lingering owner answers ``{"ok": true}`` and exits at once without deleting
  anything (the new owner adopts its routes); a running one answers ``{"ok": false, ...}``.

Pure stdlib; the daemon serves the socket from its loop (:meth:`Claim.register`).
"""
from __future__ import annotations

import errno
import json
import logging
import os
import re
import selectors
import socket
import time
from typing import Callable, List, NamedTuple, Optional, Tuple

log = logging.getLogger("kernelsync.ownership")
PREFIX = "kernelsync/"
LOCK_WAIT = 2.0  # seconds a claim waits for another claim in progress
HANDOVER_WAIT = 5.0  # seconds a new owner waits for a lingering one to hand over and exit
QUERY_TIMEOUT = 1.0  # seconds for an owner's answer
_OWNER = re.compile(r"^@kernelsync/(\d+)/owner/t(\d+)/p(\d+)/ids(\d+)-(\d+)$")


class OwnershipConflict(Exception):
    """Another instance owns (part of) our key; the message names it (pid, config, control
    socket) and what overlaps."""


class Owner(NamedTuple):
    """An owner found in ``/proc/net/unix``: its key and its socket's abstract name."""

    netns: int
    table: int
    protocol: int
    first: int
    last: int
    name: str

    def conflicts(self, table: int, protocol: int, ids: Tuple[int, int]) -> Optional[str]:
        """What we would share with this owner (None: nothing)."""
        if protocol != self.protocol:
            return None
        if table == self.table:
            return "table %d, protocol %d" % (table, protocol)
        if ids[0] <= self.last and self.first <= ids[1]:
            return "nexthop ids %d..%d of protocol %d (its range %d..%d)" % (
                max(ids[0], self.first), min(ids[1], self.last), protocol, self.first, self.last)
        return None


def netns_inode() -> int:
    """The inode of this process's network namespace (``/proc/self/ns/net``)."""
    return os.stat("/proc/self/ns/net").st_ino


def owners(netns: int) -> List[Owner]:
    """Every kernelsync owner socket of this network namespace (``/proc/net/unix``, where the
    abstract names of this namespace are listed with a leading ``@``)."""
    out = []
    try:
        with open("/proc/net/unix") as fh:
            lines = fh.read().splitlines()[1:]
    except OSError:
        return out
    for line in lines:
        fields = line.split()
        if len(fields) < 8:
            continue
        m = _OWNER.match(fields[-1])
        if m and int(m.group(1)) == netns and fields[5] == "01":  # state 01: listening (not a client)
            out.append(Owner(*(int(g) for g in m.groups()), name=fields[-1][1:]))
    return out


def _abstract(name: str) -> bytes:
    return b"\0" + name.encode()


def ask(name: str, request: str, timeout: float = QUERY_TIMEOUT) -> dict:
    """Send ``request`` to the owner socket ``name``; its JSON answer.  OSError/ValueError when
    it does not answer."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC) as sock:
        sock.settimeout(timeout)
        sock.connect(_abstract(name))
        sock.sendall(request.encode() + b"\n")
        data = b""
        while not data.endswith(b"\n"):
            chunk = sock.recv(4096)
            if not chunk:
                break
            data += chunk
    return json.loads(data.decode())


def describe(info: dict) -> str:
    return "pid %s, config %s, control socket %s, %s" % (
        info.get("pid", "?"), info.get("config") or "-", info.get("control_socket") or "-",
        "%s mode, %s" % (info.get("mode", "?"), info.get("state", "?")))


class Claim:
    """Our ownership of ``(netns, table, protocol)`` and ``ids``, held while the process lives
    (or until :meth:`close`).  ``info``: what ``who`` answers (pid, config, control socket,
    mode); ``state``: ``running`` or ``lingering`` (see the module docstring);
    ``on_handover``: called when a lingering owner is asked to hand over."""

    def __init__(self, table: int, protocol: int, ids: Tuple[int, int], info: dict) -> None:
        self.table = table
        self.protocol = protocol
        self.ids = (int(ids[0]), int(ids[1]))
        self.netns = netns_inode()
        self.info = dict(info, pid=os.getpid())
        self.state = "running"
        self.on_handover: Optional[Callable[[], None]] = None
        self.sock: Optional[socket.socket] = None
        self.name = "%s%d/owner/t%d/p%d/ids%d-%d" % (PREFIX, self.netns, table, protocol, *self.ids)
        self.handed_over = 0  # lingering owners that handed over to us

    # claiming ------------------------------------------------------------------------------
    def acquire(self, handover_wait: float = HANDOVER_WAIT) -> None:
        """Claim the key or raise :class:`OwnershipConflict`.  A lingering owner of the same
        key is asked to hand over, and waited for (``handover_wait`` seconds)."""
        deadline = time.monotonic() + handover_wait
        while True:
            lock = self._lock()
            try:
                conflicts = [(o, why) for o in owners(self.netns)
                             for why in [o.conflicts(self.table, self.protocol, self.ids)] if why]
                if not conflicts:
                    self._bind()
                    return
            finally:
                lock.close()
            owner, why = conflicts[0]
            try:
                info = ask(owner.name, "who")
            except (OSError, ValueError):
                info = {}  # gone meanwhile, or not answering (stopping: its loop is over)
            state = info.get("state")
            if state in (None, "stopping") and time.monotonic() < deadline:
                self._wait_gone(owner.name, min(deadline, time.monotonic() + 0.5))  # an owner on its way out
                continue
            if state != "lingering" or time.monotonic() >= deadline:
                raise OwnershipConflict(
                    "another kernelsync owns %s in this network namespace (netns inode %d): %s; refusing to "
                    "start (two owners undo each other's writes without end); stop it, or give this one "
                    "another table, protocol or nexthop_id_range" % (why, self.netns, describe(info)))
            try:
                answer = ask(owner.name, "handover")
            except (OSError, ValueError):
                answer = {"ok": True}  # it exited while we asked
            if answer.get("ok"):
                log.info("asked the lingering owner (%s) to hand over its routes", describe(info))
                self.handed_over += 1
            self._wait_gone(owner.name, deadline)

    def _wait_gone(self, name: str, deadline: float) -> None:
        while time.monotonic() < deadline and any(o.name == name for o in owners(self.netns)):
            time.sleep(0.01)

    def _lock(self) -> socket.socket:
        """The claim mutex (an abstract socket bound for the few milliseconds of a claim)."""
        deadline = time.monotonic() + LOCK_WAIT
        while True:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
            try:
                sock.bind(_abstract("%s%d/claiming" % (PREFIX, self.netns)))
                return sock
            except OSError as exc:
                sock.close()
                if exc.errno != errno.EADDRINUSE or time.monotonic() >= deadline:
                    raise
            time.sleep(0.005)

    def _bind(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
        try:
            sock.bind(_abstract(self.name))
        except OSError as exc:
            sock.close()
            if exc.errno == errno.EADDRINUSE:
                raise OwnershipConflict("another kernelsync owns %s in this network namespace" % self.name) from exc
            raise
        sock.listen(8)
        sock.setblocking(False)
        self.sock = sock

    # serving -------------------------------------------------------------------------------
    def register(self, sel: selectors.BaseSelector) -> None:
        """Answer requests from the daemon's loop."""
        if self.sock is not None:
            sel.register(self.sock, selectors.EVENT_READ, lambda now: self._accept(sel))

    def _accept(self, sel: selectors.BaseSelector) -> None:
        try:
            conn, _ = self.sock.accept()
        except BlockingIOError:
            return
        conn.setblocking(False)
        buf = bytearray()
        started = time.monotonic()

        def readable(now: float) -> None:
            try:
                chunk = conn.recv(256)
            except BlockingIOError:
                return
            except OSError:
                chunk = b""
            buf.extend(chunk)
            if chunk and b"\n" not in buf and len(buf) < 256 and now - started < QUERY_TIMEOUT:
                return
            sel.unregister(conn)
            try:
                self._answer(conn, bytes(buf).split(b"\n", 1)[0].decode(errors="replace").strip())
            finally:
                conn.close()

        sel.register(conn, selectors.EVENT_READ, readable)

    def _answer(self, conn: socket.socket, request: str) -> None:
        if request == "who":
            reply = dict(self.info, state=self.state)
        elif request == "handover":
            ok = self.state == "lingering"
            reply = {"ok": ok} if ok else {"ok": False, "error": "running: not handing over"}
        else:
            reply = {"error": "unknown request %r (known: who, handover)" % request[:40]}
        try:
            conn.setblocking(True)
            conn.settimeout(0.2)
            conn.sendall(json.dumps(reply).encode() + b"\n")
        except OSError:
            pass
        if request == "handover" and reply.get("ok") and self.on_handover is not None:
            self.on_handover()

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock = None


__all__ = ["Claim", "OwnershipConflict", "Owner", "owners", "ask", "netns_inode"]
