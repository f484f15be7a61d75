#!/usr/bin/env python3
"""Capture the golden netlink files of tests/golden (needs root; see README.md there).

    python3 tests/golden/capture.py --out tests/golden [--only kernel|fpm]

kernel: a scratch network namespace with veths, addresses, nexthop objects of every shape and
routes in table 100, built with ``ip``; then a raw NETLINK_ROUTE socket opened inside the
namespace dumps nexthops, routes (IPv4 and IPv6, with net.ipv4.nexthop_compat_mode 0 and 1),
links and addresses, and every reply message is saved (whole nlmsghdr + body, hex) next to what
``ip -j -d`` shows for the same object.  A second socket subscribed to the link, address, route
and nexthop groups records the notifications of a few actions (``ip nexthop del`` of a group
member, a group replace, route replaces, link down/up), each with the action and ``ip -j -d``'s
view of the namespace after it.

fpm: kernelsync.tools.ospflab's FRR lab (r1, r2, r3 running zebra + ospfd) with the recording FPM
server kernelsync.tools.ospflab.FpmCapture in r1: zebra's replay once ECMP is up, a flap of r1's e12
(down: wait for single path; up: wait for ECMP), and a close/reconnect replay; with and without
``fpm use-next-hop-groups``.  Every frame is saved with its 4-byte FPM header; a side file holds
zebra's own view (``show ip route json``) at the end of each phase and r1's links.
"""
from __future__ import annotations

import argparse
import ipaddress
import json
import os
import select
import socket
import struct
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(os.path.dirname(HERE)))  # the checkout, for kernelsync

from kernelsync.tools.netns import NetNS, unique_name, wait_for  # noqa: E402

# netlink constants (include/uapi/linux/netlink.h, rtnetlink.h); kept here on purpose: the
# capture does not use the decoders it produces data for
NLMSG_ERROR, NLMSG_DONE = 2, 3
NLM_F_REQUEST, NLM_F_DUMP, NLM_F_DUMP_INTR = 0x1, 0x300, 0x10
SOL_NETLINK, NETLINK_ADD_MEMBERSHIP = 270, 1
RTM_NAMES = {16: "RTM_NEWLINK", 17: "RTM_DELLINK", 20: "RTM_NEWADDR", 21: "RTM_DELADDR",
             24: "RTM_NEWROUTE", 25: "RTM_DELROUTE", 104: "RTM_NEWNEXTHOP", 105: "RTM_DELNEXTHOP"}
RTM_GETLINK, RTM_GETADDR, RTM_GETROUTE, RTM_GETNEXTHOP = 18, 22, 26, 106
# groups: RTNLGRP_LINK 1, IPV4_IFADDR 5, IPV4_ROUTE 7, IPV6_IFADDR 9, IPV6_ROUTE 11 (bind mask),
# RTNLGRP_NEXTHOP 32 (NETLINK_ADD_MEMBERSHIP only)
BIND_GROUPS = (1, 5, 7, 9, 11)
RTNLGRP_NEXTHOP = 32
TABLE = 100

# ---------------------------------------------------------------------------------------------
# the kernel scenario

LINKS = (("a0", "b0"), ("a1", "b1"))
ADDRESSES = (("a0", "10.0.0.1/24"), ("a1", "10.0.1.1/24"),
             ("a0", "2001:db8::1/64"), ("a1", "2001:db8:1::1/64"))
