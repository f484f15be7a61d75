"""The FPM feed (kernelsync.feeds.fpm) without FRR: frames as zebra's dplane_fpm_nl writes them
(built here byte by byte), the stream decoder, the replay window and stale handling over a real
TCP connection on the loopback (no kernel, no root).  Frames captured from FRR's zebra:
tests/golden; FRR itself: tests/netns/test_frr.py."""
import os
import re
import selectors
import socket
import struct
import time

import pytest

from kernelsync.core.links import NO_CHANGE, LinkChange, LinkTable
from kernelsync.core.model import AF_INET, Link, parse_prefix
from kernelsync.core.rib import Rib
from kernelsync.feeds.base import KernelChange
from kernelsync.feeds.fpm import FpmError, FpmFeed, FpmFeedConfig, FpmStream, tcp_peer_uid

RTM_NEWROUTE, RTM_DELROUTE, RTM_NEWNEXTHOP, RTM_DELNEXTHOP = 24, 25, 104, 105
OSPF, CONNECTED, ZSTATIC = 188, 2, 196
IFNAMES = {2: "e12", 3: "e13", 4: "tap1"}
LAN = parse_prefix("192.0.2.0/24")
#: a link notification that changed e12's usability (a flap)
E12_CHANGED = LinkChange(before={"e12": Link(index=2, name="e12", up=True, carrier=True)}, changed=frozenset({"e12"}),
                         names_changed=False)
R2, R3 = "10.0.12.2", "10.0.13.2"


def _nla(kind, payload):
    data = struct.pack("=HH", 4 + len(payload), kind) + payload
    return data + b"\0" * (-len(data) % 4)


def _msg(kind, body, flags=0x501):
    return struct.pack("=IHHII", 16 + len(body), kind, flags, 0, 0) + body


def route(prefix, legs=(), nh_id=0, proto=OSPF, table=254, delete=False, metric=20, rtype=1):
    """RTM_NEWROUTE/DELROUTE as dplane_fpm_nl encodes it: ``legs`` = ((gateway or None,
    ifindex), ...), one leg as RTA_GATEWAY + RTA_OIF, more as RTA_MULTIPATH."""
    family, dst, plen = parse_prefix(prefix)
    body = struct.pack("=BBBBBBBBI", family, plen, 0, 0, table if table < 256 else 252, proto, 0, rtype, 0)
    body += _nla(15, struct.pack("=I", table)) + _nla(1, dst) + _nla(6, struct.pack("=I", metric))
    if nh_id:
        body += _nla(30, struct.pack("=I", nh_id))
    elif len(legs) == 1:
        gw, oif = legs[0]
        body += (_nla(5, socket.inet_pton(family, gw)) if gw else b"") + _nla(4, struct.pack("=I", oif))
    elif legs:
        mp = b""
        for gw, oif in legs:
            sub = _nla(5, socket.inet_pton(family, gw)) if gw else b""
            mp += struct.pack("=HBBi", 8 + len(sub), 0, 0, oif) + sub
        body += _nla(9, mp)
    return _msg(RTM_DELROUTE if delete else RTM_NEWROUTE, body)


def nexthop(nh_id, gw=None, oif=0, group=(), delete=False, family=AF_INET):
    body = struct.pack("=BBBBI", 0 if group else family, 0, 11, 0, 0) + _nla(1, struct.pack("=I", nh_id))
    if group:
        body += _nla(2, b"".join(struct.pack("=IBBH", m, w - 1, 0, 0) for m, w in group))
    else:
        body += _nla(5, struct.pack("=I", oif))
        if gw:
            body += _nla(6, socket.inet_pton(family, gw))
    return _msg(RTM_DELNEXTHOP if delete else RTM_NEWNEXTHOP, body)


def frame(*messages, version=1, kind=1):
    payload = b"".join(messages)
    return struct.pack("!BBH", version, kind, 4 + len(payload)) + payload


def gws(paths):
    """Sorted (gateway or device) of the one path."""
    (path,) = paths
    return sorted((socket.inet_ntop(n.gw_family, n.gateway) if n.gateway else "dev " + n.dev) for n in path.nexthops)


# ---------------------------------------------------------------------------------------------
# the stream, pure

def test_multipath_route_becomes_one_path_with_device_only_legs():
    s = FpmStream(254, (OSPF,))
    s.feed(frame(route("192.0.2.0/24", [(R2, 2), (R3, 3), (None, 4)])))
    assert list(s.take_dirty()) == [LAN]
    assert gws(s.paths(LAN, IFNAMES)) == [R2, R3, "dev tap1"]


def test_any_split_of_the_byte_stream_gives_the_same_state():
    data = (frame(nexthop(18, R2, 2), nexthop(22, R3, 3)) + frame(nexthop(23, group=((18, 1), (22, 1))))
            + frame(route("192.0.2.0/24", nh_id=23)) + frame(route("198.51.100.0/24", [(R2, 2)])))
    whole = FpmStream(254, (OSPF,))
    assert whole.feed(data) == 4
    for step in (1, 3, 7, 50):
        s = FpmStream(254, (OSPF,))
        frames = sum(s.feed(data[i:i + step]) for i in range(0, len(data), step))
        assert frames == 4 and s.routes == whole.routes and s.nexthops == whole.nexthops and not s.buffer


def test_nexthop_group_change_reaches_the_routes_that_use_it():
    s = FpmStream(254, (OSPF,))
    s.feed(frame(nexthop(18, R2, 2), nexthop(22, R3, 3), nexthop(23, group=((18, 1), (22, 1))),
                 route("192.0.2.0/24", nh_id=23), route("198.51.100.0/24", nh_id=18)))
    s.take_dirty()
    assert gws(s.paths(LAN, IFNAMES)) == [R2, R3]
    s.feed(frame(nexthop(23, group=((22, 1),))))  # e12 down: zebra shrinks the group
    assert list(s.take_dirty()) == [LAN]
    assert gws(s.paths(LAN, IFNAMES)) == [R3]
    s.feed(frame(nexthop(18, R2, 3)))  # a member changes: every route on it or on a group holding it
    assert set(s.take_dirty()) == {parse_prefix("198.51.100.0/24")}  # 23 no longer holds 18
    s.feed(frame(nexthop(23, group=((18, 1), (22, 2)))))
    s.feed(frame(nexthop(18, R2, 2)))
    assert set(s.take_dirty()) == {LAN, parse_prefix("198.51.100.0/24")}
    (path,) = s.paths(LAN, IFNAMES)
    assert sorted(n.weight for n in path.nexthops) == [1, 2]
    s.feed(frame(nexthop(23, delete=True)))  # the group is gone while a route still names it
    assert list(s.take_dirty()) == [LAN] and s.paths(LAN, IFNAMES) is None


