"""Issue 14, item 4, on the real kernel: a full sync of 100,000 routes reads them in slices on
a dump socket of its own; a link taken down in the middle is repaired (the group shrinks, the
routes of the downed link fall back) before the dump ends, by the request socket while the
dump is open; afterwards the kernel equals the desired FIB and the observed view equals the
kernel.  Asserted on the order of events and counters, never on a time."""
import select

import pytest

from kernelsync.core.engine import Engine, KernelConfig
from kernelsync.core.model import NexthopSpec, Path, parse_address, parse_prefix
from kernelsync.kernel.netlink import EventSocket, RtNetlink
from tests.support.netns import PROTO, TABLE

pytestmark = pytest.mark.netns

N = 100_000
CFG = KernelConfig(table=TABLE, protocol=PROTO, metric=20, nexthop_id_range=(1000, 99_999),
                   verify_delay=0, resync_interval=1e9)


def _via(addr, dev):
    family, packed = parse_address(addr)
    return NexthopSpec(gateway=packed, gw_family=family, dev=dev, weight=1)


A, B, C = _via("10.0.0.2", "v0"), _via("10.0.1.2", "v1"), _via("10.0.2.2", "v2")
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
