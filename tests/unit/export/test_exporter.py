"""Export to BGP, the pure core (kernelsync.export.exporter): selection, liveness, damping,
commands."""
from kernelsync.core.links import LinkTable
from kernelsync.core.model import AF_INET, KNexthop, KRoute, Leg, Link, parse_address, parse_prefix
from kernelsync.export.exporter import AnycastGroup, Damping, DampingSettings, ExportAttrs, Exporter, KernelFilter

OURS = 200
P10 = parse_prefix("203.0.113.10/32")
P11 = parse_prefix("203.0.113.11/32")
NO_DAMPING = DampingSettings(enabled=False)


def set_links(ex, now, **state):
    """The link table becomes ``state`` (tapA=True: up with carrier; ifindexes 1, 2, ... in that
    order); the exporter is told, as the export feed tells it.  Returns the devices lost."""
    links = {i: Link(index=i, name=name, up=True, carrier=up) for i, (name, up) in enumerate(state.items(), 1)}
    return ex.links_changed(ex.links.update(links), now)


def kroute(prefix, legs, proto=3, table=254, nh_id=0, rtype=1, metric=0):
    """A kernel route; legs = [(gateway text or None, ifindex)]."""
    family, dst, plen = parse_prefix(prefix)
    out = []
    for gw, ifindex in legs:
        out.append(Leg(family, parse_address(gw)[1], ifindex) if gw else Leg(None, None, ifindex))
    return KRoute(family, dst, plen, table, proto, rtype, metric, tuple(out), nh_id)


def exporter(anycast=(), filters=(), damping=NO_DAMPING):
    return Exporter(anycast, filters, damping, OURS, LinkTable())


def test_announce_and_withdraw_commands():
    attrs = ExportAttrs(communities=("65010:53", "65010:54"), large_communities=("65010:1:2",), med=10,
                        local_pref=300)
    assert attrs.announce(P10) == ("announce route 203.0.113.10/32 next-hop self community [65010:53 65010:54] "
                                   "large-community [65010:1:2] med 10 local-preference 300")
    assert attrs.withdraw(P10) == "withdraw route 203.0.113.10/32 next-hop self"
    two = ExportAttrs(next_hop_ipv6="2001:db8:a::2", neighbors=("192.0.2.1", "192.0.2.9"))
    v6 = parse_prefix("2001:db8:53::1/128")
    assert two.announce(v6) == ("neighbor 192.0.2.1 , neighbor 192.0.2.9 announce route 2001:db8:53::1/128 "
                                "next-hop 2001:db8:a::2")
    assert two.withdraw(P10) == "neighbor 192.0.2.1 , neighbor 192.0.2.9 withdraw route 203.0.113.10/32 next-hop self"


def test_filter_selects_by_table_protocol_length_and_range():
    f = KernelFilter(name="guests", table=254, protocols=(3, 4), prefix_lengths=(32,),
                     prefixes=(parse_prefix("203.0.113.0/24"),))
    assert f.selects(P10, 254, 3)
    assert not f.selects(P10, 100, 3)  # table
    assert not f.selects(P10, 254, 12)  # protocol
    assert not f.selects(parse_prefix("203.0.113.0/25"), 254, 3)  # length
    assert not f.selects(parse_prefix("198.51.100.1/32"), 254, 3)  # outside the range
    assert not f.selects(parse_prefix("2001:db8::1/128"), 254, 3)  # other family
    assert KernelFilter(name="any").selects(parse_prefix("0.0.0.0/0"), 254, 99)


def test_filter_legs_need_matching_devices_and_no_gateway():
    f = KernelFilter(name="g", devices=("tap*", "pub*"))
    assert f.legs_match([(False, "tap1"), (False, "pub7")])
    assert not f.legs_match([(False, "tap1"), (False, "eth0")])  # every leg must match
    assert not f.legs_match([(True, "tap1")])  # a gateway
    assert KernelFilter(name="g", devices=("tap*",), gateways=True).legs_match([(True, "tap1")])
    assert not f.legs_match([])  # no leg at all (blackhole, unreachable)


def test_plain_dev_route_is_exported_while_its_device_has_carrier():
    ex = exporter(filters=[KernelFilter(name="g", devices=("tap*",))])
    set_links(ex, 0.0, tap1=True, eth0=True)
    ex.set_routes([kroute("203.0.113.10/32", [(None, 1)]),
                   kroute("198.51.100.0/24", [(None, 2)]),                 # eth0: no match
                   kroute("203.0.113.11/32", [("192.0.2.1", 1)]),         # a gateway
                   kroute("203.0.113.12/32", [(None, 1)], proto=OURS),     # ours: never
                   kroute("203.0.113.13/32", [(None, 1)], rtype=6)])       # prohibit
    assert ex.changes(0.0) == [(P10, "announce route 203.0.113.10/32 next-hop self")]
    assert ex.changes(0.0) == []  # de-duplicated: nothing new
    set_links(ex, 1.0, tap1=False, eth0=True)  # carrier loss (the route stays, linkdown)
    assert ex.changes(1.0) == [(P10, "withdraw route 203.0.113.10/32 next-hop self")]
    set_links(ex, 2.0, tap1=True, eth0=True)
    assert ex.changes(2.0) == [(P10, "announce route 203.0.113.10/32 next-hop self")]


def test_multipath_device_only_route_is_one_announcement_live_while_any_leg_is():
    ex = exporter(filters=[KernelFilter(name="g", devices=("tap*",))])
    set_links(ex, 0.0, tapA=True, tapB=True)
    ex.set_routes([kroute("203.0.113.10/32", [(None, 1), (None, 2)])])
    assert [c for _p, c in ex.changes(0.0)] == ["announce route 203.0.113.10/32 next-hop self"]
    set_links(ex, 1.0, tapA=False, tapB=True)
    assert ex.changes(1.0) == []  # tapB still carries it
    set_links(ex, 2.0, tapA=False, tapB=False)
    assert [c for _p, c in ex.changes(2.0)] == ["withdraw route 203.0.113.10/32 next-hop self"]