NEXTHOPS = (
    "nexthop add id 1 via 10.0.0.2 dev a0",                       # IPv4 gateway
    "nexthop add id 2 via 10.0.1.2 dev a1",
    "nexthop add id 3 via 2001:db8::2 dev a0",                    # IPv6 gateway
    "nexthop add id 4 via 2001:db8:1::2 dev a1",
    "nexthop add id 5 dev a1",                                    # device-only (no family given)
    "-6 nexthop add id 8 dev a0",                                 # device-only IPv6
    "nexthop add id 6 blackhole",
    "nexthop add id 7 via 10.0.0.3 dev a0 proto 200",             # IPv4 gateway, protocol 200
    "nexthop add id 10 group 1/2,3",                              # weights 1 and 3
    "nexthop add id 11 group 1/2 type resilient buckets 32 idle_timer 60",
    "nexthop add id 12 group 3/4",                                # IPv6 group
    "nexthop add id 13 group 1/5",                                # gateway + device-only member
    "nexthop add id 14 group 3/1",                                # IPv6 + IPv4 gateways (RFC 5549)
    "nexthop add id 15 group 1,256/7 proto 200",                  # the largest weight ip allows
)
ROUTES = (
    "route add 198.51.100.0/24 table 100 nhid 10 proto 200 metric 20",   # nhid: group
    "route add 203.0.113.0/28 table 100 nhid 1 proto 200 metric 20",     # nhid: single
    "route add 203.0.113.16/28 table 100 nhid 11 proto 200",             # nhid: resilient group
    "route add 203.0.113.32/28 table 100 nhid 3",                        # nhid: IPv6 gw for IPv4
    "route add 203.0.113.48/28 table 100 nhid 6",                        # nhid: blackhole
    "route add 203.0.113.64/28 table 100 nhid 14",                       # nhid: mixed families
    "route add 203.0.113.80/28 table 100 nhid 13",                       # nhid: gw + dev-only
    "route add 192.0.2.0/28 table 100 metric 10 nexthop via 10.0.0.2 dev a0 weight 1"
    " nexthop via 10.0.1.2 dev a1 weight 3",                             # RTA_MULTIPATH, weights
    "route add 192.0.2.16/28 table 100 nexthop dev a0 nexthop dev a1",   # device-only multipath
    "route add 192.0.2.32/28 table 100 via inet6 2001:db8::2 dev a0",    # RTA_VIA
    "route add 192.0.2.48/28 table 100 dev a1",                          # plain dev
    "route add blackhole 192.0.2.64/28 table 100",                       # blackhole
    "route add 192.0.2.80/28 table 100 via 10.0.0.2 dev a0 metric 30 proto static",
    "route add 192.0.2.96/28 table 100 nexthop via inet6 2001:db8::2 dev a0"
    " nexthop via inet6 2001:db8:1::2 dev a1",                           # RTA_VIA in multipath
    "route add default table 100 via 10.0.1.2 dev a1",                   # no RTA_DST
    "-6 route add 2001:db8:100::/48 table 100 nexthop via 2001:db8::2 dev a0 weight 1"
    " nexthop via 2001:db8:1::2 dev a1 weight 2",                        # IPv6 multipath
    "-6 route add 2001:db8:200::/48 table 100 nhid 12 proto 200",        # IPv6 on a group
    "-6 route add 2001:db8:300::/48 table 100 via 2001:db8:1::2 dev a1 metric 5",
    "-6 route add 2001:db8:400::/48 table 100 dev a0",
    "-6 route add blackhole 2001:db8:500::/48 table 100",
    "-6 route add 2001:db8:600::/48 table 100 nhid 8",                   # IPv6 dev-only object
)
# (action, ip arguments), run in this order while a socket records the notifications
ACTIONS = (
    ("nexthop del of a group member", "nexthop del id 2"),
    ("group replace", "nexthop replace id 10 group 1/7,2"),
    ("route replace multipath -> nhid", "route replace 192.0.2.0/28 table 100 metric 10 nhid 10"),
    ("route replace nhid -> multipath", "route replace 203.0.113.0/28 table 100 proto 200 metric 20"
     " nexthop via 10.0.0.2 dev a0 nexthop via 10.0.0.3 dev a0 weight 2"),
    ("link down", "link set a1 down"),
    ("link up", "link set a1 up"),
    ("carrier loss", "link set b0 down"),  # a0 stays admin up, loses LOWER_UP
    ("carrier back", "link set b0 up"),
)
# after these actions the kernel has changed nexthops and routes without telling: dump them
DUMP_AFTER = {"link down": "a1 admin down", "carrier loss": "a0 carrier lost (peer b0 down)"}


# a group with a 16-bit weight (struct nexthop_grp weight_high, Linux 6.12+), which ip 6.1 can
# neither write nor show (it prints the low byte + 1): written with a hand-packed RTM_NEWNEXTHOP
WIDE_GROUP = {"id": 16, "protocol": 200, "group": [{"id": 1, "weight": 1000}, {"id": 7, "weight": 1}]}


