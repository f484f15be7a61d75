"""Export to BGP: which routes kernelsync announces through ExaBGP, and the commands.  Pure.

Two sources of exported routes, in this order of precedence (one announcement per prefix: the
first source that exports a prefix gives its attributes; announcements are de-duplicated):

* **anycast groups** (:class:`AnycastGroup`, config ``[[export.anycast]]``): an address and the
  guest devices behind it.  kernelsync installs the route itself (RIB source ``anycast``) as a
  group of device-only nexthops, resilient when configured, and exports the prefix;
* **kernel filters** (:class:`KernelFilter`, config ``[[export.kernel]]``): routes other
  programs (or the administrator) put in the kernel, selected by table, protocol, prefix range,
  prefix length and device-name pattern: a plain ``dev tap1`` route, a multipath route whose
  legs have no gateway (``nexthop dev tapA nexthop dev tapB``), or a route on a nexthop object
  or group (``nhid``).  kernelsync's own routes (its protocol number) are never selected, so a
  route it installed from BGP is never exported back (no loops).

**Liveness**: a prefix is announced while at least one of its devices is up with carrier
(IFF_UP and IFF_LOWER_UP) and not suppressed by flap damping (:class:`Damping`), and withdrawn
when the last one goes.  A device's loss is acted on at once; only a device that flaps often
is held back on its way up.

Commands are ExaBGP process-API text commands (one line each, see
``reference/exabgp-process-api.md`` section 3), e.g.::

    neighbor 192.0.2.1 , neighbor 192.0.2.9 announce route 203.0.113.10/32 next-hop self community [65010:53]
    withdraw route 203.0.113.10/32 next-hop self
"""
from __future__ import annotations

import fnmatch
import math
from typing import Dict, Iterable, List, Optional, Set, Tuple

import attrs

from ..core.links import LinkChange, LinkTable
from ..core.model import AF_INET, KNexthop, KRoute, NexthopSpec, Path, Prefix, ResilientSpec, format_prefix


@attrs.frozen
class ExportAttrs:
    """BGP attributes of exported routes, as ExaBGP's ``announce route`` takes them.

    ``next_hop_ipv4``/``next_hop_ipv6``: ``"self"`` (the session's local address; ExaBGP
    refuses it for a route of the other family than the session's) or an address of that
    family.  ``communities``: RFC 1997 ``"asn:value"``; ``large_communities``: RFC 8092
    ``"asn:value:value"``; ``med``/``local_pref``: RFC 4271 MULTI_EXIT_DISC / LOCAL_PREF (ExaBGP
    drops LOCAL_PREF on eBGP); ``neighbors``: peer addresses to announce to (empty: every
    neighbor whose ``api`` lists our process)."""

    next_hop_ipv4: str = "self"
    next_hop_ipv6: str = "self"
    communities: Tuple[str, ...] = ()
    large_communities: Tuple[str, ...] = ()
    med: Optional[int] = None
    local_pref: Optional[int] = None
    neighbors: Tuple[str, ...] = ()

    def _selector(self) -> str:
        return "".join("neighbor %s , " % n for n in self.neighbors)[:-2] if self.neighbors else ""

    def next_hop(self, family: int) -> str:
        return self.next_hop_ipv4 if family == AF_INET else self.next_hop_ipv6

    def announce(self, prefix: Prefix) -> str:
        """The ``announce route`` command for ``prefix``."""
        words = [self._selector() + "announce route", format_prefix(prefix), "next-hop", self.next_hop(prefix[0])]
        if self.communities:
            words.append("community [%s]" % " ".join(self.communities))
        if self.large_communities:
            words.append("large-community [%s]" % " ".join(self.large_communities))
        if self.med is not None:
            words.append("med %d" % self.med)
        if self.local_pref is not None:
            words.append("local-preference %d" % self.local_pref)
        return " ".join(words)

    def withdraw(self, prefix: Prefix) -> str:
        """The ``withdraw route`` command for ``prefix`` (to the same neighbors)."""
        return "%swithdraw route %s next-hop %s" % (self._selector(), format_prefix(prefix),
                                                    self.next_hop(prefix[0]))


