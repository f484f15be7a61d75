"""rtnetlink messages: every constant once, one encoder and one decoder per message kind.  Pure
(no sockets: :mod:`kernelsync.kernel.netlink` sends and receives what this packs and parses).

Mirrors include/uapi/linux/netlink.h (``struct nlmsghdr``, ``nlmsgerr``, NLM_F_*),
rtnetlink.h (``struct rtmsg``, RTA_*, RTM_*, ``struct rtnexthop``, ``struct rtvia``),
nexthop.h (``struct nhmsg``, NHA_*, ``struct nexthop_grp``, NHA_RES_GROUP_*), if_link.h
(``struct ifinfomsg``, IFLA_*), if_addr.h (``struct ifaddrmsg``, IFA_*) and filter.h (classic
BPF).  Messages are in host byte order; addresses are packed in network order.

Decoders take ``(data, offset, end)``: the message body (after the 16-byte ``nlmsghdr``) within
a receive buffer, so a dump is parsed in place.  The kernel's messages are trusted; messages
from another program (zebra's FPM stream) are decoded with ``strict=True``: whatever is decoded
then is semantically valid (families, address lengths, prefix length, no host bits, nested
RTA_MULTIPATH legs within their attribute), else :class:`DecodeError` names the field.  The hot path (route and nexthop writes by the
hundred thousand, our own routes read back) is hand-packed: :func:`encode_chunk` packs a
batch of operations into one buffer for one ``send()``; :func:`read_route_keys` reads our
routes from a dump reply.
"""
from __future__ import annotations

import socket
import struct
from typing import Dict, Iterator, List, Optional, Sequence, Tuple

from ..core.model import AF_INET, AF_INET6, GRP_MPATH, GRP_RES, RT_SCOPE_UNIVERSE, RTN_UNICAST, IfAddress, KNexthop, KRoute, Leg, Link, RouteKey
from ..core.ops import NEXTHOP_DEL, NEXTHOP_SET, ROUTE_DEL, Op, RouteSet

# sockets and options (linux/netlink.h, asm/socket.h)
NETLINK_ROUTE = 0
SOL_NETLINK = 270
NETLINK_ADD_MEMBERSHIP = 1
NETLINK_CAP_ACK = 10
NETLINK_EXT_ACK = 11
NETLINK_GET_STRICT_CHK = 12
SO_SNDBUFFORCE = 32
SO_RCVBUFFORCE = 33
SO_ATTACH_FILTER = 26

# nlmsghdr types and flags
NLMSG_NOOP, NLMSG_ERROR, NLMSG_DONE = 1, 2, 3
NLM_F_REQUEST, NLM_F_MULTI, NLM_F_ACK = 0x1, 0x2, 0x4
NLM_F_DUMP_INTR = 0x10
NLM_F_DUMP = 0x300
NLM_F_REPLACE, NLM_F_EXCL, NLM_F_CREATE = 0x100, 0x200, 0x400
NLM_F_ACK_TLVS = 0x200  # in an NLMSG_ERROR: extended-ack attributes follow
NLMSGERR_ATTR_MSG = 1
NLA_F_NESTED = 0x8000

# rtnetlink message types
RTM_NEWLINK, RTM_DELLINK, RTM_GETLINK = 16, 17, 18
RTM_NEWADDR, RTM_DELADDR, RTM_GETADDR = 20, 21, 22
RTM_NEWROUTE, RTM_DELROUTE, RTM_GETROUTE = 24, 25, 26
RTM_NEWNEXTHOP, RTM_DELNEXTHOP, RTM_GETNEXTHOP = 104, 105, 106
LINK_MESSAGES = frozenset((RTM_NEWLINK, RTM_DELLINK))
ADDRESS_MESSAGES = frozenset((RTM_NEWADDR, RTM_DELADDR))
ROUTE_MESSAGES = frozenset((RTM_NEWROUTE, RTM_DELROUTE))
NEXTHOP_MESSAGES = frozenset((RTM_NEWNEXTHOP, RTM_DELNEXTHOP))

# route attributes, scopes, tables
RTA_DST, RTA_OIF, RTA_GATEWAY, RTA_PRIORITY, RTA_MULTIPATH, RTA_TABLE, RTA_VIA, RTA_NH_ID = 1, 4, 5, 6, 9, 15, 18, 30
RTA_SRC, RTA_PREFSRC = 2, 7
AF_MPLS = 28  # an MPLS route (zebra's FPM stream sends its LSPs): not ours, ignored
ADDRESS_BYTES = {AF_INET: 4, AF_INET6: 16}
RT_SCOPE_NOWHERE = 255  # in RTM_DELROUTE: any scope (net/ipv4/fib_trie.c fib_table_delete)
RT_TABLE_COMPAT = 252  # rtm_table of a table above 255 (the number is in RTA_TABLE)

