"""bench-ospf's pure parts (kernelsync.tools.bench_ospf): the tracker that rebuilds r1's kernel
views from notifications (and the kernel's silent deletions), the matching of the daemon's
writes with kernelsync's, the summary, the flap schedule."""
import socket

import pytest

from kernelsync.core.model import KNexthop, KRoute, Leg, Link
from kernelsync.kernel.codec import (RTM_DELNEXTHOP, RTM_DELROUTE, RTM_NEWLINK, RTM_NEWNEXTHOP, RTM_NEWROUTE,
                                     encode_nexthop, encode_route_set)
from kernelsync.tools.bench_ospf import (Event, Tracker, Write, decode, measure, schedule, summarize)

R2, R3 = "10.0.12.2", "10.0.13.2"
E12, E13 = 2, 3
LAN, STUB = "192.0.2.0/24", "198.51.100.0/24"
DAEMON, OURS = (100, 12), (200, 200)
ip = socket.inet_aton


def route(prefix, *legs, table=100, proto=12, nh_id=0):
    net, plen = prefix.split("/")
    return KRoute(socket.AF_INET, ip(net), int(plen), table, proto, 1, 20,
                  tuple(Leg(socket.AF_INET if gw else None, ip(gw) if gw else None, oif) for gw, oif in legs), nh_id)


def ours(prefix, nh_id):
    return route(prefix, table=200, proto=200, nh_id=nh_id)


def nh(nh_id, gw, oif):
    return KNexthop(id=nh_id, family=socket.AF_INET, protocol=200, oif=oif, gateway=ip(gw))


def group(nh_id, *members):
    return KNexthop(id=nh_id, family=0, protocol=200, group=tuple((m, 1) for m in members))


def tracker():
    return Tracker({"daemon": DAEMON, "ours": OURS})


# ---------------------------------------------------------------------------------------------
# Tracker

def test_tracker_follows_routes_on_groups_and_group_replaces():
    tr = tracker()
    tr.feed(1.0, RTM_NEWNEXTHOP, nh(1, R2, E12))
    tr.feed(1.0, RTM_NEWNEXTHOP, nh(2, R3, E13))
    tr.feed(1.0, RTM_NEWNEXTHOP, group(3, 1, 2))
    tr.feed(1.1, RTM_NEWROUTE, ours(LAN, 3))
    tr.feed(1.2, RTM_NEWROUTE, route(LAN, (R2, E12), (R3, E13)))
    tr.feed(1.3, RTM_NEWROUTE, route("10.0.0.0/8", (R2, E12), table=254))  # neither view
    assert tr.state("ours", LAN) == tr.state("daemon", LAN) == {R2, R3}
    assert [(w.view, w.cause) for w in tr.writes] == [("ours", "route"), ("daemon", "route")]
    # a group replace is a write of every route on it; a replace that changes nothing is none
    tr.feed(2.0, RTM_NEWNEXTHOP, group(3, 2))
    tr.feed(2.1, RTM_NEWNEXTHOP, nh(1, R2, E12))
    assert tr.writes[-1] == Write(tr.seq - 1, 2.0, "ours", LAN, frozenset([R3]), "nexthop")
    # deleting a member shrinks the group; deleting the object a route is on deletes the route
    tr.feed(3.0, RTM_NEWNEXTHOP, nh(4, R2, E12))
    tr.feed(3.0, RTM_NEWROUTE, ours(STUB, 4))
    tr.feed(3.1, RTM_DELNEXTHOP, KNexthop(id=4, family=0, protocol=0))
    assert tr.state("ours", STUB) is None and tr.writes[-1].nexthops is None
    tr.feed(3.2, RTM_DELROUTE, route(LAN, (R2, E12), (R3, E13)))
    assert tr.state("daemon", LAN) is None and tr.writes[-1].cause == "route"


