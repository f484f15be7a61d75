"""The daemon: wires the engine, the kernel port and the feeds, and runs the event loop.

One thread, ``selectors``; the :class:`~kernelsync.core.engine.Engine` decides, the feeds
write the RIB, this module waits and dispatches.  Kernel notifications (links, addresses,
nexthop objects; routes of other protocols for the feeds that follow them) are drained
completely and dispatched at once (:meth:`Daemon.handle_notifications`), so a burst of link
events costs one repair.  SIGTERM/SIGINT stop (routes stay unless ``flush_on_exit``); SIGHUP
reloads the configuration (:meth:`Daemon.reload`, :mod:`kernelsync.reload`).  ``show``
requests are answered on the control socket (:mod:`kernelsync.control`).
"""
from __future__ import annotations

import logging
import os
import selectors
import signal
import struct
import subprocess
import sys
import time
from typing import Callable, List, Optional, Sequence, Tuple

import attrs

from .config import Config
from .config import ConfigError, load as load_config
from .control import ControlServer, route_filter
from .core.engine import Engine
from .core.model import SCOPE_NAME, format_prefix, parse_prefix
from .core.port import ResyncNeeded
from .export.feed import ExportFeed
from .feeds.base import BaseFeed, Feed, KernelChange, NexthopEvent, RouteEvent
from .feeds.bgp import EBGP, IBGP
from .feeds.bgpfeed import BgpFeed
from .feeds.channels import ExabgpStreams, SocketInUse
from .feeds.fpm import FpmFeed
from .feeds.static import StaticFeed, StaticRoute
from .feeds.tablefeed import TableFeed
from .kernel.codec import (ADDRESS_MESSAGES, LINK_MESSAGES, NEXTHOP_MESSAGES, NLMSGHDR, ROUTE_MESSAGES,
                           RTM_DELNEXTHOP, RTM_DELROUTE, parse_nexthop, parse_route)
from .kernel.netlink import EventSocket, RouteEventSocket, RtNetlink
from .ownership import Claim, OwnershipConflict
from .reload import ReloadPlan, plan as plan_reload, refusal
from .sdnotify import Notifier

log = logging.getLogger("kernelsync.daemon")
ERROR_HOLD = 1.0  # seconds
#: test hook: the notification sockets' receive buffer in bytes (forced overflow tests); unset: 16 MiB
RCVBUF_ENV = "KERNELSYNC_NOTIFY_RCVBUF"


def _notify_rcvbuf() -> int:
    value = os.environ.get(RCVBUF_ENV)
    return int(value) if value else 16 << 20


class HeldBgp(BaseFeed):
    """``kernelsync hold``: the BGP sources of an instance that stopped, held for ``hold``
    seconds (``bgp.restart_hold_time``, at least ``bgp.graceful_restart``) and then swept.

    The sources are registered and not ready, so the engine adopts the routes and objects in
    the kernel and holds back every deletion (the routes stay, stale, and forward); when the
    hold ends they become ready, empty: the engine deletes the BGP routes, the last of them
    within the hold time.  SIGTERM or SIGINT ends the hold at once (a second one exits
    without sweeping)."""

    name = "bgp-held"

    def __init__(self, rib, settings, hold: float, now: float) -> None:
        self.rib = rib
        self.until = now + hold
        self.done = False
        for source, distance in ((EBGP, settings.ebgp_distance), (IBGP, settings.ibgp_distance)):
            rib.add_source(source, distance)

    def deadline(self) -> Optional[float]:
        return None if self.done else self.until

    def commit(self, now: float) -> None:
        if not self.done and now >= self.until:
            self.done = True
            log.info("hold time over: sweeping the BGP routes of the instance that stopped")
            self.rib.set_ready(EBGP)
            self.rib.set_ready(IBGP)

    def show(self) -> dict:
        return {"until": self.until, "swept": self.done}