# nexthop attributes
NHA_ID, NHA_GROUP, NHA_GROUP_TYPE, NHA_BLACKHOLE, NHA_OIF, NHA_GATEWAY = 1, 2, 3, 4, 5, 6
NHA_FDB, NHA_RES_GROUP = 11, 12
NHA_RES_GROUP_BUCKETS, NHA_RES_GROUP_IDLE_TIMER, NHA_RES_GROUP_UNBALANCED_TIMER = 1, 2, 3

# links and addresses
IFLA_IFNAME = 3
IFF_UP = 0x1
IFF_LOWER_UP = 0x10000
IFA_ADDRESS, IFA_LOCAL = 1, 2

# multicast groups (enum rtnetlink_groups); above 31 only by NETLINK_ADD_MEMBERSHIP
RTNLGRP_LINK = 1
RTNLGRP_IPV4_IFADDR = 5
RTNLGRP_IPV4_ROUTE = 7
RTNLGRP_IPV6_IFADDR = 9
RTNLGRP_IPV6_ROUTE = 11
RTNLGRP_NEXTHOP = 32

NLMSGHDR = struct.Struct("=IHHII")  # length, type, flags, seq, pid
RTMSG = struct.Struct("=BBBBBBBBI")  # family, dst_len, src_len, tos, table, protocol, scope, type, flags
NHMSG = struct.Struct("=BBBBI")  # family, scope, protocol, resvd, flags
IFINFOMSG = struct.Struct("=BxHiII")  # family, type, index, flags, change
IFADDRMSG = struct.Struct("=BBBBI")  # family, prefixlen, flags, scope, index
NLA = struct.Struct("=HH")  # length, type
U16 = struct.Struct("=H")
U32 = struct.Struct("=I")
NLMSGERR = struct.Struct("=i")
NEXTHOP_GRP = struct.Struct("=IBBH")  # id, weight - 1, weight_high, resvd
RTNEXTHOP = struct.Struct("=HBBi")  # len, flags, hops, ifindex

# whole route messages: nlmsghdr, rtmsg, RTA_TABLE, RTA_DST, RTA_PRIORITY[, RTA_NH_ID]
_ROUTE_SET = {
    AF_INET: struct.Struct("=IHHII BBBBBBBBI HHI HH4s HHI HHI"),
    AF_INET6: struct.Struct("=IHHII BBBBBBBBI HHI HH16s HHI HHI"),
}
_ROUTE_SET_MAX = max(st.size for st in _ROUTE_SET.values())
_ROUTE_DEL = {
    AF_INET: struct.Struct("=IHHII BBBBBBBBI HHI HH4s HHI"),
    AF_INET6: struct.Struct("=IHHII BBBBBBBBI HHI HH16s HHI"),
}
# an IPv4 route on a nexthop object as dumped with compat mode 0 (rtmsg + 4 attributes)
_ROUTE_DUMP4 = struct.Struct("=BBBBBBBBI HHI HH4s HHI HHI")
_FAST_ATTRS = (8, RTA_TABLE, 8, RTA_DST, 8, RTA_PRIORITY, 8, RTA_NH_ID)
SET_FLAGS = NLM_F_REQUEST | NLM_F_CREATE | NLM_F_REPLACE  # ours already: replace it
ADD_FLAGS = NLM_F_REQUEST | NLM_F_CREATE | NLM_F_EXCL  # not seen as ours: never overwrite
CHUNK_BYTES = 256 * 1024


class DecodeError(ValueError):
    """A message from another program that decodes but says something impossible (strict
    decoding); the text names the field: ``RTA_DST of 16 bytes in an AF_INET route (want 4)``."""


# attributes ---------------------------------------------------------------------------------
def nla(nla_type: int, payload: bytes) -> bytes:
    """One attribute (``struct nlattr`` + payload, padded to 4 bytes)."""
    length = 4 + len(payload)
    return NLA.pack(length, nla_type) + payload + b"\0" * (-length & 3)


def iter_nlas(data, offset: int, end: int) -> Iterator[Tuple[int, int, int]]:
    """Yield ``(type without flags, payload start, payload end)`` of the attributes in
    ``data[offset:end]``."""
    unpack = NLA.unpack_from
    while offset + 4 <= end:
        length, nla_type = unpack(data, offset)
        if length < 4:
            break
        yield nla_type & 0x3FFF, offset + 4, offset + length
        offset += (length + 3) & ~3


def _strict_nlas(data, offset: int, end: int, where: str) -> Iterator[Tuple[int, int, int]]:
    """:func:`iter_nlas` for a message from another program: DecodeError (naming ``where``)
    unless the attributes tile ``data[offset:end]`` exactly (padding aside)."""
    unpack = NLA.unpack_from
    while offset < end:
        if end - offset < 4:
            raise DecodeError("%s: %d bytes at the end, not an attribute" % (where, end - offset))
        length, nla_type = unpack(data, offset)
        if length < 4 or offset + length > end:
            raise DecodeError("%s: attribute %d of length %d runs past its %d bytes" % (
                where, nla_type & 0x3FFF, length, end - offset))
        yield nla_type & 0x3FFF, offset + 4, offset + length
        offset += (length + 3) & ~3