def test_replace_in_one_frame_and_protocols_and_tables_we_do_not_take():
    s = FpmStream(254, (OSPF,))
    s.feed(frame(route("192.0.2.0/24", [(R2, 2)]), route("10.0.12.0/24", [(None, 2)], proto=CONNECTED),
                 route("203.0.113.0/24", [(R3, 3)], table=100)))
    assert set(s.routes) == {LAN}
    s.take_dirty()
    s.feed(frame(route("192.0.2.0/24", [(R2, 2)], delete=True), route("192.0.2.0/24", [(R3, 3)])))
    assert list(s.take_dirty()) == [LAN] and gws(s.paths(LAN, IFNAMES)) == [R3]
    # the prefix now comes from staticd, a protocol we do not take: it is no longer ours
    s.feed(frame(route("192.0.2.0/24", [(R2, 2)], proto=ZSTATIC)))
    assert list(s.take_dirty()) == [LAN] and s.paths(LAN, IFNAMES) is None and not s.routes
    assert s.counters["ignored"] == 3


def test_other_messages_and_families_are_counted_and_ignored():
    s = FpmStream(254, (OSPF,))
    neigh = _msg(28, struct.pack("=BxxxiHBB", AF_INET, 2, 0, 0, 0))  # RTM_NEWNEIGH (EVPN MACs)
    mpls = _msg(RTM_NEWROUTE, struct.pack("=BBBBBBBBI", 28, 20, 0, 0, 254, OSPF, 0, 1, 0))  # AF_MPLS
    s.feed(frame(neigh, mpls, route("192.0.2.0/24", [(R2, 2)])))
    assert set(s.routes) == {LAN} and s.counters["ignored"] == 2


def test_unusable_route_is_kept_out():
    s = FpmStream(254, (OSPF,))
    s.feed(frame(route("192.0.2.0/24", [(R2, 9)]), route("198.51.100.0/24", [(R2, 2)], rtype=6)))
    good, bad = s.all_paths(IFNAMES)
    assert good == {} and sorted(bad) == sorted([LAN, parse_prefix("198.51.100.0/24")])
    assert gws(s.paths(LAN, {**IFNAMES, 9: "e19"})) == [R2]  # the device appears


GOOD = route("203.0.113.0/24", [(R2, 2)])
RTMSG = struct.pack("=BBBBBBBBI", 2, 24, 0, 0, 254, OSPF, 0, 1, 0)


@pytest.mark.parametrize("bad, why", [
    (frame(GOOD, version=2), "header version 2"),
    (frame(GOOD, kind=2), "type 2"),
    (struct.pack("!BBH", 1, 1, 3), "length 3"),
    # a good route first in the frame, then the broken part: the frame is refused whole
    (frame(GOOD, route("192.0.2.0/24", [(R2, 2)])[:-4]), "does not fit the frame"),
    (frame(GOOD, b"\0" * 8), "8 trailing bytes"),
    (frame(GOOD, _msg(RTM_NEWROUTE, b"\2\x18\0\0")), "shorter than its 12-byte header"),
    (frame(GOOD, _msg(RTM_NEWROUTE, RTMSG + struct.pack("=HH", 40, 1) + b"\xc0\0\2\0")), "length 40 does not fit"),
    (frame(GOOD, _msg(RTM_NEWROUTE, RTMSG + _nla(6, b"\1\0"))), "attribute 6 at byte 96: payload of 2 bytes"),
    (frame(GOOD, _msg(RTM_NEWROUTE, RTMSG + _nla(1, b"\xc0\0\2"))), "attribute 1 at byte 96: payload of 3 bytes"),
    (frame(GOOD, _msg(RTM_NEWNEXTHOP, struct.pack("=BBBBI", 2, 0, 11, 0, 0) + _nla(5, struct.pack("=I", 2)))),
     "without NHA_ID"),
], ids=["version", "type", "length", "message-length", "trailing", "rtmsg", "nla-length", "u32", "address",
        "no-id"])
def test_malformed_frames_are_refused_whole(bad, why):
    """A broken FPM header raises (the connection closes: frames can no longer be told apart);
    a frame whose content cannot be decoded is skipped whole, and the next frame is taken."""
    s = FpmStream(254, (OSPF,))
    s.feed(frame(route("198.51.100.0/24", [(R3, 3)])))
    before = dict(s.routes)
    if why.startswith(("header", "type", "length 3")):
        with pytest.raises(FpmError, match=why):
            s.feed(bad)
    else:
        assert_skipped(s, bad, why)
        s.feed(frame(route("192.0.2.0/24", [(R2, 2)])))
        assert set(s.routes) == set(before) | {LAN}
        return
    assert s.routes == before


def assert_skipped(s, data, why):
    """``data`` (one frame) is skipped whole by the stream ``s``: counted, the error matching
    ``why``, nothing of it taken."""
    before = (dict(s.routes), dict(s.nexthops), s.counters["skipped"])
    assert s.feed(data) == 1
    assert s.counters["skipped"] == before[2] + 1 and re.search(why, s.last_error), s.last_error
    assert (s.routes, s.nexthops) == before[:2]


# ---------------------------------------------------------------------------------------------
# the feed: a real TCP connection on the loopback, no kernel

