"""The Prometheus endpoint of a running ``kernelsync run`` (real kernel, in a namespace), scraped
over HTTP and checked against ``kernelsync show stats`` (and ``show bgp``, ``show export``,
``show feeds``): static routes, a BGP feed through the relay socket (lines written as a relay
would), a kernel-table feed and an export filter; a link flap observed in the repair histogram,
the BGP batch in the feed-to-kernel histogram.  And systemd's protocol: with NOTIFY_SOCKET and
WATCHDOG_USEC the daemon sends READY=1 only once SYNCED, then WATCHDOG=1 keep-alives."""
import json
import socket
import subprocess
import sys
import time
import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families

from kernelsync.tools.netns import wait_for
from tests.support.netns import static_routes, write_config
from tests.unit.feeds.bgp_lines import announce, msg

pytestmark = pytest.mark.netns

PORT = 9342
PEER = dict(peer="10.0.0.2", local="10.0.0.1")

CONFIG = """
[metrics]
listen = "127.0.0.1:%(port)d"

[[feed.table]]
name = "ospf"
table = 101
protocol = "bird"
hold_time = 0
settle = 0.05

[exabgp]
listen = "%(sock)s"

[[export.kernel]]
name = "guests"
table = 254
protocols = ["boot"]
devices = ["v1", "v2"]

[export]
state_file = "%(state)s"

[bgp]
startup_wait = 0.5
"""


def scrape(ns):
    with ns.entered():
        text = urllib.request.urlopen("http://127.0.0.1:%d/metrics" % PORT, timeout=10).read().decode()
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def show(ns, config, what):
    """``kernelsync show WHAT --json``, the command line an operator runs."""
    out = subprocess.run(["ip", "netns", "exec", ns.name, sys.executable, "-m", "kernelsync", "show", what, "--json",
                          "-c", str(config)], capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out
    return json.loads(out.stdout)


def consistent(ns, config):
    """A scrape and ``show stats`` taken with nothing changing between them (the daemon idle):
    the scrape before and after the show agree on the counters."""
    def once():
        before = scrape(ns)
        stats = show(ns, config, "stats")
        after = scrape(ns)
        keys = [k for k in before if k[0] != "kernelsync_metrics_snapshot_age_seconds"]
        return all(before[k] == after.get(k) for k in keys) and (after, stats)
    return wait_for(once, timeout=15, interval=0.2, what="a quiet scrape")


def test_scraped_metrics_are_the_daemons_show_views(lab, tmp_path, daemon_factory):
    ns = lab
    ns.ip("route", "add", "203.0.113.20/32", "dev", "v1", "proto", "boot")  # a guest: exported
    ns.ip("route", "add", "10.99.0.0/16", "via", "10.0.1.2", "table", "101", "proto", "bird")  # table feed
    relay_path = tmp_path / "relay.sock"
    conf = write_config(tmp_path, static_routes([("203.0.113.10/32", [{"dev": "v1"}, {"dev": "v2"}], None)])
                        + "\n" + CONFIG % {"port": PORT, "sock": relay_path, "state": tmp_path / "exported.json"})
    d = daemon_factory(ns, conf).start()
    d.wait_synced(routes=2)
    relay = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)  # as `kernelsync exabgp --relay` would
    relay.connect(str(relay_path))
    try:
        relay.sendall((msg("state", {"state": "up"}, **PEER) + "\n"
                       + announce(["198.51.100.0/24", "198.51.100.128/25"], "10.0.0.2", **PEER) + "\n"
                       + "{not json\n").encode())
        wait_for(lambda: d.stats()["installed_routes"] == 4, timeout=10, what="the BGP routes installed")
        got, stats = consistent(ns, conf)
        assert stats["state"] == "SYNCED" and got[("kernelsync_sync_state", (("state", "SYNCED"),))] == 1
        assert got[("kernelsync_routes", ())] == stats["installed_routes"] == 4
        assert got[("kernelsync_desired_routes", ())] == stats["fib_routes"]
        assert got[("kernelsync_rib_prefixes", ())] == stats["rib_prefixes"]
        assert got[("kernelsync_nexthop_objects", ())] == stats["nexthop_objects"] > 0
        for kind, n in stats["writes"].items():
            assert got[("kernelsync_kernel_writes_total", (("kind", kind),))] == n
        assert got[("kernelsync_kernel_failures_total", ())] == stats["kernel_failures"]
        assert got[("kernelsync_full_syncs_total", ())] == stats["full_syncs"]
        assert got[("kernelsync_bgp_lines_total", ())] == stats["bgp"]["lines"] == 3
        assert got[("kernelsync_bgp_bad_lines_total", ())] == stats["bgp"]["bad_lines"] == 1
        bgp = show(ns, conf, "bgp")
        assert [(p["peer"], p["state"], p["paths"]) for p in bgp["peers"]] == [("10.0.0.2", "up", 2)]
        assert got[("kernelsync_bgp_peers", (("state", "up"),))] == 1
        assert got[("kernelsync_bgp_paths", (("peer", "10.0.0.2"),))] == 2
        assert got[("kernelsync_bgp_stale_paths", (("peer", "10.0.0.2"),))] == 0
        export = show(ns, conf, "export")
        assert got[("kernelsync_exported_prefixes", ())] == len(export["announced"]) == 1
        feeds = show(ns, conf, "feeds")
        assert got[("kernelsync_feed_routes", (("feed", "ospf"),))] == feeds["ospf"]["routes"] == 1
        assert got[("kernelsync_feed_stale_routes", (("feed", "ospf"),))] == feeds["ospf"]["stale"] == 0
        # the BGP batch: arrival to ACK, observed once (the static routes at start had no feed line)
        assert got[("kernelsync_feed_to_kernel_seconds_count", ())] >= 1
        assert 0 < got[("kernelsync_feed_to_kernel_seconds_sum", ())] < 10
        assert got[("kernelsync_repair_duration_seconds_count", ())] == 0
        batches = got[("kernelsync_feed_to_kernel_seconds_count", ())]
        ns.ip("route", "add", "10.98.0.0/16", "via", "10.0.1.2", "table", "101", "proto", "bird")  # the table feed's
        wait_for(lambda: d.stats()["installed_routes"] == 5, timeout=10, what="the table feed's new route")
        got, stats = consistent(ns, conf)
        assert got[("kernelsync_feed_to_kernel_seconds_count", ())] == batches + 1
        assert got[("kernelsync_feed_routes", (("feed", "ospf"),))] == 2

        ns.ip("link", "set", "p2", "down")  # a leg of the static group loses its carrier: a repair
        wait_for(lambda: d.stats()["repairs"] >= 1 and d.stats()["last_repair_ms"] is not None, timeout=10,
                 what="the repair")
        got, stats = consistent(ns, conf)
        assert got[("kernelsync_repairs_total", ())] == stats["repairs"] >= 1
        assert got[("kernelsync_repair_duration_seconds_count", ())] >= 1
        print("feed to kernel: %d batches, %.1f ms in all; repairs: %d, %.1f ms in all" % tuple(
            got[("kernelsync_%s_seconds_%s" % (name, part), ())] * (1e3 if part == "sum" else 1)
            for name in ("feed_to_kernel", "repair_duration") for part in ("count", "sum")))
        assert got[("kernelsync_exported_prefixes", ())] == len(show(ns, conf, "export")["announced"])
        # withdrawn: no BGP route left for a `kernelsync hold` to keep after the stop
        relay.sendall((announce([], "10.0.0.2", withdraw=["198.51.100.0/24", "198.51.100.128/25"], **PEER)
                       + "\n").encode())
        wait_for(lambda: d.stats()["installed_routes"] == 3, timeout=10, what="the BGP routes withdrawn")
    finally:
        relay.close()
    assert d.stop() == 0
    assert "holds the BGP routes" not in d.log()


