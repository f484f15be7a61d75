"""Golden kernel messages (tests/golden/kernel, captured by capture.py from kernel 6.18, see
README.md) decoded with kernelsync's own decoders and compared with what ``ip -j -d`` showed for
the same objects.  No root needed."""
import functools
import ipaddress
import json
import os
import socket
import struct

import pytest

from kernelsync.core.model import AF_INET, AF_INET6, GRP_MPATH, GRP_RES, SCOPE_NAME, KRoute, Leg
from kernelsync.core.port import WriteStats
from kernelsync.kernel.codec import NLMSG_DONE, NLMSGHDR, parse_address, parse_link, parse_nexthop, parse_route
from kernelsync.kernel.netlink import RtNetlink

KERNEL = os.path.join(os.path.dirname(os.path.abspath(__file__)), "kernel")

# /etc/iproute2/rt_protos (ip prints names; numbers without a name as text)
PROTOCOLS = {"unspec": 0, "redirect": 1, "kernel": 2, "boot": 3, "static": 4, "ra": 9, "dhcp": 16,
             "zebra": 11, "bird": 12, "babel": 42, "bgp": 186, "isis": 187, "ospf": 188, "rip": 189}
TABLES = {"local": 255, "main": 254, "default": 253}
TYPES = {"unicast": 1, "local": 2, "broadcast": 3, "anycast": 4, "multicast": 5, "blackhole": 6,
         "unreachable": 7, "prohibit": 8, "throw": 9}
FAMILIES = {"inet": AF_INET, "inet6": AF_INET6}
RTM_NEWLINK, RTM_DELLINK, RTM_NEWADDR, RTM_DELADDR = 16, 17, 20, 21
RTM_NEWROUTE, RTM_DELROUTE, RTM_NEWNEXTHOP, RTM_DELNEXTHOP = 24, 25, 104, 105


@functools.lru_cache(maxsize=None)
def load(name):
    with open(os.path.join(KERNEL, name)) as f:
        return json.load(f)


def raw(entry):
    data = bytes.fromhex(entry["hex"])
    length, = struct.unpack_from("=I", data)
    assert length == len(data), "nlmsg_len %d, %d bytes saved" % (length, len(data))
    return data


def msg_type(data):
    return struct.unpack_from("=H", data, 4)[0]


@functools.lru_cache(maxsize=None)
def ifindex():
    """ifname -> ifindex of the capture's namespaces (capture.py checks they number alike)."""
    return {e["ip"]["ifname"]: e["ip"]["ifindex"] for e in load("links.json")}


def protocol(name):
    return PROTOCOLS[name] if name in PROTOCOLS else int(name)


def packed(text):
    addr = ipaddress.ip_address(text)
    return (AF_INET if addr.version == 4 else AF_INET6), addr.packed


# ---------------------------------------------------------------------------------------------
# what ip showed, in the decoders' terms

def expected_nexthop(ip):
    """parse_nexthop's KNexthop fields from an ``ip -j -d nexthop show`` entry."""
    out = {"id": ip["id"], "protocol": protocol(ip["protocol"]), "blackhole": "blackhole" in ip,
           "oif": ifindex()[ip["dev"]] if "dev" in ip else 0, "gateway": None, "group": (),
           "grp_type": GRP_MPATH, "res": None}
    if "gateway" in ip:
        family, out["gateway"] = packed(ip["gateway"])
        out["family"] = family
    if "group" in ip:
        out["family"] = 0
        out["group"] = tuple(sorted((m["id"], m.get("weight", 1)) for m in ip["group"]))
        if ip.get("type") == "resilient":
            args = ip["resilient_args"]  # seconds; the kernel's unit is 1/100 s
            out["grp_type"] = GRP_RES
            out["res"] = (args["buckets"], round(args["idle_timer"] * 100), round(args["unbalanced_timer"] * 100))
    return out


