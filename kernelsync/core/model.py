"""Value types of the pure core (RIB, nexthop manager, FIB, planner), shared with the shell.

Hot-path values are plain tuples, because 200,000 routes go through them on every full sync:

* ``Prefix``   = ``(family, dst, plen)``: ``family`` is ``AF_INET`` (2) or ``AF_INET6`` (10),
  ``dst`` the network address packed in network byte order (4 or 16 bytes), ``plen`` the
  prefix length in bits.  Mirrors ``rtm_family``/``RTA_DST``/``rtm_dst_len`` of
  ``struct rtmsg`` (include/uapi/linux/rtnetlink.h).
* ``RouteKey`` = ``(table, family, dst, plen, metric)``: identity of one kernel route of ours
  (IPv4 and IPv6 FIBs key routes on destination, length and priority within a table).

Kernel objects as read from netlink are named tuples (:class:`KRoute`, :class:`Leg`) or attrs
classes (:class:`KNexthop`, :class:`Link`); nexthop specs from feeds are attrs classes.  The
operations the planner emits are in :mod:`kernelsync.core.ops`.
"""
from __future__ import annotations

import ipaddress
import socket
from typing import Dict, NamedTuple, Optional, Tuple

import attrs

AF_INET = int(socket.AF_INET)  # 2
AF_INET6 = int(socket.AF_INET6)  # 10
ADDR_LEN = {AF_INET: 4, AF_INET6: 16}
FAMILY_NAME = {AF_INET: "ipv4", AF_INET6: "ipv6"}

Prefix = Tuple[int, bytes, int]
RouteKey = Tuple[int, int, bytes, int, int]

# nexthop group types, include/uapi/linux/nexthop.h (enum NEXTHOP_GRP_TYPE_*)
GRP_MPATH = 0
GRP_RES = 1
# route types, include/uapi/linux/rtnetlink.h (enum rtm_type): the only one that forwards
RTN_UNICAST = 1
# route scopes, include/uapi/linux/rtnetlink.h (enum rt_scope_t): a route whose every nexthop is
# device-only is on-link (``ip route add P dev X`` writes RT_SCOPE_LINK, BIRD too); the kernel
# stores and reports IPv6 routes as RT_SCOPE_UNIVERSE whatever is written
RT_SCOPE_UNIVERSE = 0
RT_SCOPE_LINK = 253
SCOPE_NAME = {RT_SCOPE_UNIVERSE: "global", 200: "site", RT_SCOPE_LINK: "link", 254: "host", 255: "nowhere"}

#: Kernel route protocol names (``/etc/iproute2/rt_protos``, include/uapi/linux/rtnetlink.h
#: RTPROT_*); 186..197 are FRR's (zebra/rt_netlink.h), zstatic is FRR staticd's.
RT_PROTOCOLS: Dict[str, int] = {
    "redirect": 1, "kernel": 2, "boot": 3, "static": 4, "gated": 8, "ra": 9, "mrt": 10, "zebra": 11,
    "bird": 12, "dnrouted": 13, "xorp": 14, "ntk": 15, "dhcp": 16, "keepalived": 18, "babel": 42,
    "openr": 99, "bgp": 186, "isis": 187, "ospf": 188, "rip": 189, "ripng": 190, "nhrp": 191, "eigrp": 192,
    "ldp": 193, "sharp": 194, "pbr": 195, "zstatic": 196, "openfabric": 197,
}


def parse_prefix(text: str) -> Prefix:
    """``"203.0.113.10/32"`` -> ``(AF_INET, b'\\xcb\\x00\\x71\\x0a', 32)``.

    A bare address means a host route (/32 or /128).  Raises ``ValueError`` with a readable
    message if the text is not a prefix or has host bits set.
    """
    net = ipaddress.ip_network(text.strip(), strict=True)
    family = AF_INET if net.version == 4 else AF_INET6
    return (family, net.network_address.packed, net.prefixlen)