def test_tracker_applies_the_kernels_silent_deletions_on_link_down():
    tr = tracker()
    for obj in (nh(1, R2, E12), nh(2, R3, E13), group(3, 1, 2), nh(4, R2, E12), nh(5, R2, E12), group(6, 5)):
        tr.feed(1.0, RTM_NEWNEXTHOP, obj)
    tr.feed(1.0, RTM_NEWROUTE, ours(LAN, 3))
    tr.feed(1.0, RTM_NEWROUTE, ours(STUB, 4))
    tr.feed(1.0, RTM_NEWROUTE, ours("10.255.0.2/32", 6))
    tr.feed(1.0, RTM_NEWROUTE, route(LAN, (R2, E12), (R3, E13)))
    tr.feed(1.0, RTM_NEWROUTE, route(STUB, (R2, E12)))
    n = len(tr.writes)
    # carrier loss: nexthop objects go, old-style routes stay (linkdown)
    tr.feed(2.0, RTM_NEWLINK, Link(E12, "e12", up=True, carrier=False))
    assert tr.state("ours", LAN) == {R3}
    assert tr.state("ours", STUB) is None and tr.state("ours", "10.255.0.2/32") is None  # emptied group too
    assert 6 not in tr.nexthops and tr.nexthops[3].group == ((2, 1),)
    assert tr.state("daemon", STUB) == {R2} and tr.state("daemon", LAN) == {R2, R3}
    assert {(w.prefix, w.cause) for w in tr.writes[n:]} == {(LAN, "kernel"), (STUB, "kernel"),
                                                            ("10.255.0.2/32", "kernel")}
    # a route written now onto the carrier-less link is stranded
    tr.feed(2.5, RTM_NEWROUTE, route("10.0.12.1/32", (None, E12)))
    assert tr.writes[-1].stranded and tr.writes[-1].nexthops == {"dev %d" % E12}
    # admin down: old-style routes with every leg on the link go; a multipath one keeps its dead leg
    tr.feed(3.0, RTM_NEWLINK, Link(E12, "e12", up=False, carrier=False))
    assert tr.state("daemon", STUB) is None and tr.state("daemon", LAN) == {R2, R3}
    assert tr.writes[-1].cause == "kernel"


def test_decode_feeds_the_codecs_own_messages():
    data = (encode_nexthop(1, nh(7, R3, E13), 0) + encode_route_set(2, (200, socket.AF_INET, ip("192.0.2.0"), 24, 20),
                                                                     7, 200, 0))
    tr = tracker()
    for kind, obj in decode(data, len(data)):
        tr.feed(1.0, kind, obj)
    assert tr.state("ours", LAN) == {R3}
    assert decode(data[:10], 10) == []  # a truncated datagram: nothing


# ---------------------------------------------------------------------------------------------
# measure

def w(seq, t, view, prefix, hops, cause="route", stranded=False):
    return Write(seq, t, view, prefix, None if hops is None else frozenset(hops), cause, stranded)


def ev(index, seq, t, kind="remote", direction="down"):
    return Event(index, kind, direction, "r2", seq, t)


def test_measure_matches_the_first_write_of_the_same_set_after_the_daemons():
    writes = [
        w(1, 0.0, "daemon", LAN, [R2, R3]), w(2, 0.001, "ours", LAN, [R2, R3]),  # before the events: ignored
        w(3, 0.0, "daemon", STUB, [R2]), w(4, 0.001, "ours", STUB, [R2]),
        w(11, 10.000, "daemon", LAN, [R3]),
        w(12, 10.000, "daemon", STUB, None),
        w(13, 10.050, "ours", LAN, [R2]),             # not the daemon's set
        w(14, 10.201, "ours", LAN, [R3], "nexthop"),  # the group it is on: converged
        w(15, 10.202, "ours", STUB, None),
        w(16, 10.300, "ours", LAN, [R3]),             # later writes change nothing
        w(21, 20.0, "daemon", LAN, [R3]),             # a rewrite of the same set: no daemon write
        w(22, 20.5, "daemon", LAN, [R2, R3]), w(23, 20.5004, "ours", LAN, [R2, R3]),
    ]
    events = [ev(0, 10, 9.0), ev(1, 20, 19.0, direction="up")]
    ms = measure(writes, events, "daemon", "ours")
    assert [(m.event, m.prefix, m.nexthops, m.status, m.added_ms, m.by) for m in ms] == [
        (0, LAN, [R3], "matched", 201.0, "nexthop"),
        (0, STUB, None, "matched", 202.0, "route"),
        (1, LAN, [R2, R3], "matched", 0.4, "route"),
    ]
    assert ms[0].write_ms == 201.0 and ms[1].deletion and not ms[0].deletion
    summary = summarize(ms, events)
    assert summary["remote/down"]["changes"] == {"count": 1, "median_ms": 201.0, "max_ms": 201.0}
    assert summary["remote/down"]["deletions"] == {"count": 1, "median_ms": 202.0, "max_ms": 202.0}
    assert summary["remote/up"]["changes"]["count"] == 1 and summary["remote/up"]["events"] == 1
    assert summary["remote/up"]["unmatched"] == summary["remote/up"]["superseded"] == 0


