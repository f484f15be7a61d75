"""The static feed: routes from the configuration, into the RIB at start, ready at once.

Two sources: ``static`` (``[[static.route]]``, admin distance ``static.distance``) and
``anycast`` (the groups of ``[[export.anycast]]``, which kernelsync installs itself as groups
of device-only nexthops and exports; same distance).  A route naming a device that does not
exist yet is reported and installed when the device appears (the FIB follows the link table).
Routes that failed validation were left out by the config and are reported here.
"""
from __future__ import annotations

import logging
import selectors
from typing import Iterable, List, Optional, Sequence, Tuple

import attrs

from ..core.links import LinkTable
from ..core.model import Path, Prefix, format_prefix
from ..core.rib import Rib
from .base import BaseFeed

log = logging.getLogger("kernelsync.static")


@attrs.frozen
class StaticRoute:
    """One configured route: ``paths`` (one path: its nexthops are the ECMP set); ``where``:
    the config key (``static.route[3]``), for log messages."""

    prefix: Prefix
    paths: Tuple[Path, ...]
    where: str


class StaticFeed(BaseFeed):
    """``routes`` as source ``static`` and ``anycast`` as source ``anycast`` (when any), both
    with admin distance ``distance``; ``errors``: ``"key: problem"`` of the routes the config
    skipped; ``filename``: the config file, for log messages."""

    name = "static"

    def __init__(self, rib: Rib, links: LinkTable, routes: Sequence[StaticRoute], distance: int,
                 errors: Iterable[str] = (), anycast: Sequence[StaticRoute] = (), filename: str = "<config>") -> None:
        self.rib = rib
        self.links = links
        self.routes = tuple(routes)
        self.anycast = tuple(anycast)
        self.distance = distance
        self.errors = tuple(errors)
        self.filename = filename

    def start(self, sel: Optional[selectors.BaseSelector], now: float) -> None:
        for problem in self.errors:
            log.error("%s: skipping route: %s", self.filename, problem)
        self._load("static", self.routes)
        if self.anycast:
            self._load("anycast", self.anycast)

    def _load(self, source: str, routes: Sequence[StaticRoute]) -> None:
        self.rib.add_source(source, self.distance)
        for route in routes:
            self.rib.update(source, route.prefix, route.paths)
            missing = self._missing(route)
            if missing and source == "static":
                for dev in missing:
                    log.warning("%s: route %s: device %s does not exist yet; installed when it appears",
                                route.where, format_prefix(route.prefix), dev)
            elif missing:
                log.warning("%s: anycast %s: device%s %s do%s not exist yet; members join when they appear",
                            route.where, format_prefix(route.prefix), "s" if len(missing) > 1 else "",
                            ", ".join(missing), "" if len(missing) > 1 else "es")
        self.rib.set_ready(source)

    def reconfigure(self, routes: Sequence[StaticRoute], distance: int, anycast: Sequence[StaticRoute] = ()) -> None:
        """A configuration reload: make ``routes`` and ``anycast`` the feed's, with admin
        ``distance``.  Only what differs reaches the RIB (a route with the same paths is not
        touched, so nothing is written for it); routes of a new device that does not exist yet
        are reported as at start."""
        rib = self.rib
        old = {source: {r.prefix: r.paths for r in routes_}
               for source, routes_ in (("static", self.routes), ("anycast", self.anycast))}
        self.routes, self.anycast, self.distance = tuple(routes), tuple(anycast), distance
        self.errors = ()  # a reload is refused while a route is bad
        for source, routes_ in (("static", self.routes), ("anycast", self.anycast)):
            if source not in rib.distance:
                if not routes_:
                    continue
                rib.add_source(source, distance)
                rib.set_ready(source)
            rib.set_distance(source, distance)
            rib.replace_source(source, {r.prefix: r.paths for r in routes_})
            for route in routes_:
                if old[source].get(route.prefix) != route.paths:
                    for dev in self._missing(route):
                        log.warning("%s: %s %s: device %s does not exist yet; installed when it appears",
                                    route.where, "route" if source == "static" else "anycast",
                                    format_prefix(route.prefix), dev)

    def _missing(self, route: StaticRoute) -> List[str]:
        devices = dict.fromkeys(nh.dev for path in route.paths for nh in path.nexthops)
        return [d for d in devices if self.links.get(d) is None]

    def show(self) -> dict:
        return {"routes": len(self.routes), "anycast": len(self.anycast), "skipped": len(self.errors),
                "distance": self.distance}


__all__ = ["StaticFeed", "StaticRoute"]
