"""rtnetlink hot path: routes and nexthop objects packed with ``struct``, many per ``send()``.

Mirrors include/uapi/linux/netlink.h (nlmsghdr, nlmsgerr), rtnetlink.h (rtmsg, RTA_*, RTM_*),
nexthop.h (nhmsg, NHA_*, struct nexthop_grp, NHA_RES_GROUP_*), if_link.h (IFLA_*).

Batches: every message carries its own sequence number; only the last of a chunk asks for an
ACK (NLM_F_ACK).  The kernel answers each *failed* message with NLMSG_ERROR carrying that
sequence number, in order, before the last ACK, so failures map back to operations.  The
receive buffer is forced large (SO_RCVBUFFORCE, 64 MiB); ENOBUFS means replies or events were
lost and the caller must resync by dump (:class:`ResyncNeeded`).
"""
from __future__ import annotations

import errno
import os
import queue
import socket
import struct
import threading
from typing import Callable, Dict, Iterator, List, Optional, Tuple

from .model import AF_INET, AF_INET6, GRP_MPATH, GRP_RES, KNexthop, Link, RouteKey
from .planner import NH_DEL, NH_SET, ROUTE_DEL, ROUTE_SET

NETLINK_ROUTE = 0
SOL_NETLINK = 270
NETLINK_ADD_MEMBERSHIP = 1
NETLINK_CAP_ACK = 10
NETLINK_EXT_ACK = 11
NETLINK_GET_STRICT_CHK = 12
SO_RCVBUFFORCE = 33
SO_SNDBUFFORCE = 32

NLMSG_NOOP, NLMSG_ERROR, NLMSG_DONE = 1, 2, 3
NLM_F_REQUEST, NLM_F_MULTI, NLM_F_ACK = 0x1, 0x2, 0x4
NLM_F_DUMP_INTR = 0x10
NLM_F_DUMP = 0x300
NLM_F_REPLACE, NLM_F_EXCL, NLM_F_CREATE = 0x100, 0x200, 0x400
NLM_F_ACK_TLVS = 0x200
NLMSGERR_ATTR_MSG = 1

RTM_NEWLINK, RTM_DELLINK, RTM_GETLINK = 16, 17, 18
RTM_NEWADDR, RTM_DELADDR = 20, 21
RTM_NEWROUTE, RTM_DELROUTE, RTM_GETROUTE = 24, 25, 26
RTM_NEWNEXTHOP, RTM_DELNEXTHOP, RTM_GETNEXTHOP = 104, 105, 106

RTA_DST, RTA_OIF, RTA_GATEWAY, RTA_PRIORITY, RTA_MULTIPATH, RTA_TABLE, RTA_VIA, RTA_NH_ID = 1, 4, 5, 6, 9, 15, 18, 30
RTN_UNICAST = 1
IFA_ADDRESS, IFA_LOCAL = 1, 2
RTM_GETADDR = 22
RT_SCOPE_UNIVERSE = 0
RT_TABLE_COMPAT = 252

NHA_ID, NHA_GROUP, NHA_GROUP_TYPE, NHA_BLACKHOLE, NHA_OIF, NHA_GATEWAY = 1, 2, 3, 4, 5, 6
NHA_FDB, NHA_RES_GROUP = 11, 12
NHA_RES_GROUP_BUCKETS, NHA_RES_GROUP_IDLE_TIMER, NHA_RES_GROUP_UNBALANCED_TIMER = 1, 2, 3
NLA_F_NESTED = 0x8000

IFLA_IFNAME = 3
IFF_UP = 0x1
IFF_LOWER_UP = 0x10000

# multicast groups (include/uapi/linux/rtnetlink.h enum rtnetlink_groups)
RTNLGRP_LINK = 1
RTNLGRP_IPV4_IFADDR = 5
RTNLGRP_IPV4_ROUTE = 7
RTNLGRP_IPV6_IFADDR = 9
RTNLGRP_IPV6_ROUTE = 11
RTNLGRP_NEXTHOP = 32