@attrs.frozen
class AnycastGroup:
    """``[[export.anycast]]``: ``prefix`` over the guest ``devices`` (device-only nexthops, no
    gateway), a resilient group when ``resilient`` is set; exported with ``attrs``."""

    prefix: Prefix
    devices: Tuple[str, ...]
    attrs: ExportAttrs = ExportAttrs()
    resilient: Optional[ResilientSpec] = None
    where: str = "export.anycast"

    def path(self) -> Path:
        """The RIB path kernelsync installs: one device-only nexthop per device."""
        return Path(tuple(NexthopSpec(gateway=None, gw_family=None, dev=d) for d in self.devices), self.resilient)


def _within(prefix: Prefix, covering: Prefix) -> bool:
    family, dst, plen = prefix
    cfam, cdst, cplen = covering
    if family != cfam or plen < cplen:
        return False
    shift = len(dst) * 8 - cplen
    return int.from_bytes(dst, "big") >> shift == int.from_bytes(cdst, "big") >> shift


@attrs.frozen
class KernelFilter:
    """``[[export.kernel]]``: which kernel routes are exported, with ``attrs``.

    A route is selected when it is a unicast route of ``table``, its protocol is one of
    ``protocols`` (empty: any but ours), its length one of ``prefix_lengths`` (empty: any), it
    lies within one of ``prefixes`` (empty: anywhere), and every one of its legs (its nexthops,
    those of its RTA_MULTIPATH, or the members of its nexthop object or group) has a device
    whose name matches one of the ``devices`` glob patterns and, unless ``gateways``, no
    gateway."""

    name: str
    attrs: ExportAttrs = ExportAttrs()
    table: int = 254
    protocols: Tuple[int, ...] = ()
    devices: Tuple[str, ...] = ("*",)
    prefix_lengths: Tuple[int, ...] = ()
    prefixes: Tuple[Prefix, ...] = ()
    gateways: bool = False

    def selects(self, prefix: Prefix, table: int, protocol: int) -> bool:
        """The criteria that do not depend on the route's nexthops."""
        if table != self.table or (self.protocols and protocol not in self.protocols):
            return False
        if self.prefix_lengths and prefix[2] not in self.prefix_lengths:
            return False
        return not self.prefixes or any(_within(prefix, c) for c in self.prefixes)

    def legs_match(self, legs: Iterable[Tuple[bool, str]]) -> bool:
        """``legs``: ``(has gateway, device name)`` per leg; every one must match, and there
        must be at least one."""
        any_leg = False
        for has_gw, name in legs:
            if has_gw and not self.gateways:
                return False
            if not any(fnmatch.fnmatchcase(name, p) for p in self.devices):
                return False
            any_leg = True
        return any_leg


@attrs.frozen
class DampingSettings:
    """Flap damping of devices, in the manner of RFC 2439 (BGP route flap damping): every
    loss of a device adds a penalty of 1, which halves every ``half_life`` seconds; at
    ``suppress`` (by default the third loss within a few seconds) the device counts as down until the penalty has decayed below ``reuse``, at
    most ``max_suppress`` seconds after its last loss.  ``enabled = false``: devices count as
    they are."""

    enabled: bool = True
    half_life: float = 15.0
    suppress: float = 2.5
    reuse: float = 1.0
    max_suppress: float = 120.0


class Damping:
    """Per device name: penalty and suppression (see :class:`DampingSettings`).  Times are
    seconds on the caller's monotonic clock."""

    def __init__(self, settings: DampingSettings) -> None:
        self.settings = settings
        self.ceiling = settings.reuse * 2 ** (settings.max_suppress / settings.half_life)
        self.penalty: Dict[str, Tuple[float, float]] = {}  # name -> (penalty, at)
        self.suppressed: Set[str] = set()
        self.suppressions = 0

    def set_settings(self, settings: DampingSettings) -> None:
        """A configuration reload: the penalties so far are kept and decay with the new
        ``half_life``; disabled, no device counts as suppressed any more."""
        self.settings = settings
        self.ceiling = settings.reuse * 2 ** (settings.max_suppress / settings.half_life)
        if not settings.enabled:
            self.suppressed.clear()

    def value(self, name: str, now: float) -> float:
        penalty, at = self.penalty.get(name, (0.0, now))
        return penalty * 2 ** (-(now - at) / self.settings.half_life)

    def lost(self, name: str, now: float) -> bool:
        """Device ``name`` went down; returns True if it is now suppressed."""
        if not self.settings.enabled:
            return False
        penalty = min(self.value(name, now) + 1.0, self.ceiling)
        self.penalty[name] = (penalty, now)
        if penalty >= self.settings.suppress and name not in self.suppressed:
            self.suppressed.add(name)
            self.suppressions += 1
            return True
        return False

    def is_suppressed(self, name: str, now: float) -> bool:
        if name not in self.suppressed:
            return False
        if self.value(name, now) < self.settings.reuse:
            self.suppressed.discard(name)
            return False
        return True

    def refresh(self, now: float) -> None:
        """Lift every suppression whose penalty has decayed below ``reuse``."""
        for name in list(self.suppressed):
            self.is_suppressed(name, now)

    def next_reuse(self, now: float) -> Optional[float]:
        """When the first suppressed device becomes usable again (None: none suppressed)."""
        times = []
        for name in self.suppressed:
            penalty, at = self.penalty[name]
            times.append(at + self.settings.half_life * math.log2(penalty / self.settings.reuse))
        return min(times) if times else None

    def show(self, now: float) -> Dict[str, dict]:
        return {name: {"penalty": round(self.value(name, now), 3), "suppressed": name in self.suppressed}
                for name in self.penalty if self.value(name, now) >= 0.01}


