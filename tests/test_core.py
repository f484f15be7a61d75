"""Planner, nexthop manager and engine on the in-memory kernel model (fast; no root needed)."""
import errno
import socket

import pytest

from kernelsync.config import KernelConfig
from kernelsync.engine import Engine
from kernelsync.memkernel import MemKernel
from kernelsync.model import AF_INET, AF_INET6, GRP_RES, KNexthop, NexthopSpec, Path, ResilientSpec, parse_prefix
from kernelsync.nhm import NexthopManager
from kernelsync.planner import NH_DEL, NH_SET, ROUTE_DEL, ROUTE_SET, plan

PROTO = 200
RANGE = (1000, 1999)


def dev(name, weight=1):
    return NexthopSpec(gateway=None, gw_family=None, dev=name, weight=weight)


def via(addr, name, weight=1):
    family = AF_INET6 if ":" in addr else AF_INET
    return NexthopSpec(gateway=socket.inet_pton(family, addr), gw_family=family, dev=name, weight=weight)


def make(kernel=None, **kw):
    kernel = kernel or MemKernel(PROTO)
    if not kernel.links:
        for name in ("a", "b", "c"):
            kernel.add_link(name)
    cfg = KernelConfig(table=100, protocol=PROTO, metric=20, nexthop_id_range=RANGE,
                       group_hold_time=kw.pop("hold", 10.0), verify_delay=0, resync_interval=1e9, **kw)
    engine = Engine(cfg, kernel)
    engine.rib.add_source("static", 1)
    engine.start(0.0)
    return engine, kernel


def route(engine, prefix, *nexthops, source="static", resilient=None):
    engine.rib.update(source, parse_prefix(prefix), (Path(tuple(nexthops), resilient),))


def kroute(kernel, prefix, table=100, metric=20):
    family, dst, plen = parse_prefix(prefix)
    return kernel.routes.get((table, family, dst, plen, metric), (None, None))[1]


def nexthop_on(kernel, name):
    """A fault predicate: the write of the plain nexthop on device ``name``."""
    return lambda op: op[0] == NH_SET and not op[1].group and op[1].oif == kernel.index(name)


def ready_run(engine, now=0.0):
    for s in engine.rib.ready:
        engine.rib.set_ready(s)
    return engine.run(now)


def flap(engine, kernel, name, now, **state):
    kernel.set_link(name, **state)
    engine.on_link_event(now)
    return engine.run(now)


# --- nexthop manager ---------------------------------------------------------------------------

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
    nhm = NexthopManager(RANGE, 1.0, PROTO)
    with pytest.raises(ValueError):
        nhm.entries_for(AF_INET6, (Path((via("192.0.2.1", "a"),)),))


def test_ids_skip_objects_the_kernel_already_holds():
    kernel = MemKernel(PROTO)
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


# --- planner -----------------------------------------------------------------------------------

def test_planner_orders_members_groups_routes_then_deletes_in_reverse():
    nh1 = KNexthop(id=1, family=AF_INET, protocol=PROTO, oif=2)
    nh2 = KNexthop(id=2, family=AF_INET, protocol=PROTO, oif=3)
    grp = KNexthop(id=3, family=0, protocol=PROTO, group=((1, 1), (2, 1)))
    old_grp = KNexthop(id=4, family=0, protocol=PROTO, group=((5, 1),))
    old_nh = KNexthop(id=5, family=AF_INET, protocol=PROTO, oif=4)
    k1 = (100, AF_INET, b"\xcb\x00\x71\x01", 32, 20)
    k2 = (100, AF_INET, b"\xcb\x00\x71\x02", 32, 20)
    result = plan({3: grp, 2: nh2, 1: nh1}, {4: old_grp, 5: old_nh}, {k1: 3}, {k1: 4, k2: 4})
    kinds = [(op[0], op[1].id if op[0] in (NH_SET, NH_DEL) else op[1]) for op in result.ops]
    assert kinds == [(NH_SET, 1), (NH_SET, 2), (NH_SET, 3), (ROUTE_SET, k1), (ROUTE_DEL, k2),
                     (NH_DEL, 4), (NH_DEL, 5)]
    # replace, never delete + add, for the changed route
    assert not any(op[0] == ROUTE_DEL and op[1] == k1 for op in result.ops)