def message(msg_type: int, flags: int, seq: int, body: bytes) -> bytes:
    """``nlmsghdr`` + ``body`` (pid 0: the kernel fills in the sender)."""
    return NLMSGHDR.pack(16 + len(body), msg_type, flags, seq, 0) + body


# nexthop objects (RTM_*NEXTHOP) --------------------------------------------------------------
def pack_group(members) -> bytes:
    """``((id, weight), ...)`` -> NHA_GROUP payload: ``struct nexthop_grp {u32 id; u8 weight;
    u8 weight_high; u16 resvd}``; the kernel stores weight - 1."""
    return b"".join(NEXTHOP_GRP.pack(i, (w - 1) & 0xFF, (w - 1) >> 8, 0) for i, w in members)


def unpack_group(raw) -> Tuple[Tuple[int, int], ...]:
    """NHA_GROUP payload -> ``((id, weight), ...)`` sorted by id."""
    return tuple(sorted((i, w + (wh << 8) + 1) for i, w, wh, _ in NEXTHOP_GRP.iter_unpack(raw)))


def encode_nexthop(seq: int, obj: KNexthop, flags: int) -> bytes:
    """RTM_NEWNEXTHOP for ``obj`` (struct nhmsg + NHA_*).  NHA_RES_GROUP must carry
    NLA_F_NESTED; its timers are in 1/100 s (as :attr:`KNexthop.res` holds them)."""
    attrs = [nla(NHA_ID, U32.pack(obj.id))]
    if obj.group:
        attrs.append(nla(NHA_GROUP, pack_group(obj.group)))
        attrs.append(nla(NHA_GROUP_TYPE, U16.pack(obj.grp_type)))
        if obj.grp_type == GRP_RES and obj.res is not None:
            buckets, idle, unbalanced = obj.res
            nested = (nla(NHA_RES_GROUP_BUCKETS, U16.pack(buckets))
                      + nla(NHA_RES_GROUP_IDLE_TIMER, U32.pack(idle))
                      + nla(NHA_RES_GROUP_UNBALANCED_TIMER, U32.pack(unbalanced)))
            attrs.append(nla(NHA_RES_GROUP | NLA_F_NESTED, nested))
        family = 0
    elif obj.blackhole:
        attrs.append(nla(NHA_BLACKHOLE, b""))
        family = obj.family
    else:
        attrs.append(nla(NHA_OIF, U32.pack(obj.oif)))
        if obj.gateway is not None:
            attrs.append(nla(NHA_GATEWAY, obj.gateway))
        family = obj.family
    return message(RTM_NEWNEXTHOP, flags, seq, NHMSG.pack(family, 0, obj.protocol, 0, 0) + b"".join(attrs))


def encode_nexthop_del(seq: int, nh_id: int, flags: int) -> bytes:
    """RTM_DELNEXTHOP of ``nh_id``."""
    return message(RTM_DELNEXTHOP, flags, seq, NHMSG.pack(0, 0, 0, 0, 0) + nla(NHA_ID, U32.pack(nh_id)))


def parse_nexthop(data, offset: int, end: int, strict: bool = False) -> Optional[KNexthop]:
    """One RTM_NEWNEXTHOP/DELNEXTHOP body -> :class:`KNexthop` (None without NHA_ID).
    ``struct.error`` if an attribute is shorter than its type needs.  ``strict``: also
    :class:`DecodeError` unless nhm_family is AF_UNSPEC, AF_INET or AF_INET6, NHA_GATEWAY holds
    an address of that family (with AF_UNSPEC: of 4 or 16 bytes, whose length gives the family:
    FRR 8.4's zebra sends such objects over FPM), NHA_GROUP whole ``struct nexthop_grp`` s of
    ids other than 0."""
    family, _scope, protocol, _resvd, _flags = NHMSG.unpack_from(data, offset)
    if strict:
        _check_nexthop(data, offset, end, family)
    nh_id = oif = 0
    gateway = None
    group: Tuple[Tuple[int, int], ...] = ()
    grp_type = GRP_MPATH
    res = None
    blackhole = fdb = False
    for nla_type, start, stop in iter_nlas(data, offset + NHMSG.size, end):
        if nla_type == NHA_ID:
            nh_id = U32.unpack_from(data, start)[0]
        elif nla_type == NHA_OIF:
            oif = U32.unpack_from(data, start)[0]
        elif nla_type == NHA_GATEWAY:
            gateway = bytes(data[start:stop])
        elif nla_type == NHA_GROUP:
            group = unpack_group(data[start:stop])
        elif nla_type == NHA_GROUP_TYPE:
            grp_type = U16.unpack_from(data, start)[0]
        elif nla_type == NHA_BLACKHOLE:
            blackhole = True
        elif nla_type == NHA_FDB:
            fdb = True
        elif nla_type == NHA_RES_GROUP:
            vals = {}
            for sub, s0, _s1 in iter_nlas(data, start, stop):
                if sub == NHA_RES_GROUP_BUCKETS:
                    vals[sub] = U16.unpack_from(data, s0)[0]
                elif sub in (NHA_RES_GROUP_IDLE_TIMER, NHA_RES_GROUP_UNBALANCED_TIMER):
                    vals[sub] = U32.unpack_from(data, s0)[0]
            res = (vals.get(NHA_RES_GROUP_BUCKETS, 0), vals.get(NHA_RES_GROUP_IDLE_TIMER, 0),
                   vals.get(NHA_RES_GROUP_UNBALANCED_TIMER, 0))
    if not nh_id:
        return None
    if not family and gateway is not None and not group:
        family = _FAMILY_OF_LENGTH.get(len(gateway), 0)
    return KNexthop(id=nh_id, family=0 if group else family, protocol=protocol, oif=oif,
                    gateway=gateway, group=group, grp_type=grp_type,
                    res=res if grp_type == GRP_RES else None, blackhole=blackhole, fdb=fdb)