_HDR = struct.Struct("=IHHII")
_RTMSG = struct.Struct("=BBBBBBBBI")
_NHMSG = struct.Struct("=BBBBI")
_IFINFO = struct.Struct("=BxHiII")
_NLA = struct.Struct("=HH")
_U32 = struct.Struct("=I")
_ERR = struct.Struct("=i")
_GRP = struct.Struct("=IBBH")
_IFADDR = struct.Struct("=BBBBI")
_RTNH = struct.Struct("=HBBi")

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
_SET_FLAGS = NLM_F_REQUEST | NLM_F_CREATE | NLM_F_REPLACE  # ours already: replace it
_ADD_FLAGS = NLM_F_REQUEST | NLM_F_CREATE | NLM_F_EXCL  # not seen as ours: never overwrite
CHUNK_BYTES = 256 * 1024
PIPELINE_MIN = 8192  # ops; below this one thread does it all (no thread start-up cost)
ChunkCallback = Callable[[int, int, List[Tuple[int, int, str]]], None]


class NetlinkError(OSError):
    """A kernel refusal: ``errno`` plus the kernel's extended-ack message when it sent one."""


class ResyncNeeded(Exception):
    """Replies or notifications were lost (ENOBUFS, interrupted dump): re-read by dump."""


def _nla(nla_type: int, payload: bytes) -> bytes:
    length = 4 + len(payload)
    return _NLA.pack(length, nla_type) + payload + b"\0" * (-length & 3)


def pack_group(members) -> bytes:
    """``((id, weight), ...)`` -> NHA_GROUP payload: ``struct nexthop_grp {u32 id; u8 weight;
    u8 weight_high; u16 resvd}``; the kernel stores weight - 1."""
    return b"".join(_GRP.pack(i, (w - 1) & 0xFF, (w - 1) >> 8, 0) for i, w in members)


def unpack_group(raw) -> Tuple[Tuple[int, int], ...]:
    """NHA_GROUP payload -> ``((id, weight), ...)`` sorted by id."""
    return tuple(sorted((i, w + (wh << 8) + 1) for i, w, wh, _ in _GRP.iter_unpack(raw)))


def encode_nexthop(seq: int, obj: KNexthop, flags: int) -> bytes:
    """RTM_NEWNEXTHOP for ``obj`` (struct nhmsg + NHA_*).  NHA_GROUP entries are
    ``struct nexthop_grp {u32 id; u8 weight; u8 weight_high; u16 resvd}`` and the kernel
    stores weight - 1; NHA_RES_GROUP must carry NLA_F_NESTED."""
    attrs = [_nla(NHA_ID, _U32.pack(obj.id))]
    if obj.group:
        attrs.append(_nla(NHA_GROUP, pack_group(obj.group)))
        attrs.append(_nla(NHA_GROUP_TYPE, struct.pack("=H", obj.grp_type)))
        if obj.grp_type == GRP_RES and obj.res is not None:
            buckets, idle, unbalanced = obj.res
            nested = (_nla(NHA_RES_GROUP_BUCKETS, struct.pack("=H", buckets))
                      + _nla(NHA_RES_GROUP_IDLE_TIMER, _U32.pack(idle))
                      + _nla(NHA_RES_GROUP_UNBALANCED_TIMER, _U32.pack(unbalanced)))
            attrs.append(_nla(NHA_RES_GROUP | NLA_F_NESTED, nested))
        family = 0
    elif obj.blackhole:
        attrs.append(_nla(NHA_BLACKHOLE, b""))
        family = obj.family
    else:
        attrs.append(_nla(NHA_OIF, _U32.pack(obj.oif)))
        if obj.gateway is not None:
            attrs.append(_nla(NHA_GATEWAY, obj.gateway))
        family = obj.family
    body = _NHMSG.pack(family, 0, obj.protocol, 0, 0) + b"".join(attrs)
    return _HDR.pack(16 + len(body), RTM_NEWNEXTHOP, flags, seq, 0) + body


def encode_nexthop_del(seq: int, nh_id: int, flags: int) -> bytes:
    body = _NHMSG.pack(0, 0, 0, 0, 0) + _nla(NHA_ID, _U32.pack(nh_id))
    return _HDR.pack(16 + len(body), RTM_DELNEXTHOP, flags, seq, 0) + body


def encode_route_set(seq: int, key: RouteKey, nh_id: int, protocol: int, flags: int) -> bytes:
    table, family, dst, plen, metric = key
    st = _ROUTE_SET[family]
    alen = len(dst) + 4
    return st.pack(st.size, RTM_NEWROUTE, flags, seq, 0,
                   family, plen, 0, 0, table if table < 256 else RT_TABLE_COMPAT, protocol,
                   RT_SCOPE_UNIVERSE, RTN_UNICAST, 0,
                   8, RTA_TABLE, table, alen, RTA_DST, dst, 8, RTA_PRIORITY, metric, 8, RTA_NH_ID, nh_id)


