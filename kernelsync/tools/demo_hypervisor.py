"""``kernelsync demo hypervisor``: guests' anycast /32 exported to a BIRD 2 core, in scratch namespaces.

Topology (:class:`kernelsync.tools.lab.BgpLab` with ``hosts=2, router_kernel=True``; everything is
created here and deleted at the end, also on Ctrl-C or an error)::

    core (BIRD 2, AS 65001, merge paths into its kernel table)
      ra 192.0.2.1 ---- ha 192.0.2.2   hv1: ExaBGP (AS 65010) + kernelsync; guests vm1, vm3
      rb 192.0.2.9 ---- hb 192.0.2.10  hv2: ExaBGP (AS 65010) + kernelsync; guest vm2

A guest is a namespace behind a veth pair (a tap device's stand-in): ``vmN`` on the hypervisor,
``eth0`` with the anycast address in the guest; killing a guest = its end goes down = carrier loss
on the hypervisor.  Each hypervisor's kernelsync (ExaBGP's process) exports the anycast /32 with an
``[[export.anycast]]`` group: one resilient nexthop group of device-only nexthops over its guests'
devices (hv1: vm1, vm3, vm4; hv2: vm2), announced while one of them has carrier.  BIRD announces
nothing to the hypervisors.

Steps, each with the real commands' output: (1) the core's ECMP route over both hypervisors;
(2) a second guest (vm3) on hv1: a group of two ``nexthop dev`` legs, still one announcement;
(3) vm2 killed: the milliseconds until BIRD's route, then the core's FIB route, shrinks (BIRD
polled with a deadline); (4) vm2 back; (5) eight flows from hv1 (UDP from eight source addresses;
the kernel hashes L3 addresses) on hv1's resilient group while a third guest (vm4) joins, vm3
dies and comes back: only the flows of the dead guest move (``ip nexthop bucket show``; a join or
a return takes idle buckets only, busy ones stay for ``idle_timer``).  A flow's guest is what
``ip route get ADDRESS from SRC`` names.
"""
from __future__ import annotations

import os
import subprocess
import sys
import time
from itertools import pairwise
from typing import Dict, List

from ..control import query
from .demo import KERNEL_CONFIG, run_demo
from .lab import BgpLab, parse_bird_routes
from .netns import NetNS, wait_for

ANYCAST = "203.0.113.53/32"
ADDRESS = ANYCAST.split("/")[0]
HV1, HV2 = "192.0.2.2", "192.0.2.10"       # the hypervisors' addresses toward the core
GUESTS = {"vm1": 1, "vm2": 2, "vm3": 1, "vm4": 1}      # guest device -> hypervisor
BUCKETS = 16
#: source addresses on hv1's loopback, one flow each toward the anycast address
FLOW_SOURCES = ["198.18.0.%d" % n for n in range(1, 9)]
CONFIG = KERNEL_CONFIG + """\
[bgp]
startup_wait = 0.5
[export]
state_file = "{state}"
[[export.anycast]]
prefix = "{prefix}"
devices = {devices}
resilient = {{ buckets = {buckets}, idle_timer = 120 }}
communities = ["65010:53"]
"""


class Hypervisor:
    """One hypervisor's kernelsync: config, control socket, log, the command ExaBGP runs."""

    def __init__(self, work: str, n: int) -> None:
        self.name = "hv%d" % n
        self.conf = os.path.join(work, self.name + ".toml")
        self.log = os.path.join(work, self.name + ".log")
        devices = "[%s]" % ", ".join('"%s"' % d for d, h in sorted(GUESTS.items()) if h == n)
        self.sock = os.path.join(work, self.name + ".sock")
        self.text = CONFIG.format(sock=self.sock, prefix=ANYCAST, devices=devices,
                                  state=os.path.join(work, self.name + "-exported.json"), buckets=BUCKETS)
        with open(self.conf, "w") as fh:
            fh.write(self.text)
        self.argv = [sys.executable, "-m", "kernelsync", "--log-file", self.log, "exabgp", "-c", self.conf]

    def repairs(self) -> int:
        """kernelsync's count of repairs (link events handled) so far."""
        return int(query(self.sock, "show stats")["repairs"])

    def show(self, what: str) -> str:
        """``kernelsync show WHAT -c CONF``: the real command's output."""
        proc = subprocess.run([sys.executable, "-m", "kernelsync", "show", what, "-c", self.conf],
                              capture_output=True, text=True, timeout=10, check=False)
        return (proc.stdout + proc.stderr).rstrip()


def _cmd(label: str, ns: NetNS, *args: str) -> None:
    """Print ``label$ ip ARGS`` and its output in namespace ``ns``."""
    print("%s$ ip %s" % (label, " ".join(args)))
    out = ns.ip(*args).rstrip()
    if out:
        print(out)


