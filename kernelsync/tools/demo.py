"""``kernelsync demo``: BGP into the FIB with real daemons, in scratch namespaces only.

Topology (:class:`kernelsync.tools.lab.BgpLab`; everything is created here and deleted at the end)::

    namespace R: BIRD 2, AS 65001  ==== links A (ra-ha) and B (rb-hb) ====  namespace H: the host
    announces 198.51.100.0/24, 203.0.113.0/25                               ExaBGP, AS 65010, whose
    and 2001:db8:100::/48 on both sessions                                   process is kernelsync

kernelsync turns the two equal eBGP paths of each prefix into one shared nexthop group (one for
IPv4, one for IPv6) in the host's main table.  The demo prints the host's ``ip nexthop`` and
``ip route``, takes link B down on the host (the kernel deletes its nexthops silently; the
groups shrink, the routes stay), brings it back and shows the repair and how long it took.
It installs what it needs (Debian ``bird2``, PyPI ``exabgp``) and never touches the host's own FIB.
"""
from __future__ import annotations

import os
import sys
import tempfile
import time
from typing import Callable

from ..control import query
from .lab import BgpLab, install_requirements
from .netns import wait_for

V4 = ["198.51.100.0/24", "203.0.113.0/25"]
V6 = ["2001:db8:100::/48"]
#: The demos' kernelsync config: the namespace's main table, protocol 200, the control socket.
KERNEL_CONFIG = """\
[kernel]
table = 254                 # the host's main table (inside the demo's namespace)
protocol = 200
nexthop_id_range = [100000000, 100999999]
verify_delay = 1
[control]
socket = "{sock}"
"""
CONFIG = KERNEL_CONFIG + """\
[bgp]
startup_wait = 1
"""


def run_demo(args, prefix: str, body: Callable[[object, str], int]) -> int:
    """What every demo does around its ``body(args, work)``: check for root (exit 1 with a message
    without it), install BIRD 2 and ExaBGP 5.0 if missing, honour ``--keep``, make a new work
    directory for configs and logs (``/tmp/PREFIX*``, kept for the logs), and turn Ctrl-C into a
    message and exit 130 (the lab's ``with`` has deleted its namespaces by then)."""
    if os.geteuid() != 0:
        print("the demo needs root (it creates network namespaces)", file=sys.stderr)
        return 1
    install_requirements(("5.0",))
    if getattr(args, "keep", False):
        os.environ["KERNELSYNC_LAB_KEEP"] = "1"
    work = tempfile.mkdtemp(prefix=prefix)
    if hasattr(sys.stdout, "reconfigure"):
        sys.stdout.reconfigure(line_buffering=True)     # each step shows as it happens, also through a pipe
    try:
        return body(args, work)
    except KeyboardInterrupt:
        print("\ninterrupted: namespaces deleted, daemons stopped (logs: %s)" % work, file=sys.stderr)
        return 130


def _show(lab: BgpLab, title: str) -> None:
    print("\n=== %s" % title)
    for args in (("nexthop", "show", "proto", "200"), ("route", "show", "proto", "200"),
                 ("-6", "route", "show", "proto", "200")):
        print("$ ip %s" % " ".join(args))
        print(lab.host.ip(*args).rstrip())


def _legs(lab: BgpLab, prefix: str) -> int:
    """Members of the nexthop group the route of ``prefix`` uses (1 for a plain nexthop)."""
    family = "-6" if ":" in prefix else "-4"
    routes = lab.host.json(family, "route", "show", prefix, "proto", "200")
    if not routes or "nhid" not in routes[0]:
        return 0
    nh = lab.host.json("nexthop", "show", "id", str(routes[0]["nhid"]))
    return len(nh[0].get("group", [])) or 1 if nh else 0


def main(args) -> int:
    return run_demo(args, "ksdemo-", _demo)


def _demo(args, work: str) -> int:
    sock = os.path.join(work, "ks.sock")
    conf = os.path.join(work, "kernelsync.toml")
    log = os.path.join(work, "kernelsync.log")
    with open(conf, "w") as fh:
        fh.write(CONFIG.format(sock=sock))
    process = [sys.executable, "-m", "kernelsync", "--log-file", log, "exabgp", "-c", conf]
    print("kernelsync config (%s):\n%s" % (conf, CONFIG.format(sock=sock)))
    print("ExaBGP runs: %s" % " ".join(process))
    with BgpLab("5.0", process_argv=process, v4_prefixes=V4, v6_prefixes=V6,
                workdir=os.path.join(work, "lab")) as lab:
        print("namespaces: router %s, host %s; BIRD and ExaBGP up, both sessions Established"
              % (lab.router.name, lab.host.name))

        def all_legs(n: int) -> bool:
            return all(_legs(lab, p) == n for p in V4 + V6)

        wait_for(lambda: all_legs(2), timeout=20, what="routes on two-member groups")
        wait_for(lambda: query(sock, "show stats")["state"] == "SYNCED", timeout=20,
                 what="kernelsync SYNCED (BGP's initial state complete)")
        _show(lab, "two equal eBGP paths per prefix: one shared group per family")
        print("\n$ birdc show protocols\n" + lab.birdc("show", "protocols").rstrip())

        print("\n>>> link B goes down on the host (the kernel deletes hb's nexthops, telling nobody)")
        lab.link("hb", "down")
        wait_for(lambda: all_legs(1), timeout=5, interval=0.005, what="groups with one member")
        _show(lab, "after link B went down: the groups lost hb, every route stayed")

        print("\n>>> link B comes back")
        t0 = time.monotonic()
        lab.link("hb", "up")
        wait_for(lambda: all_legs(2), timeout=5, interval=0.002, what="groups with two members")
        repaired_ms = (time.monotonic() - t0) * 1000
        stats = query(sock, "show stats")
        print("the kernel had restored nothing; kernelsync re-added hb's nexthops and re-pushed the groups: "
              "repaired %.0f ms after the link came up (kernelsync's own handling: %.2f ms)"
              % (repaired_ms, stats["last_repair_ms"] or 0))
        _show(lab, "after the repair")
        print("\n$ kernelsync show stats")
        for key in ("state", "fib_routes", "installed_routes", "nexthop_objects", "writes", "repairs",
                    "inferred_route_losses", "kernel_failures"):
            print("  %-22s %s" % (key, stats[key]))
        b = stats["bgp"]
        print("  %-22s %s" % ("bgp", {k: b[k] for k in ("lines", "updates", "announced", "eor", "bad_lines")}))
    print("\nnamespaces deleted, daemons stopped; nothing outside them was touched (logs: %s)" % work)
    return 0
