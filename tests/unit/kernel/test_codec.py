"""The codec (kernelsync.kernel.codec): the hand-written encoders and decoders against an
independent implementation (pyroute2's classes, tests/support/pr2.py), and the chunk encoder
of the hot path against the one-message encoders."""
import socket
import struct

import pytest

from kernelsync.core.model import AF_INET, AF_INET6, GRP_RES, RT_SCOPE_LINK, KNexthop, KRoute, Leg, Link
from kernelsync.core.ops import NexthopDel, NexthopSet, RouteDel, RouteSet
from kernelsync.kernel import codec
from tests.support.pr2 import build_nhmsg, decode_nhmsg, rtmsg_nh, to_knexthop

OBJECTS = [
    KNexthop(id=7, family=AF_INET, protocol=200, oif=3, gateway=socket.inet_aton("192.0.2.1")),
    KNexthop(id=8, family=AF_INET6, protocol=200, oif=4, gateway=socket.inet_pton(AF_INET6, "fe80::1")),
    KNexthop(id=9, family=AF_INET, protocol=200, oif=5),
    KNexthop(id=10, family=0, protocol=200, group=((7, 1), (8, 256), (9, 17))),
    KNexthop(id=11, family=0, protocol=200, group=((7, 1), (9, 1)), grp_type=GRP_RES, res=(64, 12000, 300)),
]


@pytest.mark.parametrize("obj", OBJECTS, ids=lambda o: o.describe())
def test_nexthop_struct_encoding_decodes_with_pyroute2_and_back(obj):
    raw = codec.encode_nexthop(1, obj, codec.NLM_F_REQUEST)
    assert to_knexthop(decode_nhmsg(raw)) == obj
    assert codec.parse_nexthop(raw, 16, len(raw)) == obj


@pytest.mark.parametrize("obj", OBJECTS, ids=lambda o: o.describe())
def test_pyroute2_encoding_matches_struct_decoder(obj):
    msg = build_nhmsg(obj)
    msg["header"]["type"] = codec.RTM_NEWNEXTHOP
    msg.encode()
    raw = bytes(msg.data)
    assert codec.parse_nexthop(raw, 16, len(raw)) == obj


@pytest.mark.parametrize("family, dst, plen", [(AF_INET, "203.0.113.10", 32), (AF_INET6, "2001:db8:1::", 48)])
def test_route_encoding_decodes_with_pyroute2(family, dst, plen):
    key = (1000, family, socket.inet_pton(family, dst), plen, 20)
    raw = codec.encode_route_set(5, key, 4242, 200, codec.NLM_F_REQUEST)
    msg = rtmsg_nh(raw)
    msg.decode()
    assert msg["header"]["type"] == codec.RTM_NEWROUTE and msg["header"]["sequence_number"] == 5
    assert (msg["family"], msg["dst_len"], msg["proto"], msg["table"]) == (family, plen, 200, 252)
    assert msg.get_attr("RTA_DST") == dst.rstrip(":") + ("::" if family == AF_INET6 else "")
    assert msg.get_attr("RTA_TABLE") == 1000 and msg.get_attr("RTA_PRIORITY") == 20
    assert msg.get_attr("RTA_NH_ID") == 4242



def test_chunk_is_the_messages_of_the_one_message_encoders():
    # the chunk encoder packs route writes in place; the bytes must be the same
    v4 = (100, AF_INET, socket.inet_aton("203.0.113.10"), 32, 20)
    v6 = (1000, AF_INET6, socket.inet_pton(AF_INET6, "2001:db8:1::"), 48, 1024)
    ops = [NexthopSet(OBJECTS[0], False), NexthopSet(OBJECTS[3], True), RouteSet(v4, 7, False),
           RouteSet(v6, 10, True), RouteDel(v4), NexthopDel(OBJECTS[1]), RouteSet(v4, 8, True, RT_SCOPE_LINK)]
    data, end = codec.encode_chunk(ops, 1, 50, 200)
    set_, add = codec.SET_FLAGS, codec.ADD_FLAGS
    want = [codec.encode_nexthop(51, OBJECTS[3], set_), codec.encode_route_set(52, v4, 7, 200, add),
            codec.encode_route_set(53, v6, 10, 200, set_), codec.encode_route_del(54, v4, 200, codec.NLM_F_REQUEST),
            codec.encode_nexthop_del(55, OBJECTS[1].id, codec.NLM_F_REQUEST),
            codec.encode_route_set(56, v4, 8, 200, set_ | codec.NLM_F_ACK, RT_SCOPE_LINK)]
    assert end == len(ops) and bytes(data) == b"".join(want)


# decoders -----------------------------------------------------------------------------------
def _nla(kind, payload):
    return codec.nla(kind, payload)


def _route_body(family, dst, plen, attrs, table=100, proto=12, rtype=1):
    return codec.RTMSG.pack(family, plen, 0, 0, table, proto, 0, rtype, 0) + _nla(codec.RTA_DST, dst) + attrs


