"""The ExaBGP feed's shell: line channels, kernel reads for next-hop resolution, glue.

A *channel* is one ExaBGP stream of JSON lines, and the way back for commands:

* :class:`StdinChannel` (``kernelsync exabgp``, ExaBGP's own process): a thread reads stdin
  and only queues lines, so stdin is drained even while the kernel is slow (ExaBGP writes with
  blocking writes; a process that stops reading freezes its BGP sessions).  Another thread
  writes commands to stdout, flushed, so a slow stdout never blocks the feed.
* :class:`RelayChannel`: one connection of ``kernelsync exabgp`` in relay mode to the
  long-running ``kernelsync run`` (``[exabgp] listen``, a root-only Unix socket).

Every line goes through :class:`kernelsync.exabgp.Parser` into :class:`kernelsync.bgp.BgpRib`;
a bad line is logged with its (truncated) text, counted and skipped.  When a channel opens,
kernelsync asks ExaBGP for its version and a route-refresh of each family, so that a respawned
process or a reconnected relay rebuilds its Adj-RIB-In (ExaBGP replays nothing by itself).

Export (``[export]``, :mod:`kernelsync.export`): the announced set is sent whole on every
channel that opens (ExaBGP restarted, or we did), and changes go to every open channel.  Each
command's ``done``/``error`` is matched to it (:class:`~kernelsync.export.AckTracker`) and an
``error`` is logged with the command.  The announced set is kept in ``[export] state_file``, so
a prefix that went away while kernelsync was not running is withdrawn when it is back.
"""
from __future__ import annotations

import collections
import fcntl
import json
import logging
import os
import selectors
import socket
import struct
import sys
import threading
import time
import queue
from typing import Deque, Dict, List, Optional

from .bgp import BgpRib, BgpSettings
from .exabgp import Ack, FeedError, Parser, Version, route_refresh_command
from .export import AckTracker, Exporter
from .model import Link, format_prefix, parse_prefix
from .netlink import RTM_DELROUTE, RTM_NEWROUTE, RTN_UNICAST, RouteEventSocket, RtNetlink, parse_route
from .resolve import Resolver
from .rib import Rib

log = logging.getLogger("kernelsync.exabgp")
MAX_LOGGED_LINE = 300  # characters of a bad line kept in the log
MAX_LINE = 16 << 20  # a longer line is cut off and counted as bad
COMMIT_DELAY = 0.01  # seconds a change waits for the rest of its burst (one kernel batch)
COMMIT_MAX = 10_000  # prefixes that commit at once, delay or not
READ_NAP = 0.01  # seconds the stdin reader waits after a short read (fewer, larger reads)
PIPE_SIZE = 1 << 20  # bytes the stdin pipe may hold (F_SETPIPE_SZ): ExaBGP never waits for a nap


def _truncate(line: str) -> str:
    return line if len(line) <= MAX_LOGGED_LINE else "%s... (%d characters)" % (line[:MAX_LOGGED_LINE], len(line))


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
    """ExaBGP's pipe: lines in on stdin (reader thread), commands out on stdout (writer thread)."""

    name = "stdin"

    def __init__(self, waker: Waker, rfile=None, wfile=None) -> None:
        self.rfile = rfile if rfile is not None else sys.stdin.buffer
        self.wfile = wfile if wfile is not None else sys.stdout.buffer
        self.lines: Deque[Optional[bytes]] = collections.deque()
        self.waker = waker
        self.out: "queue.Queue[Optional[str]]" = queue.Queue()
        self.closed = False
        self.pending = False  # a wake-up is on its way; take() clears it before draining
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
        self.pending = False  # before draining: a line appended from now on wakes us again
        out = []
        lines = self.lines
        while lines:
            out.append(lines.popleft())
        return out

    def close(self) -> None:
        self.out.put(None)


class RelayChannel:
    """One relay connection (``kernelsync exabgp`` in relay mode) on the daemon's socket."""

    def __init__(self, sock: socket.socket, number: int) -> None:
        self.sock = sock
        self.name = "relay#%d" % number
        self.rbuf = b""
        self.wbuf = b""
        self.closed = False
        self.events = selectors.EVENT_READ  # what the feed's selector waits for
        self.callback = None
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


def peer_uid(sock: socket.socket) -> int:
    """The uid of the process at the other end of a Unix socket (SO_PEERCRED)."""
    creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    return struct.unpack("3i", creds)[1]


