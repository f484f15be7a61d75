"""The kernel-table feed: pure conversion and stale handling, then a real kernel in a namespace
with the source daemon's routes written by hand exactly as BIRD's kernel protocol writes them
(table 101, protocol bird = 12; RTA_MULTIPATH legs, device-only legs included).  The real BIRD
OSPF run is in ``test_ospf.py``."""
import subprocess
import time

import pytest

from conftest import PROTO, TABLE, add_foreign, foreign_state, our_nexthops, our_routes, write_config
from kernelsync import config
from kernelsync.model import AF_INET, GRP_RES, KNexthop, NexthopSpec, Path, parse_address, parse_prefix
from kernelsync.netns import wait_for
from kernelsync.rib import Rib
from kernelsync.routesource import RouteSource, paths_of, route_paths

IFNAMES = {1: "e12", 2: "e13", 3: "tap1"}
P = parse_prefix("10.99.0.0/16")


def kroute(prefix, legs, proto=12, table=101, nh_id=0, metric=20, rtype=1):
    family, dst, plen = parse_prefix(prefix)
    out = tuple((family, parse_address(gw)[1], i) if gw else (None, None, i) for gw, i in legs)
    return (family, dst, plen, table, proto, rtype, metric, out, nh_id)


def spec(gw, dev, weight=1):
    return NexthopSpec(gateway=parse_address(gw)[1] if gw else None, gw_family=AF_INET if gw else None, dev=dev,
                       weight=weight)


# pure ---------------------------------------------------------------------------------------
def test_multipath_legs_become_one_path_device_only_included():
    paths = route_paths(kroute("10.99.0.0/16", [("10.0.13.2", 2), ("10.0.12.2", 1), (None, 3)]), {}, IFNAMES)
    assert paths == (Path((spec("10.0.12.2", "e12"), spec("10.0.13.2", "e13"), spec(None, "tap1"))),)
    assert route_paths(kroute("10.99.0.0/16", [("10.0.12.2", 9)]), {}, IFNAMES) is None  # unknown device
    assert route_paths(kroute("10.99.0.0/16", [], rtype=6), {}, IFNAMES) is None  # prohibit


def test_route_on_a_nexthop_group_keeps_weights_and_resilience():
    nhs = {1: KNexthop(id=1, family=AF_INET, protocol=11, oif=1, gateway=parse_address("10.0.12.2")[1]),
           2: KNexthop(id=2, family=AF_INET, protocol=11, oif=3),
           9: KNexthop(id=9, family=AF_INET, protocol=11, group=((1, 3), (2, 1)), grp_type=GRP_RES,
                       res=(64, 12000, 0))}
    (path,) = route_paths(kroute("10.99.0.0/16", [], nh_id=9), nhs, IFNAMES)
    assert path.nexthops == (spec("10.0.12.2", "e12", 3), spec(None, "tap1"))
    assert path.resilient.buckets == 64 and path.resilient.idle_timer == 120.0
    assert route_paths(kroute("10.99.0.0/16", [], nh_id=77), nhs, IFNAMES) is None  # not known (yet)


def test_lowest_metric_wins_per_prefix():
    routes = [kroute("10.99.0.0/16", [("10.0.12.2", 1)], metric=30), kroute("10.99.0.0/16", [("10.0.13.2", 2)])]
    assert paths_of(routes, {}, IFNAMES)[P] == (Path((spec("10.0.13.2", "e13"),)),)


def test_stale_state_is_kept_for_the_hold_time_then_swept():
    rib = Rib()
    src = RouteSource(rib, "ospf", 110, hold_time=10.0)
    a, b = parse_prefix("10.99.0.0/16"), parse_prefix("198.51.100.0/24")
    path = (Path((spec("10.0.12.2", "e12"),)),)
    src.replace_all({a: path, b: path})
    rib.take_dirty()
    src.lost(100.0)  # the daemon went away
    assert rib.candidates(a) and rib.candidates(b) and not rib.dirty  # kept, untouched
    src.update(a, path)  # a comes back unchanged: nothing for the FIB to do
    assert not rib.dirty
    assert src.deadline() == 110.0
    assert src.tick(109.0) == 0
    assert src.tick(110.0) == 1  # b never came back
    assert rib.candidates(a) and not rib.candidates(b)
    assert src.deadline() is None


