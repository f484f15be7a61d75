"""The event loop: netlink notifications, a root-only control socket, timers, signals.

One thread, ``selectors``; the :class:`~kernelsync.engine.Engine` decides, this module only
waits and dispatches.  Notifications are drained completely before the engine runs, so a burst
of link events costs one repair.  SIGTERM/SIGINT stop (routes stay unless ``flush_on_exit``);
SIGHUP forces a full resync.

Control socket protocol: one request line (``show rib``, ``show fib``, ``show nexthops``,
``show stats``, ``resync``), one JSON document back, then the server closes.
"""
from __future__ import annotations

import json
import logging
import os
import selectors
import signal
import socket
import stat
import time
from typing import Optional

from .config import Config
from .engine import Engine, describe_op, load_static
from .netlink import (RTM_DELADDR, RTM_DELLINK, RTM_DELNEXTHOP, RTM_NEWADDR, RTM_NEWLINK, RTM_NEWNEXTHOP,
                      EventSocket, ResyncNeeded, RtNetlink)
from .pr2 import decode_nhmsg, to_knexthop

log = logging.getLogger("kernelsync.daemon")
ERROR_HOLD = 1.0  # seconds


class Daemon:
    """``kernelsync run`` (and ``kernelsync exabgp`` owning the FIB, with ``exabgp_stdin``).

    The BGP feed is on when ExaBGP's pipe is ours (``exabgp_stdin``) or relays may connect
    (``[exabgp] listen``)."""

    def __init__(self, cfg: Config, dry_run: bool = False, exabgp_stdin: bool = False) -> None:
        self.cfg = cfg
        self.dry_run = dry_run
        self.exabgp_stdin = exabgp_stdin
        self.feed = None  # the BGP feed (ExaBGP)
        self.feeds: list = []  # every feed with a shell: the BGP feed, [[feed.table]], [feed.fpm]
        self.stopping = False
        self.kernel = RtNetlink(cfg.kernel.protocol)
        # subscribe before the first dump, so no change between dump and subscription is lost
        self.events = EventSocket()
        self.engine = Engine(cfg.kernel, self.kernel, dry_run=dry_run)
        self.control: Optional[socket.socket] = None

    # setup ---------------------------------------------------------------------------------
    def _open_control(self) -> None:
        if self.cfg.control_socket:
            self.control = listen_unix(self.cfg.control_socket, 8)

    def dry_run_plan(self) -> int:
        """Plan once against the kernel and print the operations; write nothing."""
        now = time.monotonic()
        self.engine.start(now)
        load_static(self.engine, self.cfg)
        result = self.engine.run(now)
        for op in result.ops:
            print(describe_op(op))
        print("# %d operations planned%s; nothing written (dry run)" % (
            len(result.ops), ", %d deletions held back" % result.deferred if result.deferred else ""))
        return 0

    # loop ----------------------------------------------------------------------------------
    def run(self) -> int:
        engine = self.engine
        now = time.monotonic()
        engine.start(now)
        load_static(engine, self.cfg)
        self._open_control()
        sel = selectors.DefaultSelector()
        if self.exabgp_stdin or self.cfg.exabgp.listen:
            from .bgpfeed import BgpFeed
            self.feed = BgpFeed(engine.rib, self.cfg.bgp, self.kernel, now,
                                stdin=self.exabgp_stdin, listen=self.cfg.exabgp.listen,
                                refresh_on_start=self.cfg.exabgp.route_refresh_on_start,
                                restart=bool(engine.observed_nh), export=self.cfg.export)
            self.feeds.append(self.feed)
        elif self.cfg.export.enabled:
            log.warning("[export] is configured but nothing is exported: exporting needs ExaBGP "
                        "(kernelsync exabgp, or [exabgp] listen for relays)")
        if self.cfg.table_feeds:
            from .tablefeed import TableFeed
            self.feeds.extend(TableFeed(engine.rib, tf, self.kernel) for tf in self.cfg.table_feeds)
        if self.cfg.fpm_feed is not None:
            from .fpm import FpmFeed
            self.feeds.append(FpmFeed(engine.rib, self.cfg.fpm_feed))
        for feed in self.feeds:
            feed.start(sel, engine.links, now)
        sel.register(self.events.sock, selectors.EVENT_READ, "events")
        if self.control is not None:
            sel.register(self.control, selectors.EVENT_READ, "control")
        rfd, wfd = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        sel.register(rfd, selectors.EVENT_READ, "signal")
        old_wakeup = signal.set_wakeup_fd(wfd)
        handlers = {sig: signal.signal(sig, self._on_signal) for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)}
        log.info("kernelsync started: table %d, protocol %d, nexthop ids %d..%d, %d static routes",
                 self.cfg.kernel.table, self.cfg.kernel.protocol, *self.cfg.kernel.nexthop_id_range,
                 len(self.cfg.static_routes))
        log_compat_mode()
        event_at: Optional[float] = None
        hold_until = 0.0  # after an unexpected error, wait a little before the next run
        feeds = self.feeds
        try:
            while not self.stopping:
                now = time.monotonic()
                due = None
                for feed in feeds:
                    try:
                        feed.commit(now)
                    except Exception:  # never die on one bad cycle
                        log.exception("unexpected error in a feed (%s); continuing", type(feed).__name__)
                    feed_due = feed.deadline()
                    if feed_due is not None:
                        due = feed_due if due is None else min(due, feed_due)
                if self.feed is not None and self.feed.ended:
                    log.info("ExaBGP closed our stdin: stopping")
                    break
                engine_due = engine.deadline()  # the feeds' commits may have changed the RIB
                if engine_due is not None:
                    due = engine_due if due is None else min(due, engine_due)
                if due is not None:
                    due = max(due, hold_until)
                if due is not None and due <= now:
                    try:
                        result = engine.run(now)
                    except Exception:  # never die on one bad cycle: log it, resync a bit later
                        log.exception("unexpected error in the sync cycle; full resync in %.0f s", ERROR_HOLD)
                        engine.request_full_sync()
                        hold_until = time.monotonic() + ERROR_HOLD
                        continue
                    if event_at is not None:
                        engine.last_repair_ms = (time.monotonic() - event_at) * 1000
                        log.info("link event handled in %.1f ms (%d writes)", engine.last_repair_ms, len(result.ops))
                        event_at = None
                    continue
                timeout = None if due is None else max(0.0, due - now)
                for key, _ in sel.select(timeout):
                    if key.data == "events":
                        woke = time.monotonic()  # before the link table is re-read
                        try:
                            if self._read_events():
                                event_at = event_at or woke
                        except Exception:  # e.g. a link dump that failed: re-read everything
                            log.exception("handling netlink notifications failed; full resync")
                            engine.request_full_sync()
                    elif key.data == "control":
                        self._serve_control()
                    elif callable(key.data):
                        try:
                            key.data(time.monotonic())
                        except Exception:  # a feed bug must not take the FIB manager down
                            log.exception("feed handler failed")
                    else:
                        try:
                            os.read(rfd, 512)
                        except BlockingIOError:
                            pass
        finally:
            signal.set_wakeup_fd(old_wakeup)
            os.close(rfd)
            os.close(wfd)
            for sig, handler in handlers.items():
                signal.signal(sig, handler)
            if self.cfg.kernel.flush_on_exit and not self.dry_run:
                result = engine.flush()
                log.info("flushed our routes and nexthops on exit: %d operations", len(result.ops))
            else:
                log.info("stopping; routes stay in the kernel (graceful; flush_on_exit = false)")
            if self.control is not None and self.cfg.control_socket:
                try:
                    os.unlink(self.cfg.control_socket)
                except OSError:
                    pass
            for feed in feeds:
                feed.close()
            self.events.close()
            self.kernel.close()
        return 0

    def _on_signal(self, signum, _frame) -> None:
        if signum == signal.SIGHUP:
            log.info("SIGHUP: full resync")
            self.engine.request_full_sync()
        else:
            self.stopping = True

    def _read_events(self) -> bool:
        """Drain notifications; returns True if a link changed."""
        now = time.monotonic()
        try:
            messages = self.events.read()
        except ResyncNeeded as exc:
            log.warning("%s; full resync", exc)
            self.engine.on_link_event(now)
            self.engine.request_full_sync()
            return True
        link = addr = False
        for mtype, raw in messages:
            if mtype in (RTM_NEWLINK, RTM_DELLINK):
                link = True
            elif mtype in (RTM_NEWADDR, RTM_DELADDR):
                addr = True
            elif mtype in (RTM_NEWNEXTHOP, RTM_DELNEXTHOP):
                try:
                    obj = to_knexthop(decode_nhmsg(raw))
                except Exception as exc:  # a notification we cannot decode: re-read instead
                    log.warning("undecodable nexthop notification (%s); repairing by dump", exc)
                    self.engine.need_repair = True
                    continue
                self.engine.on_nexthop_event(mtype == RTM_DELNEXTHOP, obj)
                for feed in self.feeds:
                    feed.on_nexthop_event()
        if link:
            self.engine.on_link_event(now)
        if addr:
            self.engine.on_address_event(now)
        if link or addr:
            for feed in self.feeds:
                feed.on_kernel_change(self.engine.links, link, addr, now)
        return link

    def _serve_control(self) -> None:
        try:
            conn, _ = self.control.accept()
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

    def answer(self, request: str):
        engine = self.engine
        views = {"show rib": engine.show_rib, "show fib": engine.show_fib,
                 "show nexthops": engine.show_nexthops, "show stats": engine.show_stats}
        if self.feed is not None:
            views["show bgp"] = self.feed.show
            views["show export"] = self.feed.show_export
        tables = [f for f in self.feeds if f is not self.feed]
        if tables:
            views["show feeds"] = lambda: {f.cfg.name: f.show() for f in tables}
        if request in views:
            result = views[request]()
            if request == "show stats" and self.feed is not None:
                result["bgp"] = self.feed.show()["counters"]
            return result
        if request == "resync":
            engine.request_full_sync()
            return {"ok": True}
        return {"error": "unknown request %r (known: %s, resync)" % (request, ", ".join(views))}


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


def log_compat_mode() -> None:
    """Say which net.ipv4.nexthop_compat_mode this namespace runs with (the operator's choice)."""
    try:
        with open("/proc/sys/net/ipv4/nexthop_compat_mode") as fh:
            mode = fh.read().strip()
    except OSError:
        return
    if mode == "1":
        log.info("net.ipv4.nexthop_compat_mode=1: route dumps show nexthops expanded (readable by BIRD "
                 "and older tools), but every group change costs one RTM_NEWROUTE per route using it "
                 "(O(routes)); set it to 0 for O(1) group changes")
    else:
        log.info("net.ipv4.nexthop_compat_mode=%s: group changes are O(1); tools that do not know "
                 "nexthop objects see routes with nhid and no nexthops", mode)


def query(path: str, request: str, timeout: float = 5.0):
    """Send one control request to a running daemon; returns the decoded JSON answer."""
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
