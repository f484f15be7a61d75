"""The daemon: wires the engine, the kernel port and the feeds, and runs the event loop.

One thread, ``selectors``; the :class:`~kernelsync.core.engine.Engine` decides, the feeds
write the RIB, this module waits and dispatches.  Kernel notifications (links, addresses,
nexthop objects; routes of other protocols for the feeds that follow them) are drained
completely and dispatched at once (:meth:`Daemon.handle_notifications`), so a burst of link
events costs one repair.  SIGTERM/SIGINT stop (routes stay unless ``flush_on_exit``); SIGHUP
forces a full resync.  ``show`` requests are answered on the control socket
(:mod:`kernelsync.control`).
"""
from __future__ import annotations

import logging
import os
import selectors
import signal
import struct
import time
from typing import Callable, List, Optional

import attrs

from .config import Config
from .control import ControlServer
from .core.engine import Engine
from .core.model import format_prefix
from .core.port import ResyncNeeded
from .export.feed import ExportFeed
from .feeds.base import Feed, KernelChange, NexthopEvent, RouteEvent
from .feeds.bgpfeed import BgpFeed
from .feeds.channels import ExabgpStreams, SocketInUse
from .feeds.fpm import FpmFeed
from .feeds.static import StaticFeed, StaticRoute
from .feeds.tablefeed import TableFeed
from .kernel.codec import (ADDRESS_MESSAGES, LINK_MESSAGES, NEXTHOP_MESSAGES, NLMSGHDR, ROUTE_MESSAGES,
                           RTM_DELNEXTHOP, RTM_DELROUTE, parse_nexthop, parse_route)
from .kernel.netlink import EventSocket, RouteEventSocket, RtNetlink

log = logging.getLogger("kernelsync.daemon")
ERROR_HOLD = 1.0  # seconds


