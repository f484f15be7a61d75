"""The nexthop manager (kernelsync.core.nhm): shared objects by content, ids, hold time,
adoption on restart; through an engine on the in-memory kernel."""
import attrs
import pytest

from kernelsync.core.links import LinkTable
from kernelsync.core.model import AF_INET, AF_INET6, GRP_RES, KNexthop, Path, ResilientSpec, parse_prefix
from kernelsync.core.nhm import NexthopManager
from kernelsync.kernel.fake import FakeKernel
from tests.support.fakes import PROTO, RANGE, dev, flap, kroute, make, ready_run, route, via


def test_same_set_shares_one_group_and_single_path_uses_nexthop():
    engine, kernel = make()
    route(engine, "203.0.113.1/32", dev("a"), dev("b"))
    route(engine, "203.0.113.2/32", dev("b"), dev("a"))  # same set, other order
    route(engine, "203.0.113.3/32", dev("a"))
    ready_run(engine)
    g1, g2, single = (kroute(kernel, p) for p in ("203.0.113.1/32", "203.0.113.2/32", "203.0.113.3/32"))
    assert g1 == g2 and kernel.nexthops[g1].is_group
    assert not kernel.nexthops[single].is_group  # no one-member group
    assert kernel.nexthops[single].oif == kernel.index("a")
    assert {m for m, _ in kernel.nexthops[g1].group} == {single, next(
        i for i, o in kernel.nexthops.items() if not o.group and o.oif == kernel.index("b"))}
    assert all(RANGE[0] <= i <= RANGE[1] for i in kernel.nexthops)


def test_weights_and_resilient_make_distinct_groups():
    engine, kernel = make()
    route(engine, "203.0.113.1/32", dev("a"), dev("b"))
    route(engine, "203.0.113.2/32", dev("a", 3), dev("b"))
    route(engine, "203.0.113.3/32", dev("a"), dev("b"), resilient=ResilientSpec(buckets=32, idle_timer=10))
    ready_run(engine)
    ids = {kroute(kernel, p) for p in ("203.0.113.1/32", "203.0.113.2/32", "203.0.113.3/32")}
    assert len(ids) == 3
    res = kernel.nexthops[kroute(kernel, "203.0.113.3/32")]
    assert res.grp_type == GRP_RES and res.res == (32, 1000, 0)
    weights = sorted(w for _, w in kernel.nexthops[kroute(kernel, "203.0.113.2/32")].group)
    assert weights == [1, 3]


def test_ipv6_route_never_on_group_with_ipv4_nexthop():
    engine, kernel = make()
    route(engine, "203.0.113.1/32", dev("a"), dev("b"))
    route(engine, "2001:db8:1::/64", dev("a"), dev("b"))
    route(engine, "203.0.113.2/32", via("2001:db8::1", "a"), dev("b"))  # RFC 5549 mixed group
    ready_run(engine)
    v4, v6 = kroute(kernel, "203.0.113.1/32"), kroute(kernel, "2001:db8:1::/64")
    assert v4 != v6
    assert all(kernel.nexthops[m].family == AF_INET6 for m, _ in kernel.nexthops[v6].group)
    mixed = kernel.nexthops[kroute(kernel, "203.0.113.2/32")]
    assert {kernel.nexthops[m].family for m, _ in mixed.group} == {AF_INET, AF_INET6}
    assert kernel.stats.failures == 0


def test_manager_rejects_ipv4_gateway_for_ipv6_route():
    nhm = NexthopManager(RANGE, 1.0, PROTO, LinkTable())
    with pytest.raises(ValueError):
        nhm.entries_for(AF_INET6, (Path((via("192.0.2.1", "a"),)),))


