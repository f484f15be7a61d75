"""Restart on the real kernel: kernelsync killed (SIGKILL) and started again adopts its groups by
id, so a restart with nothing changed writes nothing, links down or not, and a restart while a
link came back replaces the groups in place (O(groups) writes), never the routes.

``ip monitor nexthop route`` watches the kernel during the second start; the daemon's own write
counters must agree with it."""
import signal
import subprocess

import pytest

from kernelsync.tools.netns import wait_for
from tests.support.netns import our_nexthops, our_routes, static_routes, wait_for_state, write_config

pytestmark = pytest.mark.netns


def _twin_routes(n):
    """n routes on {v0, v1} and n on {v0, v2}: with v1 and v2 down, two groups of one member."""
    out = []
    for i in range(n):
        out.append(("10.101.%d.%d/32" % (i // 250, i % 250),
                    [{"via": "10.0.0.2", "dev": "v0"}, {"via": "10.0.1.2", "dev": "v1"}], None))
        out.append(("10.102.%d.%d/32" % (i // 250, i % 250),
                    [{"via": "10.0.0.2", "dev": "v0"}, {"via": "10.0.2.2", "dev": "v2"}], None))
    return out


def _group_sizes(lab):
    nhs = our_nexthops(lab)
    return sorted(len(n["group"]) for n in nhs.values() if "group" in n)


def _carrier(lab, dev, up):
    lab.ip("link", "set", "p%s" % dev[1:], "up" if up else "down")  # the peer: carrier of v<N>
    wait_for_state(lambda: ("NO-CARRIER" in lab.ip("link", "show", dev)) != up, timeout=2,
                   what="carrier of %s %s" % (dev, "up" if up else "down"))


def _restart_watched(lab, config, daemon_factory, routes):
    """Start a second daemon with ``ip monitor`` running; returns (its stats after two full
    syncs, what the monitor saw)."""
    monitor = subprocess.Popen(["ip", "-n", lab.name, "monitor", "nexthop", "route"], stdout=subprocess.PIPE,
                               stderr=subprocess.DEVNULL, text=True)
    try:
        second = daemon_factory(lab, config, "second").start()
        second.wait_synced(routes=routes, timeout=30)
        second.query("resync")  # one more full pass (the adoption has ended): still nothing
        wait_for(lambda: second.stats()["full_syncs"] >= 2, timeout=10, what="second full sync")
        stats = second.stats()
    finally:
        monitor.send_signal(signal.SIGTERM)
        seen, _ = monitor.communicate(timeout=5)
    return stats, seen


def _kill(daemon):
    daemon.proc.kill()  # SIGKILL: no clean-up of any kind
    daemon.proc.wait()


def test_sigkill_with_twin_groups_restart_writes_nothing(lab, tmp_path, daemon_factory):
    """Issue 12, defect 11: `.1 {a0,a1}` and `.2 {a0,a2}`, carrier lost on a1 and a2, SIGKILL,
    restart: a new group, both routes re-pointed and an old group deleted (adoption keyed the
    kernel's groups by content, and the two had the same live members)."""
    config = write_config(tmp_path, static_routes(_twin_routes(1)))
    first = daemon_factory(lab, config, "first").start()
    first.wait_synced(routes=2)
    _carrier(lab, "v1", False)
    _carrier(lab, "v2", False)
    wait_for_state(lambda: _group_sizes(lab) == [1, 1], timeout=2, what="both groups down to v0")
    _kill(first)
    before = (our_routes(lab), our_nexthops(lab))
    assert len({r["nhid"] for r in before[0].values()}) == 2
    stats, seen = _restart_watched(lab, config, daemon_factory, 2)
    assert stats["writes"] == {"nexthop-set": 0, "nexthop-del": 0, "route-set": 0, "route-del": 0}, stats
    assert seen.strip() == "", "kernel saw writes: %s" % seen[:500]
    assert (our_routes(lab), our_nexthops(lab)) == before


def test_restart_after_a_quiet_period_with_links_down_writes_nothing(lab, tmp_path, daemon_factory):
    """Several sets, two links down (twins again, and a set with no live member left), a quiet
    spell longer than the hold time, SIGKILL: the restart adopts every group as it is."""
    routes = _twin_routes(50) + [("10.103.0.%d/32" % i, [{"dev": "v1"}, {"dev": "v2"}], None) for i in range(20)]
    routes += [("10.104.0.%d/32" % i, [{"dev": "v0", "weight": 3}, {"dev": "v2"}], None) for i in range(20)]
    config = write_config(tmp_path, static_routes(routes), group_hold_time=0.5)
    first = daemon_factory(lab, config, "first").start()
    first.wait_synced(routes=140)
    _carrier(lab, "v1", False)
    _carrier(lab, "v2", False)
    wait_for_state(lambda: _group_sizes(lab) == [1, 1, 1], timeout=2, what="groups down to v0")
    full = first.stats()["full_syncs"]
    wait_for(lambda: first.stats()["full_syncs"] >= full + 1, timeout=10, what="a verify after the flaps")
    _kill(first)
    before = (our_routes(lab), our_nexthops(lab))
    assert len(before[0]) == 120
    stats, seen = _restart_watched(lab, config, daemon_factory, 120)
    assert stats["writes"] == {"nexthop-set": 0, "nexthop-del": 0, "route-set": 0, "route-del": 0}, stats
    assert seen.strip() == "", "kernel saw writes: %s" % seen[:500]
    assert (our_routes(lab), our_nexthops(lab)) == before


def test_restart_while_a_link_came_back_writes_per_group_not_per_route(lab, tmp_path, daemon_factory):
    """500 routes on 2 groups; v1 loses carrier, kernelsync is killed, v1 comes back, restart:
    the nexthop on v1 again and its group replaced in place (2 writes), not 250 routes moved to
    a new group."""
    config = write_config(tmp_path, static_routes(_twin_routes(250)))
    first = daemon_factory(lab, config, "first").start()
    first.wait_synced(routes=500)
    _carrier(lab, "v1", False)
    wait_for_state(lambda: _group_sizes(lab) == [1, 2], timeout=2, what="the v1 group down to v0")
    _kill(first)
    _carrier(lab, "v1", True)
    before = our_routes(lab)
    nhids = {r["nhid"] for r in before.values()}
    assert len(nhids) == 2
    stats, seen = _restart_watched(lab, config, daemon_factory, 500)
    assert stats["writes"]["route-set"] == 0 and stats["writes"]["route-del"] == 0, stats
    assert sum(stats["writes"].values()) <= 3, stats
    assert seen.count("\n") <= 3, "kernel saw: %s" % seen[:800]
    assert our_routes(lab) == before  # every route on the id it had
    nhs = our_nexthops(lab)
    assert _group_sizes(lab) == [2, 2] and nhids <= set(nhs)
