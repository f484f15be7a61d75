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


BAD_KEYS = [(100, AF_INET, bytes(16), 200, 20), (100, 99, b"\1\2", 8, 20), (None, AF_INET, b"\1\2\3\4", 32, "x"),
            (100, AF_INET, "not bytes", 24, 20)]
BAD_NEXTHOPS = [KNexthop(id=7, family=AF_INET, protocol=200, oif=3, gateway=b"\x0a\0\x0c"),
                KNexthop(id=7, family=99, protocol=200, oif=3, gateway=b"\1"),
                KNexthop(id=None, family=0, protocol=200, oif="x", gateway=bytes(4))]


def test_describe_never_raises_whatever_the_values():
    """Issue 12 defect 5: describing an operation (the failure log of a kernel refusal) must
    not raise on values a feed got wrong (a 16-byte IPv4 destination, family 99, a 3-byte
    gateway, a field that is not a number); the text still says what the operation is."""
    ops = ([RouteSet(k, 7, False) for k in BAD_KEYS] + [RouteSet(KEY, None, False)] + [RouteDel(k) for k in BAD_KEYS]
           + [NexthopSet(nh, True) for nh in BAD_NEXTHOPS] + [NexthopDel(nh) for nh in BAD_NEXTHOPS])
    for op in ops:
        text = op.describe()
        assert text.startswith(op.kind.label + " ") and len(text) > len(op.kind.label) + 1


def test_engine_logs_a_refusal_of_such_an_operation_and_goes_on(caplog):
    """A kernel refusal of a route with a broken key: the failure log describes it and
    engine.run does not raise, now and on the retry."""
    import errno

    from kernelsync.core.model import Path
    from tests.support.fakes import dev, make, ready_run

    engine, kernel = make(retry_initial=1.0)
    kernel.fail_next(lambda op: op.kind is ROUTE_SET, errno.EINVAL, times=5)
    engine.rib.update("static", (AF_INET, bytes(16), 24), (Path((dev("a"),)),))  # a 16-byte IPv4 destination
    with caplog.at_level("DEBUG", logger="kernelsync"):
        ready_run(engine, 0.0)
        engine.run(1.0)
    assert "route-set" in caplog.text and "kernel refused" in caplog.text
    assert engine.failures