_FAMILY_OF_LENGTH = {length: family for family, length in ADDRESS_BYTES.items()}


def _check_nexthop(data, offset: int, end: int, family: int) -> None:
    if family not in ADDRESS_BYTES and family != 0:
        raise DecodeError("nhm_family %d is not AF_INET, AF_INET6 or AF_UNSPEC" % family)
    for nla_type, start, stop in _strict_nlas(data, offset + NHMSG.size, end, "nexthop"):
        if nla_type == NHA_GATEWAY and ADDRESS_BYTES.get(family or _FAMILY_OF_LENGTH.get(stop - start)) != stop - start:
            raise DecodeError("NHA_GATEWAY of %d bytes in a nexthop of family %d (want %s)"
                              % (stop - start, family, ADDRESS_BYTES.get(family, "4 or 16")))
        if nla_type == NHA_GROUP:
            if (stop - start) % NEXTHOP_GRP.size or stop == start:
                raise DecodeError("NHA_GROUP of %d bytes, not a list of 8-byte struct nexthop_grp" % (stop - start))
            if any(member == 0 for member, _w in unpack_group(data[start:stop])):
                raise DecodeError("NHA_GROUP holds nexthop id 0")


def nexthop_dump_request() -> bytes:
    """RTM_GETNEXTHOP dump body: every nexthop object."""
    return NHMSG.pack(0, 0, 0, 0, 0)


# routes (RTM_*ROUTE) -------------------------------------------------------------------------
def encode_route_set(seq: int, key: RouteKey, nh_id: int, protocol: int, flags: int,
                     scope: int = RT_SCOPE_UNIVERSE) -> bytes:
    """RTM_NEWROUTE of our route ``key`` on nexthop object ``nh_id`` (RTA_NH_ID), rtm_scope
    ``scope`` (RT_SCOPE_LINK for a route on device-only nexthops)."""
    table, family, dst, plen, metric = key
    st = _ROUTE_SET[family]
    return st.pack(st.size, RTM_NEWROUTE, flags, seq, 0,
                   family, plen, 0, 0, table if table < 256 else RT_TABLE_COMPAT, protocol,
                   scope, RTN_UNICAST, 0,
                   8, RTA_TABLE, table, len(dst) + 4, RTA_DST, dst, 8, RTA_PRIORITY, metric, 8, RTA_NH_ID, nh_id)


def encode_route_del(seq: int, key: RouteKey, protocol: int, flags: int) -> bytes:
    """RTM_DELROUTE of our route ``key`` (carrying our protocol: the kernel only deletes a
    route of that protocol), whatever its scope: rtm_scope RT_SCOPE_NOWHERE, as ``ip route del``
    sends it (an IPv4 delete with RT_SCOPE_UNIVERSE does not match a scope link route: ESRCH)."""
    table, family, dst, plen, metric = key
    st = _ROUTE_DEL[family]
    return st.pack(st.size, RTM_DELROUTE, flags, seq, 0,
                   family, plen, 0, 0, table if table < 256 else RT_TABLE_COMPAT, protocol,
                   RT_SCOPE_NOWHERE, RTN_UNICAST, 0,
                   8, RTA_TABLE, table, len(dst) + 4, RTA_DST, dst, 8, RTA_PRIORITY, metric)


def route_dump_request(family: int, table: int, protocol: int) -> bytes:
    """RTM_GETROUTE dump body filtered by the kernel (strict checking) on ``table`` and, if not
    0, ``protocol``; tables above 255 travel in RTA_TABLE."""
    return RTMSG.pack(family, 0, 0, 0, table if table < 256 else RT_TABLE_COMPAT, protocol, 0, 0, 0) + \
        nla(RTA_TABLE, U32.pack(table))