def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Harness:
    """An FpmFeed on a free port, driven like the daemon drives it, with a fake clock."""

    def __init__(self, kernel=None, **cfg):
        self.rib = Rib()
        self.rib.add_source("static", 1)
        self.rib.set_ready("static")
        self.cfg = FpmFeedConfig(port=free_port(), **{"hold_time": 30.0, "replay_quiet": 1.0, **cfg})
        self.links = LinkTable({i: Link(index=i, name=n, up=True, carrier=True) for i, n in IFNAMES.items()})
        self.feed = FpmFeed(self.rib, self.cfg, self.links, kernel)
        self.sel = selectors.DefaultSelector()
        self.now = 1000.0
        self.feed.start(self.sel, self.now)

    def connect(self):
        sock = socket.create_connection(("127.0.0.1", self.cfg.port))
        self.pump(lambda: self.feed.conn is not None)
        return sock

    def pump(self, until, timeout=5.0):
        """Run the selector (with the fake clock standing still) until ``until()``."""
        end = time.monotonic() + timeout
        while not until():
            assert time.monotonic() < end, "condition not reached"
            for key, _ in self.sel.select(0.01):
                key.data(self.now)
        return True

    def send(self, sock, data):
        frames = self.feed.stream.counters["frames"]
        sock.sendall(data)
        n = 0
        pos = 0
        while pos < len(data):
            n += 1
            pos += struct.unpack_from("!H", data, pos + 2)[0]
        self.pump(lambda: self.feed.stream is not None and self.feed.stream.counters["frames"] >= frames + n)

    def tick(self, seconds=0.0):
        self.now += seconds
        self.feed.commit(self.now)

    def rib_paths(self, prefix):
        return self.rib.sources(prefix).get(self.cfg.name)

    def close(self):
        self.feed.close()
        self.sel.close()


@pytest.fixture
def harness():
    made = []

    def make(**cfg):
        h = Harness(**cfg)
        made.append(h)
        return h
    yield make
    for h in made:
        h.close()


def test_replay_is_applied_when_quiet_and_a_reconnect_writes_only_what_changed(harness):
    h = harness(users=[])
    sock = h.connect()
    assert h.feed.replaying and not h.rib.ready["fpm"]
    h.send(sock, frame(route("192.0.2.0/24", [(R2, 2), (R3, 3)])) + frame(route("198.51.100.0/24", [(R2, 2)])))
    h.tick(0.5)
    assert h.rib_paths(LAN) is None  # still collecting the replay
    assert h.feed.deadline() == pytest.approx(1001.0)
    h.tick(0.6)
    assert gws(h.rib_paths(LAN)) == [R2, R3] and h.rib.ready["fpm"] and not h.feed.replaying
    h.rib.take_dirty()
    h.send(sock, frame(route("192.0.2.0/24", [(R3, 3)])))  # after the replay: applied at once
    assert h.feed.deadline() == 0.0
    h.tick()
    assert gws(h.rib_paths(LAN)) == [R3] and list(h.rib.take_dirty()) == [LAN]

    sock.close()  # zebra goes away: routes stay, stale
    h.pump(lambda: h.feed.conn is None)
    assert h.feed.source.stale_until == pytest.approx(h.now + 30.0)
    assert gws(h.rib_paths(LAN)) == [R3] and h.rib.take_dirty() == {}
    sock = h.connect()  # zebra is back: replays both unchanged
    h.send(sock, frame(route("192.0.2.0/24", [(R3, 3)]), route("198.51.100.0/24", [(R2, 2)])))
    h.tick(1.1)
    assert h.rib.take_dirty() == {}  # not one change: no kernel write
    assert h.feed.show()["stale"] == 0 and h.feed.source.stale_until is None
    assert h.feed.show()["replays"] == 2
    sock.close()


def test_partial_replay_is_held_until_everything_is_back_or_the_hold_time_ends(harness):
    h = harness(users=[])
    sock = h.connect()
    h.send(sock, frame(route("192.0.2.0/24", [(R2, 2), (R3, 3)]), route("198.51.100.0/24", [(R2, 2)])))
    h.tick(1.1)
    sock.close()
    h.pump(lambda: h.feed.conn is None)
    h.rib.take_dirty()
    sock = h.connect()  # zebra restarted: OSPF converging again, one leg of the LAN first
    h.send(sock, frame(route("192.0.2.0/24", [(R2, 2)])))
    h.tick(1.1)
    assert h.rib.take_dirty() == {} and gws(h.rib_paths(LAN)) == [R2, R3]  # held: the stale state stays
    h.send(sock, frame(route("192.0.2.0/24", [(R2, 2), (R3, 3)]), route("203.0.113.0/24", [(R3, 3)])))
    h.tick(1.1)
    assert h.rib.take_dirty() == {}  # still held: 198.51.100.0/24 is not back
    h.tick(30.0)  # the hold time ends: what did not come back is swept, the rest applied
    assert set(h.rib.take_dirty()) == {parse_prefix("198.51.100.0/24"), parse_prefix("203.0.113.0/24")}  # LAN: unchanged
    assert gws(h.rib_paths(LAN)) == [R2, R3] and h.rib_paths(parse_prefix("198.51.100.0/24")) is None
    sock.close()


def test_deletions_settle_and_a_stopping_zebra_leaves_its_routes_stale(harness):
    h = harness(users=[])
    sock = h.connect()
    h.send(sock, frame(route("192.0.2.0/24", [(R2, 2)]), route("198.51.100.0/24", [(R2, 2)])))
    h.tick(1.1)
    h.rib.take_dirty()
    h.send(sock, frame(route("198.51.100.0/24", [(R2, 2)], delete=True)))
    assert h.feed.deadline() == pytest.approx(h.now + 0.2)
    h.tick(0.1)
    assert h.rib_paths(parse_prefix("198.51.100.0/24")) is not None
    h.tick(0.1)
    assert list(h.rib.take_dirty()) == [parse_prefix("198.51.100.0/24")]  # a real deletion, applied
    # zebra stops: deletes everything, then closes, within the settle time: nothing applied
    h.send(sock, frame(route("192.0.2.0/24", [(R2, 2)], delete=True)))
    sock.close()
    h.pump(lambda: h.feed.conn is None)
    h.tick(0.5)
    assert gws(h.rib_paths(LAN)) == [R2] and h.feed.show()["stale"] == 1 and h.rib.take_dirty() == {}


def test_zebra_is_followed_after_a_link_event_even_to_no_route_at_all(harness):
    """A flap during which zebra holds no OSPF route for a moment (the topology took the last
    path): zebra's deletions are real, and what comes back is applied at once, not held."""
    h = harness(users=[])
    sock = h.connect()
    both = [(R2, 2), (R3, 3)]
    h.send(sock, frame(route("192.0.2.0/24", both), route("10.0.12.0/24", [(None, 2)], proto=CONNECTED)))
    h.tick(1.1)
    h.rib.take_dirty()
    h.feed.on_kernel_change(KernelChange(links=NO_CHANGE), h.now - 20.0)  # link notifications that change nothing
    h.feed.on_kernel_change(KernelChange(links=E12_CHANGED), h.now)
    h.tick(1.0)
    h.send(sock, frame(route("192.0.2.0/24", both, delete=True)))
    h.tick(0.3)
    assert h.rib_paths(LAN) is None and h.feed.show()["stale"] == 0 and list(h.rib.take_dirty()) == [LAN]
    h.send(sock, frame(route("192.0.2.0/24", [(R3, 3)])))  # back: applied at once, not held
    h.tick()
    assert gws(h.rib_paths(LAN)) == [R3]
    sock.close()