def test_ids_skip_objects_the_kernel_already_holds():
    kernel = FakeKernel(PROTO)
    kernel.add_link("a")
    kernel.add_link("b")
    foreign = KNexthop(id=RANGE[0], family=AF_INET, protocol=99, oif=kernel.index("a"))
    kernel.nexthops[foreign.id] = foreign
    engine, kernel = make(kernel)
    route(engine, "203.0.113.1/32", dev("a"))
    ready_run(engine)
    assert kernel.nexthops[RANGE[0]] == foreign
    assert kroute(kernel, "203.0.113.1/32") != RANGE[0]


def test_unused_group_is_kept_for_hold_time_then_deleted():
    engine, kernel = make(hold=5.0)
    route(engine, "203.0.113.1/32", dev("a"), dev("b"))
    ready_run(engine)
    gid = kroute(kernel, "203.0.113.1/32")
    engine.rib.withdraw("static", parse_prefix("203.0.113.1/32"))
    engine.run(1.0)
    assert kroute(kernel, "203.0.113.1/32") is None
    assert gid in kernel.nexthops  # held
    route(engine, "203.0.113.9/32", dev("b"), dev("a"))  # comes back within the hold time: same id
    engine.run(2.0)
    assert kroute(kernel, "203.0.113.9/32") == gid
    engine.rib.withdraw("static", parse_prefix("203.0.113.9/32"))
    engine.run(3.0)
    assert engine.deadline() == pytest.approx(8.0)
    engine.run(7.9)
    assert gid in kernel.nexthops
    engine.run(8.0)
    assert gid not in kernel.nexthops
    assert not [o for o in kernel.nexthops.values()]  # members went with it


