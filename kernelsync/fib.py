"""RIB -> desired FIB.  Pure: no I/O; time is passed in.

For each prefix the builder keeps the nexthop entry (nexthop or group, from
:class:`~kernelsync.nhm.NexthopManager`) of every source that offers it, best admin distance
first.  The desired route points at the first of those that can be in the kernel now (a
nexthop on a usable link, or a group with at least one active member): a route whose best
source has lost every nexthop falls back to the next-best source, or is removed.

Work is incremental: a RIB change touches its prefixes; a link change touches only the
prefixes whose entry went from usable to unusable or back (a group that keeps one active
member keeps its routes: only the group object changes).

Output: :attr:`FibBuilder.routes`, ``RouteKey -> nexthop id``, and
:meth:`FibBuilder.desired_nexthops`, ``id -> KNexthop``.
"""
from __future__ import annotations

import logging
from typing import Dict, Iterable, Optional, Set, Tuple

from .model import KNexthop, Link, Prefix, RouteKey, format_prefix
from .nhm import Entry, NexthopManager
from .rib import Rib

log = logging.getLogger(__name__)


class FibBuilder:
    """Keeps the desired FIB in step with the RIB and the link table.

    ``table``: kernel table our routes go to; ``metric``: their priority (RTA_PRIORITY)."""

    def __init__(self, rib: Rib, nhm: NexthopManager, table: int, metric: int) -> None:
        self.rib = rib
        self.nhm = nhm
        self.table = table
        self.metric = metric
        self.routes: Dict[RouteKey, int] = {}
        self.selected: Dict[Prefix, str] = {}  # prefix -> source whose nexthops are installed
        self.errors: Dict[Tuple[Prefix, str], str] = {}
        self._cands: Dict[Prefix, Tuple[Tuple[str, Entry], ...]] = {}

    def route_key(self, prefix: Prefix) -> RouteKey:
        return (self.table, prefix[0], prefix[1], prefix[2], self.metric)

    def sync_rib(self, now: float) -> Set[RouteKey]:
        """Apply the RIB's pending changes.  Returns the route keys whose desired value may
        have changed."""
        changed: Set[RouteKey] = set()
        nhm = self.nhm
        for prefix in self.rib.take_dirty():
            new = []
            for _distance, source, paths in self.rib.candidates(prefix):
                try:
                    new.append((source, nhm.entries_for(prefix[0], paths)))
                    self.errors.pop((prefix, source), None)
                except ValueError as exc:
                    if self.errors.get((prefix, source)) != str(exc):
                        log.error("route %s from %s not usable: %s", format_prefix(prefix), source, exc)
                    self.errors[(prefix, source)] = str(exc)
            old = self._cands.get(prefix, ())
            for _, entry in old:
                if all(entry is not e for _, e in new):
                    nhm.unuse(entry, prefix, now)
            for _, entry in new:
                nhm.use(entry, prefix)
            if new:
                self._cands[prefix] = tuple(new)
            else:
                self._cands.pop(prefix, None)
            changed.add(self._select(prefix))
        return changed

    def _select(self, prefix: Prefix) -> RouteKey:
        key = (self.table, prefix[0], prefix[1], prefix[2], self.metric)
        installed_id = self.nhm.installed_id
        for source, entry in self._cands.get(prefix, ()):
            nh_id = installed_id(entry)
            if nh_id is not None:
                self.routes[key] = nh_id
                self.selected[prefix] = source
                return key
        self.routes.pop(key, None)
        self.selected.pop(prefix, None)
        return key

    def set_links(self, links: Dict[str, Link]) -> Set[RouteKey]:
        """New link table; returns route keys whose desired value may have changed."""
        return {self._select(p) for p in self.nhm.set_links(links)}

    def set_failed(self, nh_ids: Iterable[int], failed: bool) -> Set[RouteKey]:
        return {self._select(p) for p in self.nhm.set_failed(nh_ids, failed)}

    def desired_nexthops(self) -> Dict[int, KNexthop]:
        return self.nhm.desired()

    def entry_of(self, prefix: Prefix) -> Optional[Entry]:
        for _, entry in self._cands.get(prefix, ()):
            if self.nhm.installed_id(entry) is not None:
                return entry
        return None