def test_planner_equal_state_is_empty_and_gate_holds_deletes():
    nh = KNexthop(id=1, family=AF_INET, protocol=PROTO, oif=2)
    k1 = (100, AF_INET, b"\x01\x02\x03\x04", 32, 20)
    assert plan({1: nh}, {1: nh}, {k1: 1}, {k1: 1}).ops == []
    gated = plan({}, {1: nh}, {}, {k1: 1}, allow_delete=False)
    assert gated.ops == [] and gated.deferred == 2


# --- engine on the model -----------------------------------------------------------------------

def test_link_down_shrinks_group_routes_stay_and_up_restores_without_route_writes():
    engine, kernel = make()
    for i in range(50):
        route(engine, "198.51.100.%d/32" % i, dev("a"), dev("b"))
    ready_run(engine)
    gid = kroute(kernel, "198.51.100.0/32")
    writes_before = dict(kernel.stats.writes)
    flap(engine, kernel, "a", 1.0, up=False)
    assert len(kernel.nexthops[gid].group) == 1
    assert sum(1 for k in kernel.routes) == 50
    flap(engine, kernel, "a", 2.0, up=True)
    assert len(kernel.nexthops[gid].group) == 2
    flap(engine, kernel, "b", 3.0, carrier=False)
    assert len(kernel.nexthops[gid].group) == 1 and len(kernel.routes) == 50
    flap(engine, kernel, "b", 4.0, carrier=True)
    assert len(kernel.nexthops[gid].group) == 2
    assert kernel.stats.writes["route-set"] == writes_before["route-set"]  # routes kept their nhid


def test_all_members_down_falls_back_to_next_best_source_then_returns():
    engine, kernel = make()
    engine.rib.add_source("ospf", 110)
    route(engine, "198.51.100.0/24", dev("a"), dev("b"))
    route(engine, "198.51.100.0/24", dev("c"), source="ospf")
    ready_run(engine)
    best = kroute(kernel, "198.51.100.0/24")
    assert kernel.nexthops[best].is_group
    kernel.set_link("a", up=False)
    kernel.set_link("b", up=False)  # the kernel deletes the group and the route silently
    assert kroute(kernel, "198.51.100.0/24") is None
    engine.on_link_event(1.0)
    engine.run(1.0)
    fallback = kroute(kernel, "198.51.100.0/24")
    assert kernel.nexthops[fallback].oif == kernel.index("c")
    assert engine.fib.selected(parse_prefix("198.51.100.0/24")) == "ospf"
    flap(engine, kernel, "a", 2.0, up=True)
    assert kroute(kernel, "198.51.100.0/24") == best  # same group id, back on the best source
    flap(engine, kernel, "b", 3.0, up=True)
    assert len(kernel.nexthops[best].group) == 2


def test_route_with_no_usable_nexthop_is_removed_and_reinstalled():
    engine, kernel = make()
    route(engine, "198.51.100.0/24", dev("a"))
    ready_run(engine)
    flap(engine, kernel, "a", 1.0, carrier=False)
    assert kroute(kernel, "198.51.100.0/24") is None and not engine.fib.routes
    flap(engine, kernel, "a", 2.0, carrier=True)
    assert kroute(kernel, "198.51.100.0/24") is not None


def test_device_that_appears_later_gets_its_route():
    kernel = MemKernel(PROTO)
    kernel.add_link("a")
    engine, kernel = make(kernel)
    route(engine, "203.0.113.10/32", dev("a"), dev("tapZ"))
    ready_run(engine)
    gid = kroute(kernel, "203.0.113.10/32")
    assert len(kernel.nexthops[gid].group) == 1
    kernel.add_link("tapZ")
    engine.on_link_event(1.0)
    engine.run(1.0)
    assert len(kernel.nexthops[gid].group) == 2