class Daemon:
    """``kernelsync run`` (and ``kernelsync exabgp`` owning the FIB, with ``exabgp_stdin``).

    The BGP feed is on when ExaBGP's pipe is ours (``exabgp_stdin``) or relays may connect
    (``[exabgp] listen``).  Sockets are opened in the network namespace the daemon is created
    in."""

    def __init__(self, cfg: Config, dry_run: bool = False, exabgp_stdin: bool = False) -> None:
        self.cfg = cfg
        self.dry_run = dry_run
        self.exabgp_stdin = exabgp_stdin
        self.stopping = False
        self.kernel = RtNetlink(cfg.kernel.protocol)
        # subscribe before the first dump, so no change between dump and subscription is lost
        self.events = EventSocket()
        self.route_events: Optional[RouteEventSocket] = None
        self.engine = Engine(cfg.kernel, self.kernel, dry_run=dry_run)
        self.feeds: List[Feed] = []
        self.bgp: Optional[BgpFeed] = None
        self.streams: Optional[ExabgpStreams] = None
        self.export: Optional[ExportFeed] = None
        self.control: Optional[ControlServer] = None

    # setup ---------------------------------------------------------------------------------
    def _static_feed(self) -> StaticFeed:
        cfg = self.cfg
        anycast = [StaticRoute(g.prefix, (g.path(),), g.where) for g in cfg.export.anycast]
        return StaticFeed(self.engine.rib, self.engine.links, cfg.static_routes, cfg.static_distance,
                          cfg.route_errors, anycast=anycast, filename=cfg.filename)

    def _build_feeds(self, now: float) -> None:
        """Every configured feed, in start order: static routes, BGP (then export, then the
        ExaBGP streams: a stream that opens is greeted by both), kernel tables, FPM."""
        cfg, engine = self.cfg, self.engine
        self.feeds.append(self._static_feed())
        if self.exabgp_stdin or cfg.exabgp.listen:
            self.streams = ExabgpStreams(stdin=self.exabgp_stdin, listen=cfg.exabgp.listen)
            self.bgp = BgpFeed(engine.rib, cfg.bgp, self.kernel, cfg.kernel.protocol, engine.links, self.streams,
                               now, refresh_on_start=cfg.exabgp.route_refresh_on_start,
                               restart=bool(engine.observed_nh))
            self.feeds.append(self.bgp)
            if cfg.export.enabled:
                self.export = ExportFeed(cfg.export, self.kernel, cfg.kernel.protocol, engine.links, self.streams)
                self.feeds.append(self.export)
            self.feeds.append(self.streams)
        elif cfg.export.enabled:
            log.warning("[export] is configured but nothing is exported: exporting needs ExaBGP "
                        "(kernelsync exabgp, or [exabgp] listen for relays)")
        self.feeds.extend(TableFeed(engine.rib, tf, self.kernel, engine.links) for tf in cfg.table_feeds)
        if cfg.fpm_feed is not None:
            self.feeds.append(FpmFeed(engine.rib, cfg.fpm_feed, engine.links))
        if any(feed.follows_routes for feed in self.feeds):
            # before the feeds' first dumps, as the link and nexthop subscription
            self.route_events = RouteEventSocket(cfg.kernel.protocol)

    def dry_run_plan(self) -> int:
        """Plan once against the kernel and print the operations; write nothing."""
        now = time.monotonic()
        self.engine.start(now)
        self._static_feed().start(None, now)
        result = self.engine.run(now)
        for op in result.ops:
            print(op.describe())
        print("# %d operations planned%s; nothing written (dry run)" % (
            len(result.ops), ", %d deletions held back" % result.deferred if result.deferred else ""))
        return 0

    # loop ----------------------------------------------------------------------------------
    def run(self) -> int:
        engine = self.engine
        now = time.monotonic()
        engine.start(now)
        self._build_feeds(now)
        sel = selectors.DefaultSelector()
        try:  # the control socket and the relay listener: refused if another instance listens there
            if self.cfg.control_socket:
                self.control = ControlServer(self.cfg.control_socket, self.answer)
                self.control.start(sel)
            for feed in self.feeds:
                feed.start(sel, now)
        except SocketInUse as exc:
            log.error("cannot start: %s", exc.strerror)
            if self.control is not None:
                self.control.close()
            self.close()
            return 1
        event_at: Optional[float] = None  # when the first link event not handled yet was read

        def notified(t: float) -> None:
            nonlocal event_at
            woke = time.monotonic()  # before the link table is re-read
            try:
                if self.handle_notifications(t) and event_at is None:
                    event_at = woke
            except Exception:  # e.g. a link dump that failed: re-read everything
                log.exception("handling netlink notifications failed; full resync")
                engine.request_full_sync()

        sel.register(self.events.sock, selectors.EVENT_READ, notified)
        if self.route_events is not None:
            sel.register(self.route_events.sock, selectors.EVENT_READ, notified)
        rfd, wfd = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        sel.register(rfd, selectors.EVENT_READ, lambda t: _drain(rfd))
        old_wakeup = signal.set_wakeup_fd(wfd)
        handlers = {sig: signal.signal(sig, self._on_signal) for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)}
        log.info("kernelsync started: table %d, protocol %d, nexthop ids %d..%d, %d static routes; feeds: %s",
                 self.cfg.kernel.table, self.cfg.kernel.protocol, *self.cfg.kernel.nexthop_id_range,
                 len(self.cfg.static_routes), ", ".join(f.name for f in self.feeds))
        log_compat_mode()
        for warning in self.cfg.warnings:
            log.warning("%s: %s", self.cfg.filename, warning)
        hold_until = 0.0  # after an unexpected error, wait a little before the next run
        feeds = self.feeds + ([self.control] if self.control is not None else [])  # control: idle clients
        try:
            while not self.stopping:
                now = time.monotonic()
                due = None
                for feed in feeds:
                    try:
                        feed.commit(now)
                    except Exception:  # never die on one bad cycle
                        log.exception("unexpected error in feed %s; continuing", feed.name)
                    feed_due = feed.deadline()
                    if feed_due is not None:
                        due = feed_due if due is None else min(due, feed_due)
                ended = next((f for f in feeds if f.ended), None)
                if ended is not None:
                    log.info("feed %s ended (ExaBGP closed our stdin): stopping", ended.name)
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
                    missed = engine.take_missed_link_change()
                    if missed is not None:
                        log.info("a full read found link changes before their notifications (or notifications were "
                                 "lost): telling the feeds")
                        self._dispatch(KernelChange(links=missed), time.monotonic())
                    if event_at is not None:
                        engine.last_repair_ms = (time.monotonic() - event_at) * 1000
                        log.info("link event handled in %.1f ms (%d writes)", engine.last_repair_ms, len(result.ops))
                        event_at = None
                    continue
                timeout = None if due is None else max(0.0, due - now)
                for key, _ in sel.select(timeout):
                    try:
                        key.data(time.monotonic())
                    except Exception:  # a feed bug must not take the FIB manager down
                        log.exception("handler %s failed; continuing", getattr(key.data, "__qualname__", key.data))
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
            if self.control is not None:
                self.control.close()
            for feed in feeds:
                feed.close()
            self.close()
        return 0

    def close(self) -> None:
        """Close the daemon's own sockets (the loop does it when it ends)."""
        for sock in (self.events, self.route_events, self.kernel):
            if sock is not None:
                sock.close()

    def _on_signal(self, signum, _frame) -> None:
        if signum == signal.SIGHUP:
            log.info("SIGHUP: full resync")
            self.engine.request_full_sync()
        else:
            self.stopping = True

    # notifications -------------------------------------------------------------------------
    def handle_notifications(self, now: float) -> bool:
        """Drain the notification sockets; tell the engine and then every feed what changed,
        at once.  Returns True if a link notification came (or notifications were lost): a
        repair is due.  Notifications lost (ENOBUFS) count as a change of everything: the
        engine reads the kernel whole, every feed reads again what it follows."""
        engine = self.engine
        lost_links = lost_routes = False
        messages = []
        try:
            messages += self.events.read()
        except ResyncNeeded as exc:
            log.warning("%s; full resync", exc)
            lost_links = True
        if self.route_events is not None:
            try:
                messages += self.route_events.read()
            except ResyncNeeded as exc:
                log.warning("%s (routes); the feeds read the kernel again", exc)
                lost_routes = True
        link = addr = False
        routes: List[RouteEvent] = []
        for msg in messages:
            mtype = msg.type
            if mtype in LINK_MESSAGES:
                link = True
            elif mtype in ADDRESS_MESSAGES:
                addr = True
            elif mtype in NEXTHOP_MESSAGES:
                self._nexthop_notified(mtype == RTM_DELNEXTHOP, msg.data, now)
            elif mtype in ROUTE_MESSAGES:
                route = parse_route(msg.data, 16, len(msg.data))
                if route is not None and route.protocol != self.cfg.kernel.protocol:
                    routes.append(RouteEvent(mtype == RTM_DELROUTE, route))
        link_change = None
        if link or lost_links:
            link_change = engine.on_link_event(now)
        if lost_links:
            engine.request_full_sync()
        if addr:
            engine.on_address_event(now)
        if link or lost_links or lost_routes or addr or routes:
            self._dispatch(KernelChange(links=link_change, addresses=addr, routes=tuple(routes),
                                        lost=lost_links or lost_routes), now)
        return link or lost_links

    def _nexthop_notified(self, deleted: bool, data: bytes, now: float) -> None:
        """One nexthop notification.  Its nlmsg_pid names the writer: our request socket (the
        echo of our own write: nothing to repair), the kernel (0), or another program."""
        writer = NLMSGHDR.unpack_from(data)[4]
        by_us = writer == self.kernel.portid
        try:
            obj = parse_nexthop(data, 16, len(data))
        except struct.error as exc:  # a notification we cannot decode: re-read instead
            log.warning("undecodable nexthop notification (%s: %s); repairing by dump", exc, data[:64].hex())
            self.engine.request_repair()
            obj = None
        else:
            if not by_us:
                self.engine.on_nexthop_event(deleted, obj, now, writer)
        event = NexthopEvent(deleted, obj, by_us)
        self._each_feed("on_nexthop_event", lambda f: f.on_nexthop_event(event, now))

    def _dispatch(self, change: KernelChange, now: float) -> None:
        quiet = attrs.evolve(change, routes=()) if change.routes else change  # for feeds not following routes
        self._each_feed("on_kernel_change", lambda f: f.on_kernel_change(change if f.follows_routes else quiet, now))

    def _each_feed(self, what: str, call: Callable[[Feed], None]) -> None:
        for feed in self.feeds:
            try:
                call(feed)
            except Exception:  # one feed's bug must not keep the others from hearing it
                log.exception("feed %s: %s failed; continuing", feed.name, what)

    # control -------------------------------------------------------------------------------
    def show_bgp(self) -> dict:
        """The BGP feed, its streams and export counters (``show bgp``)."""
        out = self.bgp.show()
        out.update(self.streams.show())
        out["counters"].update(self.streams.counters)
        if self.export is not None:
            out["counters"].update(self.export.counters)
        return out

    def show_export(self) -> dict:
        if self.export is None:
            return {"error": "nothing to export: no [[export.anycast]] or [[export.kernel]] in the configuration"}
        return self.export.show()

    def answer(self, request: str):
        """One control request (see :mod:`kernelsync.control`) -> its JSON-able answer."""
        engine = self.engine
        views = {"show rib": engine.show_rib, "show fib": engine.show_fib,
                 "show nexthops": engine.show_nexthops, "show stats": engine.show_stats}
        if self.bgp is not None:
            views["show bgp"] = self.show_bgp
            views["show export"] = self.show_export
        route_feeds = [f for f in self.feeds if isinstance(f, (TableFeed, FpmFeed))]
        if route_feeds:
            views["show feeds"] = lambda: {f.name: f.show() for f in route_feeds}
        if request in views:
            result = views[request]()
            if request == "show stats" and self.bgp is not None:
                result["bgp"] = self.show_bgp()["counters"]
            return result
        if request == "resync":
            engine.request_full_sync()
            return {"ok": True}
        return {"error": "unknown request %r (known: %s, resync)" % (request, ", ".join(views))}


def show_from_kernel(cfg: Config, what: str) -> list:
    """Without a daemon (``kernelsync show fib|nexthops``): what the kernel holds that is ours,
    read from the kernel of this namespace: our routes (``fib``) or our nexthop objects."""
    k = cfg.kernel
    nl = RtNetlink(k.protocol)
    try:
        if what == "fib":
            return [{"prefix": format_prefix(key[1:4]), "table": key[0], "metric": key[4], "nhid": nh}
                    for key, nh in nl.dump_routes(k.table, k.protocol).items()]
        first, last = k.nexthop_id_range
        return [{"id": o.id, "object": o.describe()} for o in nl.dump_nexthops().values()
                if o.protocol == k.protocol and first <= o.id <= last]
    finally:
        nl.close()


def _drain(fd: int) -> None:
    try:
        os.read(fd, 512)
    except BlockingIOError:
        pass


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


__all__ = ["Daemon", "log_compat_mode", "show_from_kernel"]
