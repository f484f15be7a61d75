"""Issue 14, item 4, on the real kernel: a full sync of 100,000 routes reads them in slices on
a dump socket of its own; a link taken down in the middle is repaired (the group shrinks, the
routes of the downed link fall back) before the dump ends, by the request socket while the
dump is open; afterwards the kernel equals the desired FIB and the observed view equals the
kernel.  Asserted on the order of events and counters, never on a time."""
import select

import pytest

from kernelsync.core.engine import Engine, KernelConfig
from kernelsync.core.model import Path, parse_prefix
from kernelsync.kernel.netlink import EventSocket, RtNetlink
from tests.support.fakes import via
from tests.support.netns import PROTO, TABLE

pytestmark = pytest.mark.netns

N = 100_000
CFG = KernelConfig(table=TABLE, protocol=PROTO, metric=20, nexthop_id_range=(1000, 99_999),
                   verify_delay=0, resync_interval=1e9)


A, B, C = via("10.0.0.2", "v0"), via("10.0.1.2", "v1"), via("10.0.2.2", "v2")
GROUPED = [parse_prefix("10.%d.%d.%d/32" % (100 + i // 65536, i // 256 % 256, i % 256)) for i in range(N // 2)]
PLAIN = [parse_prefix("10.%d.%d.%d/32" % (200 + i // 65536, i // 256 % 256, i % 256)) for i in range(N // 2)]


def _key(prefix):
    return (TABLE,) + prefix + (20,)


def _link_event(events, engine, now):
    """Wait for a link notification (the daemon's notification socket), as the loop does."""
    while True:
        ready, _, _ = select.select([events.sock], [], [], 5.0)
        assert ready, "no link notification within 5 s"
        if any(m.type in (16, 17) for m in events.read()):  # RTM_NEWLINK / RTM_DELLINK
            engine.on_link_event(now)
            return


def test_a_link_down_during_a_full_sync_is_repaired_before_the_dump_ends(ns):
    for n in range(3):
        ns.veth("v%d" % n, "p%d" % n)
        ns.ip("addr", "add", "10.0.%d.1/24" % n, "dev", "v%d" % n)
    with ns.entered():
        kernel = RtNetlink(PROTO)
        events = EventSocket()
    try:
        engine = Engine(CFG, kernel)
        engine.rib.add_source("static", 1)
        engine.rib.add_source("backup", 50)
        engine.start(0.0)
        group, on_a, on_c = (Path((A, B)),), (Path((A,)),), (Path((C,)),)
        for prefix in GROUPED:
            engine.rib.update("static", prefix, group)
        for prefix in PLAIN:
            engine.rib.update("static", prefix, on_a)
            engine.rib.update("backup", prefix, on_c)
        engine.rib.set_ready("static")
        engine.rib.set_ready("backup")
        engine.run(0.0)
        installed = kernel.dump_routes(TABLE, PROTO)
        assert len(installed) == N
        gid = installed[_key(GROUPED[0])]
        events.read()  # what the install caused

        syncs, slices = engine.counters["full_syncs"], engine.counters["sync_slices"]
        engine.request_full_sync()
        engine.run(1.0)
        engine.run(1.0)
        assert engine.syncing and engine.counters["sync_slices"] == slices + 2
        ns.ip("link", "set", "v0", "down")
        _link_event(events, engine, 1.1)
        engine.run(1.1)  # the repair (and one more slice)
        repaired_at = engine.counters["sync_slices"]
        assert engine.syncing and engine.counters["full_syncs"] == syncs  # the dump is still open...
        assert engine.counters["repairs"] >= 1
        # ...and the kernel is repaired already: read on the request socket, the dump still open
        nexthops = kernel.dump_nexthops()
        assert len(nexthops[gid].group) == 1
        now_routes = kernel.dump_routes(TABLE, PROTO)
        c_id = now_routes[_key(PLAIN[0])]
        assert nexthops[c_id].oif == engine.links.by_name["v2"].index
        assert all(now_routes[_key(p)] == c_id for p in PLAIN)
        assert all(now_routes[_key(p)] == gid for p in GROUPED)
        runs = 0
        while engine.syncing:
            engine.run(1.2)
            runs += 1
            assert runs < 10_000
        # the dump went on for slices after the repair, then ended
        assert engine.counters["sync_slices"] > repaired_at + 5
        assert engine.counters["full_syncs"] == syncs + 1 and engine.counters["sliced_syncs"] == 1
        final = kernel.dump_routes(TABLE, PROTO)
        assert final == engine.fib.routes == engine.observed_routes
        desired = engine.fib.desired_nexthops()
        got = kernel.dump_nexthops()
        assert {i: got.get(i) for i in desired} == desired
        assert kernel.stats.failures == 0 and not engine.failures
        print("sliced full sync of %d routes: %d slices, %d after the repair; dump interrupted: %d" % (
            N, engine.counters["sync_slices"] - slices, engine.counters["sync_slices"] - repaired_at,
            engine.counters["dumps_interrupted"]))
    finally:
        events.close()
        kernel.close()


def test_a_route_dump_in_slices_reads_what_one_dump_reads_while_the_request_socket_writes(ns):
    """RtNetlink.open_route_dump: IPv4 then IPv6, scopes, slices of a few messages; between two
    slices the request socket writes (a route ahead of the dump's position is seen, one behind
    it is not: the engine learns of those by its own writes) and reads; a dump left open is
    read to its end when the next one opens."""
    from kernelsync.core.model import AF_INET, AF_INET6, RT_SCOPE_LINK, KNexthop
    from kernelsync.core.ops import NexthopSet, RouteSet
    ns.veth("v0", "p0")
    ns.ip("addr", "add", "10.0.0.1/24", "dev", "v0")
    ns.ip("-6", "addr", "add", "2001:db8::1/64", "dev", "v0", "nodad")
    with ns.entered():
        kernel = RtNetlink(PROTO)
    try:
        v0 = kernel.dump_links()
        v0 = next(l.index for l in v0.values() if l.name == "v0")
        ops = [NexthopSet(KNexthop(1001, AF_INET, PROTO, oif=v0), False),
               NexthopSet(KNexthop(1002, AF_INET6, PROTO, oif=v0), False)]
        ops += [RouteSet(_key(parse_prefix("10.1.%d.0/24" % i)), 1001, False, RT_SCOPE_LINK if i % 2 else 0)
                for i in range(1, 200)]
        ops += [RouteSet(_key(parse_prefix("2001:db8:%x::/48" % i)), 1002, False, 0) for i in range(1, 50)]
        assert kernel.apply(ops) == []
        scopes = {}
        want = kernel.dump_routes(TABLE, PROTO, scopes)
        assert len(want) == 248 and len(scopes) == 100
        dump = kernel.open_route_dump(TABLE, PROTO)
        got, got_scopes, slices = {}, {}, 0
        behind, ahead = _key(parse_prefix("10.1.0.0/24")), _key(parse_prefix("2001:db8:ff::/48"))
        while True:
            routes, sc, done = dump.read(16)
            got.update(routes)
            got_scopes.update(sc)
            slices += 1
            if slices == 1:  # the request socket between two slices: a read and two writes
                assert len(kernel.dump_nexthops()) >= 2
                assert kernel.apply([RouteSet(behind, 1001, False, 0), RouteSet(ahead, 1002, False, 0)]) == []
            if done:
                break
        assert slices >= 2
        assert got == {**want, ahead: 1002} and got_scopes == scopes
        assert behind not in got
        # a dump left open is read to its end when the next opens: the socket is free again
        first = kernel.open_route_dump(TABLE, PROTO)
        first.read(4)
        second = kernel.open_route_dump(TABLE, PROTO)
        assert first.done
        again = {}
        while True:
            routes, _sc, done = second.read(1000)
            again.update(routes)
            if done:
                break
        assert again == {**want, ahead: 1002, behind: 1001}
    finally:
        kernel.close()