def add_wide_group(ns: NetNS) -> None:
    def nla(kind, payload):
        data = struct.pack("=HH", 4 + len(payload), kind) + payload
        return data + b"\0" * (-len(data) % 4)
    grp = b"".join(struct.pack("=IBBH", m["id"], (m["weight"] - 1) & 0xFF, (m["weight"] - 1) >> 8, 0)
                   for m in WIDE_GROUP["group"])
    body = (struct.pack("=BBBBI", 0, 0, WIDE_GROUP["protocol"], 0, 0) + nla(1, struct.pack("=I", WIDE_GROUP["id"]))
            + nla(2, grp))
    sock = nl_socket(ns)
    try:
        # RTM_NEWNEXTHOP, NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL
        sock.send(struct.pack("=IHHII", 16 + len(body), 104, 0x1 | 0x4 | 0x400 | 0x200, 1, 0) + body)
        err = struct.unpack_from("=i", sock.recv(65536), 16)[0]
        if err:
            raise OSError(-err, "RTM_NEWNEXTHOP id %d: %s" % (WIDE_GROUP["id"], os.strerror(-err)))
    finally:
        sock.close()


def build(ns: NetNS) -> None:
    for dev, peer in LINKS:
        ns.veth(dev, peer)  # both ends up
    ns.veth("c0", "d0", up=False)  # no nexthop or route uses them: c0 admin up without carrier,
    ns.ip("link", "set", "c0", "up")  # d0 admin down
    for dev, addr in ADDRESSES:
        extra = ["nodad"] if ":" in addr else []
        ns.ip("addr", "add", addr, "dev", dev, *extra)
    wait_for(lambda: all(any(a.get("scope") == "link" for a in l.get("addr_info", []))
                         for l in ns.json("-6", "addr", "show") if l["ifname"] in ("a0", "a1")),
             timeout=10, what="link-local addresses")
    for cmd in NEXTHOPS + ROUTES:
        ns.ip(*cmd.split())
    add_wide_group(ns)


# ---------------------------------------------------------------------------------------------
# raw netlink

def nl_socket(ns: NetNS, groups=(), memberships=()) -> socket.socket:
    with ns.entered():
        sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC, 0)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
    mask = 0
    for g in groups:
        mask |= 1 << (g - 1)
    sock.bind((0, mask))
    for g in memberships:
        sock.setsockopt(SOL_NETLINK, NETLINK_ADD_MEMBERSHIP, g)
    return sock


def split_messages(data: bytes):
    off = 0
    while off + 16 <= len(data):
        length = struct.unpack_from("=I", data, off)[0]
        if length < 16:
            break
        yield data[off:off + length]
        off += (length + 3) & ~3


def dump(sock: socket.socket, msg_type: int, body: bytes, seq: int):
    """Every reply message of one dump request (raw bytes); retried if interrupted."""
    for _attempt in range(5):
        sock.send(struct.pack("=IHHII", 16 + len(body), msg_type, NLM_F_REQUEST | NLM_F_DUMP, seq, 0) + body)
        out, intr = [], False
        while True:
            data = sock.recv(1 << 20)
            done = False
            for msg in split_messages(data):
                _l, mtype, flags, mseq, _pid = struct.unpack_from("=IHHII", msg)
                if mseq != seq:
                    continue
                if flags & NLM_F_DUMP_INTR:
                    intr = True
                if mtype == NLMSG_DONE:
                    done = True
                    break
                if mtype == NLMSG_ERROR:
                    raise OSError(-struct.unpack_from("=i", msg, 16)[0], "dump %d failed" % msg_type)
                out.append(msg)
            if done:
                break
        if not intr:
            return out
        seq += 1
    raise RuntimeError("dump %d interrupted 5 times" % msg_type)


def read_quiet(sock: socket.socket, quiet: float = 0.5, limit: float = 5.0):
    """Every message until none arrived for ``quiet`` seconds (at most ``limit``)."""
    out = []
    end = time.monotonic() + limit
    while True:
        left = min(quiet, end - time.monotonic())
        if left <= 0:
            return out
        ready, _, _ = select.select([sock], [], [], left)
        if not ready:
            return out
        out.extend(split_messages(sock.recv(1 << 20)))


# a small independent reading of the headers, only to pair messages with ip's entries -------

def _attrs(msg: bytes, off: int):
    out = {}
    while off + 4 <= len(msg):
        length, kind = struct.unpack_from("=HH", msg, off)
        if length < 4:
            break
        out.setdefault(kind & 0x3FFF, msg[off + 4:off + length])
        off += (length + 3) & ~3
    return out


def route_key(msg: bytes):
    family, plen, _s, _t, table, _p, _sc, rtype, _f = struct.unpack_from("=BBBBBBBBI", msg, 16)
    a = _attrs(msg, 28)
    if 15 in a:
        table = struct.unpack("=I", a[15])[0]
    dst = a.get(1, bytes(4 if family == socket.AF_INET else 16))
    metric = struct.unpack("=I", a[6])[0] if 6 in a else 0
    oif = struct.unpack("=I", a[4])[0] if 4 in a else 0
    return (family, table, rtype, socket.inet_ntop(family, dst), plen, metric, oif)