def format_prefix(prefix: Prefix) -> str:
    family, dst, plen = prefix
    return "%s/%d" % (socket.inet_ntop(family, dst), plen)


def prefix_within(prefix: Prefix, outer: Prefix) -> bool:
    """Whether ``prefix`` is ``outer`` or one of its more specifics (same family, at least as
    long, the same first ``outer`` bits): ``192.0.2.64/26`` is within ``192.0.2.0/24``."""
    family, dst, plen = prefix
    ofamily, odst, oplen = outer
    if family != ofamily or plen < oplen:
        return False
    bits = len(dst) * 8
    mask = ((1 << oplen) - 1) << (bits - oplen)
    return int.from_bytes(dst, "big") & mask == int.from_bytes(odst, "big") & mask


def parse_address(text: str) -> Tuple[int, bytes]:
    """``"fe80::1"`` -> ``(AF_INET6, 16 packed bytes)``; raises ``ValueError``."""
    addr = ipaddress.ip_address(text.strip())
    return (AF_INET if addr.version == 4 else AF_INET6, addr.packed)


def format_address(family: int, packed: Optional[bytes]) -> Optional[str]:
    return None if packed is None else socket.inet_ntop(family, packed)


@attrs.frozen(cache_hash=True)
class NexthopSpec:
    """One nexthop of a path, as a feed gives it (before resolution to a kernel object).

    ``gateway``: packed address or ``None`` for a device-only nexthop (``nexthop dev tap1``);
    ``gw_family``: family of the gateway (may differ from the route's: RFC 5549 IPv4 over an
    IPv6 next hop); ``dev``: interface name (required by the kernel for every nexthop object,
    include/uapi/linux/nexthop.h NHA_OIF); ``weight``: 1..256, relative share in an ECMP group.
    """

    gateway: Optional[bytes]
    gw_family: Optional[int]
    dev: str
    weight: int = 1

    def nh_family(self, route_family: int) -> int:
        """Family of the kernel nexthop object: the gateway's, else the route's.

        A device-only nexthop takes the route's family because the kernel refuses an IPv6
        route on a group holding an IPv4 nexthop (EINVAL).
        """
        return self.gw_family if self.gateway is not None else route_family

    def describe(self) -> str:
        gw = format_address(self.gw_family, self.gateway)
        text = ("via %s dev %s" % (gw, self.dev)) if gw else ("dev %s" % self.dev)
        return text + ("" if self.weight == 1 else " weight %d" % self.weight)


@attrs.frozen(cache_hash=True)
class ResilientSpec:
    """Resilient group parameters (NHA_RES_GROUP): ``buckets`` (1..65535), ``idle_timer`` and
    ``unbalanced_timer`` in seconds (the kernel takes 1/100 s; converted on encoding)."""

    buckets: int = 128
    idle_timer: float = 120.0
    unbalanced_timer: float = 0.0


@attrs.frozen(cache_hash=True)
class Path:
    """A path of a route from one source: its nexthops (ECMP when several) and group options.

    All paths a source gives for a prefix are equal for that source; their nexthops together
    form the source's ECMP set.  ``resilient`` asks for a resilient nexthop group.
    """

    nexthops: Tuple[NexthopSpec, ...]
    resilient: Optional[ResilientSpec] = None


