"""The chaos suite's oracle, written apart from kernelsync (it imports nothing of it): what the
kernel must hold, computed from the configured routes and the live links and addresses, and
what it does hold, read from ``ip -j`` output, following each route's ``nhid`` to its group and
the group's members.

A leg (configured nexthop) is usable iff its device exists, is administratively up and has
carrier (``UP`` and ``LOWER_UP``), and, for a gateway, the kernel would accept it: the gateway is
link-local (``fe80::/10``), or one of the device's addresses of the gateway's family is on a
subnet holding it (the connected route the kernel needs; an IPv6 one is gone while the link's
global address is lost after an admin down with ``keep_addr_on_down=0``).  A route is expected
iff at least one of its legs is usable, with exactly the usable legs; weights count only where
two or more legs are left (one leg forwards alike whatever its weight); a resilient route's
group must be resilient with the configured number of buckets.  A route is scope link iff it is
IPv4 and every configured leg is device-only (as ``ip route add P dev X`` writes it), else
global (``ip -j route`` omits the scope then; IPv6 routes are always global).
"""
from __future__ import annotations

import functools
import ipaddress
import json
from dataclasses import dataclass, field
from typing import Dict, FrozenSet, Iterable, List, Optional, Set, Tuple

LINK_LOCAL = ipaddress.ip_network("fe80::/10")

# a leg as compared: (gateway or None, device, weight or None when it is the only one)
KLeg = Tuple[Optional[str], str, Optional[int]]


@dataclass(frozen=True)
class Entry:
    """A route's forwarding: its legs, the group type (``"plain"`` for a single nexthop object,
    ``"mpath"``, ``"resilient"``), buckets (0 unless resilient) and the route's scope
    (``"global"`` or ``"link"``, as ``ip -j route`` names it)."""
    legs: FrozenSet[KLeg]
    kind: str = "plain"
    buckets: int = 0
    scope: str = "global"

    def describe(self) -> str:
        legs = ", ".join("%s%s%s" % ("via %s " % g if g else "", "dev %s" % d, " w%d" % w if w else "")
                         for g, d, w in sorted(self.legs, key=lambda leg: (leg[1], leg[0] or "")))
        extra = "" if self.kind == "plain" else " [%s%s]" % (self.kind, " %d buckets" % self.buckets if self.buckets else "")
        return "{%s}%s%s" % (legs, extra, "" if self.scope == "global" else " scope %s" % self.scope)


@dataclass
class LinkState:
    name: str
    ifindex: int
    admin: bool
    carrier: bool
    addrs: List[ipaddress._BaseNetwork] = field(default_factory=list)   # ip_interface networks
    locals: Set[str] = field(default_factory=set)


def parse_multi_json(text: str) -> List[object]:
    """The JSON documents ``ip -j -batch`` prints one after the other."""
    out = []
    decoder = json.JSONDecoder()
    pos = 0
    text = text.strip()
    while pos < len(text):
        while pos < len(text) and text[pos].isspace():
            pos += 1
        if pos >= len(text):
            break
        value, pos = decoder.raw_decode(text, pos)
        out.append(value)
    return out


def links_from_addr_json(data: List[dict]) -> Dict[str, LinkState]:
    """``ip -j addr show`` -> name -> :class:`LinkState` (flags, carrier, addresses)."""
    out = {}
    for item in data:
        flags = set(item.get("flags", ()))
        state = LinkState(item["ifname"], item["ifindex"], "UP" in flags, "LOWER_UP" in flags)
        for addr in item.get("addr_info", ()):
            if addr.get("family") not in ("inet", "inet6") or addr.get("tentative") or addr.get("dadfailed"):
                continue
            iface = ipaddress.ip_interface("%s/%s" % (addr["local"], addr["prefixlen"]))
            state.addrs.append(iface.network)
            state.locals.add(str(iface.ip))
        out[state.name] = state
    return out


def leg_usable(gateway: Optional[str], dev: str, links: Dict[str, LinkState]) -> bool:
    link = links.get(dev)
    if link is None or not link.admin or not link.carrier:
        return False
    if gateway is None:
        return True
    gw = _address(gateway)
    if gw.version == 6 and gw in LINK_LOCAL:
        return True
    if gateway in link.locals:
        return False
    return any(net.version == gw.version and gw in net for net in link.addrs)


