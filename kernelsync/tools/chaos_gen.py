"""The chaos suite's scenario, pure and seeded: the topology and static routes it configures
(:func:`make_topology`) and the events it throws at kernelsync (:class:`EventGenerator`).

Nothing here touches the kernel or imports kernelsync: the same seed gives the same topology
and the same sequence of events (targets that depend on the live kernel, such as which of our
routes an ``ip route del`` hits, are drawn as a fraction ``pick`` in [0, 1) applied to a sorted
list by the runner).
"""
from __future__ import annotations

import ipaddress
import json
import random
from dataclasses import dataclass, field
from typing import Dict, Iterator, List, Optional, Tuple

# the addressing plan: link N carries 10.64.N.1/24 and 2001:db8:64:N::1/64; gateways are
# .2-.9 / ::2-::9 on it, fe80::N:2 for a link-local one
V4_ROUTES = ipaddress.ip_network("10.128.0.0/9")
V6_ROUTES = ipaddress.ip_network("2001:db8:8000::/33")
LATE = "late0"


def link_v4(index: int) -> Tuple[str, str]:
    """(our address with prefix length, a gateway base) on link number ``index``."""
    return "10.64.%d.1/24" % index, "10.64.%d." % index


def link_v6(index: int) -> str:
    return "2001:db8:64:%x::1/64" % index


@dataclass(frozen=True)
class Leg:
    """One configured nexthop of a route: ``gateway`` (None: device-only), ``dev``, ``weight``."""
    dev: str
    gateway: Optional[str] = None
    weight: int = 1

    def toml(self) -> str:
        parts = []
        if self.gateway:
            parts.append("via = %s" % json.dumps(self.gateway))
        parts.append("dev = %s" % json.dumps(self.dev))
        if self.weight != 1:
            parts.append("weight = %d" % self.weight)
        return "{ %s }" % ", ".join(parts)


@dataclass(frozen=True)
class NexthopSet:
    """A configured ECMP set: its legs, the family of the routes on it, resilient buckets (0: not
    resilient) and its kind (device, gateway, mixed, weighted, resilient, single...)."""
    family: int            # 4 or 6: the routes' family
    legs: Tuple[Leg, ...]
    kind: str
    buckets: int = 0


@dataclass(frozen=True)
class RouteSpec:
    prefix: str
    nhset: NexthopSet


@dataclass
class Topology:
    """Links (``links``: present from the start; ``late``: created during the run), the sets
    and the routes; :meth:`config_toml` writes kernelsync's configuration."""
    links: List[str]
    late: List[str]
    sets: List[NexthopSet]
    routes: List[RouteSpec]
    index: Dict[str, int] = field(default_factory=dict)  # link name -> its number in the plan

    def config_toml(self, *, table: int, protocol: int, metric: int, id_range: Tuple[int, int],
                    socket: str, hold_time: float, resync_interval: float, verify_delay: float,
                    retry_max: float) -> str:
        lines = ["[kernel]", "table = %d" % table, "protocol = %d" % protocol, "metric = %d" % metric,
                 "nexthop_id_range = [%d, %d]" % id_range, "group_hold_time = %s" % json.dumps(hold_time),
                 "resync_interval = %s" % json.dumps(resync_interval),
                 "verify_delay = %s" % json.dumps(verify_delay), "retry_initial = 0.2",
                 "retry_max = %s" % json.dumps(retry_max), "", "[control]", "socket = %s" % json.dumps(socket), ""]
        for route in self.routes:
            lines.append("[[static.route]]")
            lines.append("prefix = %s" % json.dumps(route.prefix))
            lines.append("nexthops = [ %s ]" % ", ".join(leg.toml() for leg in route.nhset.legs))
            if route.nhset.buckets:
                lines.append("resilient = { buckets = %d, idle_timer = 120 }" % route.nhset.buckets)
        return "\n".join(lines) + "\n"


KINDS = ("device", "gateway", "mixed", "weighted", "resilient", "single-gateway", "single-device",
         "ipv6-gateway-for-ipv4", "link-local")


