"""The chaos suite's pure parts: the oracle's expectation and comparison (written apart from
kernelsync's planner: it must import nothing of kernelsync), and the seeded scenario."""
import ast
import pathlib
from collections import Counter

import pytest

from kernelsync.tools import chaos_gen as gen
from kernelsync.tools import chaos_oracle as oracle
from kernelsync.tools.chaos_oracle import Entry

TOOLS = pathlib.Path(gen.__file__).parent


def links(**state):
    """name=(admin, carrier, [addresses]) -> LinkState map."""
    out = {}
    for i, (name, (admin, carrier, addrs)) in enumerate(state.items()):
        data = {"ifname": name, "ifindex": i + 2, "flags": (["UP"] if admin else []) + (["LOWER_UP"] if carrier else []),
                "addr_info": [{"family": "inet6" if ":" in a else "inet", "local": a.split("/")[0],
                               "prefixlen": int(a.split("/")[1])} for a in addrs]}
        out.update(oracle.links_from_addr_json([data]))
    return out


UP = links(a=(True, True, ["10.0.0.1/24", "2001:db8::1/64"]), b=(True, True, ["10.0.1.1/24", "2001:db8:1::1/64"]))


# --- the oracle's independence ----------------------------------------------------------------
@pytest.mark.parametrize("module", ["chaos.py", "chaos_oracle.py", "chaos_gen.py"])
def test_the_chaos_tool_imports_nothing_of_kernelsyncs_planner_or_kernel_layer(module):
    tree = ast.parse((TOOLS / module).read_text())
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            names.add(("." * node.level) + (node.module or ""))
            names |= {"%s.%s" % (node.module or "", a.name) for a in node.names}
    allowed_relative = {".", ".netns", ".chaos_gen", ".chaos_oracle"}
    for name in names:
        assert not name.startswith("kernelsync"), name
        if name.startswith("."):
            assert name in allowed_relative or name.lstrip(".") in ("chaos_gen", "chaos_oracle", "netns"), name
        assert "core" not in name.split(".") and "kernel" not in name.split("."), name


# --- expectation --------------------------------------------------------------------------
def test_a_leg_needs_its_device_admin_up_and_carrier():
    state = links(a=(True, True, []), b=(False, True, []), c=(True, False, []))
    assert oracle.leg_usable(None, "a", state)
    assert not oracle.leg_usable(None, "b", state)      # admin down
    assert not oracle.leg_usable(None, "c", state)      # no carrier
    assert not oracle.leg_usable(None, "gone", state)   # deleted


def test_a_gateway_needs_a_connected_subnet_of_its_family_on_its_device():
    assert oracle.leg_usable("10.0.0.7", "a", UP)
    assert not oracle.leg_usable("10.0.1.7", "a", UP)        # b's subnet
    assert not oracle.leg_usable("10.0.0.1", "a", UP)        # our own address
    assert oracle.leg_usable("2001:db8::7", "a", UP)
    assert oracle.leg_usable("fe80::1:2", "a", UP)           # link-local: the device is enough
    # the IPv6 address lost on admin down (keep_addr_on_down=0) and not back yet
    lost = links(a=(True, True, ["10.0.0.1/24"]))
    assert not oracle.leg_usable("2001:db8::7", "a", lost)
    assert oracle.leg_usable("10.0.0.7", "a", lost)
    assert oracle.leg_usable("fe80::1:2", "a", lost)


def test_a_tentative_address_gives_no_connected_subnet():
    state = oracle.links_from_addr_json([{"ifname": "a", "ifindex": 2, "flags": ["UP", "LOWER_UP"], "addr_info": [
        {"family": "inet6", "local": "2001:db8::1", "prefixlen": 64, "tentative": True}]}])
    assert not oracle.leg_usable("2001:db8::7", "a", state)


def test_a_route_has_exactly_its_usable_legs_with_weights_while_two_or_more_are_left():
    legs = [("10.0.0.2", "a", 2), (None, "b", 3), ("10.0.1.9", "a", 1)]   # the last: wrong subnet
    entry = oracle.expected_entry(legs, 0, UP)
    assert entry == Entry(frozenset({("10.0.0.2", "a", 2), (None, "b", 3)}), "mpath")
    b_down = links(a=(True, True, ["10.0.0.1/24"]), b=(True, False, []))
    assert oracle.expected_entry(legs, 0, b_down) == Entry(frozenset({("10.0.0.2", "a", None)}), "mpath")
    nothing = links(a=(False, True, []), b=(True, False, []))
    assert oracle.expected_entry(legs, 0, nothing) is None