def test_outside_deletes_are_repaired():
    engine, kernel = make()
    route(engine, "203.0.113.1/32", dev("a"), dev("b"))
    route(engine, "203.0.113.2/32", dev("c"))
    ready_run(engine)
    key1 = (100,) + parse_prefix("203.0.113.1/32") + (20,)
    del kernel.routes[key1]  # `ip route del`
    engine.request_full_sync()
    engine.run(1.0)
    assert kroute(kernel, "203.0.113.1/32") is not None
    single = kroute(kernel, "203.0.113.2/32")
    kernel._delete_nh(single)  # `ip nexthop del`: notified
    engine.on_nexthop_event(True, KNexthop(id=single, family=AF_INET, protocol=PROTO))
    engine.run(2.0)
    assert kroute(kernel, "203.0.113.2/32") == single


def test_foreign_objects_untouched():
    kernel = MemKernel(PROTO)
    a = kernel.add_link("a")
    kernel.add_link("b")
    kernel.add_link("c")
    foreign_nh = {5: KNexthop(id=5, family=AF_INET, protocol=PROTO, oif=a),  # our protocol, outside our range
                  1500: KNexthop(id=1500, family=AF_INET, protocol=12, oif=a)}  # in range, not ours
    kernel.nexthops.update(foreign_nh)
    foreign_routes = {(100,) + parse_prefix("192.0.2.0/24") + (20,): (12, 1500),  # other protocol
                      (254,) + parse_prefix("192.0.2.0/24") + (20,): (PROTO, 5),  # other table
                      (100,) + parse_prefix("198.51.100.0/24") + (20,): (12, 5)}  # prefix we also own
    kernel.routes.update(foreign_routes)
    engine, kernel = make(kernel)
    route(engine, "203.0.113.1/32", dev("a"), dev("b"))
    ready_run(engine)
    engine.request_full_sync()
    engine.run(1.0)
    assert {i: kernel.nexthops[i] for i in foreign_nh} == foreign_nh
    assert {k: kernel.routes[k] for k in foreign_routes} == foreign_routes


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


def test_nothing_deleted_until_every_feed_is_ready_then_stale_is_swept():
    engine, kernel = make()
    engine.rib.add_source("ospf", 110)
    route(engine, "203.0.113.1/32", dev("a"))
    route(engine, "203.0.113.2/32", dev("b"))
    ready_run(engine)
    engine2, _ = make(kernel)
    engine2.rib.add_source("ospf", 110)
    route(engine2, "203.0.113.1/32", dev("a"))
    engine2.rib.set_ready("static")
    engine2.run(1.0)  # ospf not ready: 203.0.113.2 stays
    assert kroute(kernel, "203.0.113.2/32") is not None
    engine2.rib.set_ready("ospf")
    engine2.request_full_sync()
    engine2.run(2.0)
    assert kroute(kernel, "203.0.113.2/32") is None  # swept
    assert kroute(kernel, "203.0.113.1/32") is not None


def test_refused_write_is_retried_with_backoff():
    engine, kernel = make(retry_initial=1.0)
    kernel.fail_next(lambda op: op[0] == ROUTE_SET, errno.ENOMEM, times=2)
    route(engine, "203.0.113.1/32", dev("a"))
    ready_run(engine, 0.0)
    assert kroute(kernel, "203.0.113.1/32") is None
    assert engine.deadline() == pytest.approx(1.0)
    engine.run(0.5)
    assert kroute(kernel, "203.0.113.1/32") is None  # not before its time
    engine.run(1.0)  # second failure: next try after 2 s
    assert engine.deadline() == pytest.approx(3.0)
    engine.run(3.0)
    assert kroute(kernel, "203.0.113.1/32") is not None
    assert not engine.failures


