"""``kernelsync bench --pic N``: prefix-independent convergence (PIC) of a BGP peer going down
and coming back, on the real kernel, through the real BGP feed's core.

In a scratch namespace of :class:`kernelsync.tools.bench.Namespaces` (veths ksa0 and ksb0
addressed ``NET_A``.1/24 and ``NET_B``.1/24: 10.255.0 and 10.255.1), two eBGP peers, A (.2 of
the first) and B (.2 of the second), announce the same ``N`` IPv4 /32s (from 10.0.0.1 up), in
``groups`` blocks: the prefixes of block g have the next hop ``NET_A``.(2+g) from A and
``NET_B``.(2+g) from B, so each block is ECMP over one kernel group of two members.  The
messages are ExaBGP 5 JSON lines, parsed by :class:`kernelsync.feeds.exabgp.Parser` and applied
by :class:`kernelsync.feeds.bgp.BgpRib` to an :class:`kernelsync.core.engine.Engine` over
:class:`kernelsync.kernel.netlink.RtNetlink`, as the daemon does (``commit`` then
``engine.run``; engine clock: ``time.monotonic``).

1. Install: both peers' tables and end-of-RIBs, one ``engine.run``.
2. Peer A down (ExaBGP's ``state down``): its paths are flushed in one commit; every group
   loses A's member in place.  Timed: the commit and the ``engine.run``; writes by kind.
3. Peer A up again: ``state up``, then its table ``batch`` prefixes per UPDATE line, each line
   committed and followed by an ``engine.run`` (as ExaBGP passes UPDATEs over time), then its
   end-of-RIB.  While A waits for its end-of-RIB the RIB holds the growth of ECMP sets
   (``Rib.hold_growth``): each group grows back in place once all its prefixes have A again.
   Reported: writes by kind, the ``engine.run`` durations (median, max, sum), the time from
   the end-of-RIB to the end of the run after it, and whether ECMP was back before the
   end-of-RIB.
4. The same down and up once more with the hold switched off (``Rib.hold_growth`` made a
   no-op): the behaviour before growth deferral, every prefix moving to a new group as it
   comes, as the baseline of the same run.

After each step the kernel is dumped and checked: ``N`` routes, on ``groups`` groups, of one
member after a down and two after an up.  Figures: :func:`run_pic` returns them as a dict;
:func:`print_pic` prints them.
"""
from __future__ import annotations

import json
import statistics
import time
from typing import Dict, List, Optional, Tuple

from ..core.engine import Engine, KernelConfig
from ..feeds.bgp import BgpRib, BgpSettings
from ..feeds.exabgp import Parser
from ..feeds.resolve import Resolver
from ..kernel.netlink import RtNetlink

ROUTE_BASE = 0x0A000001  # 10.0.0.1, then upwards
LOCAL_AS, PEER_AS = 65010, 65001


def _message(session: Dict[str, str], kind: str, body: dict) -> str:
    neighbor = {"address": dict(session), "asn": {"local": LOCAL_AS, "peer": PEER_AS}}
    neighbor.update(body)
    return json.dumps({"exabgp": "5.0.0", "type": kind, "neighbor": neighbor})


def _state(session: Dict[str, str], state: str) -> str:
    body = {"state": state}
    if state == "down":
        body["reason"] = "peer reset"
    return _message(session, "state", body)


def _eor(session: Dict[str, str]) -> str:
    return _message(session, "update", {"direction": "receive",
                                        "message": {"eor": {"afi": "ipv4", "safi": "unicast"}}})


