"""Prefix-independent convergence on the real kernel: a BGP peer's next hop leaves the ECMP
set of 10,000 prefixes (the peer went down, or its next hop stopped resolving) and the group
they share is shrunk in place: one nexthop write, no route write; it comes back to all of them
in one batch: grown in place; it leaves only some of them: those move, the group stays the
others'.  After each step what the kernel forwards, prefix by prefix, equals a fresh
computation from the RIB (the group ids may differ, the nexthops a route reaches may not)."""
import pytest

from kernelsync.core.engine import Engine, KernelConfig
from kernelsync.core.model import parse_address, parse_prefix, NexthopSpec, Path
from kernelsync.kernel.fake import FakeKernel
from kernelsync.kernel.netlink import RtNetlink
from tests.support.netns import PROTO, TABLE

pytestmark = pytest.mark.netns

N = 10_000
CFG = KernelConfig(table=TABLE, protocol=PROTO, metric=20, nexthop_id_range=(1000, 99_999),
                   verify_delay=0, resync_interval=1e9)


def _via(addr, dev):
    family, packed = parse_address(addr)
    return NexthopSpec(gateway=packed, gw_family=family, dev=dev, weight=1)


PEER_A, PEER_B = _via("10.0.0.2", "v0"), _via("10.0.1.2", "v1")
PREFIXES = [parse_prefix("10.%d.%d.0/24" % (100 + i // 256, i % 256)) for i in range(N)]


def _announce(engine, *nexthops):
    paths = (Path(tuple(nexthops)),)
    for prefix in PREFIXES:
        engine.rib.update("ebgp", prefix, paths)


def _forwarding(kernel):
    """route key -> frozenset of (gateway, ifindex, weight) its nexthop (or group) reaches."""
    nexthops = kernel.dump_nexthops()
    out = {}
    for key, nh_id in kernel.dump_routes(TABLE, PROTO).items():
        obj = nexthops[nh_id]
        legs = obj.group if obj.is_group else ((nh_id, 1),)
        out[key] = frozenset((nexthops[m].gateway, nexthops[m].oif, w if len(legs) > 1 else 1) for m, w in legs)
    return out


def _fresh(engine):
    """What a fresh engine computes from ``engine``'s RIB and the kernel's links (in memory)."""
    fake = FakeKernel(PROTO)
    fake.links = dict(engine.links.by_index)
    fresh = Engine(CFG, fake)
    fresh.rib.add_source("ebgp", 20)
    fresh.start(0.0)
    for prefix, entry in engine.rib.entries.items():
        for source, paths in entry:
            fresh.rib.update(source, prefix, paths)
    fresh.rib.set_ready("ebgp")
    fresh.run(0.0)
    return _forwarding(fake)


def _two_links(ns):
    """v0 (peer A's next hop, 10.0.0.2) and v1 (peer B's, 10.0.1.2)."""
    for n in range(2):
        ns.veth("v%d" % n, "p%d" % n)
        ns.ip("addr", "add", "10.0.%d.1/24" % n, "dev", "v%d" % n)


def _started(kernel, now, *peers):
    """An engine on ``kernel`` whose BGP source has every prefix ECMP over ``peers``, run."""
    engine = Engine(CFG, kernel)
    engine.rib.add_source("ebgp", 20)
    engine.start(now)
    _announce(engine, *peers)
    engine.rib.set_ready("ebgp")
    engine.run(now)
    return engine


def _delta(kernel, before):
    return {k: v - before[k] for k, v in kernel.stats.writes.items() if v != before[k]}


def test_peer_down_shrinks_the_shared_group_in_place_on_the_real_kernel(ns):
    _two_links(ns)
    with ns.entered():
        kernel = RtNetlink(PROTO)
    try:
        engine = _started(kernel, 0.0, PEER_A, PEER_B)
        routes = kernel.dump_routes(TABLE, PROTO)
        assert len(routes) == N and len(set(routes.values())) == 1
        gid = next(iter(routes.values()))
        assert _forwarding(kernel) == _fresh(engine)

        before = dict(kernel.stats.writes)
        _announce(engine, PEER_B)  # peer A down: B is left
        engine.run(1.0)
        assert _delta(kernel, before) == {"nexthop-set": 1}  # the group, in place; no route
        routes = kernel.dump_routes(TABLE, PROTO)
        assert set(routes.values()) == {gid}
        assert len(kernel.dump_nexthops()[gid].group) == 1
        assert _forwarding(kernel) == _fresh(engine)
        engine.request_full_sync()
        assert not engine.run(2.0).ops  # a full read finds nothing to fix

        before = dict(kernel.stats.writes)
        _announce(engine, PEER_A, PEER_B)  # A is back, every path in one batch: grown in place
        engine.run(3.0)
        assert _delta(kernel, before) == {"nexthop-set": 1}
        assert set(kernel.dump_routes(TABLE, PROTO).values()) == {gid}
        assert _forwarding(kernel) == _fresh(engine)

        before = dict(kernel.stats.writes)
        _announce(engine, PEER_A)  # B gone from all but 100 prefixes: the others move, the group stays theirs
        for prefix in PREFIXES[:100]:
            engine.rib.update("ebgp", prefix, (Path((PEER_A, PEER_B)),))
        engine.run(4.0)
        assert _delta(kernel, before) == {"route-set": N - 100}  # onto the nexthop of A; the group stays
        assert list(kernel.dump_routes(TABLE, PROTO).values()).count(gid) == 100
        assert _forwarding(kernel) == _fresh(engine)
        engine.run(100.0)  # hold times over: unused objects go
        assert _forwarding(kernel) == _fresh(engine)
    finally:
        kernel.close()


def test_a_restart_after_a_peer_down_writes_no_route(ns):
    """The shrunk group (one member: B) is adopted by the routes on it: no route write."""
    _two_links(ns)
    with ns.entered():
        kernel, kernel2 = RtNetlink(PROTO), RtNetlink(PROTO)
    try:
        engine = _started(kernel, 0.0, PEER_A, PEER_B)
        _announce(engine, PEER_B)
        engine.run(1.0)
        gid = next(iter(kernel.dump_routes(TABLE, PROTO).values()))
        restarted = _started(kernel2, 10.0, PEER_B)
        writes = {k: v for k, v in kernel2.stats.writes.items() if v}
        assert writes == {"nexthop-del": 1}  # the nexthop of A, unused (it was only held)
        assert set(kernel2.dump_routes(TABLE, PROTO).values()) == {gid}
        assert _forwarding(kernel2) == _fresh(restarted)
    finally:
        kernel.close()
        kernel2.close()
