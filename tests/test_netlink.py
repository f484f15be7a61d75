"""The struct encoder and decoder against pyroute2's classes (declared in kernelsync.pr2)."""
import socket

import pytest

from kernelsync import netlink
from kernelsync.model import AF_INET, AF_INET6, GRP_RES, KNexthop
from kernelsync.pr2 import build_nhmsg, decode_nhmsg, rtmsg_nh, to_knexthop
from kernelsync.planner import NH_DEL, NH_SET, ROUTE_DEL, ROUTE_SET

OBJECTS = [
    KNexthop(id=7, family=AF_INET, protocol=200, oif=3, gateway=socket.inet_aton("192.0.2.1")),
    KNexthop(id=8, family=AF_INET6, protocol=200, oif=4, gateway=socket.inet_pton(AF_INET6, "fe80::1")),
    KNexthop(id=9, family=AF_INET, protocol=200, oif=5),
    KNexthop(id=10, family=0, protocol=200, group=((7, 1), (8, 256), (9, 17))),
    KNexthop(id=11, family=0, protocol=200, group=((7, 1), (9, 1)), grp_type=GRP_RES, res=(64, 12000, 300)),
]


@pytest.mark.parametrize("obj", OBJECTS, ids=lambda o: o.describe())
def test_nexthop_struct_encoding_decodes_with_pyroute2_and_back(obj):
    raw = netlink.encode_nexthop(1, obj, netlink.NLM_F_REQUEST)
    assert to_knexthop(decode_nhmsg(raw)) == obj
    assert netlink.parse_nexthop(raw, 16, len(raw)) == obj


@pytest.mark.parametrize("obj", OBJECTS, ids=lambda o: o.describe())
def test_pyroute2_encoding_matches_struct_decoder(obj):
    msg = build_nhmsg(obj)
    msg["header"]["type"] = netlink.RTM_NEWNEXTHOP
    msg.encode()
    raw = bytes(msg.data)
    assert netlink.parse_nexthop(raw, 16, len(raw)) == obj


@pytest.mark.parametrize("family, dst, plen", [(AF_INET, "203.0.113.10", 32), (AF_INET6, "2001:db8:1::", 48)])
def test_route_encoding_decodes_with_pyroute2(family, dst, plen):
    key = (1000, family, socket.inet_pton(family, dst), plen, 20)
    raw = netlink.encode_route_set(5, key, 4242, 200, netlink.NLM_F_REQUEST)
    msg = rtmsg_nh(raw)
    msg.decode()
    assert msg["header"]["type"] == netlink.RTM_NEWROUTE and msg["header"]["sequence_number"] == 5
    assert (msg["family"], msg["dst_len"], msg["proto"], msg["table"]) == (family, plen, 200, 252)
    assert msg.get_attr("RTA_DST") == dst.rstrip(":") + ("::" if family == AF_INET6 else "")
    assert msg.get_attr("RTA_TABLE") == 1000 and msg.get_attr("RTA_PRIORITY") == 20
    assert msg.get_attr("RTA_NH_ID") == 4242


class _Sock:
    """Stands in for the socket to check batching: records sends, answers with an ACK."""

    def __init__(self, fail_seqs=()):
        self.sent = []
        self.fail = set(fail_seqs)
        self.pending = b""

    def send(self, data):
        self.sent.append(data)
        out = []
        off = 0
        while off < len(data):
            length, mtype, flags, seq, _ = netlink._HDR.unpack_from(data, off)
            if seq in self.fail or flags & netlink.NLM_F_ACK:
                err = -22 if seq in self.fail else 0
                body = netlink._ERR.pack(err) + data[off:off + 16]
                out.append(netlink._HDR.pack(16 + len(body), netlink.NLMSG_ERROR, 0x100, seq, 0) + body)
            off += (length + 3) & ~3
        self.pending = b"".join(out)
        return len(data)

    def recv_into(self, buf):
        n = len(self.pending)
        buf[:n] = self.pending
        self.pending = b""
        return n


def test_batch_acks_only_last_of_chunk_and_maps_failures_by_sequence():
    nl = netlink.RtNetlink.__new__(netlink.RtNetlink)
    nl.protocol, nl.seq, nl.buf, nl.stats = 200, 100, bytearray(1 << 20), netlink.Stats()
    ops = [(NH_SET, OBJECTS[2], False)] + [(ROUTE_SET, (100, AF_INET, bytes([10, 0, i // 256, i % 256]), 32, 20), 9, False)
                                    for i in range(10000)]
    nl.sock = _Sock(fail_seqs={101 + 5, 101 + 9000})
    failures = nl.apply(ops)
    assert [(i, err) for i, err, _ in failures] == [(5, 22), (9000, 22)]
    assert 1 < len(nl.sock.sent) < 10  # many messages per send()
    acked = 0
    for chunk in nl.sock.sent:
        off = 0
        while off < len(chunk):
            length, _, flags, _, _ = netlink._HDR.unpack_from(chunk, off)
            acked += bool(flags & netlink.NLM_F_ACK)
            last_flags = flags
            off += length
        assert last_flags & netlink.NLM_F_ACK  # the last of each chunk asks for the ACK
    assert acked == len(nl.sock.sent)
    assert nl.stats.writes["route-set"] == 10000 and nl.stats.writes["nexthop-set"] == 1


def test_chunk_is_the_messages_of_the_one_message_encoders():
    # the chunk encoder packs route writes in place; the bytes must be the same
    nl = netlink.RtNetlink.__new__(netlink.RtNetlink)
    nl.protocol = 200
    v4 = (100, AF_INET, socket.inet_aton("203.0.113.10"), 32, 20)
    v6 = (1000, AF_INET6, socket.inet_pton(AF_INET6, "2001:db8:1::"), 48, 1024)
    ops = [(NH_SET, OBJECTS[0], False), (NH_SET, OBJECTS[3], True), (ROUTE_SET, v4, 7, False),
           (ROUTE_SET, v6, 10, True), (ROUTE_DEL, v4), (NH_DEL, OBJECTS[1]), (ROUTE_SET, v4, 8, True)]
    data, end = nl._encode_chunk(ops, 1, 50)
    set_, add = netlink._SET_FLAGS, netlink._ADD_FLAGS
    want = [netlink.encode_nexthop(51, OBJECTS[3], set_), netlink.encode_route_set(52, v4, 7, 200, add),
            netlink.encode_route_set(53, v6, 10, 200, set_), netlink.encode_route_del(54, v4, 200, netlink.NLM_F_REQUEST),
            netlink.encode_nexthop_del(55, OBJECTS[1].id, netlink.NLM_F_REQUEST),
            netlink.encode_route_set(56, v4, 8, 200, set_ | netlink.NLM_F_ACK)]
    assert end == len(ops) and bytes(data) == b"".join(want)