@attrs.frozen
class KNexthop:
    """A kernel nexthop object as dumped or to be written (struct nhmsg + NHA_* attributes,
    include/uapi/linux/nexthop.h).

    A plain nexthop has ``oif`` and optionally ``gateway``; a group has ``group``: a tuple of
    ``(member id, weight)`` sorted by id, ``grp_type`` (GRP_MPATH/GRP_RES) and, for resilient
    groups, ``res`` = ``(buckets, idle_timer_centisec, unbalanced_timer_centisec)``.
    Equality of two objects is equality of everything the kernel stores, so ``observed ==
    desired`` means no write is needed.
    """

    id: int
    family: int
    protocol: int
    oif: int = 0
    gateway: Optional[bytes] = None
    group: Tuple[Tuple[int, int], ...] = ()
    grp_type: int = GRP_MPATH
    res: Optional[Tuple[int, int, int]] = None
    blackhole: bool = False
    fdb: bool = False

    @property
    def is_group(self) -> bool:
        return bool(self.group)

    def describe(self) -> str:
        if self.group:
            members = "/".join("%d%s" % (i, "" if w == 1 else ",%d" % w) for i, w in self.group)
            text = "id %d group %s" % (self.id, members)
            if self.grp_type == GRP_RES and self.res:
                text += " type resilient buckets %d idle_timer %g" % (self.res[0], self.res[1] / 100)
            return text
        gw = format_address(self.family, self.gateway)
        return "id %d %s%s oif %d" % (
            self.id, FAMILY_NAME.get(self.family, "?"), (" via %s" % gw) if gw else "", self.oif)


@attrs.frozen
class Link:
    """An interface as RTM_NEWLINK reports it: ``usable`` = admin up (IFF_UP) and carrier
    (IFF_LOWER_UP); the kernel refuses and deletes nexthops on a device that is not both."""

    index: int
    name: str
    up: bool
    carrier: bool

    @property
    def usable(self) -> bool:
        return self.up and self.carrier


class IfAddress(NamedTuple):
    """An interface address as RTM_NEWADDR reports it (``struct ifaddrmsg`` + IFA_LOCAL or
    IFA_ADDRESS): ``address`` packed, ``plen`` the subnet's prefix length."""

    family: int
    ifindex: int
    address: bytes
    plen: int


class Leg(NamedTuple):
    """One forwarding leg of a kernel route: RTA_GATEWAY/RTA_VIA + RTA_OIF, or one ``struct
    rtnexthop`` of RTA_MULTIPATH (include/uapi/linux/rtnetlink.h).  ``gw_family`` is the
    gateway's family (RTA_VIA may give an IPv6 gateway to an IPv4 route, RFC 5549); both are
    None for a device-only leg.  ``weight``: rtnh_hops + 1 (1 outside RTA_MULTIPATH)."""

    gw_family: Optional[int]
    gateway: Optional[bytes]
    ifindex: int
    weight: int = 1


class KRoute(NamedTuple):
    """A kernel route as RTM_NEWROUTE/RTM_DELROUTE carries it (``struct rtmsg`` + RTA_*,
    include/uapi/linux/rtnetlink.h): from a dump, a notification or zebra's FPM stream.

    ``table``: RTA_TABLE (or rtm_table); ``protocol``: rtm_protocol (RT_PROTOCOLS); ``type``:
    rtm_type (RTN_UNICAST forwards); ``metric``: RTA_PRIORITY; ``legs``: its :class:`Leg` s
    (empty for a route on a nexthop object with ``nexthop_compat_mode=0``); ``nh_id``: RTA_NH_ID
    (0: none); ``scope``: rtm_scope (RT_SCOPE_UNIVERSE, RT_SCOPE_LINK, ...)."""

    family: int
    dst: bytes
    plen: int
    table: int
    protocol: int
    type: int
    metric: int
    legs: Tuple[Leg, ...]
    nh_id: int
    scope: int = RT_SCOPE_UNIVERSE

    @property
    def prefix(self) -> Prefix:
        return (self.family, self.dst, self.plen)

    @property
    def is_unicast(self) -> bool:
        return self.type == RTN_UNICAST

    def describe(self) -> str:
        """``203.0.113.0/24 table 254 proto 188 nhid 7`` or ``... via c0000201@3,dev@4``."""
        legs = ",".join("%s@%d" % (leg.gateway.hex() if leg.gateway else "dev", leg.ifindex) for leg in self.legs)
        return "%s table %d proto %d metric %d%s%s" % (
            format_prefix(self.prefix), self.table, self.protocol, self.metric,
            " nhid %d" % self.nh_id if self.nh_id else "", " via " + legs if legs else "")