def _gateway(rng: random.Random, family: int, index: int) -> str:
    host = rng.randint(2, 9)
    if family == 4:
        return "10.64.%d.%d" % (index, host)
    return "2001:db8:64:%x::%d" % (index, host)


def _make_set(rng: random.Random, kind: str, family: int, devs: List[str], index: Dict[str, int]) -> NexthopSet:
    def pick(k: int) -> List[str]:
        return rng.sample(devs, k)

    legs: List[Leg] = []
    buckets = 0
    if kind == "device":
        legs = [Leg(d) for d in pick(rng.randint(2, 4))]
    elif kind == "gateway":
        legs = [Leg(d, _gateway(rng, family, index[d])) for d in pick(rng.randint(2, 4))]
    elif kind == "mixed":
        ds = pick(rng.randint(2, 4))
        legs = [Leg(ds[0]), Leg(ds[1], _gateway(rng, family, index[ds[1]]))]
        legs += [Leg(d, _gateway(rng, family, index[d]) if rng.random() < 0.5 else None) for d in ds[2:]]
    elif kind == "weighted":
        legs = [Leg(d, _gateway(rng, family, index[d]) if rng.random() < 0.7 else None, rng.randint(1, 5))
                for d in pick(rng.randint(2, 4))]
        if all(leg.weight == 1 for leg in legs):
            legs[0] = Leg(legs[0].dev, legs[0].gateway, 3)
    elif kind == "resilient":
        legs = [Leg(d, _gateway(rng, family, index[d]) if rng.random() < 0.5 else None, rng.randint(1, 3))
                for d in pick(rng.randint(2, 4))]
        buckets = rng.choice((16, 32, 64))
    elif kind == "single-gateway":
        d = pick(1)[0]
        legs = [Leg(d, _gateway(rng, family, index[d]))]
    elif kind == "single-device":
        legs = [Leg(pick(1)[0])]
    elif kind == "ipv6-gateway-for-ipv4":  # RFC 5549: an IPv4 route over IPv6 next hops
        legs = [Leg(d, _gateway(rng, 6, index[d])) for d in pick(rng.randint(1, 3))]
    elif kind == "link-local":
        legs = [Leg(d, "fe80::%x:2" % index[d]) for d in pick(rng.randint(1, 3))]
    else:
        raise ValueError("unknown set kind %r" % kind)
    return NexthopSet(family, tuple(legs), kind, buckets)


RETRY_LATE = 2_000  # attempts at a set on the late device before any device will do
RETRY_KIND = 4_000  # attempts at one kind of set before another kind is drawn


def make_topology(seed: int, links: int = 8, routes: int = 2000, sets: int = 48) -> Topology:
    """``links`` veth links c0..c{links-1} plus one that appears later (:data:`LATE`), ``sets``
    distinct nexthop sets (every kind of :data:`KINDS` in both families where it applies, some
    on the late device) and ``routes`` routes spread over them, half IPv4 /24s and half IPv6 /64s
    (by set)."""
    if links < 2 or sets < 2 * len(KINDS) or routes < sets:
        raise ValueError("need at least 2 links, %d sets and as many routes as sets" % (2 * len(KINDS)))
    rng = random.Random("topology-%d" % seed)
    names = ["c%d" % i for i in range(links)]
    index = {name: i for i, name in enumerate(names)}
    index[LATE] = links
    devs = names + [LATE]
    out: List[NexthopSet] = []
    seen = set()
    plan = [(kind, family) for kind in KINDS for family in (4, 6)
            if not (family == 6 and kind == "ipv6-gateway-for-ipv4")]
    while len(plan) < sets:
        plan.append((rng.choice(KINDS), rng.choice((4, 6))))
    attempts = 0
    for n, (kind, family) in enumerate(plan):
        if kind == "ipv6-gateway-for-ipv4":
            family = 4
        tries = 0  # for this set: a kind with few distinct sets left gives up the late device, then its kind
        while True:
            attempts += 1
            tries += 1
            if attempts > 100_000:
                raise ValueError("cannot make %d distinct sets over %d links" % (sets, links))
            if tries % RETRY_KIND == 0:
                kind, family = rng.choice(KINDS), rng.choice((4, 6))
                if kind == "ipv6-gateway-for-ipv4":
                    family = 4
            nhset = _make_set(rng, kind, family, devs, index)
            # the late device must be in a few sets from the start
            if n % 9 == 0 and tries < RETRY_LATE and LATE not in {leg.dev for leg in nhset.legs}:
                continue
            key = (family, frozenset(nhset.legs), nhset.buckets)
            if key not in seen:
                seen.add(key)
                out.append(nhset)
                break
    specs: List[RouteSpec] = []
    v4 = v6 = 0
    for i in range(routes):
        nhset = out[i % len(out)]
        if nhset.family == 4:
            prefix = "%s/24" % (V4_ROUTES.network_address + (v4 << 8))
            v4 += 1
        else:
            prefix = "%s/64" % (V6_ROUTES.network_address + (v6 << 64))
            v6 += 1
        specs.append(RouteSpec(prefix, nhset))
    return Topology(names, [LATE], out, specs, index)