RT_TABLES = {"local": 255, "main": 254, "default": 253}
RTN_TYPES = {"unicast": 1, "local": 2, "broadcast": 3, "anycast": 4, "multicast": 5, "blackhole": 6,
             "unreachable": 7, "prohibit": 8, "throw": 9}


def ip_route_key(entry: dict, family: int, ifindex: dict):
    dst = entry["dst"]
    if dst == "default":
        dst = "0.0.0.0/0" if family == socket.AF_INET else "::/0"
    net = ipaddress.ip_interface(dst if "/" in dst else dst + ("/32" if family == socket.AF_INET else "/128"))
    table = entry.get("table", "main")
    table = RT_TABLES.get(table, None) or int(table)
    return (family, table, RTN_TYPES[entry.get("type", "unicast")], str(net.ip), net.network.prefixlen,
            entry.get("metric", 0), ifindex.get(entry.get("dev"), 0))


def pair(messages, entries, key_msg, key_ip, what):
    by_key = {}
    for e in entries:
        k = key_ip(e)
        if k in by_key:
            raise RuntimeError("%s: two ip entries with key %r" % (what, k))
        by_key[k] = e
    out, seen = [], set()
    for msg in messages:
        k = key_msg(msg)
        if k not in by_key:
            raise RuntimeError("%s: no ip entry for message %r (%s)" % (what, k, msg.hex()))
        if k in seen:
            raise RuntimeError("%s: two messages with key %r" % (what, k))
        seen.add(k)
        out.append({"hex": msg.hex(), "ip": by_key[k]})
    missing = set(by_key) - seen
    if missing:
        raise RuntimeError("%s: ip shows %r but the dump did not" % (what, sorted(missing)))
    return out


def write_json(path: str, obj, indent=1) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        json.dump(obj, f, indent=indent)
        f.write("\n")
    print("wrote %s (%d bytes)" % (path, os.path.getsize(path)))


def snapshot(ns: NetNS) -> dict:
    """ip -j -d's view of what the actions change."""
    def routes(family):  # nh_info repeats the nexthop object: left out
        return [{k: v for k, v in e.items() if k != "nh_info"}
                for e in ns.json("-d", family, "route", "show", "table", str(TABLE))]
    return {"nexthops": ns.json("-d", "nexthop", "show"),
            "routes4": routes("-4"),
            "routes6": routes("-6"),
            "links": [{k: l.get(k) for k in ("ifindex", "ifname", "flags", "operstate")}
                      for l in ns.json("-d", "link", "show")]}