def test_systemd_ready_once_synced_then_watchdog_keepalives(lab, tmp_path, daemon_factory, monkeypatch):
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)  # a path: reachable from the namespace
    notify.bind(str(tmp_path / "notify"))
    notify.settimeout(10)
    # a static route on a device that does not exist yet, and a BGP feed waiting for its start-up
    # wait: the daemon is AWAITING for startup_wait, then SYNCED
    conf = write_config(tmp_path, static_routes([("203.0.113.10/32", [{"dev": "v1"}], None)])
                        + '\n[exabgp]\nlisten = "%s"\n[bgp]\nstartup_wait = 1.0\n' % (tmp_path / "relay.sock"))
    monkeypatch.setenv("NOTIFY_SOCKET", str(tmp_path / "notify"))
    monkeypatch.setenv("WATCHDOG_USEC", "400000")  # keep-alives every 0.2 s
    started = time.monotonic()
    d = daemon_factory(lab, conf).start()
    messages = []
    try:
        while not any("READY=1" in m for m in messages):
            messages.append(notify.recv(4096).decode())
        ready_at = time.monotonic()
        assert d.stats()["state"] == "SYNCED"
        assert ready_at - started >= 1.0  # not before BGP's start-up wait made it SYNCED
        before = [m for m in messages if "READY=1" not in m]
        assert any("STATUS=AWAITING" in m for m in before) and not any("SYNCED" in m for m in before)
        assert "STATUS=SYNCED: 1 routes" in messages[-1]
        pings = 0
        deadline = time.monotonic() + 1.0
        while time.monotonic() < deadline:
            if "WATCHDOG=1" in notify.recv(4096).decode():
                pings += 1
        assert 3 <= pings <= 8, pings  # about every 0.2 s
        assert d.stop() == 0
        notify.settimeout(2)
        tail = [notify.recv(4096).decode()]
        while "STOPPING=1" not in tail[-1] and "WATCHDOG=1" in tail[-1]:  # keep-alives sent before the stop
            tail.append(notify.recv(4096).decode())
        assert tail[-1] == "STOPPING=1\nSTATUS=stopping"
    finally:
        notify.close()