def _bird_paths(lab: BgpLab) -> List[str]:
    """The next hops of BIRD's routes for the anycast /32 (one per BGP path)."""
    routes: Dict[str, List[str]] = {}
    try:
        parse_bird_routes(lab.birdc("show", "route", ANYCAST, "table", "master4"), routes)
    except RuntimeError as exc:     # birdc exits 1 with "Network not found" while there is none
        if "Network not found" not in str(exc):
            raise
    return sorted(routes.get(ANYCAST, []))


def _show_core(lab: BgpLab) -> None:
    print("core$ birdc show route %s" % ANYCAST)
    print(lab.birdc("show", "route", ANYCAST).rstrip())
    _cmd("core", lab.router, "route", "show", ADDRESS)


def _group(ns: NetNS) -> Dict[str, object]:
    """The hypervisor's route for the anycast /32: {"id": group id or None, "legs": {nhid: dev}}."""
    routes = ns.json("route", "show", ADDRESS, "proto", "200")
    if not routes or "nhid" not in routes[0]:
        return {"id": None, "legs": {}}
    nexthops = {nh["id"]: nh for nh in ns.json("nexthop", "show")}
    group = nexthops.get(routes[0]["nhid"], {})
    members = [m["id"] for m in group.get("group", [])] or [group.get("id")]
    legs = {i: nexthops[i].get("dev") for i in members if i in nexthops and "gateway" not in nexthops[i]}
    return {"id": routes[0]["nhid"], "legs": legs}


def _devs(ns: NetNS) -> List[str]:
    return sorted(str(d) for d in _group(ns)["legs"].values())


def _send_flows(ns: NetNS) -> None:
    """One UDP datagram from each of FLOW_SOURCES to the anycast address (a flow per source: the
    kernel hashes L3 addresses), sent from hv1 itself, so each flow marks its bucket busy."""
    code = ("import socket\nfor src in %r:\n    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"
            "    s.bind((src, 0)); s.sendto(b'x', (%r, 9)); s.close()\n" % (FLOW_SOURCES, ADDRESS))
    ns.run(sys.executable, "-c", code)


def _flows(ns: NetNS) -> Dict[str, str]:
    """Which guest device each flow goes to (``ip route get ADDRESS from SRC``)."""
    out = {}
    for src in FLOW_SOURCES:
        got = ns.json("route", "get", ADDRESS, "from", src)
        out[src] = got[0].get("dev", "?") if got else "?"
    return out


def _buckets(ns: NetNS) -> List[str]:
    """The guest device of each bucket of hv1's resilient group, by bucket index
    (``ip -j nexthop bucket show id G``)."""
    group = _group(ns)
    table: Dict[int, str] = {}
    for row in ns.json("nexthop", "bucket", "show", "id", str(group["id"])):
        b = row.get("bucket", {})
        table[int(b["index"])] = str(group["legs"].get(b.get("nhid"), b.get("nhid")))
    return [table[i] for i in sorted(table)]


STAGES = ("start", "vm4 joined", "vm3 gone", "vm3 back")


def _stage_tables(buckets: Dict[str, List[str]], flows: Dict[str, Dict[str, str]]) -> None:
    """The bucket -> guest map and each flow's guest at every stage."""
    print("  bucket      " + " ".join("%-3d" % i for i in range(BUCKETS)))
    for stage in STAGES:
        print("  %-11s " % stage + " ".join("%-3s" % d for d in buckets[stage]))
    print("\n  flow from     " + " ".join("%-11s" % stage for stage in STAGES))
    for src in FLOW_SOURCES:
        print("  %-12s  " % src + " ".join("%-11s" % flows[stage][src] for stage in STAGES))


def main(args) -> int:
    return run_demo(args, "kshv-", _demo)


