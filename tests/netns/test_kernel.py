"""The real kernel, in a fresh network namespace per test, with kernelsync running as a process.

Every test runs on the ``lab`` fixture, whose foreign routes and nexthops (another protocol,
another table, IDs outside our range, another protocol inside our range) are compared byte for
byte with their state before the test."""
import signal
import subprocess
import sys

import pytest

from kernelsync.tools.netns import wait_for
from tests.support.netns import PROTO, TABLE, our_nexthops, our_routes, static_routes, wait_for_state, write_config

pytestmark = pytest.mark.netns


def members(nexthops, gid):
    return sorted((m["id"], m.get("weight", 1)) for m in nexthops[gid]["group"])


def member_devs(nexthops, gid):
    return sorted(nexthops[m]["dev"] for m, _ in members(nexthops, gid))


def test_topologies_share_groups(lab, tmp_path, daemon_factory):
    routes = [
        ("198.51.100.0/25", [{"via": "10.0.0.2", "dev": "v0"}, {"via": "10.0.1.2", "dev": "v1"}], None),
        ("198.51.100.128/25", [{"via": "10.0.1.2", "dev": "v1"}, {"via": "10.0.0.2", "dev": "v0"}], None),
        ("203.0.113.10/32", [{"dev": "v0"}, {"dev": "v1"}], None),
        ("203.0.113.11/32", [{"dev": "v0"}, {"dev": "v1"}], None),
        ("203.0.113.12/32", [{"via": "10.0.0.2", "dev": "v0"}, {"dev": "v2"}], None),  # mixed
        ("203.0.113.13/32", [{"via": "2001:db8:0::2", "dev": "v0"}], None),  # RFC 5549
        ("203.0.113.14/32", [{"via": "10.0.0.2", "dev": "v0", "weight": 3}, {"via": "10.0.1.2", "dev": "v1"}], None),
        ("203.0.113.15/32", [{"dev": "v0"}, {"dev": "v1"}], {"buckets": 32, "idle_timer": 10}),
        ("2001:db8:100::/48", [{"via": "2001:db8:0::2", "dev": "v0"}, {"via": "2001:db8:1::2", "dev": "v1"}], None),
        ("2001:db8:200::/48", [{"dev": "v0"}, {"dev": "v1"}], None),
    ]
    d = daemon_factory(lab, write_config(tmp_path, static_routes(routes))).start()
    d.wait_synced(routes=len(routes))
    nhs = our_nexthops(lab)
    v4, v6 = our_routes(lab), our_routes(lab, "-6")
    # same set, any order: one group
    assert v4["198.51.100.0/25"]["nhid"] == v4["198.51.100.128/25"]["nhid"]
    assert v4["203.0.113.10"]["nhid"] == v4["203.0.113.11"]["nhid"]
    gw_group = nhs[v4["198.51.100.0/25"]["nhid"]]
    assert sorted(nhs[m["id"]]["gateway"] for m in gw_group["group"]) == ["10.0.0.2", "10.0.1.2"]
    dev_group = v4["203.0.113.10"]["nhid"]
    assert member_devs(nhs, dev_group) == ["v0", "v1"]
    assert all("gateway" not in nhs[m]  for m, _ in members(nhs, dev_group))
    mixed = v4["203.0.113.12"]["nhid"]
    assert sorted(nhs[m].get("gateway", "-") for m, _ in members(nhs, mixed)) == ["-", "10.0.0.2"]
    rfc5549 = nhs[v4["203.0.113.13"]["nhid"]]
    assert rfc5549["gateway"] == "2001:db8::2" and "group" not in rfc5549  # single path: the nexthop itself
    assert sorted(w for _, w in members(nhs, v4["203.0.113.14"]["nhid"])) == [1, 3]
    res = lab.json("-d", "nexthop", "show", "id", str(v4["203.0.113.15"]["nhid"]))[0]
    assert res["type"] == "resilient" and res["resilient_args"]["buckets"] == 32
    # IPv6 routes never on a group holding an IPv4 nexthop
    for prefix in ("2001:db8:100::/48", "2001:db8:200::/48"):
        gid = v6[prefix]["nhid"]
        assert all(nhs[m].get("gateway", "::").count(":") or _family_of(lab, m) == "inet6"
                   for m, _ in members(nhs, gid))
    assert v6["2001:db8:200::/48"]["nhid"] != dev_group
    # exactly the objects expected: 2 gw v4, 1 gw v6 for 5549, 2 dev v4 (v0,v1), 1 dev v4 v2,
    # 2 dev v6, 2 gw v6; groups: gw, dev, mixed, weighted, resilient, v6 gw, v6 dev
    plain = [n for n in nhs.values() if "group" not in n]
    groups = [n for n in nhs.values() if "group" in n]
    assert len(groups) == 7
    assert len(plain) == 2 + 1 + 2 + 1 + 2 + 1  # 5549's v6 gw on v0 is shared with the v6 gw group
    stats = d.stats()
    assert stats["kernel_failures"] == 0, d.log()