def encode_route_del(seq: int, key: RouteKey, protocol: int, flags: int) -> bytes:
    table, family, dst, plen, metric = key
    st = _ROUTE_DEL[family]
    return st.pack(st.size, RTM_DELROUTE, flags, seq, 0,
                   family, plen, 0, 0, table if table < 256 else RT_TABLE_COMPAT, protocol,
                   RT_SCOPE_UNIVERSE, RTN_UNICAST, 0,
                   8, RTA_TABLE, table, len(dst) + 4, RTA_DST, dst, 8, RTA_PRIORITY, metric)


def iter_nlas(data, offset: int, end: int) -> Iterator[Tuple[int, int, int]]:
    """Yield ``(type without flags, payload start, payload end)`` of the attributes in
    ``data[offset:end]``."""
    unpack = _NLA.unpack_from
    while offset + 4 <= end:
        length, nla_type = unpack(data, offset)
        if length < 4:
            break
        yield nla_type & 0x3FFF, offset + 4, offset + length
        offset += (length + 3) & ~3


def parse_nexthop(data, offset: int, end: int) -> Optional[KNexthop]:
    """Decode one RTM_NEWNEXTHOP body (nhmsg + attributes) into a :class:`KNexthop`."""
    family, _scope, protocol, _resvd, _flags = _NHMSG.unpack_from(data, offset)
    nh_id = oif = 0
    gateway = None
    group: Tuple[Tuple[int, int], ...] = ()
    grp_type = GRP_MPATH
    res = None
    blackhole = fdb = False
    for nla_type, start, stop in iter_nlas(data, offset + 8, end):
        if nla_type == NHA_ID:
            nh_id = _U32.unpack_from(data, start)[0]
        elif nla_type == NHA_OIF:
            oif = _U32.unpack_from(data, start)[0]
        elif nla_type == NHA_GATEWAY:
            gateway = bytes(data[start:stop])
        elif nla_type == NHA_GROUP:
            group = unpack_group(data[start:stop])
        elif nla_type == NHA_GROUP_TYPE:
            grp_type = struct.unpack_from("=H", data, start)[0]
        elif nla_type == NHA_BLACKHOLE:
            blackhole = True
        elif nla_type == NHA_FDB:
            fdb = True
        elif nla_type == NHA_RES_GROUP:
            vals = {}
            for sub, s0, s1 in iter_nlas(data, start, stop):
                if sub == NHA_RES_GROUP_BUCKETS:
                    vals[sub] = struct.unpack_from("=H", data, s0)[0]
                elif sub in (NHA_RES_GROUP_IDLE_TIMER, NHA_RES_GROUP_UNBALANCED_TIMER):
                    vals[sub] = _U32.unpack_from(data, s0)[0]
            res = (vals.get(NHA_RES_GROUP_BUCKETS, 0), vals.get(NHA_RES_GROUP_IDLE_TIMER, 0),
                   vals.get(NHA_RES_GROUP_UNBALANCED_TIMER, 0))
    if not nh_id:
        return None
    return KNexthop(id=nh_id, family=0 if group else family, protocol=protocol, oif=oif,
                    gateway=gateway, group=group, grp_type=grp_type,
                    res=res if grp_type == GRP_RES else None, blackhole=blackhole, fdb=fdb)


def parse_link(data, offset: int, end: int) -> Link:
    _family, _type, index, flags, _change = _IFINFO.unpack_from(data, offset)
    name = ""
    for nla_type, start, stop in iter_nlas(data, offset + 16, end):
        if nla_type == IFLA_IFNAME:
            name = bytes(data[start:stop]).split(b"\0", 1)[0].decode()
    return Link(index=index, name=name, up=bool(flags & IFF_UP), carrier=bool(flags & IFF_LOWER_UP))


def _route_dump_request(family: int, table: int, protocol: int) -> bytes:
    """RTM_GETROUTE dump body filtered by the kernel (strict checking) on ``table`` and, if not
    0, ``protocol``; tables above 255 travel in RTA_TABLE."""
    return _RTMSG.pack(family, 0, 0, 0, table if table < 256 else RT_TABLE_COMPAT, protocol, 0, 0, 0) + \
        _nla(RTA_TABLE, _U32.pack(table))