def decoded_nexthop(data):
    nh = parse_nexthop(data, 16, len(data))
    assert nh is not None
    out = {k: getattr(nh, k) for k in ("id", "protocol", "blackhole", "oif", "gateway", "group", "grp_type", "res")}
    if nh.gateway is not None or nh.group:
        out["family"] = nh.family
    return out


def leg(ip):
    """One leg of an ip route entry (top level or one of ``nexthops``) -> Leg."""
    gw_family = gateway = None
    if "gateway" in ip:
        gw_family, gateway = packed(ip["gateway"])
    elif "via" in ip:
        gw_family, gateway = packed(ip["via"]["host"])
        assert FAMILIES[ip["via"]["family"]] == gw_family
    return Leg(gw_family, gateway, ifindex()[ip["dev"]], ip.get("weight", 1))


def expected_route(ip, family):
    """parse_route's KRoute from an ``ip -j -d route show`` entry of ``family``."""
    dst = ip["dst"]
    if dst == "default":
        dst = "0.0.0.0/0" if family == AF_INET else "::/0"
    net = ipaddress.ip_network(dst)  # host routes come without /32 or /128
    table = ip.get("table", "main")
    if ip.get("nexthops"):
        legs = tuple(leg(n) for n in ip["nexthops"])
    elif "dev" in ip:
        legs = (leg(ip),)
    else:
        legs = ()
    scope = {name: n for n, name in SCOPE_NAME.items()}[ip.get("scope", "global")]  # ip omits "global"
    return KRoute(family, net.network_address.packed, net.prefixlen, TABLES.get(table) or int(table),
                  protocol(ip["protocol"]), TYPES[ip["type"]], ip.get("metric", 0), legs, ip.get("nhid", 0), scope)


def route_family(data):
    return data[16]


def check_route(entry):
    data = raw(entry)
    family = route_family(data)
    assert parse_route(data, 16, len(data)) == expected_route(entry["ip"], family), entry["ip"]


# ---------------------------------------------------------------------------------------------
# dumps

def test_links():
    entries = load("links.json")
    assert {e["ip"]["ifname"] for e in entries} == {"lo", "a0", "b0", "a1", "b1", "c0", "d0"}
    for entry in entries:
        data = raw(entry)
        assert msg_type(data) == RTM_NEWLINK
        link = parse_link(data, 16, len(data))
        ip = entry["ip"]
        assert (link.index, link.name, link.up, link.carrier) == (
            ip["ifindex"], ip["ifname"], "UP" in ip["flags"], "LOWER_UP" in ip["flags"]), ip
    flags = {e["ip"]["ifname"]: e["ip"]["flags"] for e in entries}
    assert "UP" in flags["c0"] and "LOWER_UP" not in flags["c0"]  # admin up, no carrier
    assert "UP" not in flags["d0"]

def test_addresses():
    entries = load("addresses.json")
    assert {e["ip"]["family"] for e in entries} == {"inet", "inet6"}
    for entry in entries:
        data = raw(entry)
        assert msg_type(data) == RTM_NEWADDR
        ip = entry["ip"]
        family, address = packed(ip["local"])
        assert parse_address(data, 16, len(data)) == (family, ip["ifindex"], address, ip["prefixlen"]), ip


def test_nexthops():
    entries = load("nexthops.json")
    for entry in entries:
        data = raw(entry)
        assert msg_type(data) == RTM_NEWNEXTHOP
        if "written" in entry:  # ip 6.1 cannot show a 16-bit weight: compare with what was written
            continue
        assert decoded_nexthop(data) == expected_nexthop(entry["ip"]), entry["ip"]
    # every shape the capture is meant to hold is there
    by_id = {e["ip"]["id"]: e["ip"] for e in entries}
    assert ":" in by_id[3]["gateway"] and "." in by_id[1]["gateway"]
    assert "gateway" not in by_id[5] and by_id[5]["dev"] == "a1"
    assert "blackhole" in by_id[6]
    assert by_id[7]["protocol"] == "200"
    assert [m.get("weight", 1) for m in by_id[10]["group"]] == [1, 3]
    assert by_id[11]["type"] == "resilient" and by_id[11]["resilient_args"]["buckets"] == 32
    assert by_id[11]["resilient_args"]["idle_timer"] == 60
    assert by_id[15]["group"][0]["weight"] == 256


