"""Defect 4: routes never outlive their source by more than its hold time.  kernelsync as
ExaBGP's process (stdin mode), real ExaBGP and BIRD (the lab of ``test_exabgp_lab.py``):
ExaBGP stops -> the BGP routes stay (stale, forwarding) for ``bgp.restart_hold_time``, held by
a detached ``kernelsync hold`` that owns the key, then are swept; ExaBGP started again within
the hold -> its new process asks the holder to hand over, adopts the routes: zero route writes,
no route leaves the kernel."""
import os
import time

import pytest

from kernelsync.tools.netns import kernelsync_pids, wait_for
from tests.netns.test_exabgp_lab import Host, _monitor, daemons, full  # noqa: F401 (daemons: a fixture)
from tests.support.netns import PROTO

pytestmark = [pytest.mark.netns, pytest.mark.slow]


def holders(ns):
    """Pids of ``kernelsync hold`` processes in the namespace."""
    return kernelsync_pids(ns.name, "hold")


def hold_host(tmp_path, hold):
    host = Host(tmp_path)
    with open(host.conf, "a") as fh:  # the [bgp] section is the file's last
        fh.write("restart_hold_time = %s\n" % hold)
    return host


def test_exabgp_stops_routes_stay_for_the_hold_time_then_are_swept(daemons, tmp_path):
    hold = 3.0
    with hold_host(tmp_path, hold) as host:
        host.wait_routes(full())
        wait_for(lambda: host.query("show bgp")["ready"], timeout=10, what="BGP ready")
        t0 = time.monotonic()
        host.lab.stop_exabgp()
        stopped = time.monotonic()
        assert host.kernelsync_pids() == [] and len(holders(host.ns)) == 1, host.log_tail()
        assert host.routes() == full()  # stale, still forwarding
        wait_for(lambda: host.routes() == {}, timeout=hold + 10, interval=0.02, what="BGP routes swept")
        gone = time.monotonic() - t0
        print("BGP routes swept %.2f s after ExaBGP was told to stop (hold %.1f s, stop took %.2f s)"
              % (gone, hold, stopped - t0))
        assert hold - 0.5 <= gone <= hold + 3.0, host.log_tail()
        wait_for(lambda: not holders(host.ns), timeout=15, what="the holder to exit")
        nexthops = [n for n in host.ns.json("nexthop", "show") if str(n.get("protocol")) == str(PROTO)
                    and n["id"] not in host.ns.foreign_ids]
        assert nexthops == []  # nothing of ours left behind


def test_exabgp_restarted_within_the_hold_takes_the_routes_over_without_a_write(daemons, tmp_path):
    with hold_host(tmp_path, 30) as host:
        host.wait_routes(full())
        wait_for(lambda: host.query("show bgp")["ready"], timeout=10, what="BGP ready")
        monitor_log = os.path.join(host.dir, "monitor.log")
        monitor = _monitor(host.ns, monitor_log)
        try:
            host.lab.stop_exabgp()
            (holder,) = holders(host.ns)
            assert host.routes() == full()
            host.lab._start_exabgp()
            host.lab.wait_established()
            wait_for(lambda: not holders(host.ns), timeout=15, what="the holder to hand over and exit")

            def rebuilt():
                try:
                    bgp = host.query("show bgp")
                except OSError:
                    return False
                return bgp["ready"] and all(p["stale"] == 0 for p in bgp["peers"]) and bgp
            wait_for(rebuilt, timeout=30, what="the new process to rebuild its RIB")
            host.wait_routes(full())
            stats = host.query("show stats")
            assert stats["writes"]["route-set"] == 0 and stats["writes"]["route-del"] == 0, stats
            assert stats["writes"]["nexthop-set"] == 0, stats
        finally:
            monitor.terminate()
            monitor.wait()
        deleted = [l for l in open(monitor_log) if l.startswith("Deleted") and "proto %d" % PROTO in l]
        assert deleted == [], "routes left the kernel during the ExaBGP restart: %s" % deleted
        text = open(host.log).read()
        assert "asked the lingering owner" in text and "takes the routes over" in text