def parse_address(data, offset: int, end: int) -> Optional[Tuple[int, int, bytes, int]]:
    """RTM_NEWADDR body (struct ifaddrmsg + IFA_*) -> ``(family, ifindex, address, prefix
    length)``; the address is IFA_LOCAL where given (IPv4), else IFA_ADDRESS."""
    family, plen, _flags, _scope, index = _IFADDR.unpack_from(data, offset)
    if family not in (AF_INET, AF_INET6):
        return None
    address = local = None
    for nla_type, start, stop in iter_nlas(data, offset + _IFADDR.size, end):
        if nla_type == IFA_ADDRESS:
            address = bytes(data[start:stop])
        elif nla_type == IFA_LOCAL:
            local = bytes(data[start:stop])
    addr = local or address
    return None if addr is None else (family, index, addr, plen)


def _via(data, start: int, stop: int) -> Tuple[Optional[int], Optional[bytes]]:
    """RTA_VIA: ``struct rtvia {u16 family; u8 addr[]}`` (an IPv4 route over an IPv6 gateway)."""
    family = struct.unpack_from("=H", data, start)[0]
    return family, bytes(data[start + 2:stop])


def parse_route(data, offset: int, end: int):
    """RTM_NEWROUTE/DELROUTE body -> ``(family, dst, plen, table, protocol, type, metric, legs,
    nh id)``; ``legs`` = ``((gateway family, gateway or None, ifindex), ...)`` from RTA_GATEWAY/
    RTA_VIA/RTA_OIF or every RTA_MULTIPATH ``struct rtnexthop``.  None for other families."""
    family, plen, _src, _tos, table, proto, _scope, rtype, _flags = _RTMSG.unpack_from(data, offset)
    if family not in (AF_INET, AF_INET6):
        return None
    dst = bytes(4 if family == AF_INET else 16)
    metric = nh_id = oif = 0
    gw: Tuple[Optional[int], Optional[bytes]] = (None, None)
    legs = []
    for nla_type, start, stop in iter_nlas(data, offset + _RTMSG.size, end):
        if nla_type == RTA_DST:
            dst = bytes(data[start:stop])
        elif nla_type == RTA_TABLE:
            table = _U32.unpack_from(data, start)[0]
        elif nla_type == RTA_PRIORITY:
            metric = _U32.unpack_from(data, start)[0]
        elif nla_type == RTA_OIF:
            oif = _U32.unpack_from(data, start)[0]
        elif nla_type == RTA_GATEWAY:
            gw = (family, bytes(data[start:stop]))
        elif nla_type == RTA_VIA:
            gw = _via(data, start, stop)
        elif nla_type == RTA_NH_ID:
            nh_id = _U32.unpack_from(data, start)[0]
        elif nla_type == RTA_MULTIPATH:
            off = start
            while off + _RTNH.size <= stop:
                length, _f, _hops, ifindex = _RTNH.unpack_from(data, off)
                if length < _RTNH.size:
                    break
                leg_gw: Tuple[Optional[int], Optional[bytes]] = (None, None)
                for sub, s0, s1 in iter_nlas(data, off + _RTNH.size, off + length):
                    if sub == RTA_GATEWAY:
                        leg_gw = (family, bytes(data[s0:s1]))
                    elif sub == RTA_VIA:
                        leg_gw = _via(data, s0, s1)
                legs.append((leg_gw[0], leg_gw[1], ifindex))
                off += (length + 3) & ~3
    if not legs and oif:
        legs.append((gw[0], gw[1], oif))
    return (family, dst, plen, table, proto, rtype, metric, tuple(legs), nh_id)


class Stats:
    """Counters of what was written: messages by kind, failures, sends."""

    def __init__(self) -> None:
        self.writes: Dict[str, int] = {"nexthop-set": 0, "nexthop-del": 0, "route-set": 0, "route-del": 0}
        self.failures = 0
        self.sends = 0
        self.dumps = 0


