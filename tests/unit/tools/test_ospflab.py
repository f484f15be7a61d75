"""The OSPF lab's pure parts (kernelsync.tools.ospflab): the FPM recorder's message decoding (on
the project's codec), argument checks."""
import socket
import struct

import pytest

from kernelsync.tools.ospflab import (FRR_OSPF_PROTO, LAN, NH_R2, NH_R3, RTM_NEWNEXTHOP, RTM_NEWROUTE, OspfLab,
                                      decode_netlink)


def _nla(kind, payload):
    data = struct.pack("=HH", 4 + len(payload), kind) + payload
    return data + b"\0" * (-len(data) % 4)


def _nlmsg(kind, flags, body):
    return struct.pack("=IHHII", 16 + len(body), kind, flags, 0, 0) + body


def test_decode_netlink_route_multipath_and_nexthops():
    ip = socket.inet_aton
    legs = b""
    for gw, oif in ((NH_R2, 2), (NH_R3, 3)):
        sub = _nla(5, ip(gw))
        legs += struct.pack("=HBBi", 8 + len(sub), 0, 0, oif) + sub
    route = _nlmsg(RTM_NEWROUTE, 0x501,
                   struct.pack("=BBBBBBBBI", socket.AF_INET, 24, 0, 0, 254, FRR_OSPF_PROTO, 0, 1, 0)
                   + _nla(1, ip("192.0.2.0")) + _nla(6, struct.pack("=I", 20)) + _nla(9, legs))
    member = _nlmsg(RTM_NEWNEXTHOP, 0x501, struct.pack("=BBBBI", socket.AF_INET, 0, 11, 0, 0)
                    + _nla(1, struct.pack("=I", 18)) + _nla(6, ip(NH_R2))
                    + _nla(5, struct.pack("=I", 2)))
    group = _nlmsg(RTM_NEWNEXTHOP, 0x501, struct.pack("=BBBBI", 0, 0, 11, 0, 0)
                   + _nla(1, struct.pack("=I", 23))
                   + _nla(2, struct.pack("=IBBH", 18, 0, 0, 0) + struct.pack("=IBBH", 22, 1, 0, 0)))
    msgs = decode_netlink(route + member + group)
    assert [m["name"] for m in msgs] == ["RTM_NEWROUTE", "RTM_NEWNEXTHOP", "RTM_NEWNEXTHOP"]
    assert msgs[0]["dst"] == LAN and msgs[0]["table"] == 254 and msgs[0]["metric"] == 20
    assert msgs[0]["protocol"] == FRR_OSPF_PROTO
    assert msgs[0]["multipath"] == [{"oif": 2, "weight": 1, "gateway": NH_R2},
                                    {"oif": 3, "weight": 1, "gateway": NH_R3}]
    assert msgs[1]["id"] == 18 and msgs[1]["gateway"] == NH_R2 and msgs[1]["oif"] == 2
    assert msgs[2]["group"] == [(18, 1), (22, 2)]


def test_lab_arguments():
    with pytest.raises(ValueError):
        OspfLab(daemon="quagga", workdir="/tmp/unused-ospflab")
    with pytest.raises(ValueError):
        OspfLab(daemon="frr", fpm_port=0, workdir="/tmp/unused-ospflab")
