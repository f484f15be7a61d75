"""The operations (kernelsync.core.ops): named values, what each writes, and how it reads."""
import socket

from kernelsync.core.model import AF_INET, KNexthop
from kernelsync.core.ops import (LABELS, NEXTHOP_DEL, NEXTHOP_SET, ROUTE_DEL, ROUTE_SET, NexthopDel, NexthopSet, OpKind,
                                 RouteDel, RouteSet, Target)
from kernelsync.core.planner import Plan, plan

KEY = (100, AF_INET, socket.inet_aton("203.0.113.1"), 32, 20)
NH = KNexthop(id=7, family=AF_INET, protocol=200, oif=3, gateway=socket.inet_aton("192.0.2.1"))


def test_kinds_targets_and_descriptions():
    ops = [NexthopSet(NH, False), RouteSet(KEY, 7, True), RouteDel(KEY), NexthopDel(NH)]
    assert [op.kind for op in ops] == [NEXTHOP_SET, ROUTE_SET, ROUTE_DEL, NEXTHOP_DEL] == list(OpKind)
    assert [op.target for op in ops] == [Target("nh", 7), Target("route", KEY), Target("route", KEY), Target("nh", 7)]
    assert [op.describe() for op in ops] == [
        "nexthop-set id 7 ipv4 via 192.0.2.1 oif 3", "route-set 203.0.113.1/32 table 100 metric 20 nhid 7",
        "route-del 203.0.113.1/32 table 100 metric 20", "nexthop-del id 7 ipv4 via 192.0.2.1 oif 3"]
    assert [LABELS[k] for k in OpKind] == [k.label for k in OpKind]
    assert Plan(ops=ops).counts() == {"nexthop-set": 1, "route-set": 1, "route-del": 1, "nexthop-del": 1}


def test_operations_of_different_kinds_are_never_equal():
    assert RouteSet(KEY, 7, True) != RouteDel(KEY) and NexthopSet(NH, False) != NexthopDel(NH)
    assert RouteSet(KEY, 7, True) == RouteSet(key=KEY, nh_id=7, replace=True)


def test_the_planners_fast_route_writes_are_ordinary_route_sets():
    """The planner builds RouteSet with tuple.__new__ (200,000 per full sync): the same value, type
    and fields as the constructor's."""
    (op,) = plan({}, {}, {KEY: 7}, {KEY: 9}).ops
    assert type(op) is RouteSet and op == RouteSet(KEY, 7, True)
    assert (op.key, op.nh_id, op.replace, op.kind) == (KEY, 7, True, ROUTE_SET)
    (op,) = plan({}, {}, {KEY: 7}, {}, route_keys=[KEY]).ops
    assert type(op) is RouteSet and op == RouteSet(KEY, 7, False)