def test_table_feed_config():
    cfg = config.parse({"feed": {"table": [{"table": 101, "protocol": "bird", "name": "ospf", "hold_time": 30}]}})
    (tf,) = cfg.table_feeds
    assert (tf.table, tf.protocol, tf.name, tf.distance, tf.hold_time) == (101, 12, "ospf", 110, 30.0)
    for item, message in [({"table": 101}, "feed.table[0].protocol: required"),
                          ({"table": 101, "protocol": 200}, "kernelsync's own protocol"),
                          ({"table": 254, "protocol": 12}, "kernelsync's own table"),
                          ({"table": 101, "protocol": 12, "name": "static"}, "feed.table[0].name"),
                          ({"table": 101, "protocol": 12, "distance": 300}, "feed.table[0].distance")]:
        with pytest.raises(config.ConfigError) as err:
            config.parse({"feed": {"table": [item]}})
        assert message in str(err.value)


# real kernel --------------------------------------------------------------------------------
FEEDS = """
[[feed.table]]
name = "ospf"
table = 101
protocol = "bird"
hold_time = %(hold)s
settle = 0.05

[[feed.table]]
name = "static-table"
table = 102
protocol = "static"
distance = 1
hold_time = 0
"""


@pytest.fixture
def ospf_ns(lab):
    """The lab namespace plus v3 (no address: device-only legs)."""
    lab.veth("v3", "p3")
    return lab


def start(ospf_ns, tmp_path, daemon_factory, hold=30):
    conf = write_config(tmp_path, FEEDS % {"hold": hold})
    return daemon_factory(ospf_ns, conf).start()


def bird_route(ns, prefix, *legs, table=101, verb="replace"):
    """Write a route as BIRD's kernel protocol does (proto bird, metric 20, multipath legs)."""
    args = ["route", verb, prefix, "table", str(table), "proto", "bird" if table == 101 else "static", "metric", "20"]
    for leg in legs:
        args += ["nexthop"] + (["via", leg[0]] if leg[0] else []) + ["dev", leg[1]]
    ns.ip(*args)


def group_of(ns, prefix):
    """(gateway, dev) of the members of our route's nexthop group, sorted; None if no route."""
    route = our_routes(ns).get(prefix)
    if route is None:
        return None
    nhs = our_nexthops(ns)
    nh = nhs[route["nhid"]]
    members = [nhs[m["id"]] for m in nh["group"]] if "group" in nh else [nh]
    return sorted((m.get("gateway"), m["dev"]) for m in members)


def test_multipath_source_route_becomes_one_shared_group(ospf_ns, tmp_path, daemon_factory):
    ns = ospf_ns
    bird_route(ns, "10.99.0.0/16", ("10.0.0.2", "v0"), ("10.0.1.2", "v1"))
    bird_route(ns, "198.51.100.0/24", ("10.0.0.2", "v0"), ("10.0.1.2", "v1"))
    bird_route(ns, "203.0.113.0/24", (None, "v3"), (None, "v2"))
    d = start(ns, tmp_path, daemon_factory)
    d.wait_synced(routes=3)
    two = [("10.0.0.2", "v0"), ("10.0.1.2", "v1")]
    assert group_of(ns, "10.99.0.0/16") == group_of(ns, "198.51.100.0/24") == two
    assert our_routes(ns)["10.99.0.0/16"]["nhid"] == our_routes(ns)["198.51.100.0/24"]["nhid"]  # shared
    assert group_of(ns, "203.0.113.0/24") == [(None, "v2"), (None, "v3")]
    # the source daemon changes its mind: one leg
    bird_route(ns, "10.99.0.0/16", ("10.0.1.2", "v1"))
    wait_for(lambda: group_of(ns, "10.99.0.0/16") == [("10.0.1.2", "v1")], timeout=2, what="one leg")
    # and withdraws a route
    ns.ip("route", "del", "198.51.100.0/24", "table", "101", "proto", "bird")
    wait_for(lambda: "198.51.100.0/24" not in our_routes(ns), timeout=2, what="withdrawn")
    # routes of other protocols in that table are not the source's (a bird marker after it)
    ns.ip("route", "add", "198.18.0.0/15", "via", "10.0.0.2", "table", "101", "proto", "boot")
    bird_route(ns, "198.51.100.0/24", ("10.0.0.2", "v0"))
    wait_for(lambda: "198.51.100.0/24" in our_routes(ns), timeout=2, what="marker route")
    assert "198.18.0.0/15" not in our_routes(ns)
    ns.ip("route", "del", "203.0.113.0/24", "table", "101", "proto", "bird")
    wait_for(lambda: "203.0.113.0/24" not in our_routes(ns), timeout=2, what="device-only route withdrawn")