def test_additions_and_replaces_are_applied_at_once_while_deletions_settle(harness):
    """A remote failure: zebra replaces the LAN's ECMP route by one path (DEL + NEW in one
    frame) and deletes what was behind r2, in one burst.  The replace does not wait."""
    h = harness(users=[])
    sock = h.connect()
    h.send(sock, frame(route("192.0.2.0/24", [(R2, 2), (R3, 3)]), route("198.51.100.0/24", [(R2, 2)]),
                       route("10.255.0.2/32", [(R2, 2)])))
    h.tick(1.1)
    h.rib.take_dirty()
    h.send(sock, frame(route("198.51.100.0/24", [(R2, 2)], delete=True)))
    h.send(sock, frame(route("192.0.2.0/24", [(R2, 2), (R3, 3)], delete=True), route("192.0.2.0/24", [(R3, 3)])))
    assert h.feed.deadline() == 0.0
    h.tick()
    assert gws(h.rib_paths(LAN)) == [R3] and list(h.rib.take_dirty()) == [LAN]  # at once
    h.tick(0.1)
    h.send(sock, frame(route("10.255.0.2/32", [(R2, 2)], delete=True)))  # the burst goes on
    h.tick(0.15)
    assert h.rib_paths(parse_prefix("198.51.100.0/24")) is not None  # 0.2 s after the burst's last deletion
    assert h.feed.deadline() == pytest.approx(h.now + 0.05)
    h.tick(0.06)
    assert set(h.rib.take_dirty()) == {parse_prefix("198.51.100.0/24"), parse_prefix("10.255.0.2/32")}
    assert h.feed.show()["stale"] == 0 and h.feed.show()["stops"] == 0
    sock.close()


def test_zebra_withdrawing_every_ospf_route_is_ospfd_stopping_kept_stale_and_its_return_writes_nothing(harness):
    """FRR stops in its usual order: ospfd first, zebra withdraws every OSPF route, and closes
    the connection about 2 s later; FRR starts again.  Nothing reaches the RIB."""
    h = harness(users=[])
    sock = h.connect()
    both = [(R2, 2), (R3, 3)]
    ospf = [route("192.0.2.0/24", both), route("198.51.100.0/24", [(R2, 2)])]
    h.send(sock, frame(*ospf, route("10.0.12.0/24", [(None, 2)], proto=CONNECTED)))
    h.tick(1.1)
    h.rib.take_dirty()
    h.tick(20.0)  # long after any link change
    h.feed.on_kernel_change(KernelChange(links=NO_CHANGE), h.now)  # a link notification that changes nothing
    h.send(sock, frame(route("192.0.2.0/24", both, delete=True)))
    h.send(sock, frame(route("198.51.100.0/24", [(R2, 2)], delete=True)))
    h.tick(0.25)
    stopped = h.now
    assert h.rib.take_dirty() == {} and gws(h.rib_paths(LAN)) == [R2, R3]
    assert h.feed.show()["stale"] == 2 and h.feed.show()["stops"] == 1
    h.tick(1.8)
    sock.close()  # zebra stops
    h.pump(lambda: h.feed.conn is None)
    h.tick(0.5)
    assert h.feed.source.stale_until == pytest.approx(stopped + 30.0)  # the stop's stale period goes on
    sock = h.connect()  # FRR back: zebra's replay has its connected routes, OSPF converges after
    h.send(sock, frame(route("10.0.12.0/24", [(None, 2)], proto=CONNECTED)))
    h.tick(1.1)
    h.send(sock, frame(route("192.0.2.0/24", [(R2, 2)])))  # one leg first: held
    h.tick(1.1)
    assert h.rib.take_dirty() == {} and gws(h.rib_paths(LAN)) == [R2, R3]
    h.send(sock, frame(*ospf))
    h.tick(1.1)
    assert h.rib.take_dirty() == {} and h.feed.show()["stale"] == 0
    sock.close()


def test_a_few_withdrawals_while_others_remain_apply_and_so_do_stops_with_hold_time_0(harness):
    h = harness(users=[])
    sock = h.connect()
    h.send(sock, frame(route("192.0.2.0/24", [(R2, 2)]), route("198.51.100.0/24", [(R2, 2)])))
    h.tick(21.1)
    h.rib.take_dirty()
    h.send(sock, frame(route("198.51.100.0/24", [(R2, 2)], delete=True)))
    h.tick(0.25)
    assert list(h.rib.take_dirty()) == [parse_prefix("198.51.100.0/24")] and h.feed.show()["stale"] == 0
    sock.close()
    h2 = harness(users=[], hold_time=0)
    sock = h2.connect()
    h2.send(sock, frame(route("192.0.2.0/24", [(R2, 2)])))
    h2.tick(21.1)
    h2.rib.take_dirty()
    h2.send(sock, frame(route("192.0.2.0/24", [(R2, 2)], delete=True)))
    h2.tick(0.25)
    assert list(h2.rib.take_dirty()) == [LAN] and h2.feed.show()["stale"] == 0
    sock.close()


def test_malformed_frame_closes_the_connection_and_the_routes_stay_until_the_hold_time(harness, caplog):
    h = harness(users=[])
    sock = h.connect()
    h.send(sock, frame(route("192.0.2.0/24", [(R2, 2)])))
    h.tick(1.1)
    sock.sendall(frame(route("198.51.100.0/24", [(R2, 2)]), version=7))
    h.pump(lambda: h.feed.conn is None)
    assert "malformed FPM stream" in caplog.text and "header version 7" in caplog.text
    assert h.feed.show()["malformed"] == 1 and "header version 7" in h.feed.show()["last_error"]
    assert sock.recv(10) == b""  # closed on our side
    assert gws(h.rib_paths(LAN)) == [R2]  # stale, still in the RIB
    h.tick(29.0)
    assert gws(h.rib_paths(LAN)) == [R2]
    h.tick(1.1)  # the hold time is over: swept
    assert h.rib_paths(LAN) is None and h.feed.show()["swept"] == 1