def capture_kernel(out: str) -> None:
    routes = {}
    notifications = []
    states = []
    first_ifindex = {}
    for compat in (0, 1):
        ns = NetNS(unique_name("ksgold"), compat_mode=compat)
        try:
            build(ns)
            sock = nl_socket(ns)
            links = dump(sock, RTM_GETLINK, struct.pack("=BxHiII", 0, 0, 0, 0, 0), 1)
            ip_links = ns.json("-d", "link", "show")
            ifindex = {l["ifname"]: l["ifindex"] for l in ip_links}
            # links.json maps the ifindexes of every file: both namespaces must number alike
            if first_ifindex.setdefault("map", ifindex) != ifindex:
                raise RuntimeError("ifindexes differ between the namespaces: %r %r" % (first_ifindex, ifindex))
            rts = []
            for family in (socket.AF_INET, socket.AF_INET6):
                msgs = dump(sock, RTM_GETROUTE, struct.pack("=BBBBBBBBI", family, 0, 0, 0, 0, 0, 0, 0, 0),
                            10 + family)
                entries = ns.json("-d", "-4" if family == socket.AF_INET else "-6", "route", "show",
                                  "table", "all")
                rts += pair(msgs, entries, route_key, lambda e, f=family: ip_route_key(e, f, ifindex),
                            "routes compat %d family %d" % (compat, family))
            routes[compat] = rts
            if compat == 0:  # nexthops, links and addresses do not depend on the compat mode
                nhs = pair(dump(sock, RTM_GETNEXTHOP, struct.pack("=BBBBI", 0, 0, 0, 0, 0), 2),
                           ns.json("-d", "nexthop", "show"), _nh_id, lambda e: e["id"], "nexthops")
                for entry in nhs:
                    if entry["ip"]["id"] == WIDE_GROUP["id"]:
                        entry["written"] = WIDE_GROUP  # what was written; ip shows the low byte
                write_json(os.path.join(out, "kernel", "nexthops.json"), nhs)
                write_json(os.path.join(out, "kernel", "links.json"),
                           pair(links, ip_links, lambda m: struct.unpack_from("=i", m, 20)[0],
                                lambda e: e["ifindex"], "links"))
                addrs = dump(sock, RTM_GETADDR, struct.pack("=BBBBI", 0, 0, 0, 0, 0), 3)
                flat = []
                for link in ns.json("-d", "addr", "show"):
                    for info in link.get("addr_info", []):
                        flat.append(dict(info, ifindex=link["ifindex"], ifname=link["ifname"]))
                write_json(os.path.join(out, "kernel", "addresses.json"),
                           pair(addrs, flat, _addr_key,
                                lambda e: (e["ifindex"], e["family"], e["local"], e["prefixlen"]),
                                "addresses"))
            sock.close()
            ns.ip("nexthop", "del", "id", str(WIDE_GROUP["id"]))  # ip cannot show it right: not in "after"
            events = nl_socket(ns, BIND_GROUPS, (RTNLGRP_NEXTHOP,))
            read_quiet(events, 0.2)  # nothing should be pending; drop it if it is
            for what, cmd in ACTIONS:
                ns.ip(*cmd.split())
                msgs = read_quiet(events, 0.5)
                notifications.append({
                    "compat_mode": compat, "action": what, "command": "ip " + cmd,
                    "messages": [{"type": RTM_NAMES.get(struct.unpack_from("=H", m, 4)[0], "?"), "hex": m.hex()}
                                 for m in msgs],
                    "after": snapshot(ns)})
                if what in DUMP_AFTER:
                    states.append(dump_state(ns, compat, DUMP_AFTER[what], "ip " + cmd))
            events.close()
        finally:
            ns.delete()
    for compat, rts in routes.items():
        write_json(os.path.join(out, "kernel", "routes-compat%d.json" % compat), rts)
    write_json(os.path.join(out, "kernel", "notifications.json"), notifications, indent=None)
    write_json(os.path.join(out, "kernel", "after-link-events.json"), states)
    write_json(os.path.join(out, "kernel", "info.json"), {
        "kernel": os.uname().release,
        "iproute2": _version(["ip", "-V"]),
        "python": sys.version.split()[0],
        "ifindex": first_ifindex["map"],
        "scenario": {"links": LINKS, "addresses": ADDRESSES, "nexthops": NEXTHOPS, "wide_group": WIDE_GROUP,
                     "routes": ROUTES, "actions": ACTIONS},
    })


def dump_state(ns: NetNS, compat: int, state: str, command: str) -> dict:
    """Nexthops and table-100 routes as dumped after a link event, paired with ip -j -d."""
    sock = nl_socket(ns)
    try:
        ifindex = {l["ifname"]: l["ifindex"] for l in ns.json("link", "show")}
        nhs = dump(sock, RTM_GETNEXTHOP, struct.pack("=BBBBI", 0, 0, 0, 0, 0), 2)
        rts = []
        for family in (socket.AF_INET, socket.AF_INET6):
            msgs = [m for m in dump(sock, RTM_GETROUTE, struct.pack("=BBBBBBBBI", family, 0, 0, 0, 0, 0, 0, 0, 0),
                                    10 + family) if route_key(m)[1] == TABLE]
            entries = ns.json("-d", "-4" if family == socket.AF_INET else "-6", "route", "show", "table", str(TABLE))
            entries = [dict(e, table=str(TABLE)) for e in entries]  # ip leaves it out when asked for one table
            rts += pair(msgs, entries, route_key, lambda e, f=family: ip_route_key(e, f, ifindex),
                        "routes %s" % state)
        return {"compat_mode": compat, "state": state, "command": command,
                "nexthops": pair(nhs, ns.json("-d", "nexthop", "show"), _nh_id, lambda e: e["id"], "nexthops " + state),
                "routes": rts}
    finally:
        sock.close()


def _nh_id(msg: bytes) -> int:
    return struct.unpack("=I", _attrs(msg, 24)[1])[0]


def _addr_key(msg: bytes):
    family, plen, _f, _s, index = struct.unpack_from("=BBBBI", msg, 16)
    a = _attrs(msg, 24)
    raw = a.get(2) or a.get(1)  # IFA_LOCAL, else IFA_ADDRESS
    return (index, "inet" if family == socket.AF_INET else "inet6", socket.inet_ntop(family, raw), plen)


