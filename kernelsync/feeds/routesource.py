"""A feed of whole routes in the kernel's own format (a routing daemon's kernel table, zebra's
FPM stream) as one RIB source, with stale handling.  Pure.

Routes arrive as :class:`~kernelsync.core.model.KRoute` (decoded by
:func:`kernelsync.kernel.codec.parse_route`), nexthop objects as
:class:`~kernelsync.core.model.KNexthop` (include/uapi/linux/nexthop.h).  :func:`route_paths`
turns one into the RIB's paths: every leg (RTA_GATEWAY/RTA_VIA + RTA_OIF, each RTA_MULTIPATH
``rtnexthop`` with its weight, or the members of the route's nexthop object or group, with theirs)
becomes a :class:`~kernelsync.core.model.NexthopSpec`,
device-only legs included.  Nothing of the source's own numbering survives: kernelsync writes
its own nexthop objects, in its own table, with its own protocol.

:class:`RouteSource` keeps the source's current routes and what becomes of them when the source
goes away: **stale**.  A routing daemon that restarts takes its routes away (BIRD deletes its
table on SIGTERM and again on start; zebra's FPM connection drops) and brings them back once its
protocol has converged again.  Meanwhile the last state is kept, for ``hold_time`` seconds, so
the FIB does not flap; a route that comes back unchanged costs no kernel write, and what has not
come back when the hold time ends is swept.
"""
from __future__ import annotations

import datetime
from typing import Container, Dict, Iterable, List, Mapping, Optional, Tuple

from ..core.model import (GRP_MPATH, KNexthop, KRoute, NexthopSpec, Path, Prefix, ResilientSpec, format_address,
                          format_prefix, prefix_within)
from ..core.rib import Rib


def route_paths(route: KRoute, nexthops: Mapping[int, KNexthop],
                ifnames: Mapping[int, str]) -> Optional[Tuple[Path, ...]]:
    """The RIB paths of one kernel-format route; None if it is not a unicast route or one of
    its legs cannot be expressed (an unknown nexthop object or interface index).
    ``ifnames``: ifindex -> name (:attr:`kernelsync.core.links.LinkTable.names`)."""
    if not route.is_unicast:
        return None
    specs = []
    resilient = None
    if route.nh_id:
        obj = nexthops.get(route.nh_id)
        if obj is None:
            return None
        if obj.group:
            members = [(nexthops.get(m), w) for m, w in obj.group]
            if obj.grp_type != GRP_MPATH and obj.res:
                buckets, idle, unbalanced = obj.res
                resilient = ResilientSpec(buckets=buckets, idle_timer=idle / 100, unbalanced_timer=unbalanced / 100)
        else:
            members = [(obj, 1)]
        for member, weight in members:
            if member is None or member.group or member.blackhole or member.oif not in ifnames:
                return None
            gw_family = member.family if member.gateway is not None else None
            specs.append(NexthopSpec(gateway=member.gateway, gw_family=gw_family, dev=ifnames[member.oif],
                                     weight=weight))
    else:
        for leg in route.legs:
            if leg.ifindex not in ifnames:
                return None
            specs.append(NexthopSpec(gateway=leg.gateway, gw_family=leg.gw_family if leg.gateway is not None else None,
                                     dev=ifnames[leg.ifindex], weight=leg.weight))
    if not specs:
        return None
    specs.sort(key=lambda s: (s.dev, s.gateway or b""))
    return (Path(tuple(specs), resilient),)