class RtNetlink:
    """One NETLINK_ROUTE socket for requests (dumps and batches) in the current namespace."""

    def __init__(self, protocol: int, rcvbuf: int = 64 << 20, groups: int = 0) -> None:
        self.protocol = protocol
        self.sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC, NETLINK_ROUTE)
        _set_buffers(self.sock, rcvbuf)
        for opt in (NETLINK_EXT_ACK, NETLINK_CAP_ACK, NETLINK_GET_STRICT_CHK):
            try:
                self.sock.setsockopt(SOL_NETLINK, opt, 1)
            except OSError:
                pass
        self.sock.bind((0, groups))
        self.seq = int.from_bytes(os.urandom(2), "little") << 8
        self.buf = bytearray(1 << 20)
        self.stats = Stats()

    def close(self) -> None:
        self.sock.close()

    def _next_seq(self, count: int) -> int:
        seq = self.seq + 1
        self.seq = (self.seq + count) & 0x7FFFFFFF
        if self.seq < seq:  # wrapped: start again low
            seq, self.seq = 1, count
        return seq

    # dumps ---------------------------------------------------------------------------------
    def _dump_batches(self, msg_type: int, body: bytes) -> Iterator[Tuple[bytearray, List[Tuple[int, int, int]]]]:
        """Send one dump request; yield ``(buffer, [(type, body start, end), ...])`` per
        ``recv()``.  The buffer is reused: consume it before the next iteration."""
        seq = self._next_seq(1)
        self.sock.send(_HDR.pack(16 + len(body), msg_type, NLM_F_REQUEST | NLM_F_DUMP, seq, 0) + body)
        self.stats.dumps += 1
        buf = self.buf
        unpack = _HDR.unpack_from
        while True:
            try:
                n = self.sock.recv_into(buf)
            except OSError as exc:
                if exc.errno == errno.ENOBUFS:
                    raise ResyncNeeded("netlink receive buffer overflow during dump") from exc
                raise
            off = 0
            batch = []
            done = False
            while off + 16 <= n:
                length, mtype, flags, mseq, _pid = unpack(buf, off)
                if length < 16:
                    break
                if mseq == seq:
                    if flags & NLM_F_DUMP_INTR:
                        raise ResyncNeeded("dump interrupted by a concurrent change")
                    if mtype == NLMSG_DONE:
                        done = True
                        break
                    if mtype == NLMSG_ERROR:
                        err = -_ERR.unpack_from(buf, off + 16)[0]
                        if err:
                            raise NetlinkError(err, "dump refused: %s" % os.strerror(err))
                        done = True
                        break
                    batch.append((mtype, off + 16, off + length))
                off += (length + 3) & ~3
            yield buf, batch
            if done:
                return

    def _dump(self, msg_type: int, body: bytes) -> Iterator[Tuple[int, bytearray, int, int]]:
        """Send one dump request; yield ``(type, buffer, body start, end)`` per message."""
        for buf, batch in self._dump_batches(msg_type, body):
            for mtype, start, end in batch:
                yield mtype, buf, start, end

    def dump_links(self) -> Dict[int, Link]:
        out = {}
        for mtype, buf, start, end in self._dump(RTM_GETLINK, _IFINFO.pack(0, 0, 0, 0, 0)):
            if mtype == RTM_NEWLINK:
                link = parse_link(buf, start, end)
                out[link.index] = link
        return out

    def dump_nexthops(self) -> Dict[int, KNexthop]:
        """Every nexthop object in the namespace (ours and others'): id -> KNexthop."""
        out = {}
        for mtype, buf, start, end in self._dump(RTM_GETNEXTHOP, _NHMSG.pack(0, 0, 0, 0, 0)):
            if mtype == RTM_NEWNEXTHOP:
                obj = parse_nexthop(buf, start, end)
                if obj is not None:
                    out[obj.id] = obj
        return out

    def dump_addresses(self) -> List[Tuple[int, int, bytes, int]]:
        """Every interface address: ``(family, ifindex, address, prefix length)``."""
        out = []
        for mtype, buf, start, end in self._dump(RTM_GETADDR, _IFADDR.pack(0, 0, 0, 0, 0)):
            if mtype == RTM_NEWADDR:
                addr = parse_address(buf, start, end)
                if addr is not None:
                    out.append(addr)
        return out

    def dump_table(self, table: int, protocol: int = 0) -> List[tuple]:
        """Every route of ``table`` (of ``protocol`` only, filtered by the kernel, when not 0)
        as :func:`parse_route` tuples."""
        out = []
        for family in (AF_INET, AF_INET6):
            for mtype, buf, start, end in self._dump(RTM_GETROUTE, _route_dump_request(family, table, protocol)):
                if mtype == RTM_NEWROUTE:
                    route = parse_route(buf, start, end)
                    if route is not None and route[3] == table and (not protocol or route[4] == protocol):
                        out.append(route)
        return out

    def dump_routes(self, table: int, protocol: int) -> Dict[RouteKey, int]:
        """Our routes: ``(table, family, dst, plen, metric) -> nh id`` (0: no RTA_NH_ID).

        The kernel filters by table and protocol (strict dump checking); the filter is applied
        here too, so a kernel without it cannot make us touch foreign routes.  An IPv4 route on
        a nexthop object with compat mode 0 has a fixed layout (RTA_TABLE, RTA_DST,
        RTA_PRIORITY, RTA_NH_ID): it is read with one ``unpack``; anything else attribute by
        attribute."""
        out: Dict[RouteKey, int] = {}
        unpack_rt = _RTMSG.unpack_from
        unpack_u32 = _U32.unpack_from
        unpack_nla = _NLA.unpack_from
        fast = _ROUTE_DUMP4.unpack_from
        fast_len = _ROUTE_DUMP4.size
        for family in (AF_INET, AF_INET6):
            req = _route_dump_request(family, table, protocol)
            zero = bytes(4 if family == AF_INET else 16)
            for buf, batch in self._dump_batches(RTM_GETROUTE, req):
                for mtype, start, end in batch:
                    if mtype != RTM_NEWROUTE:
                        continue
                    if end - start == fast_len:
                        (fam, plen, _s, _t, _rt, proto, _sc, _ty, _f, l1, t1, rtable, l2, t2, dst, l3, t3,
                         metric, l4, t4, nh_id) = fast(buf, start)
                        if (fam == AF_INET and (l1, t1, l2, t2, l3, t3, l4, t4) == _FAST_ATTRS):
                            if proto == protocol and rtable == table:
                                out[(table, AF_INET, dst, plen, metric)] = nh_id
                            continue
                    fam, plen, _src, _tos, rtable, proto, _scope, _rtype, _flags = unpack_rt(buf, start)
                    if proto != protocol or fam != family:
                        continue
                    dst = zero
                    metric = nh_id = 0
                    off = start + 12
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
                    if rtable != table:
                        continue
                    out[(table, family, dst, plen, metric)] = nh_id
        return out

    # batches -------------------------------------------------------------------------------
    def apply(self, ops: List[tuple], on_chunk: Optional[ChunkCallback] = None) -> List[Tuple[int, int, str]]:
        """Write ``ops`` (from :func:`kernelsync.planner.plan`) in order, many messages per
        ``send()`` (chunks of about CHUNK_BYTES), NLM_F_ACK on the last message of each chunk.

        Returns every failure as ``(op index, errno, kernel message)``.  ``on_chunk(start, end,
        failures)`` is called in the caller's thread for each chunk, in order, once its replies
        are read.  With more than PIPELINE_MIN ops a writer thread sends while this thread
        encodes the next chunk and runs ``on_chunk`` for the previous one: the kernel does its
        work inside ``send()``, which releases the GIL, so on two cores the two overlap.
        Raises :class:`ResyncNeeded` if replies were lost (ENOBUFS)."""
        if not ops:
            return []
        base = self._next_seq(len(ops))
        failures: List[Tuple[int, int, str]] = []
        counts = [0, 0, 0, 0, 0]
        for op in ops:
            counts[op[0]] += 1
        writes = self.stats.writes
        writes["nexthop-set"] += counts[NH_SET]
        writes["nexthop-del"] += counts[NH_DEL]
        writes["route-set"] += counts[ROUTE_SET]
        writes["route-del"] += counts[ROUTE_DEL]
        if len(ops) < PIPELINE_MIN:
            start = 0
            while start < len(ops):
                data, end = self._encode_chunk(ops, start, base)
                chunk_failures: List[Tuple[int, int, str]] = []
                self._send_chunk(data, base, start, base + end - 1, chunk_failures)
                failures += chunk_failures
                if on_chunk is not None:
                    on_chunk(start, end, chunk_failures)
                start = end
        else:
            self._apply_pipelined(ops, base, failures, on_chunk)
        self.stats.failures += len(failures)
        return failures

    def _apply_pipelined(self, ops: List[tuple], base: int, failures: List[Tuple[int, int, str]],
                         on_chunk: Optional[ChunkCallback]) -> None:
        jobs: "queue.Queue" = queue.Queue(maxsize=2)
        done: "queue.Queue" = queue.Queue()
        error: List[BaseException] = []

        def writer() -> None:
            while True:
                job = jobs.get()
                if job is None:
                    return
                data, start, end = job
                chunk_failures: List[Tuple[int, int, str]] = []
                if not error:
                    try:
                        self._send_chunk(data, base, start, base + end - 1, chunk_failures)
                    except BaseException as exc:  # handed to the caller's thread
                        error.append(exc)
                        continue
                    done.put((start, end, chunk_failures))

        def finish() -> None:
            """Book every chunk the writer has finished so far."""
            while True:
                try:
                    start, end, chunk_failures = done.get_nowait()
                except queue.Empty:
                    return
                failures.extend(chunk_failures)
                if on_chunk is not None:
                    on_chunk(start, end, chunk_failures)

        thread = threading.Thread(target=writer, name="netlink-writer", daemon=True)
        thread.start()
        try:
            start = 0
            while start < len(ops) and not error:
                data, end = self._encode_chunk(ops, start, base)
                jobs.put((data, start, end))
                start = end
                finish()
        finally:
            jobs.put(None)
            thread.join()
        finish()
        if error:
            raise error[0]

    def _encode_chunk(self, ops: List[tuple], start: int, base: int) -> Tuple[bytearray, int]:
        """Encode ``ops[start:]`` until about CHUNK_BYTES; the last message asks for the ACK.

        Route writes (nearly all of a large batch) are packed in place into one buffer, as
        :func:`encode_route_set` would build them; other messages are copied in."""
        protocol = self.protocol
        n = len(ops)
        buf = bytearray(min(CHUNK_BYTES, (n - start) * _ROUTE_SET_MAX) + 512)  # grows if need be
        size = last = 0
        i = start
        route_set = _ROUTE_SET
        while i < n and size < CHUNK_BYTES:
            op = ops[i]
            kind = op[0]
            last = size
            if kind == ROUTE_SET:
                if len(buf) < size + _ROUTE_SET_MAX:
                    buf.extend(bytes(size + 4096 - len(buf)))
                table, family, dst, plen, metric = op[1]
                st = route_set[family]
                st.pack_into(buf, size, st.size, RTM_NEWROUTE, _SET_FLAGS if op[3] else _ADD_FLAGS, base + i, 0,
                             family, plen, 0, 0, table if table < 256 else RT_TABLE_COMPAT, protocol,
                             RT_SCOPE_UNIVERSE, RTN_UNICAST, 0,
                             8, RTA_TABLE, table, len(dst) + 4, RTA_DST, dst, 8, RTA_PRIORITY, metric, 8, RTA_NH_ID,
                             op[2])
                size += st.size
            else:
                if kind == ROUTE_DEL:
                    msg = encode_route_del(base + i, op[1], protocol, NLM_F_REQUEST)
                elif kind == NH_SET:
                    msg = encode_nexthop(base + i, op[1], _SET_FLAGS if op[2] else _ADD_FLAGS)
                else:
                    msg = encode_nexthop_del(base + i, op[1].id, NLM_F_REQUEST)
                buf[size:size + len(msg)] = msg  # grows the buffer if need be
                size += len(msg)
            i += 1
        del buf[size:]
        flags = struct.unpack_from("=H", buf, last + 6)[0]
        struct.pack_into("=H", buf, last + 6, flags | NLM_F_ACK)
        return buf, i

    def _send_chunk(self, data: bytes, base: int, first: int, last_seq: int,
                    failures: List[Tuple[int, int, str]]) -> None:
        self.sock.send(data)
        self.stats.sends += 1
        unpack = _HDR.unpack_from
        while True:
            try:
                n = self.sock.recv_into(self.buf)
            except OSError as exc:
                if exc.errno == errno.ENOBUFS:
                    raise ResyncNeeded("netlink receive buffer overflow: replies lost") from exc
                raise
            off = 0
            done = False
            while off + 16 <= n:
                length, mtype, flags, seq, _pid = unpack(self.buf, off)
                if length < 16:
                    break
                if mtype == NLMSG_ERROR and base + first <= seq <= last_seq:  # stale replies ignored
                    err = -_ERR.unpack_from(self.buf, off + 16)[0]
                    if err:
                        failures.append((seq - base, err, _extack(self.buf, off, length, flags) or os.strerror(err)))
                    if seq == last_seq:
                        done = True
                off += (length + 3) & ~3
            if done:
                return