def test_silent_deletion_on_link_down_is_read_again(ospf_ns, tmp_path, daemon_factory):
    ns = ospf_ns
    bird_route(ns, "10.99.0.0/16", ("10.0.2.2", "v2"))
    bird_route(ns, "198.51.100.0/24", ("10.0.0.2", "v0"))
    d = start(ns, tmp_path, daemon_factory)
    d.wait_synced(routes=2)
    ns.ip("link", "set", "v2", "down")  # the kernel deletes the table-101 route over v2, silently
    wait_for(lambda: "10.99.0.0/16" not in our_routes(ns), timeout=2, what="gone with its link")
    assert d.query("show feeds")["ospf"]["rereads"] >= 2
    assert "198.51.100.0/24" in our_routes(ns)


def test_admin_distance_hands_over_without_a_gap(ospf_ns, tmp_path, daemon_factory):
    """The same prefix from the static table (distance 1) and OSPF (110): static wins; removing
    it hands over to OSPF by one route replace: the route never leaves the kernel."""
    ns = ospf_ns
    bird_route(ns, "10.99.0.0/16", ("10.0.0.2", "v0"))
    bird_route(ns, "10.99.0.0/16", ("10.0.1.2", "v1"), table=102)
    d = start(ns, tmp_path, daemon_factory)
    d.wait_synced(routes=1)
    assert group_of(ns, "10.99.0.0/16") == [("10.0.1.2", "v1")]
    rib = {r["prefix"]: r for r in d.query("show rib")}
    assert [s["source"] for s in rib["10.99.0.0/16"]["sources"]] == ["static-table", "ospf"]
    monitor = subprocess.Popen(["ip", "-n", ns.name, "monitor", "route"], stdout=subprocess.PIPE, text=True)
    try:
        time.sleep(0.1)  # ip monitor subscribes asynchronously; no event to wait on
        ns.ip("route", "del", "10.99.0.0/16", "table", "102", "proto", "static")
        wait_for(lambda: group_of(ns, "10.99.0.0/16") == [("10.0.0.2", "v0")], timeout=2, what="OSPF took over")
        ns.ip("route", "add", "198.18.0.0/32", "dev", "v0", "table", "103")  # a marker: all seen
        lines = []
        for line in monitor.stdout:
            lines.append(line)
            if "198.18.0.0" in line:
                break
    finally:
        monitor.kill()
    ours = [l for l in lines if "10.99.0.0/16" in l and "table %d" % TABLE in l]
    assert ours and not any(l.startswith("Deleted") for l in ours), lines


def test_daemon_stop_keeps_routes_stale_and_a_quick_restart_writes_nothing(ospf_ns, tmp_path, daemon_factory):
    ns = ospf_ns
    legs = (("10.0.0.2", "v0"), ("10.0.1.2", "v1"))
    for prefix in ("10.99.0.0/16", "198.51.100.0/24"):
        bird_route(ns, prefix, *legs)
    d = start(ns, tmp_path, daemon_factory, hold=1.5)
    d.wait_synced(routes=2)
    before = (our_routes(ns), our_nexthops(ns))
    writes = d.stats()["writes"]
    # BIRD stops: it removes its routes; it starts again and puts them back (same legs)
    for prefix in ("10.99.0.0/16", "198.51.100.0/24"):
        ns.ip("route", "del", prefix, "table", "101", "proto", "bird")
    wait_for(lambda: d.query("show feeds")["ospf"]["stale"] == 2, timeout=2, what="stale")
    assert (our_routes(ns), our_nexthops(ns)) == before
    for prefix in ("10.99.0.0/16", "198.51.100.0/24"):
        bird_route(ns, prefix, *legs)
    wait_for(lambda: d.query("show feeds")["ospf"]["stale"] == 0, timeout=2, what="back")
    assert (our_routes(ns), our_nexthops(ns)) == before  # same objects
    assert d.stats()["writes"] == writes  # and not one write
    # stopped for longer than the hold time: swept
    ns.ip("route", "del", "10.99.0.0/16", "table", "101", "proto", "bird")
    ns.ip("route", "del", "198.51.100.0/24", "table", "101", "proto", "bird")
    wait_for(lambda: d.query("show feeds")["ospf"]["stale"] == 2, timeout=2, what="stale again")
    assert len(our_routes(ns)) == 2
    wait_for(lambda: not our_routes(ns), timeout=4, what="swept after the hold time")