def test_failed_member_leaves_group_until_it_is_accepted():
    engine, kernel = make(retry_initial=1.0)
    kernel.fail_next(nexthop_on(kernel, "b"), errno.EINVAL, times=1)
    route(engine, "203.0.113.1/32", dev("a"), dev("b"))
    ready_run(engine, 0.0)
    gid = kroute(kernel, "203.0.113.1/32")
    assert gid is not None and len(kernel.nexthops[gid].group) == 1  # forwarding on the member that works
    engine.run(1.0)
    assert len(kernel.nexthops[gid].group) == 2


def test_lost_replies_trigger_a_full_resync():
    from kernelsync.netlink import ResyncNeeded

    class Overflowing(MemKernel):
        overflow = 1

        def apply(self, ops, on_chunk=None):
            result = super().apply(ops, on_chunk)
            if self.overflow:
                self.overflow -= 1
                raise ResyncNeeded("netlink receive buffer overflow: replies lost")
            return result

    engine, kernel = make(Overflowing(PROTO))
    route(engine, "203.0.113.1/32", dev("a"), dev("b"))
    ready_run(engine)
    assert engine.need_full and engine.deadline() == 0.0
    dumps = kernel.stats.dumps
    engine.run(0.1)
    assert kernel.stats.dumps > dumps and not engine.need_full
    assert kroute(kernel, "203.0.113.1/32") in engine.observed_nh


def test_unresolvable_source_is_skipped_and_next_source_used(caplog):
    engine, kernel = make()
    engine.rib.add_source("ospf", 110)
    route(engine, "2001:db8:1::/64", via("192.0.2.1", "a"))  # an IPv4 next hop for an IPv6 route
    route(engine, "2001:db8:1::/64", dev("b"), source="ospf")
    route(engine, "203.0.113.1/32", dev("a"))
    ready_run(engine)
    assert "2001:db8:1::/64 from static not usable" in caplog.text
    assert engine.fib.selected(parse_prefix("2001:db8:1::/64")) == "ospf"
    assert kernel.nexthops[kroute(kernel, "2001:db8:1::/64")].oif == kernel.index("b")
    assert kroute(kernel, "203.0.113.1/32") is not None


def test_member_refused_then_link_down_then_up_rejoins_its_group():
    """The nexthop's failure record is dropped while its link is down; when the link comes back
    and the write is accepted, the member must rejoin the group (no stale one-member group)."""
    engine, kernel = make(retry_initial=0.2)
    route(engine, "203.0.113.1/32", dev("a"), dev("b"))
    ready_run(engine, 0.0)
    gid = kroute(kernel, "203.0.113.1/32")
    kernel.fail_next(nexthop_on(kernel, "b"), errno.ENETDOWN)
    kernel.set_link("b", carrier=False)
    kernel.set_link("b", carrier=True)  # back before we react: our write is refused anyway
    engine.on_link_event(1.0)
    engine.run(1.0)
    assert len(kernel.nexthops[gid].group) == 1
    flap(engine, kernel, "b", 1.1, up=False)  # the failure record goes with the link
    assert not engine.failures
    flap(engine, kernel, "b", 1.2, up=True)
    assert len(kernel.nexthops[gid].group) == 2


def test_link_event_retries_a_refused_nexthop_without_waiting_for_backoff():
    engine, kernel = make(retry_initial=10.0)
    kernel.fail_next(nexthop_on(kernel, "b"), errno.ENETDOWN, times=3)
    route(engine, "203.0.113.1/32", dev("a"), dev("b"))
    ready_run(engine, 0.0)
    engine.run(10.0)
    engine.run(30.0)  # refused three times: the next try would be at 30 + retry_max (30 s)
    gid = kroute(kernel, "203.0.113.1/32")
    assert len(kernel.nexthops[gid].group) == 1 and engine.deadline() == pytest.approx(60.0)
    engine.on_link_event(31.0)  # e.g. its carrier came back
    engine.run(31.0)
    assert len(kernel.nexthops[gid].group) == 2


