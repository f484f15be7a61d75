"""Prefix-independent convergence on the real kernel: a BGP peer's next hop leaves the ECMP
set of 10,000 prefixes (the peer went down, or its next hop stopped resolving) and the group
they share is shrunk in place: one nexthop write, no route write; it comes back to all of them
in one batch: grown in place; it leaves only some of them: those move, the group stays the
others'.  After each step what the kernel forwards, prefix by prefix, equals a fresh
computation from the RIB (the group ids may differ, the nexthops a route reaches may not).

And through the real BGP feed (:class:`kernelsync.feeds.bgp.BgpRib`, parsed ExaBGP messages):
a session down shrinks the group in place; the session back, its paths arriving 500 prefixes
per engine run, then its end-of-RIB: the growth of each prefix's ECMP set is deferred until the
whole group has it, and the group grows in place: no route written."""
import pytest

from kernelsync.core.engine import Engine, KernelConfig
from kernelsync.core.model import parse_prefix, Path
from kernelsync.kernel.fake import FakeKernel
from kernelsync.kernel.netlink import RtNetlink
from kernelsync.feeds.bgp import BgpRib, BgpSettings
from kernelsync.feeds.exabgp import Parser
from kernelsync.feeds.resolve import Resolver
from tests.support.fakes import via
from tests.support.netns import PROTO, TABLE, need_root
from tests.unit.feeds.bgp_lines import announce, msg

pytestmark = pytest.mark.netns

N = 10_000
CFG = KernelConfig(table=TABLE, protocol=PROTO, metric=20, nexthop_id_range=(1000, 99_999),
                   verify_delay=0, resync_interval=1e9)


PEER_A, PEER_B = via("10.0.0.2", "v0"), via("10.0.1.2", "v1")
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


A_SESSION = dict(peer="10.0.0.2", local="10.0.0.1")
B_SESSION = dict(peer="10.0.1.2", local="10.0.1.1")
NLRIS = ["10.%d.%d.0/24" % (100 + i // 256, i % 256) for i in range(N)]


class _Bgp:
    """The BGP feed's core (:class:`BgpRib`) on ``engine``'s RIB, fed parsed ExaBGP lines."""

    def __init__(self, engine, kernel):
        resolver = Resolver(engine.links)
        resolver.set_addresses(kernel.dump_addresses())
        self.bgp = BgpRib(engine.rib, resolver, BgpSettings(families=("ipv4 unicast",)), now=0.0)
        self.parser = Parser()

    def lines(self, now, *lines):
        for line in lines:
            event = self.parser.parse(line)
            if event is not None:
                self.bgp.handle(event, now)
        self.bgp.tick(now)
        self.bgp.commit()


def _eor(**session):
    return msg("update", {"direction": "receive", "message": {"eor": {"afi": "ipv4", "safi": "unicast"}}}, **session)


def test_a_bgp_peer_back_prefix_by_prefix_grows_the_group_in_place_on_the_real_kernel(ns):
    _two_links(ns)
    with ns.entered():
        kernel = RtNetlink(PROTO)
    try:
        engine = Engine(CFG, kernel)
        engine.start(0.0)
        feed = _Bgp(engine, kernel)
        feed.lines(0.0, *(line for session in (A_SESSION, B_SESSION) for line in (
            msg("state", {"state": "up"}, **session), announce(NLRIS, session["peer"], **session), _eor(**session))))
        feed.lines(3.0)  # the start-up wait is over: ready
        engine.run(3.0)
        routes = kernel.dump_routes(TABLE, PROTO)
        assert len(routes) == N and len(set(routes.values())) == 1
        gid = next(iter(routes.values()))
        assert len(kernel.dump_nexthops()[gid].group) == 2

        before = dict(kernel.stats.writes)
        feed.lines(4.0, msg("state", {"state": "down", "reason": "hold timer"}, **A_SESSION))
        engine.run(4.0)
        assert _delta(kernel, before) == {"nexthop-set": 1}  # the group, in place
        assert _forwarding(kernel) == _fresh(engine)
        shrunk = _forwarding(kernel)

        before = dict(kernel.stats.writes)
        now = 5.0
        feed.lines(now, msg("state", {"state": "up"}, **A_SESSION))
        for start in range(0, N, 500):
            now += 0.01
            feed.lines(now, announce(NLRIS[start:start + 500], A_SESSION["peer"], **A_SESSION))
            engine.run(now)
            if start + 500 < N:  # deferred: the kernel forwards on B as before, nothing written
                assert _delta(kernel, before) == {}
                assert _forwarding(kernel) == shrunk
        assert _delta(kernel, before) == {"nexthop-set": 1}  # the last one completed the group: in place
        assert set(kernel.dump_routes(TABLE, PROTO).values()) == {gid}
        assert len(kernel.dump_nexthops()[gid].group) == 2
        assert _forwarding(kernel) == _fresh(engine)
        feed.lines(now + 0.01, _eor(**A_SESSION))
        assert not engine.rib.growth_holds
        assert not engine.run(now + 0.01).ops
        engine.request_full_sync()
        assert not engine.run(now + 0.02).ops

        # down again; back with 100 prefixes fewer: at its end-of-RIB the others move, the
        # group stays the 100's (on B alone); forwarding as a fresh computation
        feed.lines(20.0, msg("state", {"state": "down", "reason": "hold timer"}, **A_SESSION))
        engine.run(20.0)
        before = dict(kernel.stats.writes)
        feed.lines(21.0, msg("state", {"state": "up"}, **A_SESSION))
        for start in range(0, N - 100, 500):
            feed.lines(21.5, announce(NLRIS[start:min(start + 500, N - 100)], A_SESSION["peer"], **A_SESSION))
            engine.run(21.5)
        assert _delta(kernel, before) == {}
        feed.lines(22.0, _eor(**A_SESSION))
        engine.run(22.0)
        assert _delta(kernel, before) == {"nexthop-set": 1, "route-set": N - 100}  # the new {A, B} group
        assert _forwarding(kernel) == _fresh(engine)
    finally:
        kernel.close()


def test_the_bench_pic_case_runs_to_the_end_and_grows_the_groups_in_place():
    """``kernelsync bench --pic`` (tools/bench_pic.py) at a small size: its checks pass; the
    peer's return writes one object per group and no route, its baseline (no deferral) routes."""
    import json
    import subprocess
    import sys
    need_root()  # the bench makes its own namespaces
    proc = subprocess.run([sys.executable, "-m", "kernelsync", "bench", "-n", "200", "--repeat", "1",
                           "--flap-sizes", "", "--groups", "2", "--pic", "2000"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    (line,) = [l for l in proc.stdout.splitlines() if l.startswith("BENCH_JSON ")]
    report = json.loads(line[len("BENCH_JSON "):])
    pic = report["pic"]
    assert pic["ok"] and pic["prefixes"] == 2000 and report["namespaces_left"] == []
    assert pic["pic"]["down_writes"] == {"nexthop-set": 2} and pic["pic"]["up_writes"] == {"nexthop-set": 2}
    assert pic["pic"]["ecmp_back_before_eor"] and pic["pic"]["up_runs"] == 4
    assert pic["baseline"]["up_writes"]["route-set"] == 1000  # the first line of each group moved