def test_16_bit_group_weight():
    """A weight above 256 (struct nexthop_grp weight_high, written by capture.py with a
    hand-packed RTM_NEWNEXTHOP) decodes whole; ip 6.1 shows only the low byte + 1."""
    (entry,) = [e for e in load("nexthops.json") if "written" in e]
    written = entry["written"]
    data = raw(entry)
    want = dict(expected_nexthop(entry["ip"]),
                group=tuple(sorted((m["id"], m["weight"]) for m in written["group"])))
    assert decoded_nexthop(data) == want
    assert max(m["weight"] for m in written["group"]) > 256
    assert [m.get("weight", 1) for m in entry["ip"]["group"]] == [
        ((m["weight"] - 1) & 0xFF) + 1 for m in written["group"]]


def test_resilient_idle_timer_is_in_centiseconds():
    (entry,) = [e for e in load("nexthops.json") if e["ip"].get("type") == "resilient"]
    data = raw(entry)
    nh = parse_nexthop(data, 16, len(data))
    assert nh.grp_type == GRP_RES and nh.res == (32, 6000, 0)


@pytest.mark.parametrize("compat", [0, 1])
def test_routes(compat):
    entries = load("routes-compat%d.json" % compat)
    for entry in entries:
        assert msg_type(raw(entry)) == RTM_NEWROUTE
        check_route(entry)
    table100 = {e["ip"]["dst"]: e["ip"] for e in entries if e["ip"].get("table") == "100"}
    # the shapes: nhid on a group and on a single nexthop, RTA_MULTIPATH, device-only
    # multipath, RTA_VIA, IPv6 multipath, dev only, blackhole
    assert table100["198.51.100.0/24"]["nhid"] == 10 and table100["203.0.113.0/28"]["nhid"] == 1
    assert len(table100["192.0.2.0/28"]["nexthops"]) == 2
    assert all("gateway" not in n for n in table100["192.0.2.16/28"]["nexthops"])
    assert table100["192.0.2.32/28"]["via"]["family"] == "inet6"
    assert len(table100["2001:db8:100::/48"]["nexthops"]) == 2
    assert table100["192.0.2.64/28"]["type"] == "blackhole"
    # nexthop_compat_mode: 1 adds the nexthops to routes on nexthop objects, 0 does not
    assert ("nexthops" in table100["198.51.100.0/24"]) == (compat == 1)


@pytest.mark.parametrize("compat", [0, 1])
def test_route_on_nexthop_object_carries_legs_only_in_compat_mode_1(compat):
    entries = load("routes-compat%d.json" % compat)
    (entry,) = [e for e in entries if e["ip"].get("table") == "100" and e["ip"]["dst"] == "198.51.100.0/24"]
    data = raw(entry)
    route = parse_route(data, 16, len(data))
    assert route.nh_id == 10
    a0, a1 = ifindex()["a0"], ifindex()["a1"]
    want = (Leg(AF_INET, socket.inet_aton("10.0.0.2"), a0), Leg(AF_INET, socket.inet_aton("10.0.1.2"), a1, 3))
    assert route.legs == (want if compat else ())