def _via(data, start: int, stop: int) -> Tuple[Optional[int], Optional[bytes]]:
    """RTA_VIA: ``struct rtvia {u16 family; u8 addr[]}`` (an IPv4 route over an IPv6 gateway)."""
    return U16.unpack_from(data, start)[0], bytes(data[start + 2:stop])


def parse_route(data, offset: int, end: int, strict: bool = False) -> Optional[KRoute]:
    """One RTM_NEWROUTE/DELROUTE body -> :class:`KRoute` (None for families other than IPv4 and
    IPv6).  ``legs``: RTA_GATEWAY/RTA_VIA + RTA_OIF, or every RTA_MULTIPATH ``struct
    rtnexthop`` (its RTA_GATEWAY/RTA_VIA).  ``struct.error`` on a truncated attribute.

    ``strict`` (a message from another program): :class:`DecodeError` naming the field unless
    rtm_family is AF_INET or AF_INET6 (AF_MPLS: None, as before), RTA_DST, RTA_SRC,
    RTA_PREFSRC and RTA_GATEWAY hold an address of the route's family, rtm_dst_len is at most
    32/128 and the destination has no bit set beyond it (refused, as the kernel refuses an IPv4
    one: zebra never sends one), RTA_VIA is ``struct rtvia`` of AF_INET or AF_INET6 with an
    address of that family, every attribute ends within the message, and RTA_MULTIPATH is
    whole ``struct rtnexthop`` s (rtnh_len >= 8) each ending within the attribute, whose nested
    attributes end within the leg."""
    family, plen, _src, _tos, table, proto, scope, rtype, _flags = RTMSG.unpack_from(data, offset)
    if family not in (AF_INET, AF_INET6):
        if strict and family != AF_MPLS:
            raise DecodeError("rtm_family %d is not AF_INET, AF_INET6 or AF_MPLS" % family)
        return None
    if strict:
        _check_route(data, offset, end, family, plen)
    dst = bytes(4 if family == AF_INET else 16)
    metric = nh_id = oif = 0
    gw: Tuple[Optional[int], Optional[bytes]] = (None, None)
    legs: List[Leg] = []
    for nla_type, start, stop in iter_nlas(data, offset + RTMSG.size, end):
        if nla_type == RTA_DST:
            dst = bytes(data[start:stop])
        elif nla_type == RTA_TABLE:
            table = U32.unpack_from(data, start)[0]
        elif nla_type == RTA_PRIORITY:
            metric = U32.unpack_from(data, start)[0]
        elif nla_type == RTA_OIF:
            oif = U32.unpack_from(data, start)[0]
        elif nla_type == RTA_GATEWAY:
            gw = (family, bytes(data[start:stop]))
        elif nla_type == RTA_VIA:
            gw = _via(data, start, stop)
        elif nla_type == RTA_NH_ID:
            nh_id = U32.unpack_from(data, start)[0]
        elif nla_type == RTA_MULTIPATH:
            off = start
            while off + RTNEXTHOP.size <= stop:
                length, _f, hops, ifindex = RTNEXTHOP.unpack_from(data, off)
                if length < RTNEXTHOP.size:
                    break
                leg_gw: Tuple[Optional[int], Optional[bytes]] = (None, None)
                for sub, s0, s1 in iter_nlas(data, off + RTNEXTHOP.size, off + length):
                    if sub == RTA_GATEWAY:
                        leg_gw = (family, bytes(data[s0:s1]))
                    elif sub == RTA_VIA:
                        leg_gw = _via(data, s0, s1)
                legs.append(Leg(leg_gw[0], leg_gw[1], ifindex, hops + 1))
                off += (length + 3) & ~3
    if not legs and oif:
        legs.append(Leg(gw[0], gw[1], oif))
    return KRoute(family, dst, plen, table, proto, rtype, metric, tuple(legs), nh_id, scope)


def _check_route(data, offset: int, end: int, family: int, plen: int) -> None:
    """The checks of :func:`parse_route`'s ``strict``, on the raw message (cold path: FPM)."""
    alen = ADDRESS_BYTES[family]
    if plen > alen * 8:
        raise DecodeError("rtm_dst_len %d is more than %d" % (plen, alen * 8))
    dst = bytes(alen)
    for nla_type, start, stop in _strict_nlas(data, offset + RTMSG.size, end, "route"):
        if nla_type in _ROUTE_ADDRESSES:
            if stop - start != alen:
                raise DecodeError("%s of %d bytes in an %s route (want %d)" % (
                    _ROUTE_ADDRESSES[nla_type], stop - start, _FAMILY[family], alen))
            if nla_type == RTA_DST:
                dst = bytes(data[start:stop])
        elif nla_type == RTA_VIA:
            _check_via(data, start, stop, "RTA_VIA")
        elif nla_type == RTA_MULTIPATH:
            _check_multipath(data, start, stop, alen, family)
    if plen < alen * 8 and int.from_bytes(dst, "big") & ((1 << (alen * 8 - plen)) - 1):
        raise DecodeError("RTA_DST %s/%d has bits set beyond its length" % (socket.inet_ntop(family, dst), plen))