class Daemon:
    """``kernelsync run`` (and ``kernelsync exabgp`` owning the FIB, with ``exabgp_stdin``).

    The BGP feed is on when ExaBGP's pipe is ours (``exabgp_stdin``) or relays may connect
    (``[exabgp] listen``).  Sockets are opened in the network namespace the daemon is created
    in."""

    def __init__(self, cfg: Config, dry_run: bool = False, exabgp_stdin: bool = False,
                 hold_bgp: Optional[float] = None) -> None:
        self.cfg = cfg
        self.dry_run = dry_run
        self.exabgp_stdin = exabgp_stdin
        self.hold_bgp = hold_bgp  # ``kernelsync hold``: seconds the stopped instance's BGP routes stay
        self.held: Optional[HeldBgp] = None
        self.handed_over = False
        self.stopping = False
        self.kernel = RtNetlink(cfg.kernel.protocol)
        # subscribe before the first dump, so no change between dump and subscription is lost
        self.events = EventSocket(rcvbuf=_notify_rcvbuf())
        self.route_events: Optional[RouteEventSocket] = None
        self.resync_feeds = False  # notifications were lost: tell the feeds after the engine's full read
        self.counters = {"notify_overflows": 0, "route_notify_overflows": 0, "feed_rereads_after_overflow": 0,
                         "route_events_ours": 0}
        self.engine = Engine(cfg.kernel, self.kernel, dry_run=dry_run)
        self.feeds: List[Feed] = []
        self.bgp: Optional[BgpFeed] = None
        self.streams: Optional[ExabgpStreams] = None
        self.export: Optional[ExportFeed] = None
        self.control: Optional[ControlServer] = None
        self.claim: Optional[Claim] = None
        self.reload_requested = False  # SIGHUP: reload in the loop
        # loop participants beside the feeds (deadline/commit/close): systemd notifications, metrics
        self.services: list = []
        self.metrics = None  # kernelsync.metrics.Metrics with [metrics] listen
        self._writes_seen = 0  # the kernel port's write count after the last engine run (metrics)

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
        if self.hold_bgp is not None:
            self.held = HeldBgp(engine.rib, cfg.bgp, self.hold_bgp, now)
            self.feeds.append(self.held)
        elif self.exabgp_stdin or cfg.exabgp.listen:
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
            self.feeds.append(FpmFeed(engine.rib, cfg.fpm_feed, engine.links, self.kernel))
        # before the feeds' first dumps and the engine's first route dump, as the link and nexthop
        # subscription: other programs' changes of our routes (repaired at once), and other
        # protocols' routes for the feeds that follow them
        self.route_events = RouteEventSocket(cfg.kernel.protocol, rcvbuf=_notify_rcvbuf(), table=cfg.kernel.table,
                                             portid=self.kernel.portid,
                                             others=any(feed.follows_routes for feed in self.feeds))

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
    def claim_ownership(self) -> bool:
        """Claim our ownership key (network namespace, table, protocol; nexthop ID range) for
        the life of the process (:mod:`kernelsync.ownership`); False, logged with the first
        owner named, if another instance holds it.  A dry run reads only and claims nothing."""
        k, cfg = self.cfg.kernel, self.cfg
        mode = "hold" if self.hold_bgp is not None else "exabgp" if self.exabgp_stdin else "run"
        claim = Claim(k.table, k.protocol, k.nexthop_id_range,
                      {"config": cfg.filename, "control_socket": cfg.control_socket, "mode": mode})
        try:
            claim.acquire()
        except OwnershipConflict as exc:
            if self.hold_bgp is not None:  # a new owner took over first: its routes now, nothing to hold
                log.info("holding the BGP routes is not needed: %s", exc)
            else:
                log.error("%s", exc)
            return False
        if self.hold_bgp is not None:
            claim.state = "lingering"
        claim.on_handover = self._hand_over
        self.claim = claim
        return True

    def _hand_over(self) -> None:
        """A new instance takes our routes over (it adopts them): stop at once, writing nothing."""
        log.info("a new instance takes the routes over: stopping without deleting anything")
        self.handed_over = True
        self.stopping = True

    def run(self) -> int:
        if self.claim is None and not self.claim_ownership():
            self.close()
            return 0 if self.hold_bgp is not None else 1
        engine = self.engine
        now = time.monotonic()
        engine.start(now)
        self._build_feeds(now)
        sel = selectors.DefaultSelector()
        try:  # the control socket and the relay listener: refused if another instance listens there
            if self.cfg.control_socket:
                self.control = ControlServer(self.cfg.control_socket, self.answer)
                self.control.start(sel)
            self.claim.register(sel)
            for feed in self.feeds:
                feed.start(sel, now)
            self._start_services(sel, now)
        except SocketInUse as exc:
            log.error("cannot start: %s", exc.strerror)
            if self.control is not None:
                self.control.close()
            for service in self.services:
                service.close()
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
        sel.register(rfd, selectors.EVENT_READ, lambda t: self._after_wakeup(rfd))
        old_wakeup = signal.set_wakeup_fd(wfd)
        handlers = {sig: signal.signal(sig, self._on_signal) for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)}
        log.info("kernelsync started: table %d, protocol %d, nexthop ids %d..%d, %d static routes; feeds: %s",
                 self.cfg.kernel.table, self.cfg.kernel.protocol, *self.cfg.kernel.nexthop_id_range,
                 len(self.cfg.static_routes), ", ".join(f.name for f in self.feeds))
        log_compat_mode()
        for warning in self.cfg.warnings:
            log.warning("%s: %s", self.cfg.filename, warning)
        hold_until = 0.0  # after an unexpected error, wait a little before the next run
        # the control socket (idle clients) and the services take part like feeds
        feeds = self.feeds + ([self.control] if self.control is not None else []) + self.services
        try:
            while not self.stopping:
                if self.held is not None and self.held.done and self._swept():
                    log.info("the stopped instance's BGP routes are swept: exiting")
                    break
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
                if due is not None and due <= now and not self.stopping:
                    try:
                        result = engine.run(now)
                    except Exception:  # never die on one bad cycle: log it, resync a bit later
                        log.exception("unexpected error in the sync cycle; full resync in %.0f s", ERROR_HOLD)
                        engine.request_full_sync()
                        hold_until = time.monotonic() + ERROR_HOLD
                        continue
                    self._after_run()
                    self._observe_run()
                    if event_at is not None:
                        engine.last_repair_ms = (time.monotonic() - event_at) * 1000
                        log.info("link event handled in %.1f ms (%d writes)", engine.last_repair_ms, len(result.ops))
                        if self.metrics is not None:
                            self.metrics.observe_repair(engine.last_repair_ms / 1000)
                        event_at = None
                    if not engine.syncing:
                        continue
                    timeout = 0.0  # a sliced full sync: what came meanwhile is read before its next slice
                else:
                    timeout = None if due is None else max(0.0, due - now)
                for key, _ in sel.select(timeout):
                    try:
                        key.data(time.monotonic())
                    except Exception:  # a feed bug must not take the FIB manager down
                        log.exception("handler %s failed; continuing", getattr(key.data, "__qualname__", key.data))
        finally:
            if self.claim is not None:
                self.claim.state = "stopping"
            signal.set_wakeup_fd(old_wakeup)
            os.close(rfd)
            os.close(wfd)
            for sig, handler in handlers.items():
                signal.signal(sig, handler)
            hold = None
            if self.handed_over:
                log.info("stopping; the routes are the new instance's now")
            elif self.cfg.kernel.flush_on_exit and not self.dry_run:
                result = engine.flush()
                log.info("flushed our routes and nexthops on exit: %d operations", len(result.ops))
            else:
                hold = self._bgp_hold()
                log.info("stopping; routes stay in the kernel (graceful; flush_on_exit = false)%s",
                         "; BGP's for %.0f s more (restart_hold_time), unless a new instance takes them over"
                         % hold if hold is not None else "")
            if self.control is not None:
                self.control.close()
            for feed in feeds:
                feed.close()
            self.close()
            if hold is not None:
                self._spawn_holder(hold)
        return 0

    # services: systemd, metrics -------------------------------------------------------------
    def _start_services(self, sel: selectors.BaseSelector, now: float) -> None:
        """systemd's notifications (``kernelsync run`` with ``$NOTIFY_SOCKET``) and the metrics
        endpoint (``[metrics] listen``; ``kernelsync run`` and ``exabgp``, not ``hold``).
        :class:`SocketInUse` if the endpoint cannot listen."""
        if self.hold_bgp is not None:
            return  # the holder: the next instance serves the metrics
        if not self.exabgp_stdin:  # ExaBGP's process is not the service systemd started
            notifier = Notifier(self._sd_status)
            if notifier.enabled:
                notifier.start(now)
                self.services.append(notifier)
        listen = self.cfg.metrics.listen
        if listen is not None:
            from .metrics import Metrics
            metrics = Metrics(self.metrics_view)
            try:
                metrics.start(sel, listen)
            except OSError as exc:
                metrics.close()
                raise SocketInUse(exc.errno, "metrics.listen %s port %d: %s" % (listen[0], listen[1], exc.strerror))
            self.metrics = metrics
            self.services.append(metrics)

    def _sd_status(self) -> Tuple[str, str]:
        """``(state, STATUS= text)`` for systemd: ``SYNCED: 12 routes, 3 nexthop objects``."""
        engine = self.engine
        state = engine.state
        if state == "SYNCED":
            return state, "SYNCED: %d routes, %d nexthop objects" % (len(engine.observed_routes),
                                                                       len(engine.observed_nh))
        return state, "AWAITING: waiting for the feeds' initial state"

    def _observe_run(self) -> None:
        """After an engine run, with metrics: the feed-to-kernel latency of the feeds' batches it
        applied (each feed's ``input_at``: the arrival of its oldest input committed to the RIB),
        observed when the run wrote anything; the marks are cleared either way."""
        if self.metrics is None:
            return
        stats = self.kernel.stats.writes
        writes = sum(stats.values())
        wrote, self._writes_seen = writes != self._writes_seen, writes
        since = None
        for feed in self.feeds:
            at = feed.input_at
            if at is not None:
                feed.input_at = None
                since = at if since is None else min(since, at)
        if since is not None and wrote:
            self.metrics.observe_feed_to_kernel(time.monotonic() - since)

    def metrics_view(self) -> dict:
        """What the metrics are read from (:func:`kernelsync.metrics.families`): the answers to
        ``show stats``, the peers of ``show bgp``, ``show export``, ``show feeds``."""
        if self.bgp is None:
            view = {"stats": self.answer("show stats"), "peers": None, "export": None, "feeds": None}
        else:  # show stats as answer() builds it, with show bgp computed once (its peers are O(paths))
            bgp = self.show_bgp()
            stats = self.engine.show_stats()
            stats["notifications"] = self.show_notifications()
            stats["bgp"] = bgp["counters"]
            view = {"stats": stats, "peers": bgp["peers"], "export": None, "feeds": None}
            if self.export is not None:
                view["export"] = self.show_export()
        route_feeds = [f for f in self.feeds if isinstance(f, (TableFeed, FpmFeed))]
        if route_feeds:
            view["feeds"] = self.show_feeds(route_feeds)
        return view

    def _swept(self) -> bool:
        """``kernelsync hold``: the BGP routes are deleted and nothing of ours is left unused."""
        engine = self.engine
        due = engine.deadline()
        return engine.state == "SYNCED" and (due is None or due > time.monotonic()) and engine.gc_at is None

    def _bgp_hold(self) -> Optional[float]:
        """Seconds BGP's routes may outlive this process (its source): None if it has none."""
        if self.bgp is None or self.dry_run or all(next(self.engine.rib.prefixes_of(s), None) is None
                                                          for s in (EBGP, IBGP)):
            return None
        settings = self.cfg.bgp
        return max(settings.restart_hold_time, settings.graceful_restart)

    def _spawn_holder(self, hold: float) -> None:
        """Start ``kernelsync hold`` (detached: its own session, no stdin or stdout, so ExaBGP
        waiting for its process to exit is not held up): it holds the ownership key and the BGP
        routes for ``hold`` seconds, then sweeps them, unless a new instance takes them over
        (:mod:`kernelsync.ownership`: ``handover``)."""
        root = logging.getLogger()
        argv = [sys.executable, "-m", "kernelsync", "--log-level", logging.getLevelName(root.level).lower()]
        if any(getattr(handler.formatter, "name", None) == "json" for handler in root.handlers):
            argv += ["--log-format", "json"]
        for handler in root.handlers:
            if isinstance(handler, logging.FileHandler):
                argv += ["--log-file", handler.baseFilename]
                break
        # the end of the hold in wall-clock time: the holder's start-up counts in it
        argv += ["hold", "-c", str(self.cfg.filename), "--until", "%.3f" % (time.time() + hold)]
        try:
            proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                    start_new_session=True, close_fds=True)
        except OSError as exc:
            log.error("could not start the process holding the BGP routes (%s): they stay until an instance "
                      "starts again", exc)
            return
        log.info("pid %d holds the BGP routes for %.0f s (then sweeps them)", proc.pid, hold)

    def close(self) -> None:
        """Close the daemon's own sockets (the loop does it when it ends)."""
        for sock in (self.events, self.route_events, self.kernel, self.claim):
            if sock is not None:
                sock.close()

    def _after_run(self) -> None:
        """After an engine run: what its full read found changed in the links without a
        notification goes to the feeds; after notifications were lost, once the engine has read
        the kernel whole, every feed is told to read again what it follows (links included)."""
        engine = self.engine
        if self.resync_feeds and not engine.need_full:
            self.resync_feeds = False
            self.counters["feed_rereads_after_overflow"] += 1
            log.info("notifications were lost: the kernel is read again; the feeds read again what they follow")
            self._dispatch(KernelChange(links=engine.take_missed_link_change(), lost=True), time.monotonic())
            return
        missed = engine.take_missed_link_change()
        if missed is not None:
            log.info("a full read found link changes before their notifications: telling the feeds")
            self._dispatch(KernelChange(links=missed), time.monotonic())

    def _on_signal(self, signum, _frame) -> None:
        if signum == signal.SIGHUP:  # done in the loop (_after_wakeup), not in the handler
            self.reload_requested = True
        elif self.held is not None and not self.held.done and self.held.until > 0:
            # ``kernelsync hold`` asked to stop: the routes it holds would outlive their source
            # with no timer; sweep them now, then exit (a second signal exits at once)
            log.info("signal %d: sweeping the held BGP routes now", signum)
            self.held.until = 0.0
        else:
            self.stopping = True

    # reload --------------------------------------------------------------------------------
    def _after_wakeup(self, rfd: int) -> None:
        """A signal woke the loop: a SIGHUP's reload is done here, between two loop passes."""
        _drain(rfd)
        if self.reload_requested:
            self.reload_requested = False
            log.info("SIGHUP: reloading %s", self.cfg.filename)
            notifiers = [s for s in self.services if isinstance(s, Notifier)]
            for notifier in notifiers:
                notifier.reloading()
            result = self.reload()
            for notifier in notifiers:
                notifier.reloaded("reload %s" % ("applied: %d changes" % len(result.get("applied", ()))
                                                 if result.get("ok") else "refused: %s" % result.get("error")))

    def reload(self, now: Optional[float] = None) -> dict:
        """Re-read the configuration file and apply the difference (SIGHUP, ``kernelsync
        reload``; :mod:`kernelsync.reload`).  A new configuration that does not validate, that
        skips routes, or that changes what needs a restart is refused whole and logged: the
        running one stays as it was.  Returns ``{"ok": True, "applied": [...]}`` (one line per
        change; empty: the file is unchanged) or ``{"ok": False, "error": ..., "errors" or
        "restart": [...]}``."""
        now = time.monotonic() if now is None else now
        filename = self.cfg.filename
        if self.held is not None or self.dry_run:
            message = "this instance (%s) does not reload" % ("hold" if self.held else "dry run")
            log.info("%s", message)
            return {"ok": False, "error": message, "errors": []}
        try:
            new = load_config(filename)
        except ConfigError as exc:
            errors = ["%s: %s" % (filename, p) for p in exc.problems]
        else:
            errors = ["%s: %s" % (filename, p) for p in new.route_errors]
        if errors:
            message = refusal(None, tuple(errors))
            log.error("reload refused: %s", message)
            return {"ok": False, "error": message, "errors": errors}
        plan = plan_reload(self.cfg, new, export_live=self.streams is None or self.export is not None)
        if plan.needs_restart:
            message = refusal(plan)
            log.error("reload refused: %s", message)
            return {"ok": False, "error": message, "restart": [c.describe() for c in plan.restart]}
        self.apply_reload(plan, now)
        for warning in new.warnings:
            log.warning("%s: %s", filename, warning)
        applied = [c.describe() for c in plan.live]
        log.info("reload of %s: %s", filename, "; ".join(applied) if applied else "no change")
        return {"ok": True, "applied": applied}

    def apply_reload(self, plan: ReloadPlan, now: float) -> None:
        """Apply a plan without restart changes (:func:`kernelsync.reload.plan`): each area
        changed goes to its owner; nothing else is touched (an unchanged route is not written)."""
        new = plan.new
        if plan.touches("kernel"):
            self.engine.set_timers(new.kernel, now)
        if plan.touches("static") or plan.touches("anycast"):
            static = next((f for f in self.feeds if isinstance(f, StaticFeed)), None)
            if static is not None:
                anycast = [StaticRoute(g.prefix, (g.path(),), g.where) for g in new.export.anycast]
                static.reconfigure(new.static_routes, new.static_distance, anycast)
        if self.export is not None and (plan.touches("anycast") or plan.touches("export")):
            self.export.reconfigure(new.export)
        elif new.export.enabled and not self.cfg.export.enabled and self.streams is None:
            log.warning("[export] is configured but nothing is exported: exporting needs ExaBGP "
                        "(kernelsync exabgp, or [exabgp] listen for relays)")
        if self.bgp is not None and (plan.touches("bgp") or plan.touches("exabgp")):
            self.bgp.retime(new.bgp, new.exabgp.route_refresh_on_start)
        changed = plan.changed_feeds()
        if changed:
            configs = {f.name: f for f in new.table_feeds}
            if new.fpm_feed is not None:
                configs[new.fpm_feed.name] = new.fpm_feed
            for feed in self.feeds:
                if isinstance(feed, (TableFeed, FpmFeed)) and feed.name in changed:
                    feed.retime(configs[feed.name])
        self.cfg = new

    # notifications -------------------------------------------------------------------------
    def handle_notifications(self, now: float) -> bool:
        """Drain the notification sockets; tell the engine and then every feed what changed,
        at once.  Returns True if a link notification came (or notifications were lost): a
        repair is due.  Notifications lost (ENOBUFS, on either socket) count as a change of
        everything: the engine reads the kernel whole, then (:meth:`_after_run`) every feed is
        told to read again what it follows, links included, with the link table as that full
        read left it.  A route of ours changed by another program goes to the engine
        (:meth:`~kernelsync.core.engine.Engine.on_route_event`): repaired at once."""
        engine = self.engine
        lost = False
        messages = []
        try:
            messages += self.events.read()
        except ResyncNeeded as exc:
            log.warning("%s; full resync", exc)
            self.counters["notify_overflows"] += 1
            lost = True
        if self.route_events is not None:
            try:
                messages += self.route_events.read()
            except ResyncNeeded as exc:
                log.warning("%s (routes); full resync, then the feeds read the kernel again", exc)
                self.counters["route_notify_overflows"] += 1
                lost = True
        if lost:  # everything queued was older than the overflow: the full read replaces it
            engine.request_full_sync()
            self.resync_feeds = True
            return True
        link = addr = False
        routes: List[RouteEvent] = []
        kcfg = self.cfg.kernel
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
                if route is None:
                    continue
                if route.protocol != kcfg.protocol:
                    routes.append(RouteEvent(mtype == RTM_DELROUTE, route))
                    continue
                writer = NLMSGHDR.unpack_from(msg.data)[4]
                if route.table == kcfg.table and writer != self.kernel.portid:
                    self.counters["route_events_ours"] += 1
                    engine.on_route_event(mtype == RTM_DELROUTE, (route.table, route.family, route.dst, route.plen,
                                                                  route.metric), route.nh_id, now, writer, route.scope)
        link_change = None
        if link:
            link_change = engine.on_link_event(now)
        if addr:
            engine.on_address_event(now)
        if link or addr or routes:
            self._dispatch(KernelChange(links=link_change, addresses=addr, routes=tuple(routes)), now)
        return link

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

    def show_notifications(self) -> dict:
        """The notification sockets: overflows (ENOBUFS) seen and the full re-reads they caused
        (``show stats``: ``notifications``)."""
        feeds = {}
        for feed in self.feeds:
            counters = getattr(feed, "counters", None)
            if isinstance(counters, dict):
                feeds[feed.name] = {k: v for k, v in counters.items() if "reread" in k or "lost" in k}
        return {**self.counters, "sockets": {"links": self.events.overflows,
                                             "routes": self.route_events.overflows if self.route_events else 0},
                "feeds": feeds}

    def show_export(self) -> dict:
        if self.export is None:
            return {"error": "nothing to export: no [[export.anycast]] or [[export.kernel]] in the configuration"}
        return self.export.show()

    def show_feeds(self, feeds: List[Feed], args: str = "") -> dict:
        """``show feeds [routes [PREFIX]]``: each route feed's counters, stale state (with its
        end as seconds left, ``stale_for``, and UTC time, ``stale_until_utc``) and, with
        ``routes``, its routes (:meth:`RouteSource.show_routes`): all, or those within PREFIX
        (PREFIX itself and its more specifics)."""
        words = args.split()
        if words and words[0] != "routes" or len(words) > 2:
            return {"error": "usage: show feeds [routes [PREFIX]]"}
        within = None
        if len(words) == 2:
            try:
                within = parse_prefix(words[1])
            except ValueError as exc:
                return {"error": "show feeds routes: %s" % exc}
        now, wall = time.monotonic(), time.time()
        out = {}
        for feed in feeds:
            out[feed.name] = view = feed.show()
            view.update(feed.source.show_times(now, wall))
            if words:
                view["routes"] = feed.source.show_routes(within)
        return out

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
            views["show feeds"] = lambda: self.show_feeds(route_feeds)
            if request.startswith("show feeds "):
                return self.show_feeds(route_feeds, request[len("show feeds "):])
        for name, view in (("show rib", engine.show_rib), ("show fib", engine.show_fib)):
            if request.startswith(name + " "):
                try:
                    return view(route_filter(request[len(name) + 1:].split()))
                except ValueError as exc:
                    return {"error": "%s: %s" % (name, exc)}
        if request in views:
            result = views[request]()
            if request == "show stats":
                result["notifications"] = self.show_notifications()
                if self.bgp is not None:
                    result["bgp"] = self.show_bgp()["counters"]
            return result
        if request == "resync":
            engine.request_full_sync()
            return {"ok": True}
        if request == "reload":
            return self.reload()
        return {"error": "unknown request %r (known: %s, resync, reload)" % (request, ", ".join(views))}


def show_from_kernel(cfg: Config, what: str, words: Sequence[str] = ()):
    """Without a daemon (``kernelsync show fib|nexthops``): what the kernel holds that is ours,
    read from the kernel of this namespace: our routes (``fib``; ``words``: the filter of
    :func:`kernelsync.control.route_filter`; an ``{"error": ...}`` for a bad one) or our nexthop
    objects."""
    k = cfg.kernel
    if what == "fib":
        try:
            match = route_filter(list(words))
        except ValueError as exc:
            return {"error": "show fib: %s" % exc}
    nl = RtNetlink(k.protocol)
    try:
        if what == "fib":
            scopes: dict = {}
            routes = nl.dump_routes(k.table, k.protocol, scopes)
            return [{"prefix": format_prefix(key[1:4]), "table": key[0], "metric": key[4], "nhid": nh,
                     "scope": SCOPE_NAME.get(scopes.get(key, 0), str(scopes.get(key)))}
                    for key, nh in routes.items() if match is None or match(key[1:4])]
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
