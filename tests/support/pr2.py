"""An independent decoder for the tests: nexthop objects declared on pyroute2's own classes
(pyroute2 0.9.7 has none), to hold kernelsync's hand-written codec
(:mod:`kernelsync.kernel.codec`) to a second, unrelated implementation.

* :class:`nhmsg`: ``struct nhmsg`` (family, scope, protocol, reserved: 4 x u8; flags: u32) with
  the NHA_* attributes of include/uapi/linux/nexthop.h, NHA_RES_GROUP as a nested attribute.
* :class:`rtmsg_nh`: pyroute2's ``rtmsg`` with its attribute table extended to RTA_NH_ID (30).
* :func:`to_knexthop`: a decoded ``nhmsg`` -> :class:`kernelsync.core.model.KNexthop`.
* :func:`nexthop_request`: RTM_NEWNEXTHOP/DELNEXTHOP/GETNEXTHOP through a pyroute2 socket.

Nothing here comes from kernelsync but :class:`~kernelsync.core.model.KNexthop`, the value
compared; NHA_GROUP entries are packed and unpacked here with their own ``struct``.
"""
from __future__ import annotations

import struct
from typing import Optional

from pyroute2.netlink import NLM_F_ACK, NLM_F_CREATE, NLM_F_DUMP, NLM_F_REPLACE, NLM_F_REQUEST, nla, nlmsg
from pyroute2.netlink.rtnl.rtmsg import rtmsg

from kernelsync.core.model import GRP_MPATH, GRP_RES, KNexthop

_GRP = struct.Struct("=IBBH")  # struct nexthop_grp: id, weight - 1, weight_high, resvd


def pack_group(members) -> bytes:
    return b"".join(_GRP.pack(i, (w - 1) & 0xFF, (w - 1) >> 8, 0) for i, w in members)


def unpack_group(raw) -> tuple:
    return tuple(sorted((i, w + (wh << 8) + 1) for i, w, wh, _ in _GRP.iter_unpack(raw)))

RTM_NEWNEXTHOP, RTM_DELNEXTHOP, RTM_GETNEXTHOP = 104, 105, 106
RTNLGRP_NEXTHOP = 32


class nhmsg(nlmsg):
    """struct nhmsg + NHA_* (include/uapi/linux/nexthop.h)."""

    prefix = "NHA_"
    fields = (("family", "B"), ("scope", "B"), ("protocol", "B"), ("resvd", "B"), ("flags", "I"))
    nla_map = (
        ("NHA_UNSPEC", "none"),
        ("NHA_ID", "uint32"),
        ("NHA_GROUP", "cdata"),  # array of struct nexthop_grp; see unpack_group()
        ("NHA_GROUP_TYPE", "uint16"),
        ("NHA_BLACKHOLE", "flag"),
        ("NHA_OIF", "uint32"),
        ("NHA_GATEWAY", "cdata"),  # be32 or in6_addr, by nhmsg family
        ("NHA_ENCAP_TYPE", "uint16"),
        ("NHA_ENCAP", "cdata"),
        ("NHA_GROUPS", "flag"),
        ("NHA_MASTER", "uint32"),
        ("NHA_FDB", "flag"),
        ("NHA_RES_GROUP", "res_group"),
        ("NHA_RES_BUCKET", "cdata"),
        ("NHA_OP_FLAGS", "uint32"),
    )

    class res_group(nla):
        """NHA_RES_GROUP (nested; the kernel wants NLA_F_NESTED set). Timers in 1/100 s."""

        prefix = "NHA_RES_GROUP_"
        nla_flags = 0x8000  # NLA_F_NESTED
        nla_map = (
            ("NHA_RES_GROUP_PAD", "none"),
            ("NHA_RES_GROUP_BUCKETS", "uint16"),
            ("NHA_RES_GROUP_IDLE_TIMER", "uint32"),
            ("NHA_RES_GROUP_UNBALANCED_TIMER", "uint32"),
            ("NHA_RES_GROUP_UNBALANCED_TIME", "uint64"),
        )


def _extend_rtmsg_map():
    table = list(rtmsg.nla_map)
    while len(table) < 30:
        table.append(("RTA_UNUSED_%d" % len(table), "hex"))
    table.append(("RTA_NH_ID", "uint32"))
    return tuple(table)