def test_a_resilient_route_keeps_its_type_and_buckets():
    legs = [(None, "a", 1), (None, "b", 1)]
    assert oracle.expected_entry(legs, 32, UP) == Entry(frozenset({(None, "a", 1), (None, "b", 1)}), "resilient", 32)
    # a single configured leg is a plain nexthop, whatever its resilient setting
    assert oracle.expected_entry(legs[:1], 32, UP).kind == "plain"


def test_gateways_are_compared_in_canonical_form():
    entry = oracle.expected_entry([("2001:0db8:0::7", "a", 1)], 0, UP)
    assert entry.legs == frozenset({("2001:db8::7", "a", None)})


def test_expected_fib_leaves_out_routes_with_no_usable_leg():
    routes = [("10.9.0.0/24", [(None, "a", 1)], 0), ("10.9.1.0/24", [(None, "gone", 1)], 0)]
    assert set(oracle.expected_fib(routes, UP)) == {"10.9.0.0/24"}


# --- the kernel's side and the comparison -------------------------------------------------
NEXTHOPS = {
    1: {"id": 1, "gateway": "10.0.0.2", "dev": "a", "protocol": "200"},
    2: {"id": 2, "dev": "b", "protocol": "200"},
    3: {"id": 3, "group": [{"id": 1, "weight": 2}, {"id": 2, "weight": 3}], "protocol": "200"},
    4: {"id": 4, "group": [{"id": 1}, {"id": 2}], "type": "resilient", "resilient_args": {"buckets": 32}},
    5: {"id": 5, "group": [{"id": 2}], "protocol": "200"},
    6: {"id": 6, "dev": "b", "protocol": "200"},                  # unused
    7: {"id": 7, "group": [{"id": 1}, {"id": 99}]},               # a member that is gone
}


def test_kernel_entry_follows_nhid_to_the_group_and_its_members():
    entry, why = oracle.kernel_entry({"dst": "x", "nhid": 3}, NEXTHOPS)
    assert entry == Entry(frozenset({("10.0.0.2", "a", 2), (None, "b", 3)}), "mpath") and not why
    assert oracle.kernel_entry({"nhid": 4}, NEXTHOPS)[0] == Entry(
        frozenset({("10.0.0.2", "a", 1), (None, "b", 1)}), "resilient", 32)
    assert oracle.kernel_entry({"nhid": 1}, NEXTHOPS)[0] == Entry(frozenset({("10.0.0.2", "a", None)}), "plain")
    assert oracle.kernel_entry({"nhid": 42}, NEXTHOPS) == (None, "nhid 42 does not exist")
    assert "member 99" in oracle.kernel_entry({"nhid": 7}, NEXTHOPS)[1]
    assert "without nhid" in oracle.kernel_entry({"dst": "x", "gateway": "10.0.0.2"}, NEXTHOPS)[1]


def test_compare_reports_missing_extra_wrong_and_broken_routes():
    expected = {
        "10.1.0.0/24": Entry(frozenset({("10.0.0.2", "a", 2), (None, "b", 3)}), "mpath"),   # right
        "10.2.0.0/24": Entry(frozenset({("10.0.0.2", "a", 1), (None, "b", 1)}), "mpath"),   # wrong weights
        "10.3.0.0/24": Entry(frozenset({(None, "b", None)}), "mpath"),                      # absent
        "10.5.0.0/24": Entry(frozenset({(None, "b", None)}), "mpath"),                      # one-member group: fine
        "10.6.0.0/24": Entry(frozenset({("10.0.0.2", "a", 1), (None, "b", 1)}), "resilient", 64),  # buckets
        "10.7.0.0/24": Entry(frozenset({("10.0.0.2", "a", 1), (None, "b", 1)}), "mpath"),   # resilient instead
    }
    routes = {"10.1.0.0/24": {"nhid": 3}, "10.2.0.0/24": {"nhid": 3}, "10.4.0.0/24": {"nhid": 1},
              "10.5.0.0/24": {"nhid": 5}, "10.6.0.0/24": {"nhid": 4}, "10.7.0.0/24": {"nhid": 4},
              "10.8.0.0/24": {"nhid": 7}}
    result = oracle.compare(expected, routes, NEXTHOPS)
    assert set(result.missing) == {"10.3.0.0/24"}
    assert set(result.extra) == {"10.4.0.0/24"}
    assert set(result.wrong) == {"10.2.0.0/24", "10.6.0.0/24", "10.7.0.0/24"}
    assert set(result.broken) == {"10.8.0.0/24"}
    assert not result.ok
    assert result.without(result.prefixes()).ok
    diff = "\n".join(result.diff())
    assert "- 10.3.0.0/24 expected {dev b}" in diff and "~ 10.2.0.0/24" in diff