@functools.lru_cache(maxsize=65536)
def _address(text: str):
    return ipaddress.ip_address(text)


def _compressed(text: Optional[str]) -> Optional[str]:
    return _address(text).compressed if text else None


def _normalise(legs: Iterable[Tuple[Optional[str], str, int]]) -> FrozenSet[KLeg]:
    legs = list(legs)
    if len(legs) == 1:
        return frozenset({(legs[0][0], legs[0][1], None)})
    return frozenset((g, d, w) for g, d, w in legs)


def expected_entry(legs: Iterable[Tuple[Optional[str], str, int]], buckets: int,
                   links: Dict[str, LinkState], scope: str = "global") -> Optional[Entry]:
    """The entry a route with configured ``legs`` ((gateway, dev, weight) each) and ``buckets``
    (0: not resilient) must have in the kernel now, with ``scope``; None if it must be absent."""
    legs = list(legs)
    usable = [(_compressed(g), d, w) for g, d, w in legs
              if leg_usable(g, d, links)]
    if not usable:
        return None
    if buckets and len(legs) > 1:
        kind = "resilient"
    elif len(legs) > 1:
        kind = "mpath"
    else:
        kind = "plain"
    return Entry(_normalise(usable), kind, buckets, scope)


def expected_scope(prefix: str, legs: Iterable[Tuple[Optional[str], str, int]]) -> str:
    """``"link"`` for an IPv4 route whose every configured leg is device-only, else ``"global"``."""
    return "link" if ":" not in prefix and all(g is None for g, _d, _w in legs) else "global"


def expected_fib(routes: Iterable[Tuple[str, List[Tuple[Optional[str], str, int]], int]],
                 links: Dict[str, LinkState]) -> Dict[str, Entry]:
    """prefix -> :class:`Entry` for every route ``(prefix, legs, buckets)`` that must be there."""
    out = {}
    cache: Dict[Tuple, Optional[Entry]] = {}     # routes share their sets: one computation per set
    for prefix, legs, buckets in routes:
        scope = expected_scope(prefix, legs)
        key = (tuple(legs), buckets, scope)
        if key not in cache:
            cache[key] = expected_entry(legs, buckets, links, scope)
        entry = cache[key]
        if entry is not None:
            out[prefix] = entry
    return out


def kernel_entry(route: dict, nexthops: Dict[int, dict]) -> Tuple[Optional[Entry], str]:
    """Follow ``route["nhid"]`` -> group -> members.  (entry, "") or (None, why not)."""
    nhid = route.get("nhid")
    if nhid is None:
        return None, "route without nhid: %s" % json.dumps(route, sort_keys=True)
    nh = nexthops.get(nhid)
    if nh is None:
        return None, "nhid %d does not exist" % nhid
    if "group" in nh:
        legs = []
        for member in nh["group"]:
            m = nexthops.get(member["id"])
            if m is None:
                return None, "group %d: member %d does not exist" % (nhid, member["id"])
            if "group" in m:
                return None, "group %d: nested group %d" % (nhid, member["id"])
            legs.append((_gw(m), m.get("dev"), member.get("weight", 1)))
        kind = nh.get("type", "mpath")
        buckets = nh.get("resilient_args", {}).get("buckets", 0) if kind == "resilient" else 0
        return Entry(_normalise(legs), kind, buckets, route.get("scope", "global")), ""
    if nh.get("blackhole"):
        return None, "nhid %d is a blackhole" % nhid
    return Entry(_normalise([(_gw(nh), nh.get("dev"), 1)]), "plain", 0, route.get("scope", "global")), ""


def _gw(nh: dict) -> Optional[str]:
    return _compressed(nh.get("gateway"))


def entries_match(expected: Entry, actual: Entry) -> bool:
    """Same legs and scope; a resilient route (two or more legs configured) is on a resilient
    group with its buckets whatever is left of it; another route's group is not resilient; a
    single leg left may be a plain nexthop or a one-member group."""
    if expected.legs != actual.legs or expected.scope != actual.scope:
        return False
    if expected.kind == "resilient":
        return actual.kind == "resilient" and actual.buckets == expected.buckets
    if actual.kind == "plain":
        return len(expected.legs) == 1
    return actual.kind == "mpath"