# ---------------------------------------------------------------------------------------------
# FRR zebra over FPM

OSPF_PREFIXES = ("192.0.2.0/24", "198.51.100.0/24", "203.0.113.0/24")


def capture_fpm(out: str, nexthop_groups: bool) -> None:
    from kernelsync.tools.ospflab import NH_R2, NH_R3, FpmCapture, OspfLab, install_requirements

    install_requirements(frr=True)
    name = "zebra-8.4-%s" % ("nhg" if nexthop_groups else "multipath")
    lab = OspfLab("frr", fpm_nexthop_groups=nexthop_groups)
    fpm = None
    phases = []
    marks = []  # (phase, monotonic time it began)

    def quiet(seconds: float = 1.5, conn: int = 1, timeout: float = 30.0) -> None:
        def ok():
            frames = fpm.frames
            return (fpm.connections >= conn and frames and frames[-1].conn >= conn
                    and time.monotonic() - frames[-1].time >= seconds)
        wait_for(ok, timeout=timeout, interval=0.05, what="the FPM stream to go quiet")

    def zebra_view(phase: str) -> None:
        routes = json.loads(lab.vtysh("r1", "show ip route json"))
        phases.append({"phase": phase, "conn": fpm.connections, "frames": len(fpm.frames),
                       "daemon_routes": {p: lab.daemon_routes(p) for p in OSPF_PREFIXES},
                       "show_ip_route": routes})

    try:
        lab.start(daemons=False)
        fpm = FpmCapture(lab.r1, port=2620)
        fpm.start()
        marks.append(("replay", time.monotonic()))
        lab.start_daemons()
        lab.wait_ecmp()
        for p, gws in ((OSPF_PREFIXES[1], [NH_R2]), (OSPF_PREFIXES[2], [NH_R3])):
            lab.wait_routes(gws, p)
        quiet()
        zebra_view("replay")
        marks.append(("flap-down", time.monotonic()))
        lab.link("e12", "down")
        lab.wait_routes([NH_R3])
        quiet()
        zebra_view("flap-down")
        marks.append(("flap-up", time.monotonic()))
        lab.link("e12", "up")
        lab.wait_ecmp()
        quiet(2.0)
        zebra_view("flap-up")
        marks.append(("reconnect", time.monotonic()))
        fpm.close_connection()
        quiet(1.5, conn=2)
        zebra_view("reconnect")
        ip_link = json.loads(subprocess.run(["ip", "-n", lab.r1.name, "-j", "link"], capture_output=True,
                                            text=True, check=True).stdout)
        frames = list(fpm.frames)
        errors = list(fpm.errors)
    finally:
        if fpm is not None:
            fpm.stop()
        lab.close()
    if errors:
        raise RuntimeError("FPM capture errors: %s" % errors)
    lines = []
    for frame in frames:
        phase = [p for p, t in marks if t <= frame.time][-1]
        if frame.conn > 1:
            phase = "reconnect"
        raw = struct.pack("!BBH", frame.version, frame.type, 4 + len(frame.data)) + frame.data
        lines.append(json.dumps({"conn": frame.conn, "phase": phase, "hex": raw.hex()}))
    path = os.path.join(out, "fpm", name + ".jsonl")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")
    print("wrote %s (%d bytes, %d frames)" % (path, os.path.getsize(path), len(lines)))
    side = {
        "frr": _version(["dpkg-query", "-W", "-f=${Version}", "frr"]),
        "kernel": os.uname().release,
        "fpm_nexthop_groups": nexthop_groups,
        "ifnames": {str(l["ifindex"]): l["ifname"] for l in ip_link},
        "ip_link": ip_link,
        "phases": phases,
    }
    write_json(os.path.join(out, "fpm", name + ".zebra.json"), side)


def _version(argv) -> str:
    return subprocess.run(argv, capture_output=True, text=True).stdout.strip()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default=HERE, help="directory to write into (default: %(default)s)")
    ap.add_argument("--only", choices=("kernel", "fpm"), help="capture only one part")
    args = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("capture.py needs root (network namespaces)")
    if args.only in (None, "kernel"):
        capture_kernel(args.out)
    if args.only in (None, "fpm"):
        for nhg in (True, False):
            capture_fpm(args.out, nhg)


if __name__ == "__main__":
    main()