def test_a_plain_nexthop_matches_only_a_single_leg():
    one = Entry(frozenset({("10.0.0.2", "a", None)}), "mpath")
    assert oracle.entries_match(one, Entry(frozenset({("10.0.0.2", "a", None)}), "plain"))
    two = Entry(frozenset({("10.0.0.2", "a", 1), (None, "b", 1)}), "mpath")
    assert not oracle.entries_match(two, Entry(two.legs, "plain"))


def test_unused_objects_are_ours_and_used_by_no_route_nor_used_group():
    routes = {"10.1.0.0/24": {"nhid": 3}}
    ours = lambda nh: nh.get("protocol") == "200"   # noqa: E731
    assert oracle.unused_objects(NEXTHOPS, routes, ours) == {5, 6}


def test_ip_batch_output_is_split_into_its_documents():
    assert oracle.parse_multi_json('[{"a":1}]\n[]\n[{"b":[2]}]\n') == [[{"a": 1}], [], [{"b": [2]}]]
    assert oracle.canonical_prefix("10.0.0.1", 4) == "10.0.0.1/32"
    assert oracle.canonical_prefix("2001:db8::/64", 6) == "2001:db8::/64"


# --- the scenario ---------------------------------------------------------------------------
def test_the_topology_covers_every_kind_of_set_in_both_families_and_the_late_device():
    topo = gen.make_topology(7, links=8, routes=2000, sets=48)
    assert len(topo.routes) == 2000 and len({r.prefix for r in topo.routes}) == 2000
    assert len({(s.family, frozenset(s.legs), s.buckets) for s in topo.sets}) == 48
    kinds = Counter((s.kind, s.family) for s in topo.sets)
    for kind in gen.KINDS:
        assert kinds[(kind, 4)] >= 1, kind
        if kind != "ipv6-gateway-for-ipv4":
            assert kinds[(kind, 6)] >= 1, kind
    assert sum(1 for s in topo.sets if gen.LATE in {leg.dev for leg in s.legs}) >= 3
    assert any(s.buckets for s in topo.sets) and any(len({leg.weight for leg in s.legs}) > 1 for s in topo.sets)
    used = {r.nhset for r in topo.routes}
    assert len(used) == 48                                   # every set carries routes
    for s in topo.sets:                                      # an IPv6 route never has an IPv4 gateway
        if s.family == 6:
            assert all(leg.gateway is None or ":" in leg.gateway for leg in s.legs)
    text = topo.config_toml(table=100, protocol=200, metric=20, id_range=(1000, 1999), socket="/x", hold_time=1,
                            resync_interval=30, verify_delay=0.3, retry_max=5)
    assert text.count("[[static.route]]") == 2000 and "resilient = { buckets" in text


def test_the_config_the_topology_writes_is_valid_for_kernelsync(tmp_path):
    from kernelsync import config as config_mod
    topo = gen.make_topology(11, links=8, routes=500, sets=48)
    path = tmp_path / "k.toml"
    path.write_text(topo.config_toml(table=100, protocol=200, metric=20, id_range=(1000, 1999), socket="/x",
                                     hold_time=1, resync_interval=30, verify_delay=0.3, retry_max=5))
    cfg = config_mod.load(str(path))
    assert not cfg.route_errors and len(cfg.static_routes) == 500


def steps(seed, events=500, kills=10):
    g = gen.EventGenerator(seed, ["c%d" % i for i in range(8)], [gen.LATE], events, kills)
    return list(g)


def test_the_same_seed_gives_the_same_events_and_another_seed_others():
    assert steps(5) == steps(5)
    assert steps(5) != steps(6)


def test_the_generator_throws_every_kind_of_event_in_singles_and_bursts():
    out = steps(3, events=2000, kills=20)
    events = [e for s in out for e in s.events]
    assert len(events) == 2000
    kinds = Counter(e.kind for e in events)
    assert set(kinds) == set(gen.EVENT_KINDS), kinds
    assert kinds[gen.KILL] == 20
    sizes = Counter(len(s.events) for s in out)
    assert sizes[1] > 0 and all(n == 1 or 5 <= n <= 20 for n in sizes)
    assert sum(1 for s in out if s.burst) > 0
    first_late = next(i for i, e in enumerate(events) if e.link == gen.LATE)
    assert events[first_late].kind == gen.LINK_ADD and first_late < 500
    assert any(e.pause for e in events)