def test_a_frame_that_cannot_be_decoded_is_skipped_and_the_connection_stays(harness, caplog):
    h = harness(users=[])
    sock = h.connect()
    h.send(sock, frame(route("192.0.2.0/24", [(R2, 2)])))
    h.tick(1.1)
    h.send(sock, frame(route("198.51.100.0/24", [(R2, 2)]), _msg(RTM_NEWROUTE, RTMSG + _nla(1, b"\xc0\0\2")))
           + frame(route("203.0.113.0/24", [(R3, 3)])))
    h.tick()
    assert h.feed.conn is not None and h.feed.show()["stream"]["skipped"] == 1
    assert "payload of 3 bytes" in h.feed.show()["last_error"] and "skipped whole" in caplog.text
    assert h.rib_paths(parse_prefix("198.51.100.0/24")) is None  # the frame's good route too: whole
    assert gws(h.rib_paths(parse_prefix("203.0.113.0/24"))) == [R3]
    sock.close()


def test_losses_during_a_stale_period_do_not_extend_it(harness):
    h = harness(users=[])
    sock = h.connect()
    h.send(sock, frame(route("192.0.2.0/24", [(R2, 2)])))
    h.tick(1.1)
    sock.close()
    h.pump(lambda: h.feed.conn is None)
    lost_at = h.now
    for _ in range(3):  # zebra comes back and fails again mid-replay, every 3 s
        h.tick(3.0)
        sock = h.connect()
        sock.close()
        h.pump(lambda: h.feed.conn is None)
    assert h.feed.source.stale_until == pytest.approx(lost_at + 30.0)
    h.tick(lost_at + 30.0 - h.now)
    assert h.rib_paths(LAN) is None


def test_not_ready_until_the_first_replay_or_the_hold_time(harness):
    h = harness(users=[])
    assert h.feed.deadline() == pytest.approx(1030.0)
    h.tick(29.0)
    assert not h.rib.ready["fpm"]
    h.tick(1.0)
    assert h.rib.ready["fpm"]  # zebra never came: the engine may delete what is no longer wanted


def test_new_connection_replaces_the_old_one(harness):
    h = harness(users=[])
    first = h.connect()
    h.send(first, frame(route("192.0.2.0/24", [(R2, 2)])))
    h.tick(1.1)
    second = socket.create_connection(("127.0.0.1", h.cfg.port))
    h.pump(lambda: h.feed.show()["connections"] == 2)
    assert first.recv(10) == b"" and h.feed.replaying
    assert gws(h.rib_paths(LAN)) == [R2]  # kept stale while the new connection replays
    h.send(second, frame(route("192.0.2.0/24", [(R2, 2)])))
    h.tick(1.1)
    assert gws(h.rib_paths(LAN)) == [R2] and h.feed.show()["stale"] == 0
    second.close()


def test_tcp_peer_uid_and_users(harness, caplog):
    if os.geteuid() != 0:
        pytest.skip("needs root to connect as another user")
    h = harness()  # default users: frr, root
    mine = h.connect()
    assert tcp_peer_uid(h.feed.conn) == 0
    # a socket owned by nobody (uid 65534) is refused: any local user could otherwise feed the FIB
    try:
        os.seteuid(65534)
    except PermissionError:
        mine.close()
        pytest.skip("needs CAP_SETUID to make a socket as another user")
    try:
        theirs = socket.socket()  # the socket's owner is the creator's fsuid
    finally:
        os.seteuid(0)
    theirs.connect(("127.0.0.1", h.cfg.port))
    h.pump(lambda: h.feed.show()["refused"] == 1)
    assert theirs.recv(10) == b"" and "(uid 65534) refused" in caplog.text
    assert h.feed.show()["connections"] == 1 and h.feed.conn is not None
    theirs.close()
    mine.close()


def test_listen_failure_says_where(harness):
    h = harness(users=[])
    other = FpmFeed(h.rib, FpmFeedConfig(name="fpm2", port=h.cfg.port), h.links)
    with pytest.raises(OSError, match="feed.fpm: cannot listen on 127.0.0.1 port %d" % h.cfg.port):
        other.start(selectors.DefaultSelector(), 0.0)


def test_resync_after_link_events_rereads_zebra_and_writes_nothing_unchanged(harness):
    h = harness(users=[], resync_after_link=2.0)
    sock = h.connect()
    h.send(sock, frame(route("192.0.2.0/24", [(R2, 2)])))
    h.tick(1.1)
    h.rib.take_dirty()
    h.feed.on_kernel_change(KernelChange(links=NO_CHANGE), h.now)  # a link notification that changed nothing
    assert not h.feed.show()["resync_pending"]
    h.feed.on_kernel_change(KernelChange(links=E12_CHANGED), h.now)  # a link event
    h.tick(1.0)
    h.feed.on_kernel_change(KernelChange(links=E12_CHANGED), h.now)  # a second flap: counted from the last
    assert h.feed.deadline() == pytest.approx(h.now + 2.0) and h.feed.show()["resync_pending"]
    h.tick(2.0)
    assert sock.recv(10) == b"" and h.feed.show()["resyncs"] == 1  # closed: zebra will replay
    assert h.feed.show()["resync_pending"]  # until the replay is in
    assert gws(h.rib_paths(LAN)) == [R2] and h.feed.show()["stale"] == 1
    h.tick(3.0)
    sock = h.connect()
    h.send(sock, frame(route("192.0.2.0/24", [(R2, 2)])))
    h.tick(1.1)
    assert h.rib.take_dirty() == {} and h.feed.show()["stale"] == 0 and not h.feed.show()["resync_pending"]
    h.tick(10.0)
    assert h.feed.show()["resyncs"] == 1  # no link event since: no more
    sock.close()


