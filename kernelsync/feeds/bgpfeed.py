"""The BGP feed: ExaBGP's JSON lines -> :class:`~kernelsync.feeds.bgp.BgpRib` -> the RIB, with
the kernel reads that next-hop resolution needs.

Lines come from :class:`~kernelsync.feeds.channels.ExabgpStreams` (ExaBGP's pipe or relays);
each goes through :class:`~kernelsync.feeds.exabgp.Parser`; a bad line is logged with its
(truncated, control bytes escaped) text, counted and skipped, and only the bad part of an UPDATE
is dropped (unknown families are skipped, the rest is used); a bad NLRI is treated as withdrawn
(RFC 7606), counted in ``bad_nlri`` and logged with its field.  When a stream opens, kernelsync asks ExaBGP for its
version and a route-refresh of each family, so that a respawned process or a reconnected relay
rebuilds its Adj-RIB-In (ExaBGP replays nothing by itself).

Changes are committed in bursts: a change waits COMMIT_DELAY for the rest of its burst (one
decision and one kernel batch for it all), at most COMMIT_MAX prefixes.  Next hops resolve
through the kernel's addresses and the routes of ``bgp.resolve_table`` that are not ours
(:class:`~kernelsync.feeds.resolve.Resolver`), read at start, followed by notifications, and
read again on link events when a next hop resolves recursively.
"""
from __future__ import annotations

import logging
import selectors
from typing import Dict, List, Optional, Set

from ..core.links import LinkTable
from ..core.port import ResyncNeeded
from ..core.rib import Rib
from .base import BaseFeed, KernelChange, earliest, escape_text
from .bgp import BgpRib, BgpSettings
from .channels import Channel, ExabgpStreams, truncate
from .exabgp import Ack, FeedError, Parser, Update, Version, route_refresh_command
from .resolve import Resolver

log = logging.getLogger("kernelsync.exabgp")
COMMIT_DELAY = 0.01  # seconds a change waits for the rest of its burst (one kernel batch)
COMMIT_MAX = 10_000  # prefixes that commit at once, delay or not
REREAD_RETRY = 0.05  # seconds before a failed re-read of the kernel (ResyncNeeded) is tried again


