"""The kernel-table feed: a routing daemon's own kernel table as a RIB source (shell).

BIRD's kernel protocol writes the routes it computed (OSPF, say) into a table of its own, e.g.
``kernel table 100``, with its protocol number (``bird``, 12).  kernelsync dumps that table,
follows it over netlink (route notifications, which the daemon reads and hands to every feed;
our own protocol's are dropped in the kernel by a BPF filter), turns every route into RIB paths
(:func:`kernelsync.feeds.routesource.route_paths`:
RTA_MULTIPATH legs, device-only legs included) and installs the result in the table it owns,
with its own protocol, as shared nexthop groups, merged with the other feeds by admin distance.
It never writes into the source table, nor with the source's protocol (BIRD deletes every route
of its protocol in its table when it starts).

* **Silent deletions**: the kernel deletes the source's routes over a link that goes down without
  a notification, so every link event makes the feed read the source table again.
* **No added convergence**: a route added or replaced in the table is applied at once (BIRD's
  replace of an ECMP route by one path after a remote failure arrives in the same burst as its
  deletions, and does not wait for them).
* **Daemon restarts**: a prefix the table no longer has a route for is withdrawn ``settle``
  seconds after the burst of deletions ends (one batch for a burst; see
  :func:`kernelsync.feeds.base.settle_due`).  If by then the table holds nothing of the source
  (the daemon stopped: BIRD removes its routes
  on SIGTERM, and deletes them again when it starts), the last state is kept as stale for
  ``hold_time`` seconds (:class:`kernelsync.feeds.routesource.RouteSource`): the FIB does not flap,
  and routes that come back unchanged cost no write.  The table losing its last route of the
  protocol is taken for a stop: a source whose last route goes away for good (a table of static
  routes, say) wants ``hold_time = 0``, which withdraws at once.  While routes are stale, what
  comes back is held until every stale prefix is back and the table has been quiet for
  ``restart_quiet`` seconds (a daemon converging again passes through partial states: one leg of
  an ECMP route first), or until the hold time ends: a restart that ends where it began writes
  nothing.
"""
from __future__ import annotations

import logging
import selectors
from typing import Dict, Optional, Set, Tuple

import attrs

from ..core.links import LinkTable
from ..core.model import KNexthop, KRoute, Prefix, format_prefix
from ..core.port import ResyncNeeded
from ..core.rib import Rib
from .base import BaseFeed, KernelChange, NexthopEvent, earliest, settle_due
from .routesource import RouteSource, paths_of

log = logging.getLogger("kernelsync.tablefeed")
REREAD_RETRY = 0.05  # seconds before a failed dump of the table (ResyncNeeded) is tried again


@attrs.frozen
class TableFeedConfig:
    """``[[feed.table]]``: read ``table``'s routes of ``protocol`` (a number; names are resolved
    by the config) as RIB source ``name`` with admin distance ``distance``; ``hold_time`` and
    ``settle`` in seconds (see the module docstring)."""

    table: int
    protocol: int
    name: str = "ospf"
    distance: int = 110
    hold_time: float = 60.0
    settle: float = 0.2
    restart_quiet: float = 1.0
    where: str = "feed.table"


TableKey = Tuple[int, bytes, int, int]  # (family, dst, plen, metric): a route within the source table