def test_resync_after_link_waits_for_the_streams_last_change_after_the_event(harness):
    """OSPF converges seconds after the link: zebra's replay at the first re-read carried the LAN
    over one leg, the update that put the second leg back was missed by the stream (FRR 8.4, CI
    run of issue 12).  Route changes within RESYNC_FOLLOW s of a link event put the re-read off
    until the stream has been quiet for resync_after_link; replays and later changes do not."""
    from kernelsync.feeds.fpm import RESYNC_FOLLOW
    h = harness(users=[], resync_after_link=1.0)
    sock = h.connect()
    h.send(sock, frame(route("192.0.2.0/24", [(R2, 2)])))
    h.tick(1.1)
    h.feed.on_kernel_change(KernelChange(links=E12_CHANGED), h.now)
    event = h.now
    h.tick(0.5)
    h.send(sock, frame(route("198.51.100.0/24", [(R2, 2)])))  # OSPF still converging
    h.tick(0.0)
    assert h.feed.deadline() == pytest.approx(h.now + 1.0)  # put off: 1 s after that change
    h.tick(0.9)
    assert h.feed.show()["resyncs"] == 0
    h.tick(0.2)
    assert sock.recv(10) == b"" and h.feed.show()["resyncs"] == 1
    sock = h.connect()  # the replay: no more put-off
    h.send(sock, frame(route("192.0.2.0/24", [(R2, 2)])) + frame(route("198.51.100.0/24", [(R2, 2)])))
    h.tick(1.1)
    assert not h.feed.show()["resync_pending"]
    h.tick(event + RESYNC_FOLLOW + 0.1 - h.now)
    h.send(sock, frame(route("203.0.113.0/24", [(R2, 2)])))  # long after the event: not a reason
    h.tick(0.1)
    assert not h.feed.show()["resync_pending"] and h.feed.show()["resyncs"] == 1
    sock.close()


def test_a_link_event_while_zebra_replays_still_gets_its_reread_and_the_reread_is_the_truth(harness):
    """The link comes back while zebra is away (or replaying): its re-read is not dropped, and
    waits until zebra has been quiet that long; the re-read's replay is applied whole at once
    (a prefix gone meanwhile does not hold the rest back as stale)."""
    h = harness(users=[], resync_after_link=1.0)
    sock = h.connect()
    h.send(sock, frame(route("192.0.2.0/24", [(R2, 2), (R3, 3)]), route("198.51.100.0/24", [(R2, 2)])))
    h.tick(1.1)
    h.feed.on_kernel_change(KernelChange(links=E12_CHANGED), h.now)  # e12 down
    h.send(sock, frame(route("198.51.100.0/24", [(R2, 2)], delete=True)))
    h.send(sock, frame(route("192.0.2.0/24", [(R3, 3)])))
    h.tick(1.0)
    h.tick(0.1)
    assert h.feed.show()["resyncs"] == 1 and sock.recv(10) == b""
    h.rib.take_dirty()
    sock = h.connect()  # zebra back, replaying, when the link comes up
    h.send(sock, frame(route("192.0.2.0/24", [(R3, 3)])))
    h.feed.on_kernel_change(KernelChange(links=E12_CHANGED), h.now)  # e12 up, during the replay
    h.tick(0.5)
    h.tick(0.6)  # the replay is over: applied whole, 198.51.100.0/24 swept, nothing held
    assert gws(h.rib_paths(LAN)) == [R3] and h.rib_paths(parse_prefix("198.51.100.0/24")) is None
    assert h.feed.show()["stale"] == 0 and h.feed.show()["resync_pending"]  # this replay began before the quiet
    h.tick(1.0)  # OSPF converged, but the stream missed the LAN's second leg: the re-read brings it
    assert h.feed.show()["resyncs"] == 2 and sock.recv(10) == b""
    sock = h.connect()
    h.send(sock, frame(route("192.0.2.0/24", [(R2, 2), (R3, 3)]), route("198.51.100.0/24", [(R2, 2)])))
    h.tick(1.1)
    assert gws(h.rib_paths(LAN)) == [R2, R3] and not h.feed.show()["resync_pending"]
    h.tick(20.0)
    assert h.feed.show()["resyncs"] == 2
    sock.close()


def test_during_a_reread_zebras_own_kernel_writes_stand_in_for_the_stream(harness):
    """zebra takes about 3 s to reconnect after the re-read's close: a remote failure meanwhile
    reaches the RIB from zebra's kernel write of the route at once; the replay is the truth."""
    from kernelsync.core.model import KNexthop, KRoute
    from kernelsync.feeds.base import RouteEvent
    from tests.support.feeds import DumpingKernel

    kernel = DumpingKernel(nexthops={22: KNexthop(id=22, family=AF_INET, protocol=11, oif=3,
                                                   gateway=socket.inet_aton(R3))})
    h = harness(kernel=kernel, users=[], resync_after_link=1.0)
    assert h.feed.follows_routes
    sock = h.connect()
    h.send(sock, frame(route("192.0.2.0/24", [(R2, 2), (R3, 3)])))
    h.tick(1.1)
    h.feed.on_kernel_change(KernelChange(links=E12_CHANGED), h.now)
    h.tick(1.0)
    assert h.feed.show()["resyncs"] == 1 and sock.recv(10) == b""
    family, dst, plen = LAN
    zebra_write = KRoute(family, dst, plen, 254, OSPF, 1, 20, (), 22)  # LAN on zebra's nexthop 22 (via r3)
    other_table = KRoute(family, dst, plen, 100, OSPF, 1, 20, (), 22)
    h.feed.on_kernel_change(KernelChange(routes=(RouteEvent(False, other_table),)), h.now)
    assert h.feed.deadline() != 0.0  # not zebra's table
    h.feed.on_kernel_change(KernelChange(routes=(RouteEvent(False, zebra_write),)), h.now + 0.5)
    assert h.feed.deadline() == 0.0
    h.tick(0.5)
    assert gws(h.rib_paths(LAN)) == [R3] and h.feed.show()["reread_hints"] == 1
    sock = h.connect()  # the replay: the truth, applied as it comes
    h.send(sock, frame(route("192.0.2.0/24", [(R2, 2), (R3, 3)])))
    assert h.feed.deadline() == 0.0
    h.tick()
    assert gws(h.rib_paths(LAN)) == [R2, R3] and h.feed.replaying
    h.tick(1.1)
    assert gws(h.rib_paths(LAN)) == [R2, R3] and not h.feed.show()["resync_pending"]
    h.feed.on_kernel_change(KernelChange(routes=(RouteEvent(False, zebra_write),)), h.now)
    h.tick()  # not during a re-read: zebra's kernel writes are not ours to follow
    assert gws(h.rib_paths(LAN)) == [R2, R3] and h.feed.show()["reread_hints"] == 1
    sock.close()


# ---------------------------------------------------------------------------------------------
# semantically broken routes (issue 12 defect 5): real frames of zebra, mutated, and built ones