_ROUTE_ADDRESSES = {RTA_DST: "RTA_DST", RTA_SRC: "RTA_SRC", RTA_PREFSRC: "RTA_PREFSRC", RTA_GATEWAY: "RTA_GATEWAY"}
_FAMILY = {AF_INET: "AF_INET", AF_INET6: "AF_INET6"}


def _check_via(data, start: int, stop: int, where: str) -> None:
    if stop - start < 2:
        raise DecodeError("%s of %d bytes, shorter than struct rtvia" % (where, stop - start))
    via_family = U16.unpack_from(data, start)[0]
    want = ADDRESS_BYTES.get(via_family)
    if want is None:
        raise DecodeError("%s family %d is not AF_INET or AF_INET6" % (where, via_family))
    if stop - start - 2 != want:
        raise DecodeError("%s address of %d bytes for %s (want %d)" % (where, stop - start - 2, _FAMILY[via_family],
                                                                         want))


def _check_multipath(data, start: int, stop: int, alen: int, family: int) -> None:
    off, leg = start, 0
    while off < stop:
        if stop - off < RTNEXTHOP.size:
            raise DecodeError("RTA_MULTIPATH leg %d: %d bytes left, shorter than struct rtnexthop" % (leg, stop - off))
        length = RTNEXTHOP.unpack_from(data, off)[0]
        if length < RTNEXTHOP.size:
            raise DecodeError("RTA_MULTIPATH leg %d: rtnh_len %d is shorter than struct rtnexthop" % (leg, length))
        if off + length > stop:
            raise DecodeError("RTA_MULTIPATH leg %d: rtnh_len %d runs past the attribute (%d bytes left)"
                              % (leg, length, stop - off))
        leg_end = off + length
        for sub, s0, s1 in _strict_nlas(data, off + RTNEXTHOP.size, leg_end, "RTA_MULTIPATH leg %d" % leg):
            if sub == RTA_GATEWAY and s1 - s0 != alen:
                raise DecodeError("RTA_MULTIPATH leg %d: RTA_GATEWAY of %d bytes in an %s route (want %d)"
                                  % (leg, s1 - s0, _FAMILY[family], alen))
            if sub == RTA_VIA:
                _check_via(data, s0, s1, "RTA_MULTIPATH leg %d: RTA_VIA" % leg)
        off += (length + 3) & ~3
        leg += 1


def read_route_keys(buf, batch: Sequence[Tuple[int, int, int]], family: int, table: int, protocol: int,
                    out: Dict[RouteKey, int], scopes: Optional[Dict[RouteKey, int]] = None) -> None:
    """Our routes from one ``recv()`` of a route dump: ``out[(table, family, dst, plen, metric)]
    = nexthop id`` (0: no RTA_NH_ID) for every RTM_NEWROUTE of ``table`` and ``protocol`` in
    ``batch`` (``(type, body start, end)`` within ``buf``); ``scopes[key] = rtm_scope`` for
    those whose scope is not RT_SCOPE_UNIVERSE (device-only routes: RT_SCOPE_LINK), if given.

    This is the hot path's reader (a verification dump reads 200,000 routes): it reads only the
    key and the nexthop id, never the legs (:func:`parse_route` is the whole decoder).  An IPv4
    route on a nexthop object with compat mode 0 has a fixed layout (RTA_TABLE, RTA_DST,
    RTA_PRIORITY, RTA_NH_ID) and is read with one ``unpack``; anything else (IPv6, compat mode
    1's expanded nexthops) attribute by attribute.  The kernel filters the dump by table and
    protocol (strict checking); the filter is applied here too, so a kernel without it cannot
    make us touch foreign routes."""
    fast = _ROUTE_DUMP4.unpack_from
    fast_len = _ROUTE_DUMP4.size
    unpack_rt = RTMSG.unpack_from
    unpack_u32 = U32.unpack_from
    unpack_nla = NLA.unpack_from
    zero = bytes(4 if family == AF_INET else 16)
    for mtype, start, end in batch:
        if mtype != RTM_NEWROUTE:
            continue
        if end - start == fast_len:
            (fam, plen, _s, _t, _rt, proto, _sc, _ty, _f, l1, t1, rtable, l2, t2, dst, l3, t3,
             metric, l4, t4, nh_id) = fast(buf, start)
            if fam == AF_INET and (l1, t1, l2, t2, l3, t3, l4, t4) == _FAST_ATTRS:
                if proto == protocol and rtable == table:
                    out[(table, AF_INET, dst, plen, metric)] = nh_id
                    if _sc and scopes is not None:
                        scopes[(table, AF_INET, dst, plen, metric)] = _sc
                continue
        fam, plen, _src, _tos, rtable, proto, scope, _rtype, _flags = unpack_rt(buf, start)
        if proto != protocol or fam != family:
            continue
        dst = zero
        metric = nh_id = 0
        off = start + RTMSG.size
        while off + 4 <= end:
            length, nla_type = unpack_nla(buf, off)
            if length < 4:
                break
            if nla_type == RTA_DST:
                dst = bytes(buf[off + 4:off + length])
            elif nla_type == RTA_TABLE:
                rtable = unpack_u32(buf, off + 4)[0]
            elif nla_type == RTA_PRIORITY:
                metric = unpack_u32(buf, off + 4)[0]
            elif nla_type == RTA_NH_ID:
                nh_id = unpack_u32(buf, off + 4)[0]
            off += (length + 3) & ~3
        if rtable == table:
            out[(table, family, dst, plen, metric)] = nh_id
            if scope and scopes is not None:
                scopes[(table, family, dst, plen, metric)] = scope