def _demo(args, work: str) -> int:
    hv = {1: Hypervisor(work, 1), 2: Hypervisor(work, 2)}
    print("kernelsync config of hv1 (%s):\n%s" % (hv[1].conf, hv[1].text))
    print("hv2's is the same with devices = [\"vm2\"]; ExaBGP on each runs: %s" % " ".join(hv[1].argv))
    with BgpLab("5.0", process_argv=hv[1].argv, process_argv2=hv[2].argv, hosts=2, router_kernel=True,
                v4_prefixes=[], v6_prefixes=[], workdir=os.path.join(work, "lab")) as lab:
        ns = {1: lab.host, 2: lab.host2}
        print("namespaces: core %s, hv1 %s, hv2 %s; BIRD and both ExaBGPs up, sessions Established"
              % (lab.router.name, lab.host.name, lab.host2.name))

        def add_guest(dev: str) -> None:
            guest = lab.add_guest(dev, host=GUESTS[dev])
            guest.ip("addr", "add", ANYCAST, "dev", "eth0")
            guest.ip("route", "add", "default", "dev", "eth0")

        print("\n=== 1. one anycast /32 served by a guest on each hypervisor: ECMP at the core")
        add_guest("vm1")
        add_guest("vm2")
        wait_for(lambda: _bird_paths(lab) == [HV2, HV1] and sorted(lab.router_route(ANYCAST)) == [HV2, HV1],
                 timeout=20, what="the core's ECMP route over both hypervisors")
        _cmd("hv1", ns[1], "route", "show", ADDRESS)
        _show_core(lab)

        print("\n=== 2. a second guest with the same /32 on hv1: two gateway-less `nexthop dev` legs, one announcement")
        add_guest("vm3")
        wait_for(lambda: _devs(ns[1]) == ["vm1", "vm3"], timeout=10, what="hv1's group of vm1 and vm3")
        _cmd("hv1", ns[1], "route", "show", ADDRESS)
        _cmd("hv1", ns[1], "nexthop", "show", "proto", "200")
        print("hv1$ kernelsync show export\n" + hv[1].show("export"))
        print("hv1 has sent ExaBGP %d announcement(s) of %s for its two guests (show bgp: export_announces)"
              % (query(hv[1].sock, "show bgp")["counters"]["export_announces"], ANYCAST))
        _show_core(lab)

        print("\n=== 3. guest vm2 killed: hv2 sees carrier loss, withdraws, the core's route shrinks")
        t0 = time.monotonic()
        lab.guests["vm2"].ip("link", "set", "eth0", "down")     # the guest's end: carrier loss on hv2
        wait_for(lambda: _bird_paths(lab) == [HV1], timeout=5, interval=0.002, what="BIRD's route via hv1 only")
        bird_ms = (time.monotonic() - t0) * 1000
        wait_for(lambda: lab.router_route(ANYCAST) == [HV1], timeout=5, interval=0.002,
                 what="the core's FIB route via hv1 only")
        fib_ms = (time.monotonic() - t0) * 1000
        print("withdraw measured: %.0f ms from the guest's death to BIRD's route shrinking, %.0f ms to the "
              "core's FIB route" % (bird_ms, fib_ms))
        _show_core(lab)
        print("hv2 announces: %s (show export: announced)"
              % (", ".join(sorted(query(hv[2].sock, "show export")["announced"])) or "nothing"))

        print("\n=== 4. guest vm2 back: hv2 announces again, ECMP at the core")
        t0 = time.monotonic()
        lab.guests["vm2"].ip("link", "set", "eth0", "up")
        wait_for(lambda: sorted(lab.router_route(ANYCAST)) == [HV2, HV1], timeout=5, interval=0.002,
                 what="the core's ECMP route again")
        print("announced again: ECMP back in the core's FIB %.0f ms after the guest's link came up"
              % ((time.monotonic() - t0) * 1000))
        _show_core(lab)

        print("\n=== 5. hv1's resilient group (%d buckets, idle_timer 120 s): flows keep their guest" % BUCKETS)
        for src in FLOW_SOURCES:
            ns[1].ip("addr", "add", src + "/32", "dev", "lo")
        print("%d flows from hv1 (one UDP datagram from each of %s..%s to %s); "
              "`ip route get %s from SRC` names each flow's guest"
              % (len(FLOW_SOURCES), FLOW_SOURCES[0], FLOW_SOURCES[-1], ADDRESS, ADDRESS))
        buckets: Dict[str, List[str]] = {}
        flows: Dict[str, Dict[str, str]] = {}

        def stage(name: str, devs: List[str], action) -> None:
            repairs = hv[1].repairs()
            if action is not None:
                action()
            wait_for(lambda: _devs(ns[1]) == devs and (action is None or hv[1].repairs() > repairs),
                     timeout=10, what="hv1's group of %s" % ", ".join(devs))
            _send_flows(ns[1])      # the flows are active: their buckets are busy for idle_timer
            flows[name] = _flows(ns[1])
            buckets[name] = _buckets(ns[1])

        stage("start", ["vm1", "vm3"], None)
        group = _group(ns[1])["id"]
        print("hv1$ ip nexthop bucket show id %s" % group)
        print(ns[1].ip("nexthop", "bucket", "show", "id", str(group)).rstrip())
        stage("vm4 joined", ["vm1", "vm3", "vm4"], lambda: add_guest("vm4"))
        stage("vm3 gone", ["vm1", "vm4"], lambda: lab.guest_link("vm3", "down"))
        stage("vm3 back", ["vm1", "vm3", "vm4"], lambda: lab.guest_link("vm3", "up"))
        print("\nthe buckets (`ip -j nexthop bucket show id %s`) and the flows, at each stage:" % group)
        _stage_tables(buckets, flows)
        moves = sum(1 for a, b in pairwise(STAGES) for src in FLOW_SOURCES
                    if flows[a][src] != flows[b][src])
        forced = sum(1 for src in FLOW_SOURCES if flows["vm4 joined"][src] == "vm3")
        print("flows that changed guest over the 3 changes: %d; flows whose guest died: %d%s"
              % (moves, forced, " (only those moved: a join or a return takes idle buckets only)"
                 if moves == forced else ""))
    print("\nnamespaces deleted, daemons stopped; nothing outside them was touched (logs: %s)" % work)
    return 0