@pytest.mark.parametrize("state", range(4))
def test_after_link_events(state):
    """Dumps after a link went down or lost carrier: what the kernel changed silently."""
    entry = load("after-link-events.json")[state]
    for nh in entry["nexthops"]:
        assert decoded_nexthop(raw(nh)) == expected_nexthop(nh["ip"]), nh["ip"]
    for route in entry["routes"]:
        check_route(route)
    ids = {nh["ip"]["id"] for nh in entry["nexthops"]}
    if entry["state"].startswith("a1 admin down"):
        assert not ids & {4, 5}  # the nexthops on a1 are gone, without a notification
    else:
        assert ids == {6}  # carrier loss on a0 took everything but the blackhole


# ---------------------------------------------------------------------------------------------
# RtNetlink's dump readers (dump_routes reads only keys: its own unrolled loop), over a
# stand-in socket that answers each dump request with the captured replies

class Replaying:
    """Answers an RTM_GET* dump request with ``messages`` (raw nlmsghdr + body) carrying the
    request's sequence number, then NLMSG_DONE; route dumps answer with the requested family
    only, as the kernel does."""

    def __init__(self, messages):
        self.messages = messages
        self.pending = b""

    def send(self, request):
        _length, mtype, _flags, seq, _pid = NLMSGHDR.unpack_from(request)
        out = []
        for data in self.messages:
            if mtype == 26 and data[16] != request[16]:  # RTM_GETROUTE: rtm_family
                continue
            out.append(data[:8] + struct.pack("=II", seq, 0) + data[16:] + b"\0" * (-len(data) % 4))
        out.append(NLMSGHDR.pack(20, NLMSG_DONE, 2, seq, 0) + b"\0\0\0\0")
        self.pending = b"".join(out)
        return len(request)

    def recv_into(self, buf):
        n = len(self.pending)
        buf[:n] = self.pending
        self.pending = b""
        return n


def replaying(messages):
    rt = RtNetlink.__new__(RtNetlink)
    rt.seq, rt.buf, rt.stats = 100, bytearray(1 << 20), WriteStats()
    rt.sock = Replaying(messages)
    return rt


@pytest.mark.parametrize("compat", [0, 1])
def test_dump_routes_and_dump_table(compat):
    messages = [raw(e) for e in load("routes-compat%d.json" % compat)]
    rt = replaying(messages)
    routes = [parse_route(m, 16, len(m)) for m in messages]
    want = {(100, r.family, r.dst, r.plen, r.metric): r.nh_id for r in routes if r.table == 100 and r.protocol == 200}
    assert len(want) == 4  # 198.51.100.0/24, 203.0.113.0/28, 203.0.113.16/28, 2001:db8:200::/48
    assert rt.dump_routes(100, 200) == want
    assert rt.dump_table(100, 200) == [r for r in routes if r.table == 100 and r.protocol == 200]
    assert len(rt.dump_table(100)) == sum(1 for r in routes if r.table == 100)
    # with compat mode 0 the IPv4 routes on nexthop objects with a metric are rtmsg + RTA_TABLE,
    # RTA_DST, RTA_PRIORITY, RTA_NH_ID: dump_routes reads them with one unpack
    fast = [m for m in messages if len(m) - 16 == 12 + 4 * 8 and m[16] == AF_INET
            and [struct.unpack_from("=H", m, off)[0] for off in (30, 38, 46, 54)] == [15, 1, 6, 30]]
    assert len(fast) == (2 if compat == 0 else 0)


def test_dump_nexthops_links_addresses():
    nexthops = [raw(e) for e in load("nexthops.json")]
    got = replaying(nexthops).dump_nexthops()
    assert sorted(got) == sorted(e["ip"]["id"] for e in load("nexthops.json"))
    assert all(got[nh.id] == nh for nh in (parse_nexthop(m, 16, len(m)) for m in nexthops))
    links = replaying([raw(e) for e in load("links.json")]).dump_links()
    assert {i: (l.name, l.usable) for i, l in links.items()} == {
        e["ip"]["ifindex"]: (e["ip"]["ifname"], e["ip"]["ifname"] not in ("c0", "d0")) for e in load("links.json")}
    addresses = replaying([raw(e) for e in load("addresses.json")]).dump_addresses()
    assert sorted(addresses) == sorted((packed(e["ip"]["local"])[0], e["ip"]["ifindex"], packed(e["ip"]["local"])[1],
                                        e["ip"]["prefixlen"]) for e in load("addresses.json"))


