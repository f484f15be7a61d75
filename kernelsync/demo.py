"""``kernelsync demo``: a hypervisor host in network namespaces, with nothing outside touched.

Topology (all namespaces are created here and deleted at the end):

    guestA (eth0 203.0.113.10) ---- tapA \\
                                          host (kernelsync) -- up0 / up1 -- router (10.0.0.2, 10.0.1.2)
    guestB (eth0 203.0.113.10) ---- tapB /

kernelsync runs as a real process in ``host`` with a static config: the anycast /32 over both
taps with no gateway (one shared, resilient group), and upstream prefixes ECMP over two
gateways.  The demo prints the kernel's nexthops and routes, takes guest B's link down (carrier
loss on the host's tapB), shows the group shrink and the routes stay, brings it back, shows the
repair and how long it took, and tears everything down.
"""
from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time

from .daemon import query
from .netns import NetNS, unique_name, wait_for

CONFIG = """
[kernel]
table = 254
protocol = 200
metric = 20
nexthop_id_range = [100000000, 100999999]
verify_delay = 1
[control]
socket = "{sock}"
[[static.route]]
prefix = "203.0.113.10/32"
nexthops = [ {{ dev = "tapA" }}, {{ dev = "tapB" }} ]
resilient = {{ buckets = 32, idle_timer = 60 }}
[[static.route]]
prefix = "198.51.100.0/24"
nexthops = [ {{ via = "10.0.0.2", dev = "up0" }}, {{ via = "10.0.1.2", dev = "up1" }} ]
[[static.route]]
prefix = "2001:db8:100::/48"
nexthops = [ {{ via = "2001:db8:a::2", dev = "up0" }}, {{ via = "2001:db8:b::2", dev = "up1" }} ]
"""


def _show(host: NetNS, title: str) -> None:
    print("\n=== %s" % title)
    print("$ ip nexthop show proto 200")
    print(host.ip("nexthop", "show", "proto", "200").rstrip())
    print("$ ip route show proto 200")
    print(host.ip("route", "show", "proto", "200").rstrip())
    print("$ ip -6 route show proto 200")
    print(host.ip("-6", "route", "show", "proto", "200").rstrip())


def _group_size(host: NetNS, prefix: str) -> int:
    routes = host.json("route", "show", prefix, "proto", "200")
    if not routes or "nhid" not in routes[0]:
        return 0
    nh = host.json("nexthop", "show", "id", str(routes[0]["nhid"]))
    return len(nh[0].get("group", [])) if nh else 0


def main(args) -> int:
    if os.geteuid() != 0:
        print("the demo needs root (it creates network namespaces)", file=sys.stderr)
        return 1
    tag = unique_name("ksdemo")
    spaces = []
    daemon = None
    tmp = tempfile.mkdtemp(prefix="kernelsync-demo-")
    try:
        host, router = NetNS(tag + "-host", compat_mode=0), NetNS(tag + "-rtr")
        guests = {n: NetNS("%s-g%s" % (tag, n)) for n in "AB"}
        spaces = [host, router, *guests.values()]
        for n, guest in guests.items():
            host.ip("link", "add", "name", "tap" + n, "type", "veth", "peer", "name", "eth0", "netns", guest.name)
            host.ip("link", "set", "tap" + n, "up")
            guest.ip("link", "set", "eth0", "up")
            guest.ip("addr", "add", "203.0.113.10/32", "dev", "eth0")
            guest.ip("route", "add", "default", "dev", "eth0")
        for i, (v4, v6) in enumerate((("10.0.0", "2001:db8:a"), ("10.0.1", "2001:db8:b"))):
            host.ip("link", "add", "name", "up%d" % i, "type", "veth", "peer", "name", "dn%d" % i, "netns", router.name)
            host.ip("link", "set", "up%d" % i, "up")
            router.ip("link", "set", "dn%d" % i, "up")
            host.ip("addr", "add", "%s.1/24" % v4, "dev", "up%d" % i)
            router.ip("addr", "add", "%s.2/24" % v4, "dev", "dn%d" % i)
            host.ip("-6", "addr", "add", "%s::1/64" % v6, "dev", "up%d" % i, "nodad")
            router.ip("-6", "addr", "add", "%s::2/64" % v6, "dev", "dn%d" % i, "nodad")
        sock = os.path.join(tmp, "ks.sock")
        config = os.path.join(tmp, "kernelsync.toml")
        with open(config, "w") as fh:
            fh.write(CONFIG.format(sock=sock))
        print("namespaces: %s" % ", ".join(s.name for s in spaces))
        print("config:\n" + CONFIG.format(sock=sock))
        log_path = os.path.join(tmp, "kernelsync.log")
        log = open(log_path, "w")
        daemon = subprocess.Popen(["ip", "netns", "exec", host.name, sys.executable, "-m", "kernelsync",
                                   "run", "-c", config], stdout=log, stderr=subprocess.STDOUT)

        def stats():
            try:
                return query(sock, "show stats")
            except OSError:
                if daemon.poll() is not None:
                    raise RuntimeError("kernelsync exited:\n" + open(log_path).read())
                return None

        wait_for(lambda: (stats() or {}).get("installed_routes") == 3, timeout=20, what="routes installed")
        _show(host, "kernelsync installed the routes: one group per nexthop set, shared")

        def guest_link(state: str, members: int, title: str) -> float:
            """Set guest B's eth0 ``state``; wait for the anycast group to hold ``members``."""
            print("\n>>> " + title)
            t0 = time.monotonic()
            guests["B"].ip("link", "set", "eth0", state)
            wait_for(lambda: _group_size(host, "203.0.113.10") == members, timeout=5, interval=0.002,
                     what="anycast group with %d member(s)" % members)
            return (time.monotonic() - t0) * 1000

        down_ms = guest_link("down", 1, "guest B's link goes down (carrier loss on tapB)")
        print("group has one member after %.1f ms; the route stayed" % down_ms)
        _show(host, "after the link went down")
        up_ms = guest_link("up", 2, "guest B's link comes back")
        s = stats()
        print("the kernel had dropped tapB's nexthop silently; kernelsync re-added it and re-pushed "
              "the group: repaired %.1f ms after the link came up (kernelsync's own handling: %.2f ms)"
              % (up_ms, s["last_repair_ms"] or 0))
        _show(host, "after the repair")
        print("\n$ kernelsync show stats")
        for key in ("state", "fib_routes", "installed_routes", "nexthop_objects", "writes", "repairs",
                    "inferred_route_losses", "kernel_failures"):
            print("  %-22s %s" % (key, s[key]))
        return 0
    finally:
        if daemon is not None and daemon.poll() is None:
            daemon.terminate()
            daemon.wait(10)
        if not getattr(args, "keep", False):
            for space in spaces:
                space.delete()
            print("\nnamespaces deleted; nothing outside them was touched")