GOLDEN = os.path.join(os.path.dirname(__file__), os.pardir, os.pardir, "golden", "fpm")


def golden_multipath():
    """``(rtmsg, [(attribute type, payload), ...])`` of the first RTM_NEWROUTE with RTA_MULTIPATH
    in zebra's captured stream (an IPv4 /24 over two gateways)."""
    import json

    with open(os.path.join(GOLDEN, "zebra-8.4-multipath.jsonl")) as fh:
        lines = fh.read().splitlines()
    for line in lines:
        data = bytes.fromhex(json.loads(line)["hex"])[4:]
        start = 0
        while start < len(data):
            length, kind = struct.unpack_from("=IH", data, start)
            attrs, off = [], start + 16 + 12
            while kind == RTM_NEWROUTE and off < start + length:
                alen, atype = struct.unpack_from("=HH", data, off)
                attrs.append((atype & 0x3FFF, data[off + 4:off + alen]))
                off += (alen + 3) & ~3
            if any(t == 9 for t, _ in attrs):
                return data[start + 16:start + 28], attrs
            start += (length + 3) & ~3
    raise AssertionError("no multipath route in the capture")


def legs_of(mp):
    """RTA_MULTIPATH payload -> [(rtnexthop header, nested bytes)]."""
    legs, off = [], 0
    while off < len(mp):
        length = struct.unpack_from("=H", mp, off)[0]
        legs.append((mp[off:off + 8], mp[off + 8:off + length]))
        off += (length + 3) & ~3
    return legs


def rebuild(rtmsg, attrs):
    return frame(_msg(RTM_NEWROUTE, rtmsg + b"".join(_nla(t, p) for t, p in attrs)))


def mutated(what):
    """The golden multipath route with one mutation ``what``."""
    rtmsg, attrs = golden_multipath()
    attrs = list(attrs)
    at = {t: i for i, (t, _) in enumerate(attrs)}
    if what == "dst16":  # IPv4 route with a 16-byte RTA_DST
        attrs[at[1]] = (1, attrs[at[1]][1] + bytes(12))
    elif what == "plen200":
        rtmsg = rtmsg[:1] + bytes([200]) + rtmsg[2:]
    elif what == "hostbits":
        attrs[at[1]] = (1, attrs[at[1]][1][:3] + b"\x07")
    elif what == "family99":
        rtmsg = bytes([99]) + rtmsg[1:]
    elif what in ("gw3", "via1", "via99", "leg-past", "nested-past", "rtnh-short", "leg-tail"):
        legs = legs_of(attrs[at[9]][1])
        head, nested = legs[0]
        if what == "gw3":  # a 3-byte gateway inside the first leg
            nested = _nla(5, b"\x0a\x00\x0c")
        elif what == "via1":  # a 1-byte RTA_VIA
            nested = _nla(18, b"\x02")
        elif what == "via99":
            nested = _nla(18, struct.pack("=H", 99) + bytes(4))
        mp = b""
        for i, (h, n) in enumerate([(head, nested)] + legs[1:]):
            mp += struct.pack("=H", 8 + len(n)) + h[2:] + n
        if what == "leg-past":  # the last leg says it is longer than what is left of the attribute
            last = len(mp) - 16
            mp = mp[:last] + struct.pack("=H", 40) + mp[last + 2:]
        elif what == "nested-past":  # the first leg's RTA_GATEWAY runs past the leg
            mp = mp[:8] + struct.pack("=H", 12) + mp[10:]
        elif what == "rtnh-short":
            mp = struct.pack("=H", 4) + mp[2:]
        elif what == "leg-tail":
            mp += b"\0" * 4
        attrs[at[9]] = (9, mp)
    elif what == "gw16":  # one leg, an IPv4 route with a 16-byte RTA_GATEWAY
        attrs[at[9]] = (5, bytes(16))
    elif what == "prefsrc16":
        attrs.append((7, bytes(16)))
    elif what == "via-top1":
        attrs[at[9]] = (18, b"\x02")
    return rebuild(rtmsg, attrs)


def test_golden_multipath_route_is_taken_as_captured():
    s = FpmStream(254, (OSPF,))
    s.feed(mutated("none"))
    ((prefix, route),) = s.routes.items()
    assert prefix[2] == 24 and len(route.legs) == 2


@pytest.mark.parametrize("what, why", [
    ("dst16", "RTA_DST of 16 bytes in an AF_INET route \\(want 4\\)"),
    ("plen200", "rtm_dst_len 200 is more than 32"),
    ("hostbits", "RTA_DST 192.0.2.7/24 has bits set beyond its length"),
    ("family99", "rtm_family 99 is not AF_INET, AF_INET6 or AF_MPLS"),
    ("gw3", "RTA_MULTIPATH leg 0: RTA_GATEWAY of 3 bytes in an AF_INET route \\(want 4\\)"),
    ("via1", "RTA_MULTIPATH leg 0: RTA_VIA of 1 bytes, shorter than struct rtvia"),
    ("via99", "RTA_MULTIPATH leg 0: RTA_VIA family 99 is not AF_INET or AF_INET6"),
    ("leg-past", "RTA_MULTIPATH leg 1: rtnh_len 40 runs past the attribute \\(16 bytes left\\)"),
    ("nested-past", "RTA_MULTIPATH leg 0: attribute 5 of length 12 runs past its 8 bytes"),
    ("rtnh-short", "RTA_MULTIPATH leg 0: rtnh_len 4 is shorter than struct rtnexthop"),
    ("leg-tail", "RTA_MULTIPATH leg 2: 4 bytes left, shorter than struct rtnexthop"),
    ("gw16", "RTA_GATEWAY of 16 bytes in an AF_INET route"),
    ("prefsrc16", "RTA_PREFSRC of 16 bytes in an AF_INET route"),
    ("via-top1", "RTA_VIA of 1 bytes"),
])
def test_semantically_broken_route_is_a_malformed_frame_naming_the_field(what, why):
    """Issue 12 defect 5: zebra's real multipath route, mutated, is refused whole with an error
    naming the field (the feed's policy for a malformed frame: the connection closes, the routes
    stay); the state is unchanged."""
    s = FpmStream(254, (OSPF,))
    s.feed(frame(route("198.51.100.0/24", [(R3, 3)])))
    routes_added = s.counters["routes_added"]
    assert_skipped(s, mutated(what), "route message at byte 0: " + why)
    assert s.counters["routes_added"] == routes_added


