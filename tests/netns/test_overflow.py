"""Forced overflow of the notification sockets (issue 12, defect 2 and build item 4): with their
receive buffers shrunk (KERNELSYNC_NOTIFY_RCVBUF, a test hook), kernelsync is frozen
(SIGSTOP) while thousands of routes are added to the table it follows, links flap, and a
guest loses its carrier; once it runs again every notification after the first few kilobytes
is lost.  Both sockets must report the overflow, the engine must read the kernel whole, and
every feed must read again what it follows: the FIB holds every route of the followed table,
the exporter has withdrawn the guest."""
import os
import signal
import subprocess

import pytest

from kernelsync.daemon import RCVBUF_ENV
from kernelsync.tools.netns import wait_for
from tests.support.netns import our_routes, write_config

pytestmark = pytest.mark.netns

ROUTES = 3000

CONFIG = """
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
"""


def test_overflow_of_both_sockets_is_a_full_reread_fib_and_export_right_after(lab, tmp_path, daemon_factory,
                                                                                 monkeypatch):
    ns = lab
    ns.veth("d0", "dp0")
    ns.ip("route", "add", "203.0.113.10/32", "dev", "v2", "proto", "boot")  # a guest on v2
    ns.ip("route", "add", "203.0.113.11/32", "dev", "v1", "proto", "boot")  # and one that stays
    ns.ip("route", "add", "10.99.0.0/16", "via", "10.0.0.2", "table", "101", "proto", "bird")
    conf = write_config(tmp_path, CONFIG % {"sock": tmp_path / "relay.sock", "state": tmp_path / "exported.json"})
    monkeypatch.setenv(RCVBUF_ENV, "4096")
    d = daemon_factory(ns, conf).start()
    d.wait_synced(routes=1)
    wait_for(lambda: set(d.query("show export")["announced"]) == {"203.0.113.10/32", "203.0.113.11/32"},
             timeout=5, what="both guests announced")
    before = d.stats()["notifications"]
    assert before["notify_overflows"] == before["route_notify_overflows"] == 0
    batch = tmp_path / "flood.batch"
    # queued before the overflow (the buffer holds the first few kilobytes), deleted after it:
    # a stale queue applied after the re-read would put it back
    lines = ["route add 10.98.0.0/16 via 10.0.1.2 table 101 proto bird"]
    lines += ["route add 10.%d.%d.0/24 via 10.0.1.2 table 101 proto bird" % (100 + i // 250, i % 250)
             for i in range(ROUTES)]
    lines += ["link set d0 down", "link set d0 up"] * 100  # link notifications: the other socket
    lines += ["route del 10.99.0.0/16 table 101 proto bird",  # deletions among the lost ones
              "route del 10.98.0.0/16 table 101 proto bird"]
    batch.write_text("\n".join(lines) + "\n")
    os.kill(d.proc.pid, signal.SIGSTOP)
    try:
        subprocess.run(["ip", "-n", ns.name, "-batch", str(batch)], check=True)
        ns.ip("link", "set", "p2", "down")  # the guest on v2 loses its carrier: its notification is lost
    finally:
        os.kill(d.proc.pid, signal.SIGCONT)
    wait_for(lambda: len(our_routes(ns)) == ROUTES, timeout=30, what="every route of the flood in our table")
    wait_for(lambda: d.stats()["notifications"]["feed_rereads_after_overflow"] >= 1, timeout=5, what="re-read")
    # a marker after the flood: once it is in, whatever was queued before it has been read
    ns.ip("route", "add", "10.97.0.0/16", "via", "10.0.1.2", "table", "101", "proto", "bird")
    wait_for(lambda: "10.97.0.0/16" in our_routes(ns), timeout=5, what="the marker route")
    routes = our_routes(ns)
    assert len(routes) == ROUTES + 1
    assert "10.99.0.0/16" not in routes and "10.98.0.0/16" not in routes  # deletions lost: the re-read saw them
    assert all(r["nhid"] for r in routes.values())
    wait_for(lambda: set(d.query("show export")["announced"]) == {"203.0.113.11/32"}, timeout=5,
             what="the guest that lost its carrier withdrawn")
    stats = d.stats()
    notifications = stats["notifications"]
    assert notifications["notify_overflows"] >= 1 and notifications["route_notify_overflows"] >= 1, notifications
    assert notifications["sockets"]["links"] >= 1 and notifications["sockets"]["routes"] >= 1
    assert notifications["feed_rereads_after_overflow"] >= 1
    assert notifications["feeds"]["ospf"]["lost_notifications"] >= 1
    assert notifications["feeds"]["export"]["export_rereads"] >= 1
    assert notifications["feeds"]["bgp"]["rereads"] >= 1
    assert stats["installed_routes"] == ROUTES + 1 and stats["state"] == "SYNCED"
    print("overflow: %s" % notifications)