class BgpFeed(BaseFeed):
    """ExaBGP streams -> :class:`BgpRib` -> the RIB (sources ``ebgp`` and ``ibgp``).

    ``kernel``: the daemon's request socket, used between engine runs for the resolver's dumps
    (``dump_addresses``, ``dump_table``); ``protocol``: ours (our own routes never serve to
    resolve a next hop); ``restart``: our objects are already in the kernel (a restart: BGP's
    result enters the RIB only once complete, so the FIB never sees a partial RIB)."""

    name = "bgp"
    follows_routes = True

    def __init__(self, rib: Rib, settings: BgpSettings, kernel, protocol: int, links: LinkTable,
                 streams: ExabgpStreams, now: float, refresh_on_start: bool = True, restart: bool = False) -> None:
        self.settings = settings
        self.kernel = kernel
        self.protocol = protocol
        self.streams = streams
        self.parser = Parser()
        self.resolver = Resolver(links, settings.resolve_via_default)
        self.bgp = BgpRib(rib, self.resolver, settings, now, restart=restart)
        self.refresh_on_start = refresh_on_start
        self.recursive_in_use = False
        self.hold_until_ready = restart
        self._dirty_since: Optional[float] = None  # first change not committed yet
        self._bad_logged = 0
        self.counters: Dict[str, int] = {"lines": 0, "bad_lines": 0, "bad_nlri": 0, "skipped_families": 0,
                                         "route_events": 0}
        self.counters.update(rereads=0, reread_retries=0)  # full re-reads after lost notifications; failed dumps
        self._reread_due: Optional[float] = None  # a re-read whose dump failed (ResyncNeeded): again then

    def retime(self, settings: BgpSettings, refresh_on_start: bool) -> None:
        """A configuration reload changed ``[bgp]`` timers (nothing else) or
        ``route_refresh_on_start``: used from the next wait, hold or stream that begins."""
        self.settings = self.bgp.settings = settings
        self.refresh_on_start = refresh_on_start

    # setup ---------------------------------------------------------------------------------
    def start(self, sel: selectors.BaseSelector, now: float) -> None:
        self.read_addresses()
        self.read_routes()
        self.streams.on_open.append(self._opened)
        self.streams.on_lost.append(self._lines_lost)
        self.streams.consumer = self.on_lines

    def _opened(self, channel: Channel, now: float) -> None:
        self.bgp.stream_opened(now)
        self.streams.send(channel, "version", now)
        if self.refresh_on_start:
            for family in self.settings.families:
                self.streams.send(channel, route_refresh_command(family), now)
            log.info("%s: asked ExaBGP for a route-refresh of %s", channel.name, ", ".join(self.settings.families))

    def _lines_lost(self, channel: Channel, now: float, affected: Optional[Dict[str, Set[str]]]) -> None:
        """``channel`` dropped lines (its queue was full): a route-refresh re-sends what they held
        (RFC 7313 begin/end: what is not re-sent is swept), of the ``affected`` peers' families
        (peer address -> families of the dropped UPDATEs), or of every family from every peer
        (None: a state change, an end-of-RIB or anything else was dropped)."""
        if affected is None:
            self.bgp.lines_lost(channel, now)  # a peer's down may be lost: what no refresh re-sends goes
            for family in self.settings.families:
                self.streams.send(channel, route_refresh_command(family), now)
            log.warning("%s: asked ExaBGP for a route-refresh of %s (lines were dropped)", channel.name,
                        ", ".join(self.settings.families))
            return
        self.bgp.lines_lost(channel, now, affected)  # a lost withdraw: what no refresh re-sends goes
        for peer, families in sorted(affected.items()):
            for family in self.settings.families:
                if family in families:
                    self.streams.send(channel, "neighbor %s %s" % (peer, route_refresh_command(family)), now)
        log.warning("%s: asked ExaBGP for a route-refresh of %s (UPDATEs were dropped)", channel.name,
                    "; ".join("%s: %s" % (p, ", ".join(sorted(f))) for p, f in sorted(affected.items())))

    # kernel --------------------------------------------------------------------------------
    def read_addresses(self) -> None:
        self.resolver.set_addresses(self.kernel.dump_addresses())

    def read_routes(self) -> None:
        routes = {}
        for route in self.kernel.dump_table(self.settings.resolve_table):
            if route.protocol != self.protocol and (route.legs or not route.is_unicast):
                # a blackhole, unreachable, prohibit... route: nothing resolves through it (no legs)
                routes[(route.family, route.dst, route.plen, route.metric)] = route.legs if route.is_unicast else ()
        self.resolver.set_routes(routes)

    def on_kernel_change(self, change: KernelChange, now: float) -> None:
        """Addresses are re-read on an address or link event; on a link event the resolution
        table is too, when a next hop resolves through it (the kernel deletes routes on a
        downed link without telling); after lost notifications (``change.lost``) both are.
        Route notifications of the resolution table update the resolver.  A dump that fails
        (:class:`ResyncNeeded`: interrupted, or its replies lost) is done again a little later
        (:meth:`commit`): the resolver never stays on a partial read."""
        if change.lost:
            self.counters["rereads"] += 1
        try:
            self._follow(change)
        except ResyncNeeded as exc:
            self._reread_failed(exc, now)

    def _reread_failed(self, exc: ResyncNeeded, now: float) -> None:
        self.counters["reread_retries"] += 1
        self._reread_due = now + REREAD_RETRY
        log.warning("reading addresses and routes for next-hop resolution failed (%s): again in %.0f ms",
                    exc, REREAD_RETRY * 1000)

    def _follow(self, change: KernelChange) -> None:
        if change.link_event or change.addresses:
            self.read_addresses()
        if change.lost or (change.link_event and self.recursive_in_use):
            self.read_routes()  # the kernel as it is now: newer than any notification
        else:
            for event in change.routes:
                route = event.route
                if route.protocol == self.protocol or route.table != self.settings.resolve_table:
                    continue
                if route.is_unicast and not route.legs and not event.deleted:
                    continue
                self.counters["route_events"] += 1
                # a blackhole/unreachable/prohibit route replaces the unicast route at its key (or is
                # more specific): nothing resolves through it (no legs)
                self.resolver.route_event(event.deleted, route.family, route.dst, route.plen, route.metric,
                                          route.legs if route.is_unicast else ())

    # lines ---------------------------------------------------------------------------------
    def on_lines(self, channel: Channel, lines: List[Optional[bytes]], now: float) -> None:
        """The streams' consumer: ``lines`` from ``channel`` (None: the end of the stream)."""
        self.feed(channel, lines, now)
        if channel is self.streams.stdin and self._dirty_since is not None:
            # a commit is due at _dirty_since + COMMIT_DELAY and takes the queued lines first:
            # until then the reader need not wake us for each chunk
            channel.pending = True

    def feed(self, channel: Channel, lines: List[Optional[bytes]], now: float) -> None:
        """Parse and apply ``lines`` from ``channel``; None marks the end of the stream."""
        parse = self.parser.parse
        handle = self.bgp.handle
        for raw in lines:
            if raw is None:
                self.streams.closed(channel)
                self.bgp.channel_closed(channel, now)
                return
            self.counters["lines"] += 1
            try:
                event = parse(raw.decode("utf-8"))
            except (FeedError, UnicodeDecodeError) as exc:
                self._bad(channel, raw, exc)
                continue
            except Exception as exc:  # a parser bug must not lose the rest of the batch
                self._bad(channel, raw, exc, what="skipped line, parsing it failed", exc_info=True)
                continue
            if event is None:
                continue
            if isinstance(event, Ack):
                self.streams.ack(channel, event.ok)
                continue
            if isinstance(event, Version):
                self.streams.version_seen(channel, event.version)
                continue
            skipped = getattr(event, "skipped", ())
            if skipped:
                self.counters["skipped_families"] += 1
                self._bad(channel, raw, "family %s not handled (skipped; the rest of the update is used)"
                          % ", ".join(map(escape_text, skipped)), count=False)
            if type(event) is Update and event.bad:
                event = self._bad_nlri(channel, raw, event)
            try:
                handle(event, now, channel)
            except Exception as exc:  # a bug on one line must not stop the feed
                self._bad(channel, raw, exc, what="skipped line, applying it failed", exc_info=True)

    def _bad_nlri(self, channel: Channel, raw: bytes, event: Update) -> Update:
        """Count and log the UPDATE's refused NLRIs (treated as withdrawn, RFC 7606); one whose
        path id could not be read withdraws every path of its prefix from that peer."""
        bad = event.bad
        self.counters["bad_nlri"] += len(bad)
        listed = "; ".join(b.describe() for b in bad[:3]) + (" and %d more" % (len(bad) - 3) if len(bad) > 3 else "")
        self._bad(channel, raw, "%d NLRI refused and treated as withdrawn: %s" % (len(bad), listed), count=False,
                  what="update used in part")
        address = event.neighbor.peer
        extra = []
        for b in bad:
            if b.prefix is not None and b.path_id is None:
                extra.extend((b.prefix, path_id) for peer, path_id in self.bgp.by_prefix.get(b.prefix, ())
                             if peer == address)
        return event._replace(withdraw=event.withdraw + tuple(extra)) if extra else event

    def _bad(self, channel: Channel, raw: bytes, why, count: bool = True, what: str = "skipped line",
             exc_info: bool = False) -> None:
        """Log a bad line (at most 100, then every 1000th): ``why`` (a FeedError or our text:
        what came from the line is escaped in it already; anything else is escaped here) and
        the line, truncated, control bytes escaped; one log record per line, with the
        traceback when ``exc_info`` (a bug of ours, called from its ``except``)."""
        if count:
            self.counters["bad_lines"] += 1
        self._bad_logged += 1
        if self._bad_logged <= 100 or self._bad_logged % 1000 == 0:
            text = raw.decode("utf-8", errors="replace").rstrip("\n")
            why = why if isinstance(why, (str, FeedError)) else escape_text(str(why))
            log.warning("%s: %s (%s): %s%s", channel.name, what, why, escape_text(truncate(text)),
                        " [further bad lines are logged every 1000th]" if self._bad_logged == 100 else "",
                        exc_info=exc_info)

    # cycle ---------------------------------------------------------------------------------
    def deadline(self) -> Optional[float]:
        return earliest(self.bgp.deadline(), self._dirty_since + COMMIT_DELAY if self._dirty_since is not None else None,
                        self._reread_due)

    def commit(self, now: float) -> None:
        """Timers due by ``now``, then the decision for what changed, into the RIB.  Lines
        queued on stdin are parsed first once the commit is due."""
        if self._reread_due is not None and now >= self._reread_due:
            self._reread_due = None
            try:
                self.read_addresses()
                self.read_routes()
            except ResyncNeeded as exc:
                self._reread_failed(exc, now)
        stdin = self.streams.stdin
        if stdin is not None and self._dirty_since is not None and now >= self._dirty_since + COMMIT_DELAY:
            self.feed(stdin, stdin.take(), now)  # take() lets the reader wake us again
        due = self.bgp.deadline()
        if due is not None and due <= now:
            self.bgp.tick(now)
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
            if self._dirty_since is not None and stdin is not None and stdin.pending:
                # on_lines deferred stdin's lines to this burst's commit, which comes early (the
                # resolver changed, or COMMIT_MAX): take them now, nothing else would wake us
                self.feed(stdin, stdin.take(), now)
            if self._dirty_since is not None:
                self.mark_input(self._dirty_since)  # the batch's first line: the feed-to-kernel latency
            self._dirty_since = None
            self.bgp.commit()
            self.recursive_in_use = self.resolver.route_hits > 0

    def show(self) -> dict:
        return {"peers": self.bgp.show_peers(), "counters": {**self.counters, **self.bgp.counters},
                "ready": self.bgp.ready}


__all__ = ["BgpFeed", "COMMIT_DELAY", "COMMIT_MAX"]