@pytest.mark.parametrize("message, why", [
    (None, None),  # AF_INET with a 16-byte gateway: built below
    (_msg(RTM_NEWNEXTHOP, struct.pack("=BBBBI", 99, 0, 11, 0, 0) + _nla(1, struct.pack("=I", 5))), "nhm_family 99"),
    (_msg(RTM_NEWNEXTHOP, struct.pack("=BBBBI", 0, 0, 11, 0, 0) + _nla(1, struct.pack("=I", 5))
          + _nla(2, b"\1\0\0\0\0")), "NHA_GROUP of 5 bytes"),
    (_msg(RTM_NEWNEXTHOP, struct.pack("=BBBBI", 2, 0, 11, 0, 0) + _nla(1, struct.pack("=I", 5))
          + _nla(5, struct.pack("=I", 2)) + _nla(6, b"\x0a\0\x0c")), "attribute 6 at byte 40: payload of 3 bytes"),
], ids=["gateway16", "family99", "group5", "gateway3"])
def test_broken_nexthop_object_is_a_malformed_frame(message, why):
    if why is None:
        body = struct.pack("=BBBBI", AF_INET, 0, 11, 0, 0) + _nla(1, struct.pack("=I", 5)) + _nla(
            5, struct.pack("=I", 2)) + _nla(6, socket.inet_pton(socket.AF_INET6, "2001:db8::1"))
        message, why = _msg(RTM_NEWNEXTHOP, body), "NHA_GATEWAY of 16 bytes in a nexthop of family 2 \\(want 4\\)"
    s = FpmStream(254, (OSPF,))
    assert_skipped(s, frame(message), why)
    assert s.nexthops == {}


def test_zebra_nexthop_of_family_unspec_with_a_gateway_takes_the_gateways_family():
    """FRR 8.4's zebra sends some nexthop objects with nhm_family AF_UNSPEC and an NHA_GATEWAY
    (seen in its replay once it had learned kernel nexthop objects); the gateway's length says
    its family.  Refusing them closed the connection on every replay, for good."""
    s = FpmStream(254, (OSPF,))
    body = struct.pack("=BBBBI", 0, 0, 11, 0, 0) + _nla(1, struct.pack("=I", 57)) + _nla(
        5, struct.pack("=I", 2)) + _nla(6, socket.inet_aton(R2))
    s.feed(frame(_msg(RTM_NEWNEXTHOP, body), route("192.0.2.0/24", nh_id=57)))
    assert s.counters["skipped"] == 0 and s.nexthops[57].family == AF_INET
    assert gws(s.paths(LAN, IFNAMES)) == [R2]
    body6 = struct.pack("=BBBBI", 0, 0, 11, 0, 0) + _nla(1, struct.pack("=I", 58)) + _nla(
        5, struct.pack("=I", 2)) + _nla(6, socket.inet_pton(socket.AF_INET6, "fe80::1"))
    s.feed(frame(_msg(RTM_NEWNEXTHOP, body6)))
    assert s.nexthops[58].family == socket.AF_INET6
    body5 = struct.pack("=BBBBI", 0, 0, 11, 0, 0) + _nla(1, struct.pack("=I", 59)) + _nla(
        5, struct.pack("=I", 2)) + _nla(6, b"\x0a\0\x0c\x02\x01")
    assert_skipped(s, frame(_msg(RTM_NEWNEXTHOP, body5)), "payload of 5 bytes")


def test_mpls_and_ipv6_routes_still_decode():
    s = FpmStream(254, (OSPF,))
    mpls = _msg(RTM_NEWROUTE, struct.pack("=BBBBBBBBI", 28, 20, 0, 0, 254, OSPF, 0, 1, 0) + _nla(1, b"\0\1\x41\0"))
    s.feed(frame(mpls, route("2001:db8:1::/48", [("fe80::1", 2), ("fe80::2", 3)])))
    assert s.counters["ignored"] == 1 and list(s.routes) == [parse_prefix("2001:db8:1::/48")]


def test_refused_connections_are_logged_at_most_once_a_minute(harness, caplog):
    """Issue 12 defect 9 (FPM part): a program dialling in a loop is counted, not logged each time."""
    from kernelsync.feeds.fpm import REFUSED_LOG_INTERVAL

    h = harness(users=["no-such-user-here"])
    with caplog.at_level("WARNING", logger="kernelsync.fpm"):
        for i in range(5):
            sock = socket.create_connection(("127.0.0.1", h.cfg.port))
            h.pump(lambda: h.feed.show()["refused"] == i + 1)
            sock.close()
        assert len([r for r in caplog.records if "refused" in r.getMessage()]) == 1
        h.now += REFUSED_LOG_INTERVAL
        sock = socket.create_connection(("127.0.0.1", h.cfg.port))
        h.pump(lambda: h.feed.show()["refused"] == 6)
        sock.close()
    refused = [r.getMessage() for r in caplog.records if "refused" in r.getMessage()]
    assert len(refused) == 2 and refused[1].endswith("; 4 more refused since the last report")
    assert h.feed.conn is None


def test_each_applied_batch_is_marked_with_its_first_frame_for_the_latency(harness):
    """``input_at`` (the daemon's feed-to-kernel latency histogram): the arrival of the first
    change of what went to the RIB; a replace at once, a deletion when it settled."""
    h = harness(users=[])
    sock = h.connect()
    h.send(sock, frame(route("192.0.2.0/24", [(R2, 2), (R3, 3)]), route("198.51.100.0/24", [(R2, 2)])))
    first = h.now
    h.tick(1.1)  # the replay, applied when quiet
    assert h.feed.input_at == first
    h.feed.input_at = None  # the daemon took it after its engine run
    h.tick(1.0)
    assert h.feed.input_at is None  # nothing new
    h.send(sock, frame(route("192.0.2.0/24", [(R2, 2), (R3, 3)], delete=True), route("192.0.2.0/24", [(R3, 3)])))
    replaced = h.now
    h.send(sock, frame(route("198.51.100.0/24", [(R2, 2)], delete=True)))
    h.tick(0.05)
    assert gws(h.rib_paths(LAN)) == [R3] and h.feed.input_at == replaced  # the replace at once
    h.feed.input_at = None
    h.tick(0.3)  # the deletion, settled: part of the same batch
    assert h.rib_paths(parse_prefix("198.51.100.0/24")) is None and h.feed.input_at == replaced
    sock.close()