def test_measure_already_superseded_unmatched_and_stranded():
    writes = [
        w(1, 1.0, "daemon", LAN, [R2, R3]), w(2, 1.0, "ours", LAN, [R2, R3]),
        # the link goes down: the kernel shrinks both groups (not the daemon's write), then the
        # daemon writes the set its table already has
        w(11, 5.0, "daemon", LAN, [R3], "kernel"), w(12, 5.0, "ours", LAN, [R3], "kernel"),
        w(13, 9.0, "daemon", LAN, [R3]),
        w(14, 9.2, "ours", LAN, [R3]),  # kernelsync's own write follows 200 ms later
        # superseded: [R2] then [R2, R3] before kernelsync had [R2]
        w(21, 20.0, "daemon", STUB, [R2]), w(22, 20.1, "daemon", STUB, [R2, R3]),
        w(23, 20.2, "ours", STUB, [R2, R3]),
        # never matched; and a stranded route (only on a link without carrier), matched only in a
        # later event, once the link is back
        w(31, 30.0, "daemon", "10.255.0.2/32", [R2]),
        w(32, 30.0, "daemon", "10.0.12.1/32", ["dev 2"], stranded=True),
        w(41, 41.0, "ours", "10.0.12.1/32", ["dev 2"]),
    ]
    events = [ev(0, 10, 4.0, "local"), ev(1, 20, 19.0), ev(2, 30, 29.0, "carrier"), ev(3, 40, 40.0, "carrier", "up")]
    ms = {m.prefix: m for m in measure(writes, events, "daemon", "ours")}
    assert (ms[LAN].status, ms[LAN].added_ms, ms[LAN].write_ms) == ("already", 0.0, 200.0)
    stub = [m for m in measure(writes, events, "daemon", "ours") if m.prefix == STUB]
    assert [(m.nexthops, m.status, m.added_ms) for m in stub] == [([R2], "superseded", None),
                                                                  ([R2, R3], "matched", 100.0)]
    assert ms["10.255.0.2/32"].status == "unmatched" and ms["10.255.0.2/32"].added_ms is None
    assert ms["10.0.12.1/32"].status == "stranded" and ms["10.0.12.1/32"].added_ms is None
    summary = summarize(list(ms.values()) + stub[:1], events)
    assert summary["local/down"]["already"] == 1 and summary["local/down"]["changes"]["median_ms"] == 0.0
    assert summary["local/down"]["kernelsync_write"]["median_ms"] == 200.0
    assert (summary["carrier/down"]["unmatched"], summary["carrier/down"]["stranded"]) == (1, 1)
    assert summary["remote/down"]["superseded"] == 1
    assert summary["carrier/up"]["changes"]["count"] == 0


def test_measure_the_kernels_silent_deletion_resets_the_daemons_state():
    """BIRD's single-leg route on an admin-down link is deleted by the kernel; BIRD's write of
    the same route when the link is back is a daemon write again."""
    writes = [
        w(1, 1.0, "daemon", STUB, [R2]), w(2, 1.0, "ours", STUB, [R2]),
        w(11, 5.0, "daemon", STUB, None, "kernel"), w(12, 5.0, "ours", STUB, None, "kernel"),
        w(21, 15.0, "daemon", STUB, [R2]), w(22, 15.002, "ours", STUB, [R2]),
    ]
    events = [ev(0, 10, 4.0, "local"), ev(1, 20, 14.0, "local", "up")]
    (m,) = measure(writes, events, "daemon", "ours")
    assert (m.event, m.status, m.added_ms) == (1, "matched", 2.0)