def test_the_generator_only_brings_up_what_is_down_and_re_creates_what_was_deleted():
    g = gen.EventGenerator(9, ["c0", "c1", "c2"], [gen.LATE], 3000, 0)
    state = {n: {"exists": True, "admin": True, "carrier": True} for n in ["c0", "c1", "c2"]}
    state[gen.LATE] = {"exists": False, "admin": False, "carrier": False}
    for step in g:
        for e in step.events:
            s = state.get(e.link)
            if e.kind == gen.ADMIN_UP:
                assert s["exists"] and not s["admin"]
                s["admin"] = True
            elif e.kind == gen.ADMIN_DOWN:
                assert s["exists"] and s["admin"]
                s["admin"] = False
            elif e.kind == gen.CARRIER_UP:
                assert s["exists"] and not s["carrier"]
                s["carrier"] = True
            elif e.kind == gen.CARRIER_DOWN:
                assert s["exists"] and s["carrier"]
                s["carrier"] = False
            elif e.kind == gen.LINK_DEL:
                assert s["exists"]
                s.update(exists=False, admin=False, carrier=False)
            elif e.kind == gen.LINK_ADD:
                assert not s["exists"]
                s.update(exists=True, admin=True, carrier=True)
            elif e.kind in (gen.ADMIN_FLAP, gen.CARRIER_FLAP):
                assert s["exists"] and s["admin" if e.kind == gen.ADMIN_FLAP else "carrier"]


# --- ip monitor as a witness -------------------------------------------------------------------
def test_monitor_lines_are_parsed_for_our_table_and_protocol_only():
    from kernelsync.tools.chaos import parse_monitor_line
    ts, what, deleted, key, nhid = parse_monitor_line("[2026-12-01T14:24:52.405815] Deleted id 1045 group 1044 proto 200 ")
    assert (what, deleted, key) == ("nexthop", True, 1045)
    assert parse_monitor_line("[2026-12-01T14:24:52.405815] id 7 dev c0 scope link proto 200")[1:4] == ("nexthop", False, 7)
    line = "[2026-12-01T14:24:52.409349] 10.128.79.0/24 nhid 1053 table 100 proto 200 metric 20 "
    later = parse_monitor_line(line)
    assert later[1:] == ("route", False, "10.128.79.0/24", 1053)
    assert abs(later[0] - ts - 0.003534) < 1e-6
    assert parse_monitor_line("[2026-12-01T14:24:52.4] Deleted 2001:db8::/64 nhid 9 table 100 proto 200 metric 20")[1:] \
        == ("route", True, "2001:db8::/64", 9)
    assert parse_monitor_line("[2026-12-01T14:24:52.4] 10.1.0.0/24 nhid 9 table 100 proto 12 metric 20") is None
    assert parse_monitor_line("[2026-12-01T14:24:52.4] local fe80::1 dev c0 table local proto kernel metric 0") is None
    assert parse_monitor_line("10.1.0.0/24 nhid 9 table 100 proto 200") is None


def test_an_outside_route_deletion_is_timed_from_its_delete_to_the_re_add_in_the_monitor():
    from kernelsync.tools.chaos import monitor_repairs
    lines = ["[2026-12-01T14:24:52.400000] Deleted 10.1.0.0/24 nhid 9 table 100 proto 200 metric 20",
             "[2026-12-01T14:24:52.401000] Deleted 10.2.0.0/24 nhid 9 table 100 proto 200 metric 20",
             "[2026-12-01T14:24:52.402000] 10.3.0.0/24 nhid 9 table 100 proto 200 metric 20",
             "[2026-12-01T14:24:52.403500] 10.1.0.0/24 nhid 9 table 100 proto 200 metric 20",
             "[2026-12-01T14:24:52.404000] 10.1.0.0/24 nhid 7 table 100 proto 200 metric 20"]
    repairs = monitor_repairs(lines, ["10.1.0.0/24", "10.2.0.0/24"])  # 10.2 never came back: moot
    assert len(repairs) == 1 and abs(repairs[0] - 3.5) < 1e-3


