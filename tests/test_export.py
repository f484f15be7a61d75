"""Export to BGP, the pure core: selection, liveness, damping, commands, acks, config."""
import pytest

from kernelsync import config
from kernelsync.exabgp import Ack, Parser, Version
from kernelsync.export import (AckTracker, AnycastGroup, Damping, DampingSettings, ExportAttrs, Exporter,
                               KernelFilter)
from kernelsync.model import AF_INET, AF_INET6, KNexthop, Link, parse_address, parse_prefix

OURS = 200
P10 = parse_prefix("203.0.113.10/32")
P11 = parse_prefix("203.0.113.11/32")
NO_DAMPING = DampingSettings(enabled=False)


def links(**state):
    """links(tapA=True, tapB=False) -> ifindex -> Link (usable = up and carrier)."""
    return {i: Link(index=i, name=name, up=True, carrier=up) for i, (name, up) in enumerate(state.items(), 1)}


def kroute(prefix, legs, proto=3, table=254, nh_id=0, rtype=1, metric=0):
    """A parse_route tuple; legs = [(gateway text or None, ifindex)]."""
    family, dst, plen = parse_prefix(prefix)
    out = []
    for gw, ifindex in legs:
        out.append((family, parse_address(gw)[1], ifindex) if gw else (None, None, ifindex))
    return (family, dst, plen, table, proto, rtype, metric, tuple(out), nh_id)


# commands -----------------------------------------------------------------------------------
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


# kernel filters -----------------------------------------------------------------------------
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


# the exported set ---------------------------------------------------------------------------
def exporter(anycast=(), filters=(), damping=NO_DAMPING):
    return Exporter(anycast, filters, damping, OURS)


def test_plain_dev_route_is_exported_while_its_device_has_carrier():
    ex = exporter(filters=[KernelFilter(name="g", devices=("tap*",))])
    ex.set_links(links(tap1=True, eth0=True), 0.0)
    ex.set_routes([kroute("203.0.113.10/32", [(None, 1)]),
                   kroute("198.51.100.0/24", [(None, 2)]),                 # eth0: no match
                   kroute("203.0.113.11/32", [("192.0.2.1", 1)]),         # a gateway
                   kroute("203.0.113.12/32", [(None, 1)], proto=OURS),     # ours: never
                   kroute("203.0.113.13/32", [(None, 1)], rtype=6)])       # prohibit
    assert ex.changes(0.0) == [(P10, "announce route 203.0.113.10/32 next-hop self")]
    assert ex.changes(0.0) == []  # de-duplicated: nothing new
    ex.set_links(links(tap1=False, eth0=True), 1.0)  # carrier loss (the route stays, linkdown)
    assert ex.changes(1.0) == [(P10, "withdraw route 203.0.113.10/32 next-hop self")]
    ex.set_links(links(tap1=True, eth0=True), 2.0)
    assert ex.changes(2.0) == [(P10, "announce route 203.0.113.10/32 next-hop self")]


def test_multipath_device_only_route_is_one_announcement_live_while_any_leg_is():
    ex = exporter(filters=[KernelFilter(name="g", devices=("tap*",))])
    ex.set_links(links(tapA=True, tapB=True), 0.0)
    ex.set_routes([kroute("203.0.113.10/32", [(None, 1), (None, 2)])])
    assert [c for _p, c in ex.changes(0.0)] == ["announce route 203.0.113.10/32 next-hop self"]
    ex.set_links(links(tapA=False, tapB=True), 1.0)
    assert ex.changes(1.0) == []  # tapB still carries it
    ex.set_links(links(tapA=False, tapB=False), 2.0)
    assert [c for _p, c in ex.changes(2.0)] == ["withdraw route 203.0.113.10/32 next-hop self"]


def test_route_on_a_nexthop_group_uses_the_members_devices():
    ex = exporter(filters=[KernelFilter(name="g", devices=("tap*",))])
    ex.set_links(links(tapA=True, tapB=True, eth0=True), 0.0)
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
    ex.set_links(links(tap1=True), 0.0)
    assert ex.route_event(False, kroute("203.0.113.10/32", [(None, 1)], table=100))
    assert not ex.route_event(False, kroute("203.0.113.10/32", [(None, 1)], table=254))  # other table
    assert not ex.route_event(False, kroute("203.0.113.11/32", [(None, 1)], table=100, proto=OURS))
    assert [p for p, _c in ex.changes(0.0)] == [P10]
    assert ex.route_event(True, kroute("203.0.113.10/32", [(None, 1)], table=100))
    assert [c for _p, c in ex.changes(1.0)] == ["withdraw route 203.0.113.10/32 next-hop self"]