# ---------------------------------------------------------------------------------------------
# notifications

def decode(data):
    """(kind, key, value) of a notification, with the project's decoders."""
    mtype = msg_type(data)
    if mtype in (RTM_NEWLINK, RTM_DELLINK):
        link = parse_link(data, 16, len(data))
        return "link", link.index, link
    if mtype in (RTM_NEWADDR, RTM_DELADDR):
        addr = parse_address(data, 16, len(data))
        return "addr", addr, addr
    if mtype in (RTM_NEWROUTE, RTM_DELROUTE):
        route = parse_route(data, 16, len(data))
        return "route", (route.family, route.dst, route.plen, route.table, route.metric), route
    if mtype in (RTM_NEWNEXTHOP, RTM_DELNEXTHOP):
        nh = parse_nexthop(data, 16, len(data))
        return "nexthop", nh.id, nh
    raise AssertionError("unexpected message type %d" % mtype)


def test_notifications_match_the_state_after_each_action():
    """The last message about a nexthop, a table-100 route or a link equals what ip -j -d showed
    after the action; a deleted one is gone."""
    actions = load("notifications.json")
    assert len(actions) == 16
    for action in actions:
        after = action["after"]
        nexthops = {n["id"]: n for n in after["nexthops"]}
        routes = {}
        for family, key in ((AF_INET, "routes4"), (AF_INET6, "routes6")):
            for ip in after[key]:
                want = expected_route(dict(ip, table="100"), family)
                routes[(family, want[1], want[2], want[3], want[6])] = want
        links = {l["ifindex"]: l for l in after["links"]}
        last = {}
        for message in action["messages"]:
            data = raw(message)
            assert {24: "RTM_NEWROUTE", 25: "RTM_DELROUTE", 104: "RTM_NEWNEXTHOP", 105: "RTM_DELNEXTHOP",
                    16: "RTM_NEWLINK", 20: "RTM_NEWADDR", 21: "RTM_DELADDR"}[msg_type(data)] == message["type"]
            kind, key, value = decode(data)
            last[kind, key] = (msg_type(data), value, data)
        for (kind, key), (mtype, value, data) in last.items():
            where = "%s %s: %s" % (action["compat_mode"], action["action"], value)
            if kind == "nexthop":
                if mtype == RTM_NEWNEXTHOP:
                    assert decoded_nexthop(data) == expected_nexthop(nexthops[key]), where
                else:
                    assert key not in nexthops, where
            elif kind == "route" and key[3] == 100:
                if mtype == RTM_NEWROUTE:
                    assert value == routes[key], where
                else:
                    assert key not in routes, where
            elif kind == "link":
                ip = links[key]
                assert (value.name, value.up, value.carrier) == (
                    ip["ifname"], "UP" in ip["flags"], "LOWER_UP" in ip["flags"]), where


@pytest.mark.parametrize("compat", [0, 1])
def test_nexthop_del_of_a_group_member(compat):
    (action,) = [a for a in load("notifications.json")
                 if a["compat_mode"] == compat and a["command"] == "ip nexthop del id 2"]
    got = [(msg_type(raw(m)), decode(raw(m))[2]) for m in action["messages"]]
    # the deletion first, then the groups that held it (in the kernel's order: newest first)
    assert got[0][0] == RTM_DELNEXTHOP and got[0][1].id == 2
    groups = {nh.id: nh for t, nh in got[1:] if t == RTM_NEWNEXTHOP}
    assert len(got) == 3 and set(groups) == {10, 11}
    assert groups[10].group == ((1, 1),) and groups[10].grp_type == GRP_MPATH
    assert groups[11].group == ((1, 1),) and groups[11].grp_type == GRP_RES and groups[11].res == (32, 6000, 0)