def _extack(buf, off: int, length: int, flags: int) -> str:
    """The kernel's NLMSGERR_ATTR_MSG from an NLMSG_ERROR with NETLINK_CAP_ACK (the original
    message is not echoed: the TLVs follow nlmsgerr's error and the request header)."""
    if not flags & NLM_F_ACK_TLVS:
        return ""
    for nla_type, start, stop in iter_nlas(buf, off + 16 + 4 + 16, off + length):
        if nla_type == NLMSGERR_ATTR_MSG:
            return bytes(buf[start:stop]).split(b"\0", 1)[0].decode(errors="replace")
    return ""


def _set_buffers(sock: socket.socket, rcvbuf: int) -> None:
    for force, plain, size in ((SO_RCVBUFFORCE, socket.SO_RCVBUF, rcvbuf),
                               (SO_SNDBUFFORCE, socket.SO_SNDBUF, 4 << 20)):
        try:
            sock.setsockopt(socket.SOL_SOCKET, force, size)
        except OSError:
            sock.setsockopt(socket.SOL_SOCKET, plain, size)


class EventSocket:
    """Notification socket: links (RTNLGRP_LINK), addresses, and nexthop objects
    (RTNLGRP_NEXTHOP = 32, above the bind() bitmask: joined with NETLINK_ADD_MEMBERSHIP).
    ``groups`` (below 32) and ``memberships`` (any) choose other groups; ``socket_filter``
    is classic BPF code (struct sock_filter array) attached before the socket joins anything."""

    def __init__(self, rcvbuf: int = 16 << 20, groups: Tuple[int, ...] = (RTNLGRP_LINK, RTNLGRP_IPV4_IFADDR,
                 RTNLGRP_IPV6_IFADDR), memberships: Tuple[int, ...] = (RTNLGRP_NEXTHOP,),
                 socket_filter: Optional[bytes] = None) -> None:
        self.sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC, NETLINK_ROUTE)
        _set_buffers(self.sock, rcvbuf)
        if socket_filter is not None:
            import ctypes
            self._prog = ctypes.create_string_buffer(socket_filter, len(socket_filter))
            fprog = struct.pack("HL", len(socket_filter) // 8, ctypes.addressof(self._prog))
            self.sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER, fprog)
        mask = 0
        for group in groups:
            mask |= 1 << (group - 1)
        self.sock.bind((0, mask))
        for group in memberships:
            self.sock.setsockopt(SOL_NETLINK, NETLINK_ADD_MEMBERSHIP, group)
        self.sock.setblocking(False)
        self.buf = bytearray(1 << 20)

    def fileno(self) -> int:
        return self.sock.fileno()

    def close(self) -> None:
        self.sock.close()

    def read(self) -> List[Tuple[int, bytes]]:
        """Every pending message as ``(type, raw message bytes)``.  Raises
        :class:`ResyncNeeded` on ENOBUFS (events were lost)."""
        out = []
        while True:
            try:
                n = self.sock.recv_into(self.buf)
            except BlockingIOError:
                return out
            except OSError as exc:
                if exc.errno == errno.ENOBUFS:
                    raise ResyncNeeded("netlink event buffer overflow: events lost") from exc
                raise
            off = 0
            while off + 16 <= n:
                length, mtype, _flags, _seq, _pid = _HDR.unpack_from(self.buf, off)
                if length < 16:
                    break
                out.append((mtype, bytes(self.buf[off:off + length])))
                off += (length + 3) & ~3


SO_ATTACH_FILTER = 26
# classic BPF (include/uapi/linux/filter.h)
_BPF_LD_B_ABS, _BPF_JEQ_K, _BPF_RET_K = 0x30, 0x15, 0x06


def _drop_protocol_filter(protocol: int) -> bytes:
    """A socket filter that drops RTM_NEWROUTE/DELROUTE messages whose rtm_protocol is
    ``protocol`` (one message per notification skb): byte 4 is the low byte of nlmsg_type
    (host order, little endian), byte 21 the rtmsg's protocol."""
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


class RouteEventSocket(EventSocket):
    """Route notifications (RTNLGRP_IPV4_ROUTE, RTNLGRP_IPV6_ROUTE) except our own protocol's,
    dropped in the kernel by a BPF filter: our own writes (hundreds of thousands in a full
    load, one per route on every group change with nexthop_compat_mode=1) never reach us."""

    def __init__(self, protocol: int, rcvbuf: int = 16 << 20) -> None:
        super().__init__(rcvbuf, groups=(RTNLGRP_IPV4_ROUTE, RTNLGRP_IPV6_ROUTE), memberships=(),
                         socket_filter=_drop_protocol_filter(protocol))