# links and addresses ---------------------------------------------------------------------------
def parse_link(data, offset: int, end: int) -> Link:
    """One RTM_NEWLINK body -> :class:`Link` (IFF_UP: admin up; IFF_LOWER_UP: carrier)."""
    _family, _type, index, flags, _change = IFINFOMSG.unpack_from(data, offset)
    name = ""
    for nla_type, start, stop in iter_nlas(data, offset + IFINFOMSG.size, end):
        if nla_type == IFLA_IFNAME:
            name = bytes(data[start:stop]).split(b"\0", 1)[0].decode()
    return Link(index=index, name=name, up=bool(flags & IFF_UP), carrier=bool(flags & IFF_LOWER_UP))


def link_dump_request() -> bytes:
    return IFINFOMSG.pack(0, 0, 0, 0, 0)


def encode_link_admin(seq: int, index: int, up: bool) -> bytes:
    """RTM_NEWLINK setting IFF_UP of ``index`` (admin up or down), asking for an ACK."""
    return message(RTM_NEWLINK, NLM_F_REQUEST | NLM_F_ACK, seq,
                   IFINFOMSG.pack(0, 0, index, IFF_UP if up else 0, IFF_UP))


def parse_address(data, offset: int, end: int) -> Optional[IfAddress]:
    """One RTM_NEWADDR body -> :class:`IfAddress`; the address is IFA_LOCAL where given (IPv4),
    else IFA_ADDRESS.  None for other families."""
    family, plen, _flags, _scope, index = IFADDRMSG.unpack_from(data, offset)
    if family not in (AF_INET, AF_INET6):
        return None
    address = local = None
    for nla_type, start, stop in iter_nlas(data, offset + IFADDRMSG.size, end):
        if nla_type == IFA_ADDRESS:
            address = bytes(data[start:stop])
        elif nla_type == IFA_LOCAL:
            local = bytes(data[start:stop])
    addr = local or address
    return None if addr is None else IfAddress(family, index, addr, plen)


def address_dump_request() -> bytes:
    return IFADDRMSG.pack(0, 0, 0, 0, 0)


# replies -------------------------------------------------------------------------------------
def parse_error(buf, off: int, length: int, flags: int) -> Tuple[int, str]:
    """An NLMSG_ERROR at ``off`` -> ``(errno, the kernel's extended-ack message or "")``; errno
    0 is an ACK.  With NETLINK_CAP_ACK the request is not echoed: the TLVs follow nlmsgerr's
    error and the request's header."""
    err = -NLMSGERR.unpack_from(buf, off + 16)[0]
    text = ""
    if err and flags & NLM_F_ACK_TLVS:
        for nla_type, start, stop in iter_nlas(buf, off + 16 + 4 + 16, off + length):
            if nla_type == NLMSGERR_ATTR_MSG:
                text = bytes(buf[start:stop]).split(b"\0", 1)[0].decode(errors="replace")
                break
    return err, text