def test_two_gateways_on_one_link_come_back_after_the_link_does():
    """Both members of the group sit on one device: they come back in the same link update."""
    engine, kernel = make()
    route(engine, "198.51.100.0/24", via("10.0.0.1", "a"), via("10.0.0.2", "a"))
    ready_run(engine)
    gid = kroute(kernel, "198.51.100.0/24")
    flap(engine, kernel, "a", 1.0, up=False)
    assert kroute(kernel, "198.51.100.0/24") is None
    flap(engine, kernel, "a", 2.0, up=True)
    assert kroute(kernel, "198.51.100.0/24") == gid and len(kernel.nexthops[gid].group) == 2


def test_all_members_back_in_one_update():
    engine, kernel = make()
    route(engine, "198.51.100.0/24", dev("a"), dev("b"))
    ready_run(engine)
    gid = kroute(kernel, "198.51.100.0/24")
    kernel.set_link("a", up=False)
    kernel.set_link("b", up=False)
    engine.on_link_event(1.0)
    engine.run(1.0)
    kernel.set_link("a", up=True)
    kernel.set_link("b", up=True)
    engine.on_link_event(2.0)  # one event batch for both
    engine.run(2.0)
    assert kroute(kernel, "198.51.100.0/24") == gid and len(kernel.nexthops[gid].group) == 2


def test_an_id_awaiting_adoption_is_never_given_to_another_nexthop():
    kernel = MemKernel(PROTO)
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


def test_route_key_of_another_protocol_is_refused_not_replaced():
    kernel = MemKernel(PROTO)
    for name in ("a", "b", "c"):
        kernel.add_link(name)
    kernel.nexthops[5] = KNexthop(id=5, family=AF_INET, protocol=12, oif=kernel.index("c"))
    key = (100,) + parse_prefix("203.0.113.1/32") + (20,)
    kernel.add_foreign_route(key, 12, 5)
    engine, kernel = make(kernel)
    route(engine, "203.0.113.1/32", dev("a"))
    ready_run(engine)
    assert kernel.routes[key] == (12, 5)
    assert ("route", key) in engine.failures and "File exists" in engine.failures[("route", key)].error


def test_runs_leave_no_cyclic_garbage_among_frozen_objects():
    # Engine.run freezes what survives it (gc.freeze): a cycle among those objects that became
    # garbage later would never be collected.  Churn routes, groups, links and failures, then
    # look for such garbage.
    import gc
    gc.unfreeze()
    gc.collect()  # earlier tests' garbage (whole engines) is not this test's business
    engine, kernel = make(hold=1.0)
    ready_run(engine)
    for i in range(20):
        route(engine, "203.0.113.%d/32" % i, dev("a"), dev("b"), resilient=ResilientSpec() if i % 2 else None)
        route(engine, "198.51.100.%d/32" % i, dev("b"), dev("c"))
    engine.run(1.0)
    flap(engine, kernel, "b", 2.0, up=False)
    kernel.fail_next(nexthop_on(kernel, "b"), errno.EINVAL)
    flap(engine, kernel, "b", 3.0, up=True)
    for i in range(20):
        engine.rib.withdraw("static", parse_prefix("203.0.113.%d/32" % i))
        route(engine, "198.51.100.%d/32" % i, dev("a"))
    engine.run(4.0)
    engine.run(10.0)  # unused groups and nexthops freed after their hold time
    assert len(engine.nhm.groups) == 0
    gc.unfreeze()
    gc.set_debug(gc.DEBUG_SAVEALL)
    try:
        gc.collect()
        ours = [o for o in gc.garbage if type(o).__module__.startswith("kernelsync")]
    finally:
        gc.set_debug(0)
        gc.garbage.clear()
    assert ours == []