RouteId = Tuple[int, int, bytes, int, int]  # (table, family, dst, plen, metric): one kernel route
Exported = Tuple[str, str, str]  # (announce command, withdraw command, source)


class Exporter:
    """The exported set, from anycast groups, kernel routes, nexthop objects and links.

    ``protocol``: kernelsync's own route protocol (routes of it are never selected); ``links``:
    the link table (read only).  Feed it with :meth:`links_changed`,
    :meth:`set_routes`/:meth:`route_event` and :meth:`set_nexthops`;
    :meth:`changes` returns the commands that take ExaBGP from what was announced to what
    should be, and :attr:`announced` is that set (prefix -> (announce, withdraw, source))."""

    def __init__(self, anycast: Iterable[AnycastGroup], filters: Iterable[KernelFilter], damping: DampingSettings,
                 protocol: int, links: LinkTable) -> None:
        self.anycast = tuple(anycast)
        self.filters = tuple(filters)
        self.damping = Damping(damping)
        self.protocol = protocol
        self.links = links
        self.tables = frozenset(f.table for f in self.filters)
        self.routes: Dict[RouteId, KRoute] = {}
        self.nexthops: Dict[int, KNexthop] = {}
        self.announced: Dict[Prefix, Exported] = {}

    def reconfigure(self, anycast: Iterable[AnycastGroup], filters: Iterable[KernelFilter],
                    damping: DampingSettings) -> None:
        """A configuration reload: new groups, filters and damping settings.  The candidate
        routes are to be set again (:meth:`set_routes`: the filters' tables may differ); the
        next :meth:`changes` sends only what differs from what is announced."""
        self.anycast = tuple(anycast)
        self.filters = tuple(filters)
        self.tables = frozenset(f.table for f in self.filters)
        self.routes = {}
        self.damping.set_settings(damping)

    # inputs ----------------------------------------------------------------------------------
    def links_changed(self, change: LinkChange, now: float) -> List[str]:
        """The link table changed; returns the names of devices that were lost (usable before,
        not now), each counted as a flap."""
        lost = change.lost(self.links)
        for name in lost:
            self.damping.lost(name, now)
        return lost

    def _candidate(self, route: KRoute) -> bool:
        if route.protocol == self.protocol or not route.is_unicast:
            return False
        return any(f.selects(route.prefix, route.table, route.protocol) for f in self.filters)

    def set_routes(self, routes: Iterable[KRoute]) -> None:
        """All routes of the filters' tables, as dumped (the candidates are replaced)."""
        self.routes = {}
        for route in routes:
            if route.table in self.tables and self._candidate(route):
                self.routes[_route_id(route)] = route

    def route_event(self, deleted: bool, route: KRoute) -> bool:
        """RTM_NEWROUTE/DELROUTE; returns True if it concerns a candidate route."""
        key = _route_id(route)
        if deleted:
            return self.routes.pop(key, None) is not None
        if self._candidate(route):
            self.routes[key] = route
            return True
        return self.routes.pop(key, None) is not None

    def set_nexthops(self, nexthops: Dict[int, KNexthop]) -> None:
        self.nexthops = nexthops

    def dump_plan(self) -> Dict[int, Tuple[int, ...]]:
        """table -> the protocols whose routes are to be read (``(0,)``: all of them, when a
        filter on that table takes any protocol)."""
        plan: Dict[int, Set[int]] = {}
        for f in self.filters:
            protocols = plan.setdefault(f.table, set())
            protocols.update(f.protocols or (0,))
        return {t: (0,) if 0 in p else tuple(sorted(p)) for t, p in plan.items()}

    @property
    def uses_nexthops(self) -> bool:
        """Whether a candidate route is on a nexthop object (nexthops must be read)."""
        return any(r.nh_id for r in self.routes.values())

    # the exported set ------------------------------------------------------------------------
    def _live(self, name: str, now: float) -> bool:
        return self.links.usable(name) and not self.damping.is_suppressed(name, now)

    def _legs(self, route: KRoute) -> List[Tuple[bool, int]]:
        """``(has gateway, ifindex)`` per leg: the route's own, or its nexthop object's."""
        obj = self.nexthops.get(route.nh_id) if route.nh_id else None
        if obj is None:
            return [(leg.gateway is not None, leg.ifindex) for leg in route.legs]
        members = [self.nexthops.get(m) for m, _w in obj.group] if obj.group else [obj]
        return [(m.gateway is not None, m.oif) for m in members if m is not None]

    def desired(self, now: float) -> Dict[Prefix, Exported]:
        """prefix -> (announce, withdraw, source) for every prefix that should be announced."""
        out: Dict[Prefix, Exported] = {}
        for group in self.anycast:
            if group.prefix not in out and any(self._live(d, now) for d in group.devices):
                out[group.prefix] = (group.attrs.announce(group.prefix), group.attrs.withdraw(group.prefix), group.where)
        names = self.links.names
        for route in self.routes.values():
            prefix = route.prefix
            if prefix in out:
                continue
            legs = [(gw, names.get(ifindex, "")) for gw, ifindex in self._legs(route)]
            for f in self.filters:
                if f.selects(prefix, route.table, route.protocol) and f.legs_match(legs):
                    if any(self._live(name, now) for _gw, name in legs):
                        out[prefix] = (f.attrs.announce(prefix), f.attrs.withdraw(prefix), "kernel filter %s" % f.name)
                    break
        return out

    def changes(self, now: float) -> List[Tuple[Prefix, str]]:
        """``(prefix, command)`` that take ExaBGP from :attr:`announced` to :meth:`desired`
        (withdraws first, then announcements; nothing for an unchanged prefix), and make that
        the announced set."""
        self.damping.refresh(now)
        want = self.desired(now)
        withdraws = []
        announces = []
        for prefix, (announce, withdraw, _src) in self.announced.items():
            new = want.get(prefix)
            if new is None or new[1] != withdraw:  # gone, or now to other neighbors / next hop
                withdraws.append((prefix, withdraw))
        for prefix, entry in want.items():
            old = self.announced.get(prefix)
            if old is None or old[0] != entry[0] or old[1] != entry[1]:
                announces.append((prefix, entry[0]))
        self.announced = want
        return withdraws + announces

    def deadline(self) -> Optional[float]:
        """When a suppressed device is due to be reused (the set may change then)."""
        return self.damping.next_reuse(0.0) if self.damping.suppressed else None

    def show(self, now: float) -> dict:
        return {"announced": {format_prefix(p): {"command": e[0], "source": e[2]}
                              for p, e in sorted(self.announced.items())},
                "kernel_candidates": len(self.routes), "damping": self.damping.show(now),
                "suppressions": self.damping.suppressions}


@attrs.frozen
class ExportConfig:
    """``[export]``: routes announced to BGP through ExaBGP (see :mod:`kernelsync.export.exporter`).
    ``state_file``: where the announced set is kept across restarts, so that a prefix that went
    away while kernelsync was down is withdrawn (None: not kept)."""

    anycast: Tuple[AnycastGroup, ...] = ()
    kernel: Tuple[KernelFilter, ...] = ()
    damping: DampingSettings = DampingSettings()
    state_file: Optional[str] = "/run/kernelsync/exported.json"

    @property
    def enabled(self) -> bool:
        return bool(self.anycast or self.kernel)


def _route_id(route: KRoute) -> RouteId:
    return (route.table, route.family, route.dst, route.plen, route.metric)


__all__ = ["AnycastGroup", "Damping", "DampingSettings", "ExportAttrs", "ExportConfig", "Exporter", "KernelFilter"]
