"""Live reconfiguration on the real kernel (issue 15, item 4): ``kernelsync run`` in a namespace,
its file edited, then SIGHUP and ``kernelsync reload``: a static route added and one removed,
exactly their writes (the daemon's kernel write counters), nothing written for an identical
file, a bad file and one that needs a restart refused with the old routes intact."""
import signal
import subprocess
import sys

import pytest

from tests.support.netns import our_routes, static_routes, wait_for_state, write_config

pytestmark = pytest.mark.netns

A = ("203.0.113.10/32", [{"dev": "v0"}, {"dev": "v1"}], None)
B = ("198.51.100.0/25", [{"via": "10.0.0.2", "dev": "v0"}], None)
C = ("198.51.100.128/25", [{"dev": "v2"}], None)
D = ("203.0.113.64/26", [{"via": "10.0.1.2", "dev": "v1"}], None)
KERNEL = {"group_hold_time": 60}  # no unused object is deleted during the test: writes are the reload's only


def reload_cli(config):
    return subprocess.run([sys.executable, "-m", "kernelsync", "reload", "-c", str(config)],
                          capture_output=True, text=True, timeout=30)


def writes_since(d, before):
    """The daemon's kernel writes since ``before`` (a ``show stats`` writes dict), by kind."""
    now = d.query("show stats")["writes"]  # answered after the loop ran the engine on the reload
    return {k: v - before.get(k, 0) for k, v in now.items() if v != before.get(k, 0)}


def test_sighup_and_reload_apply_the_difference_refuse_bad_files(lab, daemon_factory, tmp_path):
    config = write_config(tmp_path, static_routes([A, B, C]), **KERNEL)
    d = daemon_factory(lab, config).start()
    d.wait_synced(routes=3)
    nhid = {p: r["nhid"] for p, r in our_routes(lab).items()}

    # SIGHUP: C removed, D added (on a new nexthop object); A and B untouched
    before = d.query("show stats")["writes"]
    config.write_text(write_config(tmp_path, static_routes([B, D, A]), **KERNEL).read_text())
    d.proc.send_signal(signal.SIGHUP)
    wait_for_state(lambda: set(our_routes(lab)) == {"203.0.113.10", "198.51.100.0/25", "203.0.113.64/26"},
                   timeout=10, what="C removed, D added")
    assert writes_since(d, before) == {"nexthop-set": 1, "route-set": 1, "route-del": 1}
    routes = our_routes(lab)
    assert {p: routes[p]["nhid"] for p in ("203.0.113.10", "198.51.100.0/25")} == {
        p: nhid[p] for p in ("203.0.113.10", "198.51.100.0/25")}
    assert lab.json("nexthop", "show", "id", str(routes["203.0.113.64/26"]["nhid"]))[0]["gateway"] == "10.0.1.2"
    assert "reload of %s: " % config in d.log() and "203.0.113.64/26: added (via 10.0.1.2 dev v1)" in d.log()

    # the same file again, by `kernelsync reload`: nothing written
    before = d.query("show stats")["writes"]
    out = reload_cli(config)
    assert out.returncode == 0 and out.stdout == "reloaded: no change\n", out
    assert writes_since(d, before) == {}

    # one route changed (B onto D's gateway, an existing object): that route's one write
    b2 = (B[0], [{"via": "10.0.1.2", "dev": "v1"}], None)
    config.write_text(write_config(tmp_path, static_routes([b2, D, A]), **KERNEL).read_text())
    out = reload_cli(config)
    assert out.returncode == 0, out
    assert out.stdout == ("reloaded: 1 change(s) applied\n"
                          "  static.route[0] 198.51.100.0/25: via 10.0.0.2 dev v0 -> via 10.0.1.2 dev v1\n")
    assert writes_since(d, before) == {"route-set": 1}
    assert our_routes(lab)["198.51.100.0/25"]["nhid"] == our_routes(lab)["203.0.113.64/26"]["nhid"]
    kept = our_routes(lab)

    # a bad file: refused with its errors, by both ways; the old routes stay, nothing written
    before = d.query("show stats")["writes"]
    good = config.read_text()
    config.write_text(good + static_routes([("203.0.113.128/25", [{"via": "10.0.0.300", "dev": "v0"}], None)]))
    out = reload_cli(config)
    assert out.returncode == 1 and out.stderr.startswith(
        "reload refused: the new configuration is invalid; the running one is kept: "), out
    assert "static.route[3].nexthops[0].via: '10.0.0.300' is not an IP address" in out.stderr
    config.write_text(good.replace("table = ", "table = 'main' #"))
    d.proc.send_signal(signal.SIGHUP)
    wait_for_state(lambda: d.log().count("reload refused") == 2, timeout=10, what="SIGHUP refused")
    assert "kernel.table: table must be an integer" in d.log()
    # a change that needs a restart: refused, named, nothing of the file applied (C is not added)
    config.write_text(write_config(tmp_path, static_routes([b2, D, A, C]), **dict(KERNEL, table=101)).read_text())
    out = reload_cli(config)
    assert out.returncode == 1 and "  kernel.table: 100 -> 101\n" in out.stderr, out
    assert d.proc.poll() is None and writes_since(d, before) == {}
    assert our_routes(lab) == kept
    assert d.query("show stats")["state"] == "SYNCED"
