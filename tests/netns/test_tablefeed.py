"""The kernel-table feed on the real kernel in a namespace, with the source daemon's routes
written by hand exactly as BIRD's kernel protocol writes them (table 101, protocol bird = 12;
RTA_MULTIPATH legs, device-only legs included).  The real BIRD OSPF run is in
``test_bird_ospf.py``; the pure parts in ``tests/unit/feeds/test_routesource.py``."""
import subprocess
import time

import pytest

from kernelsync.tools.netns import wait_for
from tests.support.netns import TABLE, monitor_lines_until_now, our_nexthops, our_routes, write_config

pytestmark = pytest.mark.netns

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
        lines = monitor_lines_until_now(ns, monitor)
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


def test_device_only_routes_keep_scope_link_and_a_restart_writes_nothing(ospf_ns, tmp_path, daemon_factory):
    """BIRD writes a device-only route scope link (one leg or RTA_MULTIPATH of ``nexthop dev``
    legs); kernelsync's copy is scope link too, a route with a gateway and an IPv6 route stay
    global.  A restart writes nothing; a copy found with the wrong scope is rewritten once, in
    place.  ``show feeds routes`` lists the table's routes."""
    ns = ospf_ns
    bird = ["table", "101", "proto", "bird", "metric", "20"]
    ns.ip("route", "replace", "192.0.2.128/25", "dev", "v3", *bird)  # ip writes scope link, as BIRD does
    ns.ip("route", "replace", "203.0.113.0/24", "scope", "link", *bird, "nexthop", "dev", "v3", "nexthop", "dev", "v2")
    try:
        ns.ip("route", "replace", "198.51.100.0/24", "via", "10.0.0.2", "dev", "v0", *bird)
        ns.ip("-6", "route", "replace", "2001:db8:99::/48", "dev", "v3", *bird)
        source = {r["dst"]: r.get("scope", "global") for r in ns.json("route", "show", "table", "101")}
        assert source == {"192.0.2.128/25": "link", "203.0.113.0/24": "link", "198.51.100.0/24": "global"}
        conf = write_config(tmp_path, FEEDS % {"hold": 30})
        d = daemon_factory(ns, conf).start()
        d.wait_synced(routes=4)

        def scopes():
            return ({p: r.get("scope", "global") for p, r in our_routes(ns).items()},
                    {p: r.get("scope", "global") for p, r in our_routes(ns, "-6").items()})

        assert scopes() == (source, {"2001:db8:99::/48": "global"})
        assert group_of(ns, "203.0.113.0/24") == [(None, "v2"), (None, "v3")]
        # the feed's routes, on request, with a prefix filter
        listed = d.query("show feeds routes")["ospf"]["routes"]
        assert {r["prefix"]: [nh["dev"] for p in r["paths"] for nh in p["nexthops"]] for r in listed} == {
            "192.0.2.128/25": ["v3"], "198.51.100.0/24": ["v0"], "203.0.113.0/24": ["v2", "v3"], "2001:db8:99::/48": ["v3"]}
        assert [r["prefix"] for r in d.query("show feeds routes 203.0.113.0/24")["ospf"]["routes"]] == ["203.0.113.0/24"]
        assert d.query("show feeds")["ospf"]["stale_for"] is None
        # killed and started again: not one write
        d.proc.kill()
        d.proc.wait()
        second = daemon_factory(ns, conf, "second").start()
        second.wait_synced(routes=4)
        second.query("resync")
        wait_for(lambda: second.stats()["full_syncs"] >= 2, timeout=10, what="second full sync")
        assert sum(second.stats()["writes"].values()) == 0, second.stats()["writes"]
        assert scopes() == (source, {"2001:db8:99::/48": "global"})
        # our copy rewritten scope global by hand (as an older kernelsync wrote it): the next start
        # puts the scope back with one route write, on the same nexthop
        second.proc.kill()
        second.proc.wait()
        route = our_routes(ns)["192.0.2.128/25"]
        ns.ip("route", "replace", "192.0.2.128/25", "nhid", str(route["nhid"]), "table", str(TABLE), "proto", "200",
              "metric", str(route.get("metric", 0)))
        assert scopes()[0]["192.0.2.128/25"] == "global"
        third = daemon_factory(ns, conf, "third").start()
        third.wait_synced(routes=4)
        wait_for(lambda: scopes()[0]["192.0.2.128/25"] == "link", timeout=5, what="scope link again")
        third.query("resync")
        wait_for(lambda: third.stats()["full_syncs"] >= 2, timeout=10, what="third full sync")
        assert third.stats()["writes"] == {"nexthop-set": 0, "route-set": 1, "route-del": 0, "nexthop-del": 0}
        assert our_routes(ns)["192.0.2.128/25"]["nhid"] == route["nhid"]
        third.stop()
    finally:
        # a multipath route shows no "dev": the lab's teardown would take it for a foreign route
        ns.ip("route", "del", "203.0.113.0/24", "table", "101", "proto", "bird")