def test_anycast_group_follows_its_devices_and_wins_over_a_filter():
    group = AnycastGroup(prefix=P10, devices=("tapA", "tapB"), attrs=ExportAttrs(communities=("65010:53",)))
    ex = exporter(anycast=[group], filters=[KernelFilter(name="g", devices=("tap*",))])
    ex.set_links(links(tapA=False, tapB=False), 0.0)
    ex.set_routes([kroute("203.0.113.10/32", [(None, 1)])])  # the same prefix from another program
    assert ex.changes(0.0) == []  # no device up: nothing, not even through the filter
    ex.set_links(links(tapA=False, tapB=True), 1.0)
    assert ex.changes(1.0) == [(P10, "announce route 203.0.113.10/32 next-hop self community [65010:53]")]
    assert ex.announced[P10][2] == "export.anycast"


def test_changed_neighbors_withdraw_from_the_old_ones_first():
    ex = exporter(anycast=[AnycastGroup(prefix=P10, devices=("tapA",), attrs=ExportAttrs(neighbors=("192.0.2.1",)))])
    ex.set_links(links(tapA=True), 0.0)
    ex.changes(0.0)
    ex.anycast = (AnycastGroup(prefix=P10, devices=("tapA",), attrs=ExportAttrs(neighbors=("192.0.2.9",))),)
    assert [c for _p, c in ex.changes(1.0)] == [
        "neighbor 192.0.2.1 withdraw route 203.0.113.10/32 next-hop self",
        "neighbor 192.0.2.9 announce route 203.0.113.10/32 next-hop self"]


# damping ------------------------------------------------------------------------------------
def test_damping_suppresses_a_flapping_device_and_reuses_it_after_decay():
    settings = DampingSettings(half_life=10.0, suppress=2.5, reuse=1.5, max_suppress=60.0)
    ex = exporter(anycast=[AnycastGroup(prefix=P10, devices=("tapA",))], damping=settings)
    t = 0.0
    ex.set_links(links(tapA=True), t)
    assert len(ex.changes(t)) == 1
    for _flap in range(3):  # three losses in quick succession
        t += 0.1
        ex.set_links(links(tapA=False), t)
        assert [c.split()[0] for _p, c in ex.changes(t)] == ["withdraw"]  # a loss acts at once
        t += 0.1
        ex.set_links(links(tapA=True), t)
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


# acks ---------------------------------------------------------------------------------------
def test_ack_tracker_matches_replies_in_order():
    t = AckTracker(timeout=10.0)
    t.sent("version", 0.0)
    t.sent("announce route 203.0.113.10/32 next-hop self", 0.0)
    t.sent("announce route 203.0.113.300/32 next-hop self", 0.0)
    assert t.reply() == "version"
    t.version_seen("5.0.15")
    assert t.reply() == "announce route 203.0.113.10/32 next-hop self"
    assert t.reply() == "announce route 203.0.113.300/32 next-hop self"
    assert t.reply() is None


def test_ack_tracker_stops_matching_for_exabgp_42_and_on_silence():
    t = AckTracker(timeout=10.0)
    t.sent("version", 0.0)
    t.sent("x", 0.0)
    t.version_seen("4.2.25")  # rejects silently: matching would shift
    assert t.reply() is None and not t.pending
    t.sent("y", 1.0)
    assert not t.pending
    quiet = AckTracker(timeout=10.0)  # exabgp.api.ack = false
    quiet.sent("a", 0.0)
    quiet.sent("b", 5.0)
    assert quiet.deadline() == 10.0
    assert quiet.expire(9.0) == []
    assert quiet.expire(10.0) == ["a"]
    assert quiet.deadline() is None and not quiet.correlate


def test_parser_reads_the_version_reply():
    p = Parser()
    assert p.parse("exabgp 5.0.15") == Version("5.0.15")
    assert p.parse("exabgp 4.2.25\n") == Version("4.2.25")
    assert isinstance(p.parse("done"), Ack)