def test_route_encoded_by_us_decodes_to_its_key():
    key = (1000, AF_INET6, socket.inet_pton(AF_INET6, "2001:db8:1::"), 48, 1024)
    raw = codec.encode_route_set(5, key, 4242, 200, codec.NLM_F_REQUEST)
    route = codec.parse_route(raw, 16, len(raw))
    assert route == KRoute(AF_INET6, key[2], 48, 1000, 200, 1, 1024, (), 4242)
    assert route.prefix == (AF_INET6, key[2], 48) and route.is_unicast
    link = codec.encode_route_set(6, key, 4242, 200, codec.NLM_F_REQUEST, RT_SCOPE_LINK)
    assert codec.parse_route(link, 16, len(link)) == route._replace(scope=RT_SCOPE_LINK)


def test_multipath_legs_keep_gateways_devices_weights_and_via():
    gw = socket.inet_aton("192.0.2.1")
    gw6 = socket.inet_pton(AF_INET6, "fe80::1")
    legs = (struct.pack("=HBBi", 16, 0, 2, 3) + _nla(codec.RTA_GATEWAY, gw)
            + struct.pack("=HBBi", 8, 0, 0, 4)  # device-only leg
            + struct.pack("=HBBi", 8 + 4 + 20, 0, 0, 5) + _nla(codec.RTA_VIA, struct.pack("=H", AF_INET6) + gw6))
    body = _route_body(AF_INET, socket.inet_aton("198.51.100.0"), 24,
                       _nla(codec.RTA_PRIORITY, struct.pack("=I", 20)) + _nla(codec.RTA_MULTIPATH, legs))
    route = codec.parse_route(body, 0, len(body))
    assert route.legs == (Leg(AF_INET, gw, 3, 3), Leg(None, None, 4, 1), Leg(AF_INET6, gw6, 5, 1))
    assert (route.table, route.protocol, route.metric, route.nh_id) == (100, 12, 20, 0)


def test_single_leg_and_other_families():
    gw = socket.inet_aton("192.0.2.1")
    body = _route_body(AF_INET, socket.inet_aton("198.51.100.0"), 24,
                       _nla(codec.RTA_GATEWAY, gw) + _nla(codec.RTA_OIF, struct.pack("=I", 7)))
    assert codec.parse_route(body, 0, len(body)).legs == (Leg(AF_INET, gw, 7),)
    mpls = codec.RTMSG.pack(28, 20, 0, 0, 254, 12, 0, 1, 0)
    assert codec.parse_route(mpls, 0, len(mpls)) is None
    with pytest.raises(struct.error):  # a u32 attribute cut short at the end of the message
        body = _route_body(AF_INET, gw, 32, struct.pack("=HH", 6, codec.RTA_PRIORITY) + b"\1\0")
        codec.parse_route(body, 0, len(body))


def test_our_route_keys_from_a_dump_batch_fast_layout_and_the_rest():
    fast = codec.encode_route_set(1, (100, AF_INET, socket.inet_aton("10.0.0.1"), 32, 20), 7, 200, 0)
    fast_link = codec.encode_route_set(5, (100, AF_INET, socket.inet_aton("10.0.0.5"), 32, 20), 8, 200, 0,
                                       RT_SCOPE_LINK)
    foreign = codec.encode_route_set(2, (100, AF_INET, socket.inet_aton("10.0.0.2"), 32, 20), 7, 12, 0)
    other_table = codec.encode_route_set(3, (101, AF_INET, socket.inet_aton("10.0.0.3"), 32, 20), 7, 200, 0)
    slow = (codec.NLMSGHDR.pack(0, codec.RTM_NEWROUTE, 0, 4, 0)
            + _route_body(AF_INET, socket.inet_aton("10.0.0.4"), 32,
                          _nla(codec.RTA_TABLE, struct.pack("=I", 100)) + _nla(codec.RTA_OIF, struct.pack("=I", 2)),
                          proto=200))
    slow_link = bytearray(slow)
    slow_link[16 + 6] = RT_SCOPE_LINK  # rtm_scope
    slow_link[16 + 12 + 4:16 + 12 + 8] = socket.inet_aton("10.0.0.6")  # RTA_DST
    buf = fast + foreign + other_table + slow + fast_link + bytes(slow_link)
    batch, off = [], 0
    for msg in (fast, foreign, other_table, slow, fast_link, slow_link):
        batch.append((codec.RTM_NEWROUTE, off + 16, off + len(msg)))
        off += len(msg)
    out, scopes = {}, {}
    codec.read_route_keys(buf, batch, AF_INET, 100, 200, out, scopes)
    assert out == {(100, AF_INET, socket.inet_aton("10.0.0.1"), 32, 20): 7,
                   (100, AF_INET, socket.inet_aton("10.0.0.4"), 32, 0): 0,
                   (100, AF_INET, socket.inet_aton("10.0.0.5"), 32, 20): 8,
                   (100, AF_INET, socket.inet_aton("10.0.0.6"), 32, 0): 0}
    # the scope of each route not universe (both layouts)
    assert scopes == {(100, AF_INET, socket.inet_aton("10.0.0.5"), 32, 20): RT_SCOPE_LINK,
                      (100, AF_INET, socket.inet_aton("10.0.0.6"), 32, 0): RT_SCOPE_LINK}