@pytest.mark.parametrize("compat", [0, 1])
def test_link_events_notify_no_nexthop_change(compat):
    """The kernel deletes the nexthops on a link that goes down (or loses carrier) and shrinks
    their groups without RTM_DELNEXTHOP/RTM_NEWNEXTHOP: only RTM_NEWLINK says so."""
    for action in load("notifications.json"):
        if action["compat_mode"] == compat and action["command"].startswith("ip link set"):
            types = [msg_type(raw(m)) for m in action["messages"]]
            assert RTM_NEWLINK in types
            assert not {RTM_NEWNEXTHOP, RTM_DELNEXTHOP} & set(types), action["action"]


# ---------------------------------------------------------------------------------------------
# what the route decoder reads from RTA_MULTIPATH, and what it leaves to the link table.  Each
# test first checks that the captured bytes carry the information.

def _route_entry(entries, dst):
    (entry,) = [e for e in entries if e["ip"].get("table") == "100" and e["ip"]["dst"] == dst]
    return entry


def _rtnexthops(data):
    """Offsets of the struct rtnexthop entries of the RTA_MULTIPATH attribute."""
    off, out = 28, []
    while off + 4 <= len(data):
        length, kind = struct.unpack_from("=HH", data, off)
        if kind == 9:
            pos = off + 4
            while pos < off + length:
                out.append(pos)
                pos += (struct.unpack_from("=H", data, pos)[0] + 3) & ~3
        off += (length + 3) & ~3
    return out


def _decoded(data):
    return parse_route(bytes(data), 16, len(data))


def test_multipath_weights_are_decoded():
    entry = _route_entry(load("routes-compat0.json"), "192.0.2.0/28")
    assert [n["weight"] for n in entry["ip"]["nexthops"]] == [1, 3]
    data = bytearray(raw(entry))
    first, second = _rtnexthops(data)
    assert (data[first + 3], data[second + 3]) == (0, 2)  # rtnh_hops = weight - 1
    assert [leg.weight for leg in _decoded(data).legs] == [1, 3]
    equal = bytearray(data)
    equal[second + 3] = 0
    assert _decoded(data) != _decoded(equal)


def test_dead_and_linkdown_marks_are_left_to_the_link_table():
    """rtnh_flags DEAD|LINKDOWN on a leg and rtm_flags LINKDOWN on a route are not decoded: a
    feed follows the source daemon's routes as it wrote them, and whether a leg's device can
    carry traffic is the link table's (kernelsync.core.links) to say, for every feed alike."""
    state = load("after-link-events.json")[0]
    assert (state["compat_mode"], state["state"]) == (0, "a1 admin down")
    entry = _route_entry(state["routes"], "192.0.2.16/28")
    assert [n["flags"] for n in entry["ip"]["nexthops"]] == [[], ["dead", "linkdown"]]
    data = bytearray(raw(entry))
    first, second = _rtnexthops(data)
    assert (data[first + 2], data[second + 2]) == (0, 0x11)  # rtnh_flags RTNH_F_DEAD | RTNH_F_LINKDOWN
    alive = bytearray(data)
    alive[second + 2] = 0
    assert _decoded(data) == _decoded(alive)
    state = load("after-link-events.json")[1]
    assert (state["compat_mode"], state["state"]) == (0, "a0 carrier lost (peer b0 down)")
    entry = _route_entry(state["routes"], "192.0.2.80/28")
    assert entry["ip"]["flags"] == ["linkdown"]
    data = bytearray(raw(entry))
    assert struct.unpack_from("=I", data, 24)[0] == 0x10  # rtm_flags RTNH_F_LINKDOWN
    up = bytearray(data)
    struct.pack_into("=I", up, 24, 0)
    assert _decoded(data) == _decoded(up)