# config -------------------------------------------------------------------------------------
def test_export_config_parses():
    cfg = config.parse({"export": {
        "state_file": "/run/ks/exported.json",
        "damping": {"half_life": 5, "suppress": 4, "reuse": 2},
        "anycast": [{"prefix": "203.0.113.10/32", "devices": ["tapA", "tapB"], "resilient": {"buckets": 32},
                     "communities": ["65010:53"], "med": 5}],
        "kernel": [{"name": "guests", "protocols": ["boot", 4], "devices": ["tap*"], "prefix_lengths": [32, 128],
                    "prefixes": ["203.0.113.0/24"], "next_hop_ipv6": "2001:db8:a::2",
                    "neighbors": ["192.0.2.1"], "large_communities": ["65010:1:2"], "local_pref": 300}]}})
    ex = cfg.export
    assert ex.enabled and ex.state_file == "/run/ks/exported.json"
    assert ex.damping == DampingSettings(half_life=5.0, suppress=4.0, reuse=2.0)
    group = ex.anycast[0]
    assert group.prefix == P10 and group.devices == ("tapA", "tapB") and group.resilient.buckets == 32
    assert [nh.dev for nh in group.path().nexthops] == ["tapA", "tapB"]
    assert all(nh.gateway is None for nh in group.path().nexthops)
    f = ex.kernel[0]
    assert f.protocols == (3, 4) and f.prefix_lengths == (32, 128) and f.table == 254
    assert f.attrs.neighbors == ("192.0.2.1",) and f.attrs.local_pref == 300
    assert not config.parse({}).export.enabled


@pytest.mark.parametrize("section, message", [
    ({"anycast": [{"prefix": "203.0.113.10/32"}]}, "export.anycast[0].devices: must be a non-empty list"),
    ({"anycast": [{"prefix": "203.0.113.300/32", "devices": ["t"]}]}, "export.anycast[0].prefix: '203.0.113.300/32'"),
    ({"anycast": [{"prefix": "203.0.113.10/32", "devices": ["t"], "colour": 1}]}, "export.anycast[0].colour: unknown"),
    ({"kernel": [{"protocols": ["nosuch"]}]}, "export.kernel[0].protocols: must be a list of protocol numbers"),
    ({"kernel": [{"next_hop_ipv4": "2001:db8::1"}]}, "export.kernel[0].next_hop_ipv4: must be \"self\" or an IPv4"),
    ({"kernel": [{"communities": ["65010:70000"]}]}, "export.kernel[0].communities: must be a list"),
    ({"kernel": [{"neighbors": ["peer1"]}]}, "export.kernel[0].neighbors: must be a list of peer addresses"),
    ({"damping": {"suppress": 1, "reuse": 2}}, "export.damping: reuse (2) must be below suppress (1)"),
    ({"state_file": "relative.json"}, "export.state_file: must be an absolute path"),
    ({"anycast": [{"prefix": "203.0.113.10/32", "devices": ["a"]}, {"prefix": "203.0.113.10/32", "devices": ["b"]}]},
     "export.anycast[1].prefix: 203.0.113.10/32 is already exported by export.anycast[0]"),
])
def test_export_config_errors_name_the_key(section, message):
    with pytest.raises(config.ConfigError) as err:
        config.parse({"export": section}, "ks.toml")
    assert message in str(err.value)


def test_anycast_prefix_may_not_also_be_a_static_route():
    with pytest.raises(config.ConfigError, match="is also the static route static.route.0."):
        config.parse({"static": {"route": [{"prefix": "203.0.113.10/32", "nexthops": [{"dev": "tapA"}]}]},
                      "export": {"anycast": [{"prefix": "203.0.113.10/32", "devices": ["tapA"]}]}})


def test_a_stdout_nobody_reads_never_blocks_sending():
    """ExaBGP not reading our commands (a full pipe): send() only queues; the writer thread is
    the one that waits."""
    import os
    from kernelsync.bgpfeed import StdinChannel, Waker

    r_in, w_in = os.pipe()
    r_out, w_out = os.pipe()
    waker = Waker()
    with os.fdopen(r_in, "rb") as rfile, os.fdopen(w_out, "wb") as wfile:
        channel = StdinChannel(waker, rfile=rfile, wfile=wfile)
        command = "announce route 203.0.113.10/32 next-hop self community [65010:53]"
        for _ in range(20_000):  # 1.3 MB: 20 times what the pipe holds
            channel.send(command)
        assert channel.out.qsize() > 10_000  # returned with most still queued: the writer is stuck
        os.close(w_in)  # end the reader thread
        data = b""
        while len(data) < 20_000 * (len(command) + 1):  # drain: everything arrives, in order
            data += os.read(r_out, 1 << 20)
        assert data == (command + "\n").encode() * 20_000
        channel.close()
    os.close(r_out)
    waker.close()


def test_dump_plan_reads_only_the_protocols_the_filters_name():
    ex = exporter(filters=[KernelFilter(name="a", protocols=(3, 4)), KernelFilter(name="b", protocols=(16,)),
                           KernelFilter(name="c", table=100), KernelFilter(name="d", table=100, protocols=(3,))])
    assert ex.dump_plan() == {254: (3, 4, 16), 100: (0,)}