# --- events ----------------------------------------------------------------------------------
# kinds of events; the runner applies each (see chaos.Runner.apply)
ADMIN_DOWN, ADMIN_UP = "admin-down", "admin-up"
CARRIER_DOWN, CARRIER_UP = "carrier-down", "carrier-up"
ADMIN_FLAP, CARRIER_FLAP = "admin-flap", "carrier-flap"      # down, a pause, up
LINK_DEL, LINK_ADD = "link-del", "link-add"                  # add: (re-)created, new ifindex
ADDR6_ADD = "addr6-add"                                      # the global IPv6 address is back
ROUTE_DEL, NEXTHOP_DEL = "route-del", "nexthop-del"          # `ip route del` / `ip nexthop del` of ours
KILL = "kill"                                                # SIGKILL kernelsync, start it again
EVENT_KINDS = (ADMIN_DOWN, ADMIN_UP, CARRIER_DOWN, CARRIER_UP, ADMIN_FLAP, CARRIER_FLAP, LINK_DEL, LINK_ADD,
               ADDR6_ADD, ROUTE_DEL, NEXTHOP_DEL, KILL)


@dataclass(frozen=True)
class Event:
    """One event: its kind, the link it acts on (None for route/nexthop deletions and kills),
    ``pause`` (seconds between down and up of a flap) and ``pick`` (which target, as a fraction
    of the sorted candidates, for deletions); ``addr6`` (admin-up, link-add): the global IPv6
    address is put back at once."""
    kind: str
    link: Optional[str] = None
    pause: float = 0.0
    pick: float = 0.0
    addr6: bool = False

    def describe(self) -> str:
        text = self.kind + (" " + self.link if self.link else "")
        if self.kind in (ROUTE_DEL, NEXTHOP_DEL):
            text += " pick=%.3f" % self.pick
        if self.pause:
            text += " pause=%.0fms" % (self.pause * 1000)
        if self.addr6:
            text += " +addr6"
        return text


@dataclass(frozen=True)
class Step:
    """What happens between two quiet points: one event, or a burst of 5-20 with no pause."""
    number: int
    events: Tuple[Event, ...]

    @property
    def burst(self) -> bool:
        return len(self.events) > 1


@dataclass
class LinkModel:
    """The generator's own view of a link (what it did to it, not what the kernel says)."""
    exists: bool = True
    admin: bool = True
    carrier: bool = True
    addr6: bool = True