def test_measure_from_zebras_fpm_frame_when_its_kernel_write_is_stale():
    """zebra selects both paths (its FPM stream says so) but its kernel group keeps one member:
    kernelsync is measured from the FPM frame; an FPM change its kernel write gives is not
    measured twice."""
    writes = [
        w(1, 1.0, "daemon", LAN, [R2, R3]), w(2, 1.0, "ours", LAN, [R2, R3]),
        w(11, 5.0, "daemon", LAN, [R2], "kernel"), w(12, 5.0, "ours", LAN, [R2], "kernel"),
        w(13, 5.1, "daemon", LAN, [R2]), w(14, 5.3, "ours", LAN, [R2]),
        w(21, 15.0, "daemon", LAN, [R2]),  # zebra's route write: its stale group
        w(22, 15.004, "ours", LAN, [R2, R3]),
    ]
    fpm = [w(0, 1.0, "fpm", LAN, [R2, R3]), w(0, 5.1, "fpm", LAN, [R2]), w(0, 15.001, "fpm", LAN, [R2, R3])]
    events = [ev(0, 10, 4.0, "local"), ev(1, 20, 14.0, "local", "up")]
    ms = measure(writes, events, "daemon", "ours", fpm)
    assert [(m.event, m.nexthops, m.ref, m.status, m.added_ms) for m in ms] == [
        (0, [R2], "kernel", "already", 0.0),
        (1, [R2, R3], "fpm", "matched", 3.0),
    ]
    assert summarize(ms, events)["local/up"]["fpm_reference"] == 1


# ---------------------------------------------------------------------------------------------

def test_schedule_is_seeded_and_covers_every_kind_each_round():
    a = schedule(("local", "remote"), 5, seed=3)
    assert a == schedule(("local", "remote"), 5, seed=3)
    assert len(a) == 10 and all(sorted(k for k, _ in a[i:i + 2]) == ["local", "remote"] for i in range(0, 10, 2))
    assert {side for _, side in a} <= {"r2", "r3"}
    assert a != schedule(("local", "remote"), 5, seed=4)


@pytest.mark.parametrize("argv, message", [
    (["--kinds", "local,nope"], "--kinds"), (["--flaps", "0"], "--flaps"), (["--settle", "-1"], "--settle")])
def test_bad_options_are_refused(capsys, argv, message):
    from kernelsync.cli import main
    assert main(["bench-ospf"] + argv) == 2
    assert message in capsys.readouterr().err


def test_measure_a_kernel_write_zebra_never_streamed_is_stale_not_unmatched():
    """zebra puts the LAN on a kernel group it left with one member (FRR 8.4): the kernel gives
    [R2] though zebra selected and streamed both; kernelsync follows the stream.  The kernel write
    is "stale" (not waited for), the stream's change is measured."""
    writes = [
        w(1, 1.0, "daemon", LAN, [R3]), w(2, 1.0, "ours", LAN, [R3]),
        w(11, 5.0, "daemon", LAN, [R2]),
        w(12, 5.003, "ours", LAN, [R2, R3]),
    ]
    fpm = [w(0, 1.0, "fpm", LAN, [R3]), w(0, 5.001, "fpm", LAN, [R2, R3])]
    events = [ev(0, 10, 4.0, "remote", "up")]
    ms = measure(writes, events, "daemon", "ours", fpm)
    assert [(m.nexthops, m.ref, m.status, m.added_ms) for m in ms] == [
        ([R2], "kernel", "stale", None), ([R2, R3], "fpm", "matched", 2.0)]
    # without the stream to tell, the kernel write is just unmatched
    assert [m.status for m in measure(writes, events, "daemon", "ours")] == ["unmatched"]
    row = summarize(ms, events)["remote/up"]
    assert (row["stale"], row["unmatched"], row["changes"]["count"]) == (1, 0, 1)


def test_measure_a_write_after_the_event_answers_nothing_of_it():
    """kernelsync reaching the daemon's set only during the next event (zebra streamed it then)
    is no answer to the earlier event: unmatched (stale when zebra never streamed it in its
    event)."""
    writes = [
        w(1, 1.0, "daemon", LAN, [R2, R3]), w(2, 1.0, "ours", LAN, [R2, R3]),
        w(11, 5.0, "daemon", LAN, [R2]),
        w(21, 6.1, "ours", LAN, [R2]),
    ]
    events = [ev(0, 10, 4.0, "remote", "up"), ev(1, 20, 6.0, "remote", "down")]
    (m,) = measure(writes, events, "daemon", "ours")
    assert (m.status, m.t1, m.added_ms) == ("unmatched", None, None)
    fpm = [w(0, 1.0, "fpm", LAN, [R2, R3]), w(0, 6.05, "fpm", LAN, [R2])]
    assert [(x.ref, x.status) for x in measure(writes, events, "daemon", "ours", fpm)] == [
        ("kernel", "stale"), ("fpm", "matched")]
    # the same write within the event answers it
    events = [ev(0, 10, 4.0, "remote", "up"), ev(1, 20, 7.0, "remote", "down")]
    (m,) = measure(writes, events, "daemon", "ours")
    assert (m.status, m.added_ms) == ("matched", 1100.0)