@dataclass
class Comparison:
    """The differences between expectation and kernel: ``missing`` (expected, absent),
    ``extra`` (present, not expected), ``wrong`` (present with other legs or type), ``broken``
    (a route whose nhid leads nowhere)."""
    missing: Dict[str, Entry] = field(default_factory=dict)
    extra: Dict[str, Optional[Entry]] = field(default_factory=dict)
    wrong: Dict[str, Tuple[Entry, Entry]] = field(default_factory=dict)
    broken: Dict[str, str] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not (self.missing or self.extra or self.wrong or self.broken)

    def prefixes(self) -> Set[str]:
        return set(self.missing) | set(self.extra) | set(self.wrong) | set(self.broken)

    def without(self, excused: Set[str]) -> "Comparison":
        return Comparison({p: e for p, e in self.missing.items() if p not in excused},
                          {p: e for p, e in self.extra.items() if p not in excused},
                          {p: e for p, e in self.wrong.items() if p not in excused},
                          {p: e for p, e in self.broken.items() if p not in excused})

    def diff(self, limit: int = 20) -> List[str]:
        lines = []
        for p, e in sorted(self.missing.items()):
            lines.append("- %s expected %s, absent" % (p, e.describe()))
        for p, e in sorted(self.extra.items()):
            lines.append("+ %s not expected, kernel %s" % (p, e.describe() if e else "?"))
        for p, (e, a) in sorted(self.wrong.items()):
            lines.append("~ %s expected %s, kernel %s" % (p, e.describe(), a.describe()))
        for p, why in sorted(self.broken.items()):
            lines.append("! %s %s" % (p, why))
        if len(lines) > limit:
            lines = lines[:limit] + ["... and %d more" % (len(lines) - limit)]
        return lines


def compare(expected: Dict[str, Entry], routes: Dict[str, dict], nexthops: Dict[int, dict]) -> Comparison:
    """Expected FIB vs our kernel routes (prefix -> ``ip -j route`` item) and all nexthops."""
    out = Comparison()
    cache: Dict[object, Tuple[Optional[Entry], str]] = {}   # routes share their nhid (and scope)
    for prefix, route in routes.items():
        nhid = route.get("nhid")
        ckey = (nhid, route.get("scope"))
        if nhid is None or ckey not in cache:
            cache[ckey] = kernel_entry(route, nexthops)
        actual, why = cache[ckey]
        want = expected.get(prefix)
        if actual is None:
            out.broken[prefix] = why
        elif want is None:
            out.extra[prefix] = actual
        elif not entries_match(want, actual):
            out.wrong[prefix] = (want, actual)
    for prefix, want in expected.items():
        if prefix not in routes:
            out.missing[prefix] = want
    return out


@functools.lru_cache(maxsize=1 << 17)
def canonical_prefix(dst: str, family: int) -> str:
    """``ip -j route`` prints a host route without its length; the oracle keys by network."""
    if dst == "default":
        dst = "0.0.0.0/0" if family == 4 else "::/0"
    return str(ipaddress.ip_network(dst, strict=False))


def unused_objects(nexthops: Dict[int, dict], routes: Dict[str, dict], ours) -> Set[int]:
    """IDs of our objects (``ours(nh)`` true) that no route of ours uses, directly or as a member
    of a group a route uses."""
    used: Set[int] = set()
    for route in routes.values():
        nhid = route.get("nhid")
        if nhid is None:
            continue
        used.add(nhid)
        nh = nexthops.get(nhid)
        if nh and "group" in nh:
            used.update(m["id"] for m in nh["group"])
    return {i for i, nh in nexthops.items() if ours(nh) and i not in used}


__all__ = ["Entry", "LinkState", "Comparison", "parse_multi_json", "links_from_addr_json", "leg_usable",
           "expected_entry", "expected_scope", "expected_fib", "kernel_entry", "entries_match", "compare", "canonical_prefix",
           "unused_objects"]
