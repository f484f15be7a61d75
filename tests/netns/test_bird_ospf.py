"""OSPF through BIRD 2 for real: three routers in namespaces (``kernelsync.tools.ospflab``), r1's BIRD
exports its OSPF routes into kernel table 100 (protocol bird), and kernelsync on r1 reads that
table (``[[feed.table]]``) and installs the routes in its own table as a shared group."""
import ipaddress
import subprocess
import sys

import pytest

from kernelsync.control import query
from kernelsync.tools.netns import wait_for
from kernelsync.tools.ospflab import BIRD_TABLE, LAN, NH_R2, NH_R3, OspfLab, install_requirements
from tests.support.netns import ID_RANGE, PROTO, need_root, route_gateways, table_routes

pytestmark = [pytest.mark.netns, pytest.mark.slow]
OUR_TABLE = 200


@pytest.fixture(scope="module")
def daemons():
    need_root()
    install_requirements(frr=False)


def group(ns, prefix=LAN):
    """Sorted gateways of kernelsync's route for ``prefix`` (its nexthop object or group)."""
    return route_gateways(ns, prefix, OUR_TABLE)


def prefixes(ns, table, proto):
    return {r["dst"] for r in table_routes(ns, "table", str(table), "proto", proto)}


def scopes(ns, table, proto):
    """prefix -> scope of the IPv4 routes of ``table`` and ``proto`` (``ip -j`` omits global)."""
    return {r["dst"]: r.get("scope", "global") for r in table_routes(ns, "table", str(table), "proto", proto)}


def network(dst):
    """``ip -j``'s dst (a host route without its /32) -> ``192.0.2.1/32``."""
    return str(ipaddress.ip_network(dst))


def run_lab(tmp_path, check):
    """BIRD's OSPF lab with kernelsync on r1 reading table 100 into its own table."""
    lab = OspfLab("bird", workdir=str(tmp_path / "lab"))
    lab.start(daemons=False)  # kernelsync first, BIRD after it
    try:
        conf = tmp_path / "ks.toml"
        conf.write_text("\n".join([
            "[kernel]", "table = %d" % OUR_TABLE, "protocol = %d" % PROTO, "nexthop_id_range = [%d, %d]" % ID_RANGE,
            "verify_delay = 0.3", "[control]", 'socket = "%s"' % (tmp_path / "ks.sock"),
            "[[feed.table]]", 'name = "ospf"', "table = %d" % BIRD_TABLE, 'protocol = "bird"', "hold_time = 30"]) + "\n")
        ks = subprocess.Popen(["ip", "netns", "exec", lab.r1.name, sys.executable, "-m", "kernelsync", "--log-level",
                               "debug", "--log-file", str(tmp_path / "ks.log"), "run", "-c", str(conf)])
        try:
            wait_for(lambda: (tmp_path / "ks.sock").exists(), timeout=10, what="kernelsync up")
            lab.start_daemons()
            wait_for(lambda: group(lab.r1) == BOTH, timeout=30, what="one group over r2 and r3")
            check(lab, lambda what: query(str(tmp_path / "ks.sock"), what))
        finally:
            ks.terminate()
            ks.wait(10)
    finally:
        lab.close()


BOTH = sorted([NH_R2, NH_R3])


def test_bird_ospf_ecmp_becomes_one_group_and_follows_link_flaps(daemons, tmp_path):
    def check(lab, ask):
        # BIRD writes its device-only routes (the stub networks of r1's own links) scope link:
        # kernelsync's copies too, and nothing else differs
        wait_for(lambda: scopes(lab.r1, OUR_TABLE, str(PROTO)).keys() == scopes(lab.r1, BIRD_TABLE, "bird").keys(),
                 timeout=10, what="every BIRD route copied")
        bird = scopes(lab.r1, BIRD_TABLE, "bird")
        assert "link" in bird.values() and "global" in bird.values(), bird
        assert scopes(lab.r1, OUR_TABLE, str(PROTO)) == bird
        lab.link("e12", "down")
        wait_for(lambda: group(lab.r1) == [NH_R3], timeout=15, what="group shrunk to r3")
        lab.link("e12", "up")
        wait_for(lambda: group(lab.r1) == BOTH, timeout=20, what="two members again")
    run_lab(tmp_path, check)


def test_bird_stop_keeps_routes_stale(daemons, tmp_path):
    def check(lab, ask):
        installed = prefixes(lab.r1, OUR_TABLE, str(PROTO))
        assert len(installed) >= 5
        lab.stop_daemon("r1")  # BIRD removes its routes from table 100
        wait_for(lambda: ask("show feeds")["ospf"]["stale"] == len(installed), timeout=5, what="kept as stale")
        feed = ask("show feeds routes")["ospf"]
        assert 0 < feed["stale_for"] <= 30 and feed["stale_until_utc"].endswith("Z")
        assert {r["prefix"] for r in feed["routes"] if r["stale"]} == {network(p) for p in installed}
        assert prefixes(lab.r1, BIRD_TABLE, "bird") == set()
        assert prefixes(lab.r1, OUR_TABLE, str(PROTO)) == installed and group(lab.r1) == BOTH
        lab.start_daemon("r1")
        wait_for(lambda: ask("show feeds")["ospf"]["stale"] == 0, timeout=25, what="BIRD's routes back")
        assert prefixes(lab.r1, OUR_TABLE, str(PROTO)) == installed and group(lab.r1) == BOTH
    run_lab(tmp_path, check)