def test_links_addresses_and_errors():
    body = codec.IFINFOMSG.pack(0, 1, 4, codec.IFF_UP, 0) + _nla(codec.IFLA_IFNAME, b"tap1\0")
    assert codec.parse_link(body, 0, len(body)) == Link(index=4, name="tap1", up=True, carrier=False)
    addr = codec.IFADDRMSG.pack(AF_INET, 29, 0, 0, 4) + _nla(codec.IFA_ADDRESS, b"\xc0\0\2\x07") \
        + _nla(codec.IFA_LOCAL, b"\xc0\0\2\2")
    assert codec.parse_address(addr, 0, len(addr)) == (AF_INET, 4, b"\xc0\0\2\2", 29)  # IFA_LOCAL wins
    request = codec.NLMSGHDR.pack(20, codec.RTM_NEWROUTE, 0, 9, 0)
    ext = _nla(codec.NLMSGERR_ATTR_MSG, b"Nexthop id does not exist\0")
    err = codec.NLMSGHDR.pack(16 + 4 + 16 + len(ext), codec.NLMSG_ERROR, codec.NLM_F_ACK_TLVS, 9, 0) \
        + codec.NLMSGERR.pack(-22) + request + ext
    assert codec.parse_error(err, 0, len(err), codec.NLM_F_ACK_TLVS) == (22, "Nexthop id does not exist")
    ack = codec.NLMSGHDR.pack(36, codec.NLMSG_ERROR, 0, 9, 0) + codec.NLMSGERR.pack(0) + request
    assert codec.parse_error(ack, 0, len(ack), 0) == (0, "")


def test_link_admin_message():
    raw = codec.encode_link_admin(3, 7, up=False)
    length, mtype, flags, seq, _ = codec.NLMSGHDR.unpack_from(raw)
    assert (length, mtype, seq) == (len(raw), codec.RTM_NEWLINK, 3) and flags & codec.NLM_F_ACK
    assert codec.IFINFOMSG.unpack_from(raw, 16) == (0, 0, 7, 0, codec.IFF_UP)  # change mask IFF_UP, flags 0


def test_strict_decoding_refuses_what_the_kernel_decoding_takes():
    """parse_route/parse_nexthop with ``strict`` (messages from another program: FPM) name the
    bad field; without it (the kernel's messages) the decoders are unchanged."""
    from kernelsync.kernel.codec import NHMSG, RTMSG, DecodeError, nla, parse_nexthop, parse_route

    body = RTMSG.pack(99, 24, 0, 0, 254, 188, 0, 1, 0) + nla(1, b"\xc6\x33\x64\x00")
    assert parse_route(body, 0, len(body)) is None
    with pytest.raises(DecodeError, match="rtm_family 99"):
        parse_route(body, 0, len(body), strict=True)
    body = RTMSG.pack(2, 24, 0, 0, 254, 188, 0, 1, 0) + nla(1, b"\xc6\x33\x64\x01")
    assert parse_route(body, 0, len(body)).plen == 24
    with pytest.raises(DecodeError, match="RTA_DST 198.51.100.1/24 has bits set"):
        parse_route(body, 0, len(body), strict=True)
    body = NHMSG.pack(2, 0, 11, 0, 0) + nla(1, b"\5\0\0\0") + nla(6, bytes(16))
    assert parse_nexthop(body, 0, len(body)).gateway == bytes(16)
    with pytest.raises(DecodeError, match="NHA_GATEWAY of 16 bytes"):
        parse_nexthop(body, 0, len(body), strict=True)


def test_route_delete_matches_any_scope():
    """An IPv4 RTM_DELROUTE matches a route's scope unless it says RT_SCOPE_NOWHERE (as ``ip route
    del`` does): with RT_SCOPE_UNIVERSE our scope link routes could not be deleted (ESRCH, seen
    on the real kernel: tests/netns/test_tablefeed.py)."""
    for key in ((100, AF_INET, socket.inet_aton("192.0.2.0"), 24, 20),
                (100, AF_INET6, socket.inet_pton(AF_INET6, "2001:db8::"), 32, 20)):
        raw = codec.encode_route_del(1, key, 200, codec.NLM_F_REQUEST)
        assert codec.RTMSG.unpack_from(raw, 16)[6] == codec.RT_SCOPE_NOWHERE == 255