class RouteSource:
    """One RIB source fed with whole routes; see the module docstring.

    ``name``/``distance``: the RIB source (admin distance 0..255, lower wins);
    ``hold_time``: seconds a stale state is kept.  Times are on the caller's monotonic clock."""

    def __init__(self, rib: Rib, name: str, distance: int, hold_time: float) -> None:
        self.rib = rib
        self.name = name
        self.hold_time = hold_time
        rib.add_source(name, distance)
        self.routes: Dict[Prefix, Tuple[Path, ...]] = {}  # what the source has now
        self.stale: Dict[Prefix, Tuple[Path, ...]] = {}  # what it had, kept until stale_until
        self.stale_until: Optional[float] = None
        self.counters = {"updates": 0, "withdrawals": 0, "stale_periods": 0, "swept": 0}

    def set_ready(self) -> None:
        self.rib.set_ready(self.name)

    def update(self, prefix: Prefix, paths: Tuple[Path, ...]) -> None:
        self.counters["updates"] += 1
        self.routes[prefix] = paths
        self.stale.pop(prefix, None)
        self.rib.update(self.name, prefix, paths)

    def withdraw(self, prefix: Prefix) -> None:
        if self.routes.pop(prefix, None) is not None:
            self.counters["withdrawals"] += 1
            self.rib.withdraw(self.name, prefix)

    def replace_all(self, routes: Mapping[Prefix, Tuple[Path, ...]]) -> None:
        """``routes`` is the source's whole state now (a dump): the rest is withdrawn, except
        what is stale (kept until the hold time ends)."""
        for prefix in [p for p in self.routes if p not in routes]:
            self.withdraw(prefix)
        for prefix, paths in routes.items():
            if self.routes.get(prefix) != paths:
                self.update(prefix, paths)

    def lost(self, now: float) -> None:
        """The source went away (its routes vanished, its connection closed): keep what it had
        as stale (:meth:`keep_stale`).  Its routes stay in the RIB meanwhile."""
        self.keep_stale(list(self.routes), now)

    def keep_stale(self, prefixes: Iterable[Prefix], now: float) -> int:
        """Part of the source went away (a routing daemon behind it stopped and its routes were
        withdrawn together): keep those of ``prefixes`` it has as stale for ``hold_time`` from
        now, or, when routes are stale already, until the stale period already running ends (a
        source that keeps failing cannot keep its routes forever).  They stay in the RIB
        meanwhile; with ``hold_time`` 0 they are withdrawn at once.  Returns how many."""
        if self.hold_time <= 0:
            gone = [p for p in prefixes if p in self.routes]
            for prefix in gone:
                self.withdraw(prefix)
            return len(gone)
        fresh = not self.stale
        moved = 0
        for prefix in prefixes:
            paths = self.routes.pop(prefix, None)
            if paths is not None:
                self.stale[prefix] = paths
                moved += 1
        if moved:
            self.counters["stale_periods"] += 1
        if self.stale and (fresh or self.stale_until is None):
            self.stale_until = now + self.hold_time
        return moved

    def sweep(self) -> int:
        """End the stale period: withdraw what did not come back."""
        swept = 0
        for prefix in self.stale:
            if prefix not in self.routes:
                self.rib.withdraw(self.name, prefix)
                swept += 1
        self.stale = {}
        self.stale_until = None
        self.counters["swept"] += swept
        return swept

    def all_back(self, present: Container[Prefix]) -> bool:
        """Whether every stale prefix is in ``present`` (the source's state now): a source
        converging again after a restart is held until then (or until the hold time ends)."""
        return all(prefix in present for prefix in self.stale)

    def deadline(self) -> Optional[float]:
        return self.stale_until

    def tick(self, now: float) -> int:
        if self.stale_until is not None and now >= self.stale_until:
            return self.sweep()
        return 0

    def show(self) -> dict:
        return {"routes": len(self.routes), "stale": len(self.stale), "stale_until": self.stale_until,
                **self.counters}

    def show_times(self, now: float, wall: float) -> dict:
        """The stale period's end for people: ``stale_for``, seconds left (``stale_until`` is on
        the caller's monotonic clock, ``now``), and ``stale_until_utc``, its end as UTC ISO 8601
        time (``2026-12-01T17:40:03Z``; ``wall`` is ``time.time()`` at ``now``); both None when
        nothing is stale."""
        if self.stale_until is None:
            return {"stale_for": None, "stale_until_utc": None}
        left = max(0.0, self.stale_until - now)
        return {"stale_for": round(left, 1), "stale_until_utc": utc_text(wall + left)}

    def show_routes(self, within: Optional[Prefix] = None) -> List[dict]:
        """The source's routes, sorted by prefix: ``{"prefix", "stale", "paths"}`` each, ``stale``
        True for a route kept from before the source went away that has not come back, each
        path ``{"nexthops": [{"gateway", "dev", "weight"}], "resilient"}`` (gateway None for a
        device-only nexthop, resilient None unless a resilient group was asked for).
        ``within``: only that prefix and its more specifics."""
        items = [(p, paths, False) for p, paths in self.routes.items()]
        items += [(p, paths, True) for p, paths in self.stale.items() if p not in self.routes]
        if within is not None:
            items = [i for i in items if prefix_within(i[0], within)]
        items.sort(key=lambda i: (i[0][0], i[0][1], i[0][2]))
        return [{"prefix": format_prefix(p), "stale": stale, "paths": [_path_view(path) for path in paths]}
                for p, paths, stale in items]


def _path_view(path: Path) -> dict:
    return {"nexthops": [{"gateway": format_address(nh.gw_family, nh.gateway), "dev": nh.dev, "weight": nh.weight}
                         for nh in path.nexthops],
            "resilient": None if path.resilient is None else {
                "buckets": path.resilient.buckets, "idle_timer": path.resilient.idle_timer,
                "unbalanced_timer": path.resilient.unbalanced_timer}}


def utc_text(epoch: float) -> str:
    """Seconds since the epoch -> ``2026-12-01T17:40:03Z`` (UTC, whole seconds)."""
    return datetime.datetime.fromtimestamp(round(epoch), datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def paths_of(routes: Iterable[KRoute], nexthops: Mapping[int, KNexthop],
             ifnames: Mapping[int, str]) -> Dict[Prefix, Tuple[Path, ...]]:
    """prefix -> paths for a set of kernel-format routes (the lowest metric per prefix wins;
    routes that :func:`route_paths` cannot express are left out)."""
    best: Dict[Prefix, Tuple[int, Tuple[Path, ...]]] = {}
    for route in routes:
        paths = route_paths(route, nexthops, ifnames)
        if paths is None:
            continue
        prefix = route.prefix
        have = best.get(prefix)
        if have is None or route.metric < have[0]:
            best[prefix] = (route.metric, paths)
    return {p: paths for p, (_m, paths) in best.items()}


__all__ = ["RouteSource", "route_paths", "paths_of", "utc_text"]
