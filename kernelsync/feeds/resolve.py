"""Next-hop resolution: a BGP next hop -> the kernel nexthops that reach it.  Pure.

Inputs are what the kernel reports: interface addresses (RTM_NEWADDR: connected subnets, and
which device holds a session's local address), the routes of the resolution table that are not
ours (RTM_NEWROUTE, another protocol's or the kernel's own), and the link table (device names).
A next hop resolves, in this order:

1. **link-local** (``fe80::/10``): over the device the BGP session runs on (the one holding the
   session's local address); the JSON does not name it.
2. **connected**: on the subnet of an address of ours -> ``via <next hop> dev <that device>``
   (longest subnet wins).  A next hop that is one of our own addresses does not resolve.
3. **recursive**: the longest-prefix match among the other routes of the resolution table
   (the default route only with ``via_default``, as FRR's ``ip nht resolve-via-default``): its
   gateways and devices (all legs of a multipath route; a device-only leg means ``via <next
   hop> dev <leg device>``).  A route that does not forward (blackhole, unreachable, prohibit,
   throw, ...: given with no legs) wins the match like any other and makes the next hop
   unresolvable, as in the kernel: traffic to it would be dropped.

:attr:`Resolver.version` increases on every change (of its inputs, or of the link table's
names), so users re-resolve only when it moved.
"""
from __future__ import annotations

from typing import Dict, Iterable, List, Optional, Tuple

from ..core.links import LinkTable
from ..core.model import AF_INET, AF_INET6, IfAddress, Leg, NexthopSpec

_BITS = {AF_INET: 32, AF_INET6: 128}


def _mask(value: int, plen: int, bits: int) -> int:
    return value >> (bits - plen) << (bits - plen) if plen else 0