def test_route_on_a_nexthop_group_uses_the_members_devices():
    ex = exporter(filters=[KernelFilter(name="g", devices=("tap*",))])
    set_links(ex, 0.0, tapA=True, tapB=True, eth0=True)
    ex.set_routes([kroute("203.0.113.10/32", [], nh_id=7), kroute("203.0.113.11/32", [], nh_id=8)])
    assert ex.uses_nexthops
    ex.set_nexthops({1: KNexthop(id=1, family=AF_INET, protocol=3, oif=1),
                     2: KNexthop(id=2, family=AF_INET, protocol=3, oif=2),
                     3: KNexthop(id=3, family=AF_INET, protocol=3, oif=3, gateway=bytes(4)),
                     7: KNexthop(id=7, family=AF_INET, protocol=3, group=((1, 1), (2, 1))),
                     8: KNexthop(id=8, family=AF_INET, protocol=3, group=((1, 1), (3, 1)))})
    assert [p for p, _c in ex.changes(0.0)] == [P10]  # 11's group has a gateway member on eth0


def test_route_events_add_and_remove_candidates():
    ex = exporter(filters=[KernelFilter(name="g", devices=("tap*",), table=100)])
    set_links(ex, 0.0, tap1=True)
    assert ex.route_event(False, kroute("203.0.113.10/32", [(None, 1)], table=100))
    assert not ex.route_event(False, kroute("203.0.113.10/32", [(None, 1)], table=254))  # other table
    assert not ex.route_event(False, kroute("203.0.113.11/32", [(None, 1)], table=100, proto=OURS))
    assert [p for p, _c in ex.changes(0.0)] == [P10]
    assert ex.route_event(True, kroute("203.0.113.10/32", [(None, 1)], table=100))
    assert [c for _p, c in ex.changes(1.0)] == ["withdraw route 203.0.113.10/32 next-hop self"]


def test_anycast_group_follows_its_devices_and_wins_over_a_filter():
    group = AnycastGroup(prefix=P10, devices=("tapA", "tapB"), attrs=ExportAttrs(communities=("65010:53",)))
    ex = exporter(anycast=[group], filters=[KernelFilter(name="g", devices=("tap*",))])
    set_links(ex, 0.0, tapA=False, tapB=False)
    ex.set_routes([kroute("203.0.113.10/32", [(None, 1)])])  # the same prefix from another program
    assert ex.changes(0.0) == []  # no device up: nothing, not even through the filter
    set_links(ex, 1.0, tapA=False, tapB=True)
    assert ex.changes(1.0) == [(P10, "announce route 203.0.113.10/32 next-hop self community [65010:53]")]
    assert ex.announced[P10][2] == "export.anycast"


def test_changed_neighbors_withdraw_from_the_old_ones_first():
    ex = exporter(anycast=[AnycastGroup(prefix=P10, devices=("tapA",), attrs=ExportAttrs(neighbors=("192.0.2.1",)))])
    set_links(ex, 0.0, tapA=True)
    ex.changes(0.0)
    ex.anycast = (AnycastGroup(prefix=P10, devices=("tapA",), attrs=ExportAttrs(neighbors=("192.0.2.9",))),)
    assert [c for _p, c in ex.changes(1.0)] == [
        "neighbor 192.0.2.1 withdraw route 203.0.113.10/32 next-hop self",
        "neighbor 192.0.2.9 announce route 203.0.113.10/32 next-hop self"]


def test_damping_suppresses_a_flapping_device_and_reuses_it_after_decay():
    settings = DampingSettings(half_life=10.0, suppress=2.5, reuse=1.5, max_suppress=60.0)
    ex = exporter(anycast=[AnycastGroup(prefix=P10, devices=("tapA",))], damping=settings)
    t = 0.0
    set_links(ex, t, tapA=True)
    assert len(ex.changes(t)) == 1
    for _flap in range(3):  # three losses in quick succession
        t += 0.1
        set_links(ex, t, tapA=False)
        assert [c.split()[0] for _p, c in ex.changes(t)] == ["withdraw"]  # a loss acts at once
        t += 0.1
        set_links(ex, t, tapA=True)
        announced = ex.changes(t)
    assert announced == []  # the third time, the device is held down
    reuse = ex.deadline()
    assert reuse is not None and 9.0 < reuse - t < 11.0  # penalty ~2.9 -> 1.5: about one half-life
    assert ex.changes(reuse - 0.5) == []
    assert [c.split()[0] for _p, c in ex.changes(reuse + 0.01)] == ["announce"]
    assert ex.deadline() is None


def test_damping_penalty_is_capped_by_max_suppress():
    d = Damping(DampingSettings(half_life=10.0, suppress=3.0, reuse=1.5, max_suppress=30.0))
    for i in range(100):
        d.lost("tapA", i * 0.01)
    assert d.value("tapA", 1.0) <= 1.5 * 2 ** 3 + 1e-9
    assert d.next_reuse(1.0) <= 1.0 + 30.0 + 1e-6
    assert not Damping(DampingSettings(enabled=False)).lost("tapA", 0.0)


def test_dump_plan_reads_only_the_protocols_the_filters_name():
    ex = exporter(filters=[KernelFilter(name="a", protocols=(3, 4)), KernelFilter(name="b", protocols=(16,)),
                           KernelFilter(name="c", table=100), KernelFilter(name="d", table=100, protocols=(3,))])
    assert ex.dump_plan() == {254: (3, 4, 16), 100: (0,)}