def _updates(session: Dict[str, str], net: str, n: int, groups: int, batch: int) -> List[str]:
    """The peer's table as UPDATE lines of at most ``batch`` prefixes, one next hop each."""
    attrs = {"origin": "igp", "as-path": {"0": {"element": "as-sequence", "value": [PEER_AS]}}}
    lines = []
    start = 0
    while start < n:
        g = start * groups // n
        end = min(start + batch, n, ((g + 1) * n + groups - 1) // groups)  # not past the block's end
        nlris = [{"nlri": "%d.%d.%d.%d/32" % ((ROUTE_BASE + i) >> 24, (ROUTE_BASE + i) >> 16 & 255,
                                               (ROUTE_BASE + i) >> 8 & 255, (ROUTE_BASE + i) & 255)}
                 for i in range(start, end)]
        update = {"attribute": attrs, "announce": {"ipv4 unicast": {"%s.%d" % (net, 2 + g): nlris}}}
        lines.append(_message(session, "update", {"direction": "receive", "message": {"update": update}}))
        start = end
    return lines


class _Rig:
    """Engine + BgpRib on one namespace's kernel."""

    def __init__(self, kernel: RtNetlink, cfg: KernelConfig) -> None:
        self.kernel = kernel
        self.cfg = cfg
        self.engine = Engine(cfg, kernel)
        self.engine.start(time.monotonic())
        resolver = Resolver(self.engine.links)
        resolver.set_addresses(kernel.dump_addresses())
        self.bgp = BgpRib(self.engine.rib, resolver, BgpSettings(startup_wait=0.0, families=("ipv4 unicast",)),
                          time.monotonic())
        self.parser = Parser()

    def feed(self, lines: List[str]) -> float:
        """Parse and apply ``lines``, commit; returns the seconds it took."""
        t0 = time.perf_counter()
        now = time.monotonic()
        for line in lines:
            event = self.parser.parse(line)
            if event is not None:
                self.bgp.handle(event, now)
        due = self.bgp.deadline()
        if due is not None and due <= now:
            self.bgp.tick(now)
        if self.bgp.pending():
            self.bgp.commit()
        return time.perf_counter() - t0

    def run(self) -> float:
        """``engine.run`` once, then again while something is due; returns the seconds."""
        t0 = time.perf_counter()
        self.engine.run(time.monotonic())
        for _ in range(4):
            due = self.engine.deadline()
            if due is None or due > time.monotonic():
                break
            self.engine.run(time.monotonic())
        return time.perf_counter() - t0

    def writes(self) -> Dict[str, int]:
        return dict(self.kernel.stats.writes)

    def check(self, n: int, groups: Optional[int], members: int) -> Optional[str]:
        """None when the kernel has ``n`` routes of ours on ``groups`` groups (None: any
        number; twins, see the baseline) of ``members`` members each, else what differs."""
        routes = self.kernel.dump_routes(self.cfg.table, self.cfg.protocol)
        nexthops = self.kernel.dump_nexthops()
        ids = set(routes.values())
        sizes = sorted({len(nexthops[i].group) if i in nexthops and nexthops[i].is_group else 0 for i in ids})
        if len(routes) != n or (groups is not None and len(ids) != groups) or sizes != [members]:
            return "%d routes on %d objects of %s members; wanted %d on %d groups of %d" % (
                len(routes), len(ids), sizes, n, groups, members)
        return None


def _delta(after: Dict[str, int], before: Dict[str, int]) -> Dict[str, int]:
    return {k: v - before.get(k, 0) for k, v in after.items() if v != before.get(k, 0)}


def _down_up(rig: _Rig, n: int, groups: int, up_lines: List[str], peer_a: Dict[str, str], exact: bool) -> dict:
    """Peer A down, then up with ``up_lines`` one per commit and run, then its end-of-RIB.
    ``exact``: the up must end on the ``groups`` groups (the baseline ends on twins)."""
    out: dict = {}
    problems = []
    before = rig.writes()
    out["down_commit_ms"] = rig.feed([_state(peer_a, "down")]) * 1e3
    out["down_run_ms"] = rig.run() * 1e3
    out["down_writes"] = _delta(rig.writes(), before)
    problems.append(rig.check(n, groups, 1))
    before = rig.writes()
    rig.feed([_state(peer_a, "up")])
    runs, commits, grown_at = [], 0.0, None
    for i, line in enumerate(up_lines):
        commits += rig.feed([line])
        mark = rig.writes()
        runs.append(rig.run())
        if grown_at is None and _delta(rig.writes(), mark).get("nexthop-set"):
            grown_at = i
    t0 = time.perf_counter()
    rig.feed([_eor(peer_a)])
    out["eor_run_ms"] = rig.run() * 1e3
    out["eor_to_done_ms"] = (time.perf_counter() - t0) * 1e3
    out["up_writes"] = _delta(rig.writes(), before)
    problems.append(rig.check(n, groups if exact else None, 2))
    full = rig.writes()
    rig.engine.request_full_sync()
    rig.run()
    out["full_sync_after_writes"] = sum(_delta(rig.writes(), full).values())
    out.update({
        "up_lines": len(up_lines), "up_commits_s": commits, "up_runs": len(runs),
        "up_run_ms": {"median": statistics.median(runs) * 1e3, "max": max(runs) * 1e3, "sum": sum(runs) * 1e3},
        "first_group_grown_at_line": grown_at, "ecmp_back_before_eor": not rig.engine.fib.deferred and grown_at is not None,
        "deferred_left": len(rig.engine.fib.deferred),
    })
    out["problems"] = [p for p in problems if p]
    if out["full_sync_after_writes"]:
        out["problems"].append("a full sync after the up wrote %d messages" % out["full_sync_after_writes"])
    return out


def run_pic(nss, n: int, groups: int, cfg: KernelConfig, nets: Tuple[str, str], batch: int = 500) -> dict:
    """The PIC case at ``n`` prefixes over ``groups`` groups (1..250), ``batch`` prefixes per
    UPDATE line, with the kernel settings ``cfg``, in a fresh namespace of ``nss`` (a
    :class:`kernelsync.tools.bench.Namespaces`, deleted after) whose two veths are on the /24s
    ``nets`` (``NET_A``, ``NET_B``).  Returns the figures (see the module's docstring); ``ok``
    is whether every check passed."""
    net_a, net_b = nets
    peer_a = {"local": net_a + ".1", "peer": net_a + ".2"}
    peer_b = {"local": net_b + ".1", "peer": net_b + ".2"}
    ns = nss.create()
    kernel = nss.open_in(ns, lambda: RtNetlink(cfg.protocol))
    try:
        rig = _Rig(kernel, cfg)
        lines_a = _updates(peer_a, net_a, n, groups, batch)
        lines_b = _updates(peer_b, net_b, n, groups, batch)
        t0 = time.perf_counter()
        rig.feed([_state(peer_a, "up"), *lines_a, _eor(peer_a), _state(peer_b, "up"), *lines_b, _eor(peer_b)])
        t1 = time.perf_counter()
        rig.run()
        t2 = time.perf_counter()
        report: dict = {"prefixes": n, "groups": groups, "batch": batch, "install_feed_s": t1 - t0,
                        "install_run_s": t2 - t1}
        problems = [rig.check(n, groups, 2)]
        report["pic"] = _down_up(rig, n, groups, lines_a, peer_a, True)
        rig.engine.rib.hold_growth = lambda source, until: None  # the baseline: no growth deferral
        report["baseline"] = _down_up(rig, n, groups, lines_a, peer_a, False)
        problems += report["pic"]["problems"] + report["baseline"]["problems"]
        up = report["pic"]["up_writes"]
        if up.get("route-set") or up.get("nexthop-set", 0) > 2 * groups:
            problems.append("the up wrote %s: not O(groups)" % up)
        report["problems"] = [p for p in problems if p]
        report["ok"] = not report["problems"]
        return report
    finally:
        kernel.close()
        nss.delete(ns)


def print_pic(report: dict) -> None:
    """The figures of :func:`run_pic`, one line per phase."""
    print("PIC: %d prefixes on %d groups of 2 eBGP peers, %d per UPDATE line (one commit + engine.run each); "
          "install: feed %.2f s, engine.run %.2f s" % (report["prefixes"], report["groups"], report["batch"],
                                                      report["install_feed_s"], report["install_run_s"]))
    for name, label in (("pic", "growth deferral"), ("baseline", "without it (before)")):
        r = report[name]
        print("  %-20s down: commit %.1f ms, engine.run %.1f ms, writes %s | up: writes %s, %d runs of median "
              "%.2f ms, max %.1f ms, sum %.0f ms; end-of-RIB to done %.1f ms; ECMP back before the end-of-RIB: %s" % (
                  label, r["down_commit_ms"], r["down_run_ms"], r["down_writes"] or "none", r["up_writes"] or "none",
                  r["up_runs"], r["up_run_ms"]["median"], r["up_run_ms"]["max"], r["up_run_ms"]["sum"],
                  r["eor_to_done_ms"], "yes" if r["ecmp_back_before_eor"] else "no"))
    if report["problems"]:
        print("  PIC checks FAILED: %s" % "; ".join(report["problems"]))


__all__ = ["run_pic", "print_pic"]