class BgpFeed:
    """ExaBGP streams -> :class:`BgpRib` -> the engine's RIB; kernel reads for resolution.

    ``kernel``: the daemon's request socket, used between engine runs for the resolver's dumps;
    its protocol is ours (our own routes never serve to resolve a next hop); ``listen``: Unix
    socket path for relays (None: none); ``stdin``: read ExaBGP's pipe (``kernelsync exabgp``)."""

    def __init__(self, rib: Rib, settings: BgpSettings, kernel: RtNetlink, now: float, stdin: bool = False,
                 listen: Optional[str] = None, refresh_on_start: bool = True, restart: bool = False,
                 export=None) -> None:
        self.settings = settings
        self.protocol = kernel.protocol
        self.parser = Parser()
        self.resolver = Resolver(settings.resolve_via_default)
        self.bgp = BgpRib(rib, self.resolver, settings, now, restart=restart)
        self.listen_path = listen
        self.refresh_on_start = refresh_on_start
        self.waker = Waker()
        self.channels: List[object] = []
        self.stdin: Optional[StdinChannel] = None
        self.want_stdin = stdin
        self.listener: Optional[socket.socket] = None
        self.sel: Optional[selectors.BaseSelector] = None
        self.kernel = kernel
        self.route_events = RouteEventSocket(self.protocol)
        self.recursive_in_use = False
        # a restart (our objects already in the kernel): the kernel keeps forwarding on what we
        # left; BGP's result enters the RIB only once complete, so the FIB never sees a partial
        # RIB (a route moving to one peer's nexthop while the other's refresh is under way)
        self.hold_until_ready = restart
        self.ended = False  # stdin closed: ExaBGP went away
        self._dirty_since: Optional[float] = None  # first change not committed yet
        self._relays = 0
        self._bad_logged = 0
        self.counters: Dict[str, int] = {"lines": 0, "bad_lines": 0, "skipped_families": 0, "acks_done": 0,
                                         "acks_error": 0, "relay_connections": 0, "route_events": 0,
                                         "commands": 0, "export_announces": 0, "export_withdraws": 0}
        self.acks: Dict[object, AckTracker] = {}
        self.last_errors: Deque[str] = collections.deque(maxlen=20)
        # export ---------------------------------------------------------------------------
        self.exporter: Optional[Exporter] = None
        self.state_file: Optional[str] = None
        self._export_dirty = False
        self._export_routes_stale = False  # re-dump the filters' tables (the kernel deletes silently)
        self._export_nexthops_stale = False
        self._unsent_withdraws: Dict[tuple, str] = {}  # no channel was open to take them
        if export is not None and export.enabled:
            self.exporter = Exporter(export.anycast, export.kernel, export.damping, self.protocol)
            self.state_file = export.state_file

    # setup ---------------------------------------------------------------------------------
    def start(self, sel: selectors.BaseSelector, links: Dict[int, Link], now: float) -> None:
        self.sel = sel
        self.resolver.set_links({l.index: l.name for l in links.values()})
        self.read_addresses()
        self.read_routes()
        if self.exporter is not None:
            self._start_export(links, now)
        sel.register(self.waker.rfd, selectors.EVENT_READ, self._on_wake)
        sel.register(self.route_events.sock, selectors.EVENT_READ, self._on_route_events)
        if self.listen_path:
            self._open_listener(self.listen_path)
        if self.want_stdin:
            self.stdin = StdinChannel(self.waker)
            self.channels.append(self.stdin)
            self._opened(self.stdin)

    def _open_listener(self, path: str) -> None:
        from .daemon import listen_unix
        self.listener = listen_unix(path, 4)  # root only: the relay socket writes the FIB
        self.sel.register(self.listener, selectors.EVENT_READ, self._on_accept)
        log.info("accepting ExaBGP relays on %s (mode 0600)", path)

    def _opened(self, channel) -> None:
        now = time.monotonic()
        self.acks[channel] = AckTracker()
        self._send(channel, "version", now)
        if self.refresh_on_start:
            for family in self.settings.families:
                self._send(channel, route_refresh_command(family), now)
            log.info("%s: asked ExaBGP for a route-refresh of %s", channel.name, ", ".join(self.settings.families))
        if self.exporter is not None:
            withdraws = list(self._unsent_withdraws.values())
            self._unsent_withdraws.clear()
            for command in withdraws:
                self._send(channel, command, now)
            for announce, _withdraw, _source in self.exporter.announced.values():
                self._send(channel, announce, now)
            self.counters["export_withdraws"] += len(withdraws)
            self.counters["export_announces"] += len(self.exporter.announced)
            log.info("%s: announced the exported set: %d prefixes (and %d withdrawals not sent before)",
                     channel.name, len(self.exporter.announced), len(withdraws))

    def _send(self, channel, command: str, now: float) -> None:
        self.counters["commands"] += 1
        channel.send(command)
        if isinstance(channel, RelayChannel):
            self._watch_writable(channel)
        tracker = self.acks.get(channel)
        if tracker is not None:
            tracker.sent(command, now)

    # export --------------------------------------------------------------------------------
    def _start_export(self, links: Dict[int, Link], now: float) -> None:
        """Read the kernel, compute the exported set, and queue withdrawals for what the last
        run announced and is gone (from the state file)."""
        exporter = self.exporter
        exporter.set_links(links, now)
        self._read_export_routes()
        if exporter.uses_nexthops:
            exporter.set_nexthops(self.kernel.dump_nexthops())
        exporter.changes(now)
        previous = self._load_state()
        self._unsent_withdraws = {p: w for p, w in previous.items() if p not in exporter.announced}
        self._save_state()
        log.info("export: %d prefixes to announce (%d anycast groups, %d kernel filters, %d kernel routes "
                 "selected); %d announced by the last run to withdraw", len(exporter.announced),
                 len(exporter.anycast), len(exporter.filters), len(exporter.routes), len(self._unsent_withdraws))

    def _read_export_routes(self) -> None:
        routes = []
        for table, protocols in self.exporter.dump_plan().items():
            for protocol in protocols:  # 0: every protocol; else the kernel filters
                routes.extend(self.kernel.dump_table(table, protocol))
        self.exporter.set_routes(routes)
        self._export_routes_stale = False

    def _load_state(self) -> Dict[tuple, str]:
        if not self.state_file:
            return {}
        try:
            with open(self.state_file) as fh:
                data = json.load(fh)
            return {parse_prefix(p): str(w) for p, w in data["withdraw"].items()}
        except FileNotFoundError:
            return {}
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
            log.warning("export: cannot read the state file %s (%s); prefixes the last run announced and "
                        "that are gone now are not withdrawn", self.state_file, exc)
            return {}

    def _save_state(self) -> None:
        """The announced set (prefix -> its withdraw command), written atomically."""
        if not self.state_file:
            return
        data = {"withdraw": {format_prefix(p): e[1] for p, e in self.exporter.announced.items()}}
        data["withdraw"].update({format_prefix(p): w for p, w in self._unsent_withdraws.items()})
        tmp = self.state_file + ".tmp"
        try:
            os.makedirs(os.path.dirname(self.state_file) or ".", mode=0o700, exist_ok=True)
            with open(tmp, "w") as fh:
                json.dump(data, fh)
            os.replace(tmp, self.state_file)
        except OSError as exc:
            log.warning("export: cannot write the state file %s: %s", self.state_file, exc)

    def on_nexthop_event(self) -> None:
        """A nexthop object changed (exported routes may sit on one)."""
        if self.exporter is not None and self.exporter.uses_nexthops:
            self._export_nexthops_stale = True
            self._export_dirty = True

    def _export(self, now: float) -> None:
        """Send what changed in the exported set to every open channel."""
        exporter = self.exporter
        if self._export_routes_stale:
            self._read_export_routes()
        if self._export_nexthops_stale or (exporter.uses_nexthops and not exporter.nexthops):
            exporter.set_nexthops(self.kernel.dump_nexthops())
            self._export_nexthops_stale = False
        self._export_dirty = False
        changes = exporter.changes(now)
        if not changes:
            return
        for prefix, command in changes:
            # changes() made its result the announced set: any other command is a withdrawal
            withdraw = command != exporter.announced.get(prefix, ("",))[0]
            self.counters["export_withdraws" if withdraw else "export_announces"] += 1
            log.info("export: %s", command)
            self._unsent_withdraws.pop(prefix, None)
            if not self.channels:
                if withdraw:
                    self._unsent_withdraws[prefix] = command
                continue
            for channel in self.channels:
                self._send(channel, command, now)
        self._save_state()

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
        self.route_events.close()

    # kernel --------------------------------------------------------------------------------
    def read_addresses(self) -> None:
        self.resolver.set_addresses(self.kernel.dump_addresses())

    def read_routes(self) -> None:
        routes = {}
        for family, dst, plen, _table, proto, rtype, metric, legs, nh_id in self.kernel.dump_table(
                self.settings.resolve_table):
            if proto != self.protocol and rtype == RTN_UNICAST and legs:
                routes[(family, dst, plen, metric)] = legs
        self.resolver.set_routes(routes)

    def on_kernel_change(self, links: Dict[int, Link], link_changed: bool, addresses: bool, now: float) -> None:
        """Links or addresses changed.  Addresses are re-read; on a link change the
        resolution table is too, when a next hop resolves through it, and so are the export
        filters' tables (the kernel deletes routes on a downed link without telling)."""
        self.resolver.set_links({l.index: l.name for l in links.values()})
        if link_changed or addresses:
            self.read_addresses()
        if link_changed and self.recursive_in_use:
            self.read_routes()
        if self.exporter is not None and link_changed:
            lost = self.exporter.set_links(links, now)
            if lost:
                log.info("export: device%s %s lost (up with carrier before, not now)",
                         "s" if len(lost) > 1 else "", ", ".join(sorted(lost)))
            self._export_routes_stale = bool(self.exporter.filters)
            self._export_nexthops_stale = self.exporter.uses_nexthops
            self._export_dirty = True

    def _on_route_events(self, now: float) -> None:
        for mtype, raw in self.route_events.read():
            route = parse_route(raw, 16, len(raw)) if mtype in (RTM_NEWROUTE, RTM_DELROUTE) else None
            if route is None:
                continue
            family, dst, plen, table, proto, rtype, metric, legs, nh_id = route
            if proto == self.protocol:
                continue
            if self.exporter is not None and table in self.exporter.tables:
                if self.exporter.route_event(mtype == RTM_DELROUTE, route):
                    self._export_dirty = True
                    if nh_id and nh_id not in self.exporter.nexthops:
                        self._export_nexthops_stale = True
            if table != self.settings.resolve_table:
                continue
            if rtype != RTN_UNICAST or (not legs and mtype == RTM_NEWROUTE):
                continue
            self.counters["route_events"] += 1
            self.resolver.route_event(mtype == RTM_DELROUTE, family, dst, plen, metric, legs)

    # channels ------------------------------------------------------------------------------
    def _on_accept(self, now: float) -> None:
        try:
            conn, _ = self.listener.accept()
        except BlockingIOError:
            return
        uid = peer_uid(conn)
        if uid != 0:
            log.warning("relay connection from uid %d refused (root only)", uid)
            conn.close()
            return
        self._relays += 1
        self.counters["relay_connections"] += 1
        channel = RelayChannel(conn, self._relays)
        self.channels.append(channel)
        channel.callback = lambda t, c=channel: self._on_relay(c, t)
        self.sel.register(channel.sock, selectors.EVENT_READ, channel.callback)
        log.info("%s connected", channel.name)
        self._opened(channel)

    def _on_relay(self, channel: RelayChannel, now: float) -> None:
        """Readable, or writable while commands wait: read what came, send what waits."""
        self.feed(channel, channel.take(), now)
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
            self.feed(self.stdin, self.stdin.take(), now)
            if self._dirty_since is not None:
                # a commit is due at _dirty_since + COMMIT_DELAY and takes the queued lines first:
                # until then the reader need not wake us for each chunk
                self.stdin.pending = True

    def feed(self, channel, lines: List[Optional[bytes]], now: float) -> None:
        """Parse and apply ``lines`` from ``channel``; None marks the end of the stream."""
        parse = self.parser.parse
        handle = self.bgp.handle
        for raw in lines:
            if raw is None:
                self._closed(channel, now)
                return
            self.counters["lines"] += 1
            try:
                event = parse(raw.decode("utf-8"))
            except (FeedError, UnicodeDecodeError) as exc:
                self._bad(channel, raw, exc)
                continue
            except Exception as exc:  # a parser bug must not lose the rest of the batch
                log.exception("%s: parsing a line failed", channel.name)
                self._bad(channel, raw, exc)
                continue
            if event is None:
                continue
            if isinstance(event, Ack):
                self._ack(channel, event.ok)
                continue
            if isinstance(event, Version):
                tracker = self.acks.get(channel)
                if tracker is not None:
                    tracker.version_seen(event.version)
                log.info("%s: ExaBGP %s%s", channel.name, event.version,
                         " (it does not answer commands it rejects: errors are not reported)"
                         if event.version.startswith("4.") else "")
                continue
            skipped = getattr(event, "skipped", ())
            if skipped:
                self.counters["skipped_families"] += 1
                self._bad(channel, raw, "family %s not handled (skipped; the rest of the update is used)"
                          % ", ".join(skipped), count=False)
            try:
                handle(event, now, channel)
            except Exception as exc:  # a bug on one line must not stop the feed
                log.exception("%s: applying a line failed", channel.name)
                self._bad(channel, raw, exc)

    def _ack(self, channel, ok: bool) -> None:
        self.counters["acks_done" if ok else "acks_error"] += 1
        tracker = self.acks.get(channel)
        command = tracker.reply() if tracker is not None else None
        if not ok:
            text = "%s: ExaBGP rejected the command: %s" % (channel.name, command or "(not known which)")
            self.last_errors.append(text)
            log.error("%s", text)

    def _bad(self, channel, raw: bytes, why, count: bool = True) -> None:
        if count:
            self.counters["bad_lines"] += 1
        self._bad_logged += 1
        if self._bad_logged <= 100 or self._bad_logged % 1000 == 0:
            text = raw.decode("utf-8", errors="replace").rstrip("\n")
            log.warning("%s: skipped line (%s): %s%s", channel.name, why, _truncate(text),
                        " [further bad lines are logged every 1000th]" if self._bad_logged == 100 else "")

    def _closed(self, channel, now: float) -> None:
        log.warning("%s: ExaBGP stream ended", channel.name)
        self.bgp.channel_closed(channel, now)
        if channel is self.stdin:
            self.ended = True
        else:
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
        times = [self.bgp.deadline()]
        if self._dirty_since is not None:
            times.append(self._dirty_since + COMMIT_DELAY)
        if self.exporter is not None:
            times.append(0.0 if self._export_dirty else self.exporter.deadline())
        times.extend(t.deadline() for t in self.acks.values())
        times = [t for t in times if t is not None]
        return min(times) if times else None

    def commit(self, now: float) -> None:
        """Timers due by ``now``, then the decision for what changed, into the RIB.  Lines
        queued on stdin are parsed first once the commit is due."""
        if self.stdin is not None and self._dirty_since is not None and now >= self._dirty_since + COMMIT_DELAY:
            self.feed(self.stdin, self.stdin.take(), now)  # take() lets the reader wake us again
        due = self.bgp.deadline()
        if due is not None and due <= now:
            self.bgp.tick(now)
        if self.exporter is not None:
            reuse = self.exporter.deadline()
            if self._export_dirty or (reuse is not None and reuse <= now):
                self._export(now)
        for channel, tracker in self.acks.items():
            expired = tracker.expire(now)
            if expired:
                log.warning("%s: ExaBGP did not answer %d command(s) within %.0f s (exabgp.api.ack off, or an "
                            "ExaBGP 4.2 that rejected one silently); replies are only counted from now on; "
                            "first: %s", channel.name, len(expired), tracker.timeout, expired[0])
        if self.hold_until_ready:
            if not self.bgp.ready:
                return
            self.hold_until_ready = False
            log.info("restart: BGP's RIB is complete; reconciling the kernel with it")
        if self.bgp.dirty and not self.bgp.resolver_changed():
            if self._dirty_since is None:
                self._dirty_since = now
            if now < self._dirty_since + COMMIT_DELAY and len(self.bgp.dirty) < COMMIT_MAX:
                return  # more of the burst is coming: one decision and one kernel batch for it all
        if self.bgp.pending():
            self._dirty_since = None
            self.bgp.commit()
            self.recursive_in_use = self.resolver.route_hits > 0

    def show(self) -> dict:
        return {"peers": self.bgp.show_peers(), "counters": {**self.counters, **self.bgp.counters},
                "ready": self.bgp.ready, "channels": [c.name for c in self.channels],
                "exabgp_versions": {c.name: t.version for c, t in self.acks.items()},
                "command_errors": list(self.last_errors)}

    def show_export(self) -> dict:
        if self.exporter is None:
            return {"error": "nothing to export: no [[export.anycast]] or [[export.kernel]] in the configuration"}
        return {**self.exporter.show(time.monotonic()), "unsent_withdraws": len(self._unsent_withdraws),
                "command_errors": list(self.last_errors)}

__all__ = ["BgpFeed", "StdinChannel", "RelayChannel", "Waker", "peer_uid"]