class EventGenerator:
    """``events`` events in steps, from ``seed``: about 60 % single events and 40 % bursts of
    5-20; exactly ``kills`` kills at seeded places, about half of them steps of their own; the
    late links appear within the first quarter.  Iterate to get :class:`Step` values; the model follows what the events did."""

    def __init__(self, seed: int, links: List[str], late: List[str], events: int, kills: int = 0,
                 burst_share: float = 0.4) -> None:
        self.rng = random.Random("events-%d" % seed)
        self.events = events
        self.model: Dict[str, LinkModel] = {name: LinkModel() for name in links}
        for name in late:
            self.model[name] = LinkModel(exists=False, admin=False, carrier=False, addr6=False)
        self.kill_at = set(self.rng.sample(range(events), min(kills, events)))
        # half the kills are steps of their own, right after a quiet point (a restart that must
        # write nothing); the others fall inside bursts (events while kernelsync starts again)
        self.quiet_kills = {i for i in self.kill_at if self.rng.random() < 0.5}
        self.late_at = {name: self.rng.randrange(max(1, events // 4)) for name in late}
        self.burst_share = burst_share

    def __iter__(self) -> Iterator[Step]:
        done = 0
        number = 0
        while done < self.events:
            left = self.events - done
            size = 1
            if left >= 5 and self.rng.random() < self.burst_share:
                size = self.rng.randint(5, min(20, left))
                inside = [i for i in self.quiet_kills if done <= i < done + size]
                if inside:      # a quiet kill is a step of its own: the burst stops before it
                    size = min(inside) - done
                    if size < 5:
                        size = 1
            events = []
            for _ in range(size):
                events.append(self._next(done))
                done += 1
            number += 1
            yield Step(number, tuple(events))

    def _choices(self) -> List[Tuple[str, str, float]]:
        """(kind, link, weight) of every event possible in the model's state."""
        out: List[Tuple[str, str, float]] = []
        live = [n for n, m in self.model.items() if m.exists]
        up = [n for n in live if self.model[n].admin and self.model[n].carrier]
        for name in live:
            m = self.model[name]
            if m.admin:
                out.append((ADMIN_DOWN, name, 2.0))
                out.append((ADMIN_FLAP, name, 1.0))
            else:
                out.append((ADMIN_UP, name, 5.0))
            if m.carrier:
                out.append((CARRIER_DOWN, name, 1.5))
                out.append((CARRIER_FLAP, name, 1.0))
            else:
                out.append((CARRIER_UP, name, 4.0))
            if not m.addr6:
                out.append((ADDR6_ADD, name, 3.0))
            out.append((LINK_DEL, name, 0.3))
        for name, m in self.model.items():
            if not m.exists and name not in self.late_at:
                out.append((LINK_ADD, name, 4.0))
        if up:
            out.append((ROUTE_DEL, "", 4.0))
            out.append((NEXTHOP_DEL, "", 3.0))
        return out

    def _next(self, index: int) -> Event:
        rng = self.rng
        if index in self.kill_at:
            return Event(KILL)
        for name, at in list(self.late_at.items()):
            if index >= at:
                del self.late_at[name]
                self.model[name] = LinkModel()
                return Event(LINK_ADD, name, addr6=True)
        choices = self._choices()
        total = sum(w for _, _, w in choices)
        x = rng.random() * total
        for kind, name, weight in choices:
            x -= weight
            if x < 0:
                break
        m = self.model.get(name)
        pause = pick = 0.0
        addr6 = False
        if kind == ADMIN_DOWN:
            m.admin = False
            m.addr6 = False          # keep_addr_on_down=0: the global IPv6 address goes
        elif kind == ADMIN_UP:
            m.admin = True
            addr6 = m.addr6 = m.addr6 or rng.random() < 0.5
        elif kind == CARRIER_DOWN:
            m.carrier = False
        elif kind == CARRIER_UP:
            m.carrier = True
        elif kind in (ADMIN_FLAP, CARRIER_FLAP):
            pause = rng.choice((0.0, 0.001, 0.005, 0.02, 0.05))
            if kind == ADMIN_FLAP:
                addr6 = rng.random() < 0.7
                m.addr6 = addr6
        elif kind == LINK_DEL:
            m.exists = m.admin = m.carrier = m.addr6 = False
        elif kind == LINK_ADD:
            m.exists = m.admin = m.carrier = m.addr6 = True
            addr6 = True
        elif kind == ADDR6_ADD:
            m.addr6 = True
        elif kind in (ROUTE_DEL, NEXTHOP_DEL):
            pick = rng.random()
            name = None
        return Event(kind, name or None, pause=pause, pick=pick, addr6=addr6)


__all__ = ["Leg", "NexthopSet", "RouteSpec", "Topology", "make_topology", "Event", "Step", "EventGenerator",
           "EVENT_KINDS", "KINDS", "LATE", "link_v4", "link_v6"]