class TableFeed(BaseFeed):
    """One ``[[feed.table]]``.  ``kernel``: the daemon's request socket, for dumps between
    engine runs (``dump_table``, ``dump_nexthops``); ``links``: the link table (read only)."""

    follows_routes = True

    def __init__(self, rib: Rib, cfg: TableFeedConfig, kernel, links: LinkTable) -> None:
        self.cfg = cfg
        self.name = cfg.name
        self.kernel = kernel
        self.links = links
        self.source = RouteSource(rib, cfg.name, cfg.distance, cfg.hold_time)
        self.table: Dict[TableKey, KRoute] = {}  # as the kernel has it
        self.nexthops: Dict[int, KNexthop] = {}
        self.prefixes: Dict[Prefix, Dict[TableKey, KRoute]] = {}  # self.table by prefix
        self.dirty: Set[Prefix] = set()
        self.deleted_at: Optional[float] = None  # first deletion not applied yet
        self.deleted_last = 0.0  # the last one
        self.reread = False
        self.read_nexthops = False
        self.last_event = 0.0
        self.counters = {"route_events": 0, "rereads": 0, "lost_notifications": 0, "reread_retries": 0}
        self.retry_at: Optional[float] = None  # a dump failed (ResyncNeeded): again then
        self._dirty_since: Optional[float] = None  # the first route notification not applied yet

    def retime(self, cfg: TableFeedConfig) -> None:
        """A configuration reload changed this feed's times (``hold_time``, ``settle``,
        ``restart_quiet``; nothing else): used from the next time each one starts (routes
        already stale keep their end)."""
        self.cfg = cfg
        self.source.hold_time = cfg.hold_time

    # setup ---------------------------------------------------------------------------------
    def start(self, sel: selectors.BaseSelector, now: float) -> None:
        self._read(now)
        self.source.set_ready()  # the dump is the whole state
        log.info("%s: table %d protocol %d -> source %s (distance %d): %d routes",
                 self.cfg.where, self.cfg.table, self.cfg.protocol, self.cfg.name, self.cfg.distance,
                 len(self.source.routes))

    # kernel --------------------------------------------------------------------------------
    def _read(self, now: float) -> None:
        """Dump the source table (the kernel filters by table and protocol) and apply it."""
        routes = self.kernel.dump_table(self.cfg.table, self.cfg.protocol)
        self.table = {_key(r): r for r in routes}
        self.prefixes = {}
        for key, route in self.table.items():
            self.prefixes.setdefault(route.prefix, {})[key] = route
        if any(r.nh_id for r in routes) and (self.read_nexthops or not self.nexthops):
            self.nexthops = self.kernel.dump_nexthops()
        self.read_nexthops = False
        self.reread = False
        self.counters["rereads"] += 1
        self.dirty.clear()
        self.deleted_at = None
        if self._lost_if_empty(now):
            return
        self.source.replace_all(paths_of(self.table.values(), self.nexthops, self.links.names))

    def _lost_if_empty(self, now: float) -> bool:
        """The table holds nothing of the source any more while the RIB has its routes: the
        daemon stopped; keep them as stale (see the module docstring)."""
        if self.table or not self.source.routes:
            return False
        log.warning("%s: table %d holds no route of protocol %d any more (the daemon stopped?): keeping its "
                    "%d routes as stale for %.0f s", self.cfg.where, self.cfg.table, self.cfg.protocol,
                    len(self.source.routes), self.cfg.hold_time)
        self.source.lost(now)
        return True

    def on_kernel_change(self, change: KernelChange, now: float) -> None:
        """A link changed (the kernel may have deleted routes of the source table silently) or
        notifications were lost: read the table again.  Route notifications of the table apply."""
        if change.link_event:
            self.reread = True
        if change.lost:
            self.counters["lost_notifications"] += 1
        for event in change.routes:
            route = event.route
            if route.table != self.cfg.table or route.protocol != self.cfg.protocol:
                continue
            self.counters["route_events"] += 1
            self.last_event = now
            key = _key(route)
            if event.deleted:
                if self.table.pop(key, None) is not None:
                    self._index(key, route.prefix, None)
                    self.deleted_last = now
                    if self.deleted_at is None:
                        self.deleted_at = now
            else:
                self.table[key] = route
                self._index(key, route.prefix, route)
                if route.nh_id and route.nh_id not in self.nexthops:
                    self.read_nexthops = True
                    self.reread = True
            self.dirty.add(route.prefix)
            if self._dirty_since is None:
                self._dirty_since = now

    def _index(self, key: TableKey, prefix: Prefix, route: Optional[KRoute]) -> None:
        """Keep :attr:`prefixes` in step with :attr:`table` (``route`` None: deleted)."""
        routes = self.prefixes.setdefault(prefix, {})
        if route is not None:
            routes[key] = route
        else:
            routes.pop(key, None)
            if not routes:
                del self.prefixes[prefix]

    def on_nexthop_event(self, event: NexthopEvent, now: float) -> None:
        """Another program's nexthop object changed: the source's routes on one change with it."""
        if not event.by_us and any(r.nh_id for r in self.table.values()):
            self.read_nexthops = True
            self.reread = True

    # cycle ---------------------------------------------------------------------------------
    def deadline(self) -> Optional[float]:
        due = None
        if self.reread:
            due = self.retry_at or 0.0
        elif self.dirty:
            if self.source.stale:  # held while stale: until every prefix is back and the table is quiet
                if self.source.all_back(self.prefixes):
                    due = max(self.last_event + self.cfg.restart_quiet, self._settled() or 0.0)
            elif any(p in self.prefixes for p in self.dirty):
                due = 0.0  # additions and replaces: at once
            else:
                due = self._settled()
        return earliest(self.source.deadline(), due)

    def _settled(self) -> Optional[float]:
        """When the pending deletions are due (None: there are none)."""
        if self.deleted_at is None:
            return None
        return settle_due(self.deleted_at, self.deleted_last, self.cfg.settle)

    def commit(self, now: float) -> None:
        swept = self.source.tick(now)
        if swept:
            log.info("%s: hold time over: %d stale routes swept", self.cfg.where, swept)
        if self.reread:
            if self.retry_at is not None and now < self.retry_at:
                return
            try:
                self._read(now)
            except ResyncNeeded as exc:  # interrupted by a concurrent change, or replies lost
                self.counters["reread_retries"] += 1
                self.retry_at = now + REREAD_RETRY
                log.warning("%s: reading table %d failed (%s): again in %.0f ms", self.cfg.where, self.cfg.table,
                            exc, REREAD_RETRY * 1000)
            else:
                self.retry_at = None
            return
        if not self.dirty:
            self.deleted_at = None
            self._dirty_since = None
            return
        settled = self.deleted_at is None or now >= self._settled()
        if self.source.stale:
            if not (settled and self.source.all_back(self.prefixes) and now >= self.last_event + self.cfg.restart_quiet):
                return  # the source is converging again after a restart: hold its partial states
        if settled:
            dirty, self.dirty = self.dirty, set()
            self.deleted_at = None
            if self._lost_if_empty(now):
                return
        else:  # deletions settle; what the table has a route for is applied at once
            dirty = {p for p in self.dirty if p in self.prefixes}
            self.dirty -= dirty
        since = self._dirty_since
        if since is not None:  # the batch's first notification: the feed-to-kernel latency
            self.mark_input(since)
            if not self.dirty:
                self._dirty_since = None
        fresh = paths_of([r for p in dirty for r in self.prefixes.get(p, {}).values()], self.nexthops,
                         self.links.names)
        for prefix in dirty:
            paths = fresh.get(prefix)
            if paths is not None:
                self.source.update(prefix, paths)
            elif prefix in self.source.routes:
                self.source.withdraw(prefix)
            if prefix in self.prefixes and paths is None:
                log.warning("%s: route %s cannot be used (unknown device or nexthop object)",
                            self.cfg.where, format_prefix(prefix))

    def show(self) -> dict:
        return {"table": self.cfg.table, "protocol": self.cfg.protocol, "distance": self.cfg.distance,
                **self.source.show(), **self.counters}


def _key(route: KRoute) -> TableKey:
    return (route.family, route.dst, route.plen, route.metric)


__all__ = ["TableFeed", "TableFeedConfig"]