def test_a_prefix_is_dark_from_its_objects_deletion_until_a_route_write_moves_it():
    from kernelsync.tools.chaos import Chaos, Options
    chaos = Chaos(Options(events=1, routes=100))
    chaos.nhid_of = {"10.1.0.0/24": 5, "10.2.0.0/24": 5, "10.3.0.0/24": 6}
    lines = ["[2026-12-01T10:00:00.000000] 10.3.0.0/24 nhid 8 table 100 proto 200 metric 20",   # moved first
             "[2026-12-01T10:00:00.001000] Deleted id 6 group 1/2 proto 200",
             "[2026-12-01T10:00:00.001000] Deleted id 5 group 1/2 proto 200",
             "[2026-12-01T10:00:00.004000] id 9 group 1/2 proto 200",
             "[2026-12-01T10:00:00.005000] 10.1.0.0/24 nhid 9 table 100 proto 200 metric 20"]
    guarded = {"10.1.0.0/24", "10.2.0.0/24", "10.3.0.0/24"}
    dark = chaos._monitor_dark(lines, guarded, set())
    assert set(dark) == {"10.1.0.0/24", "10.2.0.0/24"}
    assert abs(dark["10.1.0.0/24"] - 0.004) < 1e-6
    assert abs(dark["10.2.0.0/24"] - 0.004) < 1e-6          # never re-added: dark until the last line
    # our own outside deletion, or a prefix with no leg that stayed up, is no darkness of kernelsync's
    assert chaos._monitor_dark(lines, {"10.3.0.0/24"}, set()) == {}
    assert set(chaos._monitor_dark(lines, guarded, {"10.2.0.0/24"})) == {"10.1.0.0/24"}


def test_a_route_deleted_while_a_leg_stayed_up_is_dark_until_written_again():
    from kernelsync.tools.chaos import Chaos, Options
    chaos = Chaos(Options(events=1, routes=100))
    chaos.nhid_of = {"10.9.0.0/24": 1000}
    lines = ["[2026-12-01T14:35:17.458018] Deleted 10.9.0.0/24 nhid 1000 table 100 proto 200 metric 20 ",
             "[2026-12-01T14:35:17.458079] Deleted id 1000 dev c0 scope host proto 200 ",
             "[2026-12-01T14:35:18.154082] id 1000 dev c0 scope host proto 200 ",
             "[2026-12-01T14:35:18.154143] 10.9.0.0/24 nhid 1000 table 100 proto 200 metric 20 "]
    dark = chaos._monitor_dark(lines, {"10.9.0.0/24"}, set())
    assert abs(dark["10.9.0.0/24"] - 0.696125) < 1e-6
    assert chaos._monitor_dark(lines, {"10.9.0.0/24"}, {"10.9.0.0/24"}) == {}   # our own `ip route del`


def test_every_seed_makes_a_topology():
    """A kind with few distinct sets left (a single device on the late link, say) looped until
    the generator gave up: 160 of 1,500 random seeds failed, among them CI's random seed
    2133070094.  It now gives up the late device, then the kind, for that set."""
    import random

    from kernelsync.tools import chaos_gen as gen
    rng = random.Random(12)
    for seed in [2133070094] + [rng.randrange(1 << 31) for _ in range(200)]:
        topo = gen.make_topology(seed, 8, 800, 48)
        assert len(topo.sets) == 48 and len(topo.routes) == 800


def test_device_only_ipv4_routes_are_expected_scope_link_and_compared_on_it():
    routes = [("10.9.0.0/24", [(None, "a", 1)], 0), ("10.9.1.0/24", [(None, "a", 1), (None, "b", 1)], 0),
              ("10.9.2.0/24", [(None, "a", 1), ("10.0.1.2", "b", 1)], 0), ("2001:db8:9::/48", [(None, "a", 1)], 0),
              ("10.9.3.0/24", [(None, "a", 1), (None, "gone", 1)], 0)]  # link even with a leg gone
    expected = oracle.expected_fib(routes, UP)
    assert {p: e.scope for p, e in expected.items()} == {
        "10.9.0.0/24": "link", "10.9.1.0/24": "link", "10.9.2.0/24": "global", "2001:db8:9::/48": "global",
        "10.9.3.0/24": "link"}
    nexthops = {2: NEXTHOPS[2], 8: {"id": 8, "dev": "a"}}
    kernel = {"10.9.0.0/24": {"nhid": 8, "scope": "link"}, "10.9.3.0/24": {"nhid": 8}}  # the second: global
    result = oracle.compare({p: expected[p] for p in kernel}, kernel, nexthops)
    assert set(result.wrong) == {"10.9.3.0/24"}  # same nhid, other scope: not taken from the cache
    assert "scope link" in "\n".join(result.diff())