class Resolver:
    """See the module docstring.  ``links``: the link table (read only); ``via_default``: may
    a next hop resolve over a default route."""

    def __init__(self, links: LinkTable, via_default: bool = False) -> None:
        self.links = links
        self.via_default = via_default
        self._version = 0
        self.route_hits = 0  # resolutions that went through the route table (recursive)
        self._addresses: List[IfAddress] = []
        self._local: Dict[bytes, int] = {}  # our address -> ifindex
        self._connected: Dict[int, List[Tuple[int, int, int]]] = {}  # family -> [(plen, net, ifindex)] longest first
        # family -> {plen: {network int: {(dst, metric): legs}}}: routes of the resolution table
        self._routes: Dict[int, Dict[int, Dict[int, Dict[int, Tuple[Leg, ...]]]]] = {AF_INET: {}, AF_INET6: {}}
        self._lens: Dict[int, List[int]] = {AF_INET: [], AF_INET6: []}

    @property
    def version(self) -> int:
        """Moves whenever a resolution may differ: its own inputs changed, or device names."""
        return self._version + self.links.names_version

    # inputs --------------------------------------------------------------------------------
    def set_addresses(self, addresses: Iterable[IfAddress]) -> None:
        """Every interface address."""
        addresses = sorted(set(addresses))
        if addresses == self._addresses:
            return
        self._addresses = addresses
        self._local = {addr: ifindex for _f, ifindex, addr, _p in addresses}
        connected: Dict[int, List[Tuple[int, int, int]]] = {AF_INET: [], AF_INET6: []}
        for family, ifindex, addr, plen in addresses:
            bits = _BITS[family]
            if plen < bits:
                connected[family].append((plen, _mask(int.from_bytes(addr, "big"), plen, bits), ifindex))
        for items in connected.values():
            items.sort(reverse=True)
        self._connected = connected
        self._version += 1

    def set_routes(self, routes: Dict[Tuple[int, bytes, int, int], Tuple[Leg, ...]]) -> None:
        """The whole resolution table: ``(family, dst, plen, metric) -> legs`` (not ours; no
        legs: a route that does not forward, e.g. a blackhole)."""
        self._routes = {AF_INET: {}, AF_INET6: {}}
        for (family, dst, plen, metric), legs in routes.items():
            self._put(family, dst, plen, metric, legs)
        self._relen()
        self._version += 1

    def route_event(self, deleted: bool, family: int, dst: bytes, plen: int, metric: int,
                    legs: Tuple[Leg, ...]) -> None:
        """One RTM_NEWROUTE/RTM_DELROUTE of the resolution table (``legs`` empty: a route that
        does not forward, e.g. a blackhole replacing a unicast route at its key)."""
        if family not in self._routes:
            return
        if deleted:
            bits = _BITS[family]
            by_net = self._routes[family].get(plen, {})
            net = _mask(int.from_bytes(dst, "big"), plen, bits)
            entry = by_net.get(net)
            if entry is None or entry.pop(metric, None) is None:
                return
            if not entry:
                del by_net[net]
        else:
            self._put(family, dst, plen, metric, legs)
        self._relen()
        self._version += 1

    def _put(self, family: int, dst: bytes, plen: int, metric: int, legs: Tuple[Leg, ...]) -> None:
        bits = _BITS[family]
        net = _mask(int.from_bytes(dst, "big"), plen, bits)
        self._routes[family].setdefault(plen, {}).setdefault(net, {})[metric] = legs

    def _relen(self) -> None:
        for family, by_len in self._routes.items():
            self._lens[family] = sorted((p for p, nets in by_len.items() if nets), reverse=True)

    # resolution ----------------------------------------------------------------------------
    def device_of(self, local: Optional[bytes]) -> Optional[str]:
        """The device holding our address ``local`` (the session's device), or None."""
        ifindex = self._local.get(local) if local is not None else None
        return None if ifindex is None else self.links.names.get(ifindex)

    def resolve(self, route_family: int, nexthop: Tuple[int, bytes], link_local: Optional[bytes],
                session_local: Optional[bytes]) -> Optional[Tuple[NexthopSpec, ...]]:
        """The nexthops of a path with BGP next hop ``nexthop`` = ``(family, packed)`` (and
        ``link_local``, the ``fe80::`` next hop sent beside a global one) learnt over a session
        whose local address is ``session_local`` (packed).  None: unresolvable (the path is
        not used).  An IPv6 route never resolves over an IPv4 next hop."""
        family, addr = nexthop
        if route_family == AF_INET6 and family != AF_INET6:
            return None
        found = self._resolve_one(family, addr, session_local)
        if found is None and link_local is not None:
            found = self._resolve_one(AF_INET6, link_local, session_local)
        return found

    def _resolve_one(self, family: int, addr: bytes, session_local: Optional[bytes]):
        if family == AF_INET6 and addr[0] == 0xFE and addr[1] & 0xC0 == 0x80:
            dev = self.device_of(session_local)
            return None if dev is None else (NexthopSpec(addr, AF_INET6, dev),)
        if addr in self._local:
            return None
        bits = _BITS[family]
        value = int.from_bytes(addr, "big")
        for plen, net, ifindex in self._connected.get(family, ()):
            if _mask(value, plen, bits) == net:
                dev = self.links.names.get(ifindex)
                return None if dev is None else (NexthopSpec(addr, family, dev),)
        by_len = self._routes[family]
        for plen in self._lens[family]:
            if plen == 0 and not self.via_default:
                break
            entry = by_len[plen].get(_mask(value, plen, bits))
            if entry:
                self.route_hits += 1
                legs = entry[min(entry)]
                specs = []
                names = self.links.names
                for leg in legs:
                    dev = names.get(leg.ifindex)
                    if dev is None:
                        continue
                    if leg.gateway is None:
                        specs.append(NexthopSpec(addr, family, dev))
                    else:
                        specs.append(NexthopSpec(leg.gateway, leg.gw_family, dev))
                return tuple(sorted(set(specs), key=spec_order)) or None
        return None


def spec_order(spec: NexthopSpec):
    """A stable order of nexthop specs (ECMP sets are sorted with it)."""
    return (spec.gw_family or 0, spec.gateway or b"", spec.dev)


__all__ = ["Resolver", "spec_order"]