def test_restart_adopts_without_writes():
    engine, kernel = make()
    for i in range(200):
        route(engine, "10.0.%d.%d/32" % (i // 100, i % 100), dev("a"), dev("b"))
    route(engine, "203.0.113.1/32", dev("c"))
    route(engine, "203.0.113.2/32", dev("a"), dev("c"), resilient=ResilientSpec(buckets=16))
    ready_run(engine)
    snapshot = (dict(kernel.nexthops), dict(kernel.routes))
    kernel.stats.writes = dict.fromkeys(kernel.stats.writes, 0)
    engine2, _ = make(kernel)  # a new process, same config
    for i in range(200):
        route(engine2, "10.0.%d.%d/32" % (i // 100, i % 100), dev("a"), dev("b"))
    route(engine2, "203.0.113.1/32", dev("c"))
    route(engine2, "203.0.113.2/32", dev("a"), dev("c"), resilient=ResilientSpec(buckets=16))
    ready_run(engine2)
    assert sum(kernel.stats.writes.values()) == 0
    assert (kernel.nexthops, kernel.routes) == snapshot


def test_an_id_awaiting_adoption_is_never_given_to_another_nexthop():
    kernel = FakeKernel(PROTO)
    for name in ("a", "b", "c"):
        kernel.add_link(name)
    kernel.nexthops[1000] = KNexthop(id=1000, family=AF_INET, protocol=PROTO, oif=kernel.index("a"))  # from a previous run
    engine, kernel = make(kernel)
    engine.rib.add_source("bgp", 20)  # its routes have not arrived yet
    engine.run(0.0)
    flap(engine, kernel, "a", 1.0, up=False)  # the kernel drops 1000
    flap(engine, kernel, "a", 1.1, up=True)
    route(engine, "203.0.113.2/32", dev("b"))
    engine.run(2.0)
    route(engine, "203.0.113.1/32", dev("a"), source="bgp")
    engine.rib.set_ready("bgp")
    engine.run(3.0)
    ids = [e.id for e in engine.nhm.by_id.values()]
    assert len(ids) == len(set(ids))
    one, two = kroute(kernel, "203.0.113.1/32"), kroute(kernel, "203.0.113.2/32")
    assert one != two
    assert kernel.nexthops[one].oif == kernel.index("a") and kernel.nexthops[two].oif == kernel.index("b")


def test_id_taken_by_another_program_meanwhile_is_left_alone_and_ours_moves():
    engine, kernel = make()
    ready_run(engine)
    # another program creates a nexthop at the id we will pick, after our last dump
    foreign = KNexthop(id=RANGE[0], family=AF_INET, protocol=12, oif=kernel.index("c"))
    kernel.nexthops[foreign.id] = foreign
    route(engine, "203.0.113.1/32", dev("a"))
    engine.run(1.0)
    assert kernel.nexthops[RANGE[0]] == foreign
    ours = kroute(kernel, "203.0.113.1/32")
    assert ours is not None and ours != RANGE[0] and kernel.nexthops[ours].oif == kernel.index("a")



def _twins_kernel():
    kernel = FakeKernel(PROTO)
    for name in ("a0", "a1", "a2"):
        kernel.add_link(name)
    return kernel


def _twin_routes(engine, n=1):
    for i in range(n):
        route(engine, "10.1.%d.%d/32" % (i // 250, i % 250), dev("a0"), dev("a1"))
        route(engine, "10.2.%d.%d/32" % (i // 250, i % 250), dev("a0"), dev("a2"))


def _writes(kernel):
    return {k: n for k, n in kernel.stats.writes.items() if n}


def test_restart_with_twin_groups_adopts_each_by_id_and_writes_nothing():
    """Two sets that differ only in a member whose link is down have the same live members:
    adoption keyed by content gave both sets one id, moved the routes of the other and deleted
    its group.  By id: each set keeps the group its routes point at."""
    engine, kernel = make(_twins_kernel())
    _twin_routes(engine)
    ready_run(engine)
    for name, now in (("a1", 1.0), ("a2", 2.0)):
        flap(engine, kernel, name, now, carrier=False)
    snapshot = (dict(kernel.nexthops), dict(kernel.routes))
    g1, g2 = kroute(kernel, "10.1.0.0/32"), kroute(kernel, "10.2.0.0/32")
    assert g1 != g2 and kernel.nexthops[g1].group == kernel.nexthops[g2].group  # twins
    kernel.stats.writes = dict.fromkeys(kernel.stats.writes, 0)
    engine2, _ = make(kernel)  # SIGKILL, restart with the same config
    _twin_routes(engine2)
    ready_run(engine2, 10.0)
    engine2.run(100.0)  # past every hold time
    assert _writes(kernel) == {}
    assert (kernel.nexthops, kernel.routes) == snapshot
    flap(engine2, kernel, "a1", 101.0, carrier=True)  # and each set still is its own group
    assert len(kernel.nexthops[g1].group) == 2 and len(kernel.nexthops[g2].group) == 1


def test_restart_while_a_link_came_back_replaces_groups_in_place_not_routes():
    engine, kernel = make(_twins_kernel())
    _twin_routes(engine, 250)  # 500 routes on 2 groups
    ready_run(engine)
    flap(engine, kernel, "a1", 1.0, carrier=False)
    g1, g2 = kroute(kernel, "10.1.0.0/32"), kroute(kernel, "10.2.0.0/32")
    kernel.set_link("a1", carrier=True)  # comes back while kernelsync is dead
    kernel.stats.writes = dict.fromkeys(kernel.stats.writes, 0)
    engine2, _ = make(kernel)
    _twin_routes(engine2, 250)
    ready_run(engine2, 10.0)
    engine2.run(100.0)
    # the nexthop on a1 again, its group replaced in place: O(groups), no route written
    assert _writes(kernel) == {"nexthop-set": 2}
    assert {kroute(kernel, "10.1.%d.%d/32" % (i // 250, i % 250)) for i in range(250)} == {g1}
    assert {kroute(kernel, "10.2.%d.%d/32" % (i // 250, i % 250)) for i in range(250)} == {g2}
    assert len(kernel.nexthops[g1].group) == 2 and len(kernel.nexthops[g2].group) == 2


def test_one_set_on_two_ids_keeps_both_and_writes_nothing():
    """Two groups of ours for one set (a crash between a new group and the route moves, or a
    twin made by a shrink in place): the set's group takes the id most routes use, the other
    is adopted as its twin for the routes on it (NexthopManager.adopt_twin): no write.  (It
    used to cost one route write per route on the other id.)"""
    engine, kernel = make()
    for i in range(4):
        route(engine, "10.0.0.%d/32" % i, dev("a"), dev("b"))
    ready_run(engine)
    gid = kroute(kernel, "10.0.0.0/32")
    other = 1900  # a twin of ours
    kernel.nexthops[other] = attrs.evolve(kernel.nexthops[gid], id=other)
    for i in (0, 1, 2):
        kernel.routes[(100,) + parse_prefix("10.0.0.%d/32" % i) + (20,)] = (PROTO, other)
    kernel.stats.writes = dict.fromkeys(kernel.stats.writes, 0)
    engine2, _ = make(kernel)
    for i in range(4):
        route(engine2, "10.0.0.%d/32" % i, dev("a"), dev("b"))
    ready_run(engine2, 10.0)
    engine2.run(100.0)
    assert [kroute(kernel, "10.0.0.%d/32" % i) for i in range(4)] == [other, other, other, gid]
    assert _writes(kernel) == {}
    engine2.request_full_sync()
    assert not engine2.run(101.0).ops


def test_a_group_is_not_adopted_by_id_across_a_change_of_type():
    engine, kernel = make()
    route(engine, "10.0.0.1/32", dev("a"), dev("b"))
    ready_run(engine)
    gid = kroute(kernel, "10.0.0.1/32")
    engine2, _ = make(kernel)
    route(engine2, "10.0.0.1/32", dev("a"), dev("b"), resilient=ResilientSpec(buckets=16))
    ready_run(engine2, 10.0)
    engine2.run(100.0)
    new = kroute(kernel, "10.0.0.1/32")
    assert new != gid and kernel.nexthops[new].grp_type == GRP_RES and gid not in kernel.nexthops


def test_a_group_that_gets_no_id_leaves_no_new_member_behind():
    engine, kernel = make(id_range=(1000, 1003))  # a, b, group {a,b}, then one id left
    route(engine, "10.0.0.1/32", dev("a"), dev("b"))
    ready_run(engine)
    route(engine, "10.0.0.2/32", dev("a"), dev("c"))  # c takes the last id, its group finds none
    engine.run(1.0)
    assert kroute(kernel, "10.0.0.2/32") is None and len(engine.fib.starved) == 1
    assert sorted(e.key[2] for e in engine.nhm.nexthops.values()) == ["a", "b"]
    assert len(kernel.nexthops) == 3 and engine.show_stats()["prefixes_waiting_for_id"] == 1
    engine.rib.withdraw("static", parse_prefix("10.0.0.2/32"))
    engine.run(2.0)
    assert not engine.fib.starved and len(kernel.nexthops) == 3


def test_a_twin_whose_routes_come_later_keeps_its_group():
    """BGP routes arrive over time: a set with no route in the kernel (a new one) must not take,
    by content, the group that the routes of a set not yet re-announced point at."""
    engine, kernel = make(_twins_kernel())
    route(engine, "10.2.0.0/32", dev("a0"), dev("a2"))
    ready_run(engine)
    g2 = kroute(kernel, "10.2.0.0/32")
    flap(engine, kernel, "a2", 1.0, carrier=False)  # g2 = {a0}
    flap(engine, kernel, "a1", 1.5, carrier=False)
    kernel.stats.writes = dict.fromkeys(kernel.stats.writes, 0)
    engine2, _ = make(kernel)
    engine2.rib.add_source("bgp", 20)
    route(engine2, "10.1.0.0/32", dev("a0"), dev("a1"), source="bgp")  # new set, live content {a0}
    engine2.run(10.0)
    route(engine2, "10.2.0.0/32", dev("a0"), dev("a2"))  # the static set, after
    engine2.run(11.0)
    assert kroute(kernel, "10.2.0.0/32") == g2 and kroute(kernel, "10.1.0.0/32") != g2
    assert kernel.stats.writes["route-set"] == 1  # only the new route
