"""The planner (kernelsync.core.planner): desired versus observed -> ordered operations."""
from kernelsync.core.model import AF_INET, KNexthop
from kernelsync.core.ops import NEXTHOP_DEL, NEXTHOP_SET, ROUTE_DEL, ROUTE_SET
from kernelsync.core.planner import plan

PROTO = 200


def test_planner_orders_members_groups_routes_then_deletes_in_reverse():
    nh1 = KNexthop(id=1, family=AF_INET, protocol=PROTO, oif=2)
    nh2 = KNexthop(id=2, family=AF_INET, protocol=PROTO, oif=3)
    grp = KNexthop(id=3, family=0, protocol=PROTO, group=((1, 1), (2, 1)))
    old_grp = KNexthop(id=4, family=0, protocol=PROTO, group=((5, 1),))
    old_nh = KNexthop(id=5, family=AF_INET, protocol=PROTO, oif=4)
    k1 = (100, AF_INET, b"\xcb\x00\x71\x01", 32, 20)
    k2 = (100, AF_INET, b"\xcb\x00\x71\x02", 32, 20)
    result = plan({3: grp, 2: nh2, 1: nh1}, {4: old_grp, 5: old_nh}, {k1: 3}, {k1: 4, k2: 4})
    kinds = [(op.kind, op.nexthop.id if op.kind in (NEXTHOP_SET, NEXTHOP_DEL) else op.key) for op in result.ops]
    assert kinds == [(NEXTHOP_SET, 1), (NEXTHOP_SET, 2), (NEXTHOP_SET, 3), (ROUTE_SET, k1), (ROUTE_DEL, k2),
                     (NEXTHOP_DEL, 4), (NEXTHOP_DEL, 5)]
    # replace, never delete + add, for the changed route
    assert not any(op.kind is ROUTE_DEL and op.key == k1 for op in result.ops)
    assert [op.replace for op in result.ops if op.kind is ROUTE_SET] == [True]  # ours was there: replaced


def test_planner_equal_state_is_empty_and_gate_holds_deletes():
    nh = KNexthop(id=1, family=AF_INET, protocol=PROTO, oif=2)
    k1 = (100, AF_INET, b"\x01\x02\x03\x04", 32, 20)
    assert plan({1: nh}, {1: nh}, {k1: 1}, {k1: 1}).ops == []
    gated = plan({}, {1: nh}, {}, {k1: 1}, allow_delete=False)
    assert gated.ops == [] and gated.deferred == 2