# batches: the hot path -----------------------------------------------------------------------
def encode_chunk(ops: Sequence[Op], start: int, base_seq: int, protocol: int) -> Tuple[bytearray, int]:
    """Pack ``ops[start:]`` until about CHUNK_BYTES into one buffer for one ``send()``; message
    ``i`` carries sequence number ``base_seq + i``, and the last one asks for the ACK.  Returns
    ``(buffer, index after the last packed op)``.

    Route writes (nearly all of a large batch) are packed in place, as :func:`encode_route_set`
    would build them (a test holds the two equal); other messages are copied in."""
    n = len(ops)
    buf = bytearray(min(CHUNK_BYTES, (n - start) * _ROUTE_SET_MAX) + 512)  # grows if need be
    room = len(buf) - _ROUTE_SET_MAX  # a route write fits while size <= room
    size = last = 0
    i = start
    route_set = _ROUTE_SET
    family = st = None
    while i < n and size < CHUNK_BYTES:
        op = ops[i]
        last = size
        if type(op) is RouteSet:  # the type, not op.kind: a class attribute costs a generic lookup
            if size > room:
                buf.extend(bytes(4096))
                room = len(buf) - _ROUTE_SET_MAX
            table, fam, dst, plen, metric = op.key
            if fam != family:
                family, st = fam, route_set[fam]
            st.pack_into(buf, size, st.size, RTM_NEWROUTE, SET_FLAGS if op.replace else ADD_FLAGS, base_seq + i, 0,
                         family, plen, 0, 0, table if table < 256 else RT_TABLE_COMPAT, protocol,
                         op.scope, RTN_UNICAST, 0,
                         8, RTA_TABLE, table, len(dst) + 4, RTA_DST, dst, 8, RTA_PRIORITY, metric, 8, RTA_NH_ID,
                         op.nh_id)
            size += st.size
        else:
            kind = op.kind
            if kind is ROUTE_DEL:
                msg = encode_route_del(base_seq + i, op.key, protocol, NLM_F_REQUEST)
            elif kind is NEXTHOP_SET:
                msg = encode_nexthop(base_seq + i, op.nexthop, SET_FLAGS if op.replace else ADD_FLAGS)
            elif kind is NEXTHOP_DEL:
                msg = encode_nexthop_del(base_seq + i, op.nexthop.id, NLM_F_REQUEST)
            else:
                raise ValueError("not a kernel operation: %r" % (op,))
            buf[size:size + len(msg)] = msg  # grows the buffer if need be
            size += len(msg)
            room = len(buf) - _ROUTE_SET_MAX
        i += 1
    del buf[size:]
    flags = U16.unpack_from(buf, last + 6)[0]
    U16.pack_into(buf, last + 6, flags | NLM_F_ACK)
    return buf, i


# socket filters ------------------------------------------------------------------------------
_BPF_LD_B_ABS, _BPF_JEQ_K, _BPF_RET_K = 0x30, 0x15, 0x06


def drop_protocol_filter(protocol: int) -> bytes:
    """Classic BPF (``struct sock_filter`` array) that drops RTM_NEWROUTE/DELROUTE messages
    whose rtm_protocol is ``protocol`` (one message per notification skb): byte 4 is the low
    byte of nlmsg_type (host order, little endian), byte 21 the rtmsg's protocol."""
    ins = [
        (_BPF_LD_B_ABS, 0, 0, 4),
        (_BPF_JEQ_K, 1, 0, RTM_NEWROUTE),
        (_BPF_JEQ_K, 0, 3, RTM_DELROUTE),
        (_BPF_LD_B_ABS, 0, 0, 16 + 5),
        (_BPF_JEQ_K, 0, 1, protocol),
        (_BPF_RET_K, 0, 0, 0),
        (_BPF_RET_K, 0, 0, 0xFFFFFFFF),
    ]
    return b"".join(struct.pack("=HBBI", *i) for i in ins)


_BPF_LD_W_ABS = 0x20


def route_notification_filter(protocol: int, table: int, portid: int, others: bool = True) -> bytes:
    """Classic BPF (``struct sock_filter`` array) for the route notification socket (one
    message per notification skb).  Messages that are not RTM_NEWROUTE/DELROUTE pass; a route
    message of another protocol passes if ``others``; one of ``protocol`` passes only if its
    sender (nlmsg_pid, bytes 12-15, host order) is not ``portid`` (our request socket: the
    echoes of our own writes never reach us) and its rtm_table (byte 20) is ``table`` (252,
    RT_TABLE_COMPAT, for a table above 255: RTA_TABLE is checked by the reader).  Byte 4 is
    the low byte of nlmsg_type, byte 21 the rtmsg's protocol; BPF loads words big endian."""
    pid_word = int.from_bytes(struct.pack("=I", portid), "big")
    table_byte = table if table < 256 else 252
    prog = [
        (_BPF_LD_B_ABS, None, None, 4),             # 0
        (_BPF_JEQ_K, 3, 2, RTM_NEWROUTE),           # 1
        (_BPF_JEQ_K, 3, 10, RTM_DELROUTE),          # 2
        (_BPF_LD_B_ABS, None, None, 16 + 5),        # 3
        (_BPF_JEQ_K, 5, 10 if others else 9, protocol),  # 4
        (_BPF_LD_W_ABS, None, None, 12),            # 5
        (_BPF_JEQ_K, 9, 7, pid_word),               # 6
        (_BPF_LD_B_ABS, None, None, 16 + 4),        # 7
        (_BPF_JEQ_K, 10, 9, table_byte),            # 8
        (_BPF_RET_K, None, None, 0),                # 9: drop
        (_BPF_RET_K, None, None, 0xFFFFFFFF),       # 10: pass
    ]
    out = []
    for index, (code, jt, jf, k) in enumerate(prog):
        out.append(struct.pack("=HBBI", code, 0 if jt is None else jt - index - 1,
                               0 if jf is None else jf - index - 1, k))
    return b"".join(out)