class rtmsg_nh(rtmsg):
    """pyroute2's rtmsg plus RTA_NH_ID (its table stops at RTA_EXPIRES, 23)."""

    nla_map = _extend_rtmsg_map()


def to_knexthop(msg: nhmsg) -> Optional[KNexthop]:
    """A decoded nhmsg -> KNexthop (None if it carries no NHA_ID)."""
    nh_id = msg.get_attr("NHA_ID")
    if not nh_id:
        return None
    raw_group = msg.get_attr("NHA_GROUP")
    protocol = msg["protocol"]
    if raw_group:
        grp_type = msg.get_attr("NHA_GROUP_TYPE") or GRP_MPATH
        res = None
        nested = msg.get_attr("NHA_RES_GROUP")
        if grp_type == GRP_RES and nested is not None:
            res = (nested.get_attr("NHA_RES_GROUP_BUCKETS") or 0,
                   nested.get_attr("NHA_RES_GROUP_IDLE_TIMER") or 0,
                   nested.get_attr("NHA_RES_GROUP_UNBALANCED_TIMER") or 0)
        return KNexthop(id=nh_id, family=0, protocol=protocol, group=unpack_group(raw_group),
                        grp_type=grp_type, res=res)
    gateway = msg.get_attr("NHA_GATEWAY")
    return KNexthop(id=nh_id, family=msg["family"], protocol=protocol, oif=msg.get_attr("NHA_OIF") or 0,
                    gateway=bytes(gateway) if gateway else None,
                    blackhole=msg.get_attr("NHA_BLACKHOLE") is not None,
                    fdb=msg.get_attr("NHA_FDB") is not None)


def decode_nhmsg(raw: bytes) -> nhmsg:
    msg = nhmsg(raw)
    msg.decode()
    return msg


def build_nhmsg(obj: KNexthop) -> nhmsg:
    """A pyroute2 nhmsg for ``obj`` (for requests through a pyroute2 socket)."""
    msg = nhmsg()
    msg["family"] = 0 if obj.group else obj.family
    msg["protocol"] = obj.protocol
    attrs = [["NHA_ID", obj.id]]
    if obj.group:
        attrs.append(["NHA_GROUP", pack_group(obj.group)])
        attrs.append(["NHA_GROUP_TYPE", obj.grp_type])
        if obj.grp_type == GRP_RES and obj.res:
            attrs.append(["NHA_RES_GROUP", {"attrs": [["NHA_RES_GROUP_BUCKETS", obj.res[0]],
                                                      ["NHA_RES_GROUP_IDLE_TIMER", obj.res[1]],
                                                      ["NHA_RES_GROUP_UNBALANCED_TIMER", obj.res[2]]]}])
    else:
        attrs.append(["NHA_OIF", obj.oif])
        if obj.gateway:
            attrs.append(["NHA_GATEWAY", obj.gateway])
    msg["attrs"] = attrs
    return msg


def nexthop_request(ipr, command: str, obj: Optional[KNexthop] = None):
    """``command`` 'set' (create or replace), 'del' or 'dump' through a pyroute2 ``IPRoute``.
    Returns the decoded replies as KNexthop (dump) or None."""
    if command == "dump":
        msg = nhmsg()
        replies = ipr.nlm_request(msg, msg_type=RTM_GETNEXTHOP, msg_flags=NLM_F_REQUEST | NLM_F_DUMP)
        return [k for k in (to_knexthop(r) for r in replies) if k is not None]
    assert obj is not None
    if command == "set":
        msg = build_nhmsg(obj)
        flags = NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_REPLACE
        tuple(ipr.nlm_request(msg, msg_type=RTM_NEWNEXTHOP, msg_flags=flags))
    elif command == "del":
        msg = nhmsg()
        msg["attrs"] = [["NHA_ID", obj.id]]
        tuple(ipr.nlm_request(msg, msg_type=RTM_DELNEXTHOP, msg_flags=NLM_F_REQUEST | NLM_F_ACK))
    else:
        raise ValueError("unknown nexthop command %r" % command)
    return None


__all__ = ["nhmsg", "rtmsg_nh", "to_knexthop", "decode_nhmsg", "build_nhmsg", "nexthop_request",
           "RTNLGRP_NEXTHOP"]