def _family_of(namespace, nh_id):
    return "inet6" if namespace.json("-6", "nexthop", "show", "id", str(nh_id)) else "inet"


def _count_checker(namespace, expected):
    """A predicate for wait_for that also asserts no route vanished on the way."""
    def check(gid, want_members):
        routes = our_routes(namespace)
        assert len(routes) == expected, "routes disappeared while a member was up: %d" % len(routes)
        assert all(r["nhid"] == gid for r in routes.values())
        nhs = our_nexthops(namespace)
        return gid in nhs and member_devs(nhs, gid) == want_members
    return check


@pytest.mark.slow
def test_flaps_with_1000_routes(lab, tmp_path, daemon_factory):
    routes = [("10.100.%d.%d/32" % (i // 250, i % 250), [{"dev": "v0"}, {"dev": "v1"}], None) for i in range(1000)]
    d = daemon_factory(lab, write_config(tmp_path, static_routes(routes))).start()
    d.wait_synced(routes=1000)
    gid = next(iter(our_routes(lab).values()))["nhid"]
    check = _count_checker(lab, 1000)
    for what, down, up in ((["link", "set", "v0", "down"], ["v1"], None),
                           (["link", "set", "v0", "up"], ["v0", "v1"], None),
                           (["link", "set", "p1", "down"], ["v0"], None),  # carrier loss on v1
                           (["link", "set", "p1", "up"], ["v0", "v1"], None)):
        lab.ip(*what)
        wait_for_state(lambda: check(gid, down), timeout=1.0, what="group %s after %s" % (down, what))
    stats = d.stats()
    assert stats["writes"]["route-set"] == 1000  # only the initial install: no route rewritten
    assert stats["kernel_failures"] == 0


def test_all_members_down_removes_then_restores_routes(lab, tmp_path, daemon_factory):
    routes = [("203.0.113.%d/32" % i, [{"dev": "v0"}, {"dev": "v1"}], None) for i in range(10, 20)]
    routes.append(("198.51.100.0/24", [{"via": "10.0.2.2", "dev": "v2"}], None))
    d = daemon_factory(lab, write_config(tmp_path, static_routes(routes))).start()
    d.wait_synced(routes=11)
    lab.ip("link", "set", "v0", "down")
    lab.ip("link", "set", "v1", "down")
    wait_for_state(lambda: len(our_routes(lab)) == 1, what="routes on the dead group gone")
    lab.ip("link", "set", "v1", "up")
    wait_for_state(lambda: len(our_routes(lab)) == 11, what="routes back with one member")
    lab.ip("link", "set", "v0", "up")
    wait_for_state(lambda: all(len(our_nexthops(lab).get(r["nhid"], {}).get("group", [])) == 2
                               for p, r in our_routes(lab).items() if p.startswith("203.")),
                   what="two members again")


def test_outside_deletes_repaired(lab, tmp_path, daemon_factory):
    routes = [("203.0.113.10/32", [{"dev": "v0"}, {"dev": "v1"}], None),
              ("203.0.113.11/32", [{"via": "10.0.2.2", "dev": "v2"}], None)]
    d = daemon_factory(lab, write_config(tmp_path, static_routes(routes), resync_interval=0.5)).start()
    d.wait_synced(routes=2)
    before = (our_routes(lab), our_nexthops(lab))
    lab.ip("route", "del", "203.0.113.10/32", "table", str(TABLE), "proto", str(PROTO))
    wait_for_state(lambda: "203.0.113.10" in our_routes(lab), timeout=3, what="ip route del repaired")
    member = members(before[1], before[0]["203.0.113.10"]["nhid"])[0][0]
    lab.ip("nexthop", "del", "id", str(member))
    wait_for_state(lambda: len(our_nexthops(lab)[before[0]["203.0.113.10"]["nhid"]]["group"]) == 2,
                   timeout=1, what="ip nexthop del of a member repaired")
    single = before[0]["203.0.113.11"]["nhid"]
    lab.ip("nexthop", "del", "id", str(single))  # takes its route with it
    wait_for_state(lambda: our_routes(lab).get("203.0.113.11", {}).get("nhid") == single, timeout=1,
                   what="ip nexthop del of a single nexthop repaired")
    assert (our_routes(lab), our_nexthops(lab)) == before


@pytest.mark.slow
def test_restart_with_10000_routes_writes_nothing(lab, tmp_path, daemon_factory):
    routes = [("10.%d.%d.0/24" % (100 + i // 250, i % 250),
               [{"dev": "v0"}, {"dev": "v1"}] if i % 2 else [{"via": "10.0.2.2", "dev": "v2"}], None)
              for i in range(10_000)]
    config = write_config(tmp_path, static_routes(routes))
    first = daemon_factory(lab, config, "first").start()
    first.wait_synced(routes=10_000, timeout=60)
    assert first.stop() == 0
    before = (our_routes(lab), our_nexthops(lab))
    assert len(before[0]) == 10_000  # graceful stop: routes stay
    monitor = subprocess.Popen(["ip", "-n", lab.name, "monitor", "nexthop", "route"], stdout=subprocess.PIPE,
                               stderr=subprocess.DEVNULL, text=True)
    try:
        second = daemon_factory(lab, config, "second").start()
        stats = second.wait_synced(routes=10_000, timeout=60)
        second.query("resync")  # one more full pass: still nothing to write
        wait_for(lambda: second.stats()["full_syncs"] >= 2, timeout=10, what="second full sync")
        stats = second.stats()
    finally:
        monitor.send_signal(signal.SIGTERM)
        seen, _ = monitor.communicate(timeout=5)
    assert stats["writes"] == {"nexthop-set": 0, "nexthop-del": 0, "route-set": 0, "route-del": 0}, stats
    assert seen.strip() == "", "kernel saw writes: %s" % seen[:500]
    assert (our_routes(lab), our_nexthops(lab)) == before


def test_sweep_after_restart_and_flush_on_exit(lab, tmp_path, daemon_factory):
    routes = [("203.0.113.%d/32" % i, [{"dev": "v0"}, {"dev": "v1"}], None) for i in range(10, 14)]
    first = daemon_factory(lab, write_config(tmp_path, static_routes(routes)), "first").start()
    first.wait_synced(routes=4)
    first.stop()
    # restart with two routes fewer and flush_on_exit: the two are swept, then all go on stop
    config = write_config(tmp_path, static_routes(routes[:2]), flush_on_exit=True)
    second = daemon_factory(lab, config, "second").start()
    second.wait_synced(routes=2)
    wait_for_state(lambda: sorted(our_routes(lab)) == ["203.0.113.10", "203.0.113.11"], timeout=2,
                   what="stale routes swept")
    assert second.stop() == 0
    assert our_routes(lab) == {} and our_nexthops(lab) == {}


def test_bad_route_does_not_stop_the_others(lab, tmp_path, daemon_factory):
    text = static_routes([("203.0.113.10/32", [{"dev": "v0"}], None),
                          ("203.0.113.11/32", [{"via": "10.0.0.300", "dev": "v0"}], None),
                          ("203.0.113.12/32", [{"dev": "v1"}], None)])
    config = write_config(tmp_path, text)
    check = subprocess.run([sys.executable, "-m", "kernelsync", "check", "-c", str(config)],
                           capture_output=True, text=True)
    assert check.returncode == 1
    assert "static.route[1].nexthops[0].via: '10.0.0.300' is not an IP address" in check.stderr
    assert str(config) in check.stderr
    d = daemon_factory(lab, config).start()
    d.wait_synced(routes=2)
    assert sorted(our_routes(lab)) == ["203.0.113.10", "203.0.113.12"]
    assert "static.route[1].nexthops[0].via" in d.log()


def test_dry_run_writes_nothing(lab, tmp_path):
    config = write_config(tmp_path, static_routes([("203.0.113.10/32", [{"dev": "v0"}, {"dev": "v1"}], None)]))
    out = lab.run(sys.executable, "-m", "kernelsync", "run", "-c", str(config), "--dry-run").stdout
    assert "route-set 203.0.113.10/32 table 100 metric 20 nhid" in out
    assert "nothing written" in out
    assert our_routes(lab) == {} and our_nexthops(lab) == {}


def test_control_socket_is_root_only_and_show_works(lab, tmp_path, daemon_factory):
    import os
    import stat
    config = write_config(tmp_path, static_routes([("203.0.113.10/32", [{"dev": "v0"}, {"dev": "v1"}], None)]))
    d = daemon_factory(lab, config).start()
    d.wait_synced(routes=1)
    assert stat.S_IMODE(os.stat(d.sock).st_mode) == 0o600
    rib = d.query("show rib")
    assert rib[0]["prefix"] == "203.0.113.10/32" and rib[0]["selected"] == "static"
    nhs = {n["id"]: n for n in d.query("show nexthops")}
    fib = d.query("show fib")
    assert fib[0]["installed"] and nhs[fib[0]["nhid"]]["installed"]
    out = subprocess.run([sys.executable, "-m", "kernelsync", "show", "fib", "-c", str(config), "--json"],
                         capture_output=True, text=True, check=True).stdout
    assert '"prefix": "203.0.113.10/32"' in out

    def show(*argv):
        return subprocess.run([sys.executable, "-m", "kernelsync", "show", *argv, "-c", str(config)],
                              capture_output=True, text=True, check=True).stdout.splitlines()

    text = show("fib", "203.0.113.0/24")  # the table, the legs joined in from show nexthops
    assert text[1].split()[:4] == ["203.0.113.10/32", str(fib[0]["nhid"]), "link", "ok"]
    assert text[1].endswith("dev v0, dev v1") and text[-1] == "1 route, 1 installed, 0 pending"
    assert show("fib", "--family", "6")[-1] == "0 routes, 0 installed, 0 pending (of 1 in the FIB)"
    d.stop()
    text = lab.run(sys.executable, "-m", "kernelsync", "show", "fib", "203.0.113.0/24",
                   "-c", str(config)).stdout.splitlines()  # no daemon: read from the lab's kernel
    assert text[1].split()[:4] == ["203.0.113.10/32", str(fib[0]["nhid"]), "link", "-"]
    assert text[1].endswith("group %d/%d" % tuple(sorted(m["id"] for m in nhs[fib[0]["nhid"]]["members"])))
    assert lab.run(sys.executable, "-m", "kernelsync", "show", "fib", "198.51.100.0/24",
                   "-c", str(config)).stdout.splitlines()[-1] == "0 routes"


def test_route_over_missing_device_is_installed_when_it_appears(lab, tmp_path, daemon_factory):
    routes = [("203.0.113.20/32", [{"dev": "v0"}, {"dev": "late0"}], None),
              ("203.0.113.21/32", [{"dev": "late0"}], None)]
    d = daemon_factory(lab, write_config(tmp_path, static_routes(routes))).start()
    d.wait_synced(routes=1)  # only the route with a member that exists
    assert "device late0 does not exist yet" in d.log()
    gid = our_routes(lab)["203.0.113.20"]["nhid"]
    assert member_devs(our_nexthops(lab), gid) == ["v0"]
    lab.veth("late0", "late1")
    wait_for_state(lambda: len(our_routes(lab)) == 2 and member_devs(our_nexthops(lab), gid) == ["late0", "v0"],
                   timeout=1, what="routes over the new device")


@pytest.mark.slow
def test_rapid_repeated_flaps_end_in_the_live_topology(lab, tmp_path, daemon_factory):
    """Flaps faster than kernelsync can react (FRR's stale-group case): after the last one the
    group holds exactly the members whose links are up, and every route is on it."""
    routes = [("10.100.%d.%d/32" % (i // 250, i % 250), [{"dev": "v0"}, {"dev": "v1"}, {"dev": "v2"}], None)
              for i in range(1000)]
    d = daemon_factory(lab, write_config(tmp_path, static_routes(routes))).start()
    d.wait_synced(routes=1000)
    gid = next(iter(our_routes(lab).values()))["nhid"]
    script = []
    for _ in range(10):
        script += ["link set v0 down", "link set p1 down", "link set v0 up", "link set v2 down",
                   "link set p1 up", "link set v2 up"]
    script += ["link set v1 down"]
    lab.run("ip", "-batch", "-", input="\n".join(script) + "\n")

    def converged(want):
        # mid-batch the kernel itself empties the group (a link came back up, but its nexthop is
        # not re-added yet) and drops the routes: only the end state is asserted here
        routes = our_routes(lab)
        nhs = our_nexthops(lab)
        return (len(routes) == 1000 and all(r["nhid"] == gid for r in routes.values())
                and gid in nhs and member_devs(nhs, gid) == want)
    wait_for_state(lambda: converged(["v0", "v2"]), timeout=1.0, what="group = live links after flaps")
    check = _count_checker(lab, 1000)
    lab.ip("link", "set", "v1", "up")
    wait_for_state(lambda: check(gid, ["v0", "v1", "v2"]), timeout=1.0, what="all three back")
    # writes racing a flap may be refused (the kernel deleted the group under them); they are
    # retried, and none is left pending
    assert d.stats()["pending_failures"] == {}


def test_route_key_held_by_another_protocol_is_left_alone(lab, tmp_path, daemon_factory):
    """Our config claims the very keys (table, prefix, metric) of the lab's foreign routes: the
    kernel refuses our creates (NLM_F_EXCL) and the foreign routes stay byte for byte (checked
    by the fixture); our other routes are installed."""
    routes = [("203.0.113.1/32", [{"dev": "v0"}], None),  # foreign proto 12 route, metric 20
              ("192.0.2.0/24", [{"dev": "v1"}], None),  # foreign proto 12 route on nhid 7
              ("203.0.113.50/32", [{"dev": "v1"}], None)]
    d = daemon_factory(lab, write_config(tmp_path, static_routes(routes))).start()
    d.wait_synced(routes=1)
    wait_for(lambda: "kernel refused 2 route-set: File exists" in d.log(), timeout=5, what="refusal logged")
    assert sorted(our_routes(lab)) == ["203.0.113.50"]
    assert len(d.stats()["pending_failures"]) == 2  # retried with backoff, in case the other goes


def test_nexthop_taken_over_by_another_program_is_left_to_it(lab, tmp_path, daemon_factory):
    """FRR's zebra learns the kernel's nexthop objects, ours included, and re-installs them as
    its own when a link comes back (RTM_NEWNEXTHOP replace, protocol zebra).  The object under
    our id is then theirs: left alone, never deleted; our routes on it move to a new id of ours."""
    routes = [("203.0.113.60/32", [{"dev": "v0", "via": "10.0.0.2"}], None),
              ("203.0.113.61/32", [{"dev": "v0", "via": "10.0.0.2"}], None)]
    d = daemon_factory(lab, write_config(tmp_path, static_routes(routes))).start()
    d.wait_synced(routes=2)
    (old,) = our_nexthops(lab)
    lab.ip("nexthop", "replace", "id", str(old), "via", "10.0.0.2", "dev", "v0", "proto", "zebra")
    wait_for_state(lambda: {r["nhid"] for r in our_routes(lab).values()} - {old}, timeout=5,
                   what="our routes moved off the taken id")
    (new,) = our_nexthops(lab)
    assert new != old and {r["nhid"] for r in our_routes(lab).values()} == {new}
    theirs = {n["id"]: n for n in lab.json("nexthop", "show")}[old]
    assert theirs["protocol"] == "zebra" and theirs["gateway"] == "10.0.0.2"  # still there, untouched
    assert "was replaced by another program (protocol 11)" in d.log()
    assert d.stats()["nexthops_taken_over"] == 1
