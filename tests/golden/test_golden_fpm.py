"""Golden FPM streams of FRR 8.4's zebra (tests/golden/fpm, captured by capture.py from the OSPF
lab, see README.md) fed to kernelsync.feeds.fpm.FpmStream, compared with zebra's own view (``show ip
route json``) at the end of each phase.  No root needed."""
import functools
import ipaddress
import json
import os
import socket
import struct

import pytest

from kernelsync.core.model import AF_INET, format_prefix
from kernelsync.feeds.fpm import FpmStream
from kernelsync.kernel.codec import parse_nexthop, parse_route
from tests.support.pr2 import decode_nhmsg, rtmsg_nh, unpack_group

FPM = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fpm")
CAPTURES = ("zebra-8.4-nhg", "zebra-8.4-multipath")
PHASES = ("replay", "flap-down", "flap-up", "reconnect")
OSPF_PREFIXES = ("192.0.2.0/24", "198.51.100.0/24", "203.0.113.0/24")
RTM_NEWROUTE, RTM_DELROUTE, RTM_NEWNEXTHOP, RTM_DELNEXTHOP = 24, 25, 104, 105
OSPF, MAIN = 188, 254


@functools.lru_cache(maxsize=None)
def capture(name):
    """(frames, side): frames = [(conn, phase, raw bytes with the FPM header)]."""
    with open(os.path.join(FPM, name + ".jsonl")) as f:
        frames = [json.loads(line) for line in f if line.strip()]
    with open(os.path.join(FPM, name + ".zebra.json")) as f:
        side = json.load(f)
    return tuple((fr["conn"], fr["phase"], bytes.fromhex(fr["hex"])) for fr in frames), side


def ifnames(side):
    return {int(k): v for k, v in side["ifnames"].items()}


def phase(side, name):
    (ph,) = [p for p in side["phases"] if p["phase"] == name]
    return ph


def frames_until(name, ph):
    """The frames of the phase's connection received before zebra's view of the phase was taken."""
    frames, _side = capture(name)
    return [data for conn, _p, data in frames[:ph["frames"]] if conn == ph["conn"]]


def feed_frames(frames):
    stream = FpmStream(table=MAIN, protocols=(OSPF,))
    for data in frames:
        assert stream.feed(data) == 1  # FpmError (malformed) would raise
    assert not stream.buffer
    return stream


def messages(frames):
    """Every netlink message of the frames: (type, nlmsghdr + body), read independently of
    kernelsync.feeds.fpm."""
    for data in frames:
        off = 4
        while off < len(data):
            length, mtype = struct.unpack_from("=IH", data, off)
            yield mtype, data[off:off + length]
            off += (length + 3) & ~3


def zebra_selected(side_phase):
    """zebra's selected, installed OSPF routes: prefix -> sorted (gateway, device, weight)."""
    out = {}
    for prefix, entries in side_phase["show_ip_route"].items():
        for entry in entries:
            if entry["protocol"] == "ospf" and entry.get("selected") and entry.get("installed"):
                out[prefix] = (sorted((nh["ip"], nh["interfaceName"], nh.get("weight", 1))
                                      for nh in entry["nexthops"] if nh.get("active") and nh.get("fib")),
                               entry.get("installedNexthopGroupId"))
    return out


def stream_selected(stream, names):
    good, bad = stream.all_paths(names)
    assert bad == []
    out = {}
    for prefix, paths in good.items():
        (path,) = paths
        out[format_prefix(prefix)] = sorted((socket.inet_ntop(n.gw_family, n.gateway), n.dev, n.weight)
                                            for n in path.nexthops)
    return out


# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", CAPTURES)
def test_frames_and_phases(name):
    frames, side = capture(name)
    assert side["fpm_nexthop_groups"] == name.endswith("nhg")
    for _conn, _phase, data in frames:
        version, kind, length = struct.unpack_from("!BBH", data)
        assert (version, kind, length) == (1, 1, len(data))
    # the phases in order, each phase's frames before zebra's view of it was taken
    assert [p["phase"] for p in side["phases"]] == list(PHASES)
    start = 0
    for ph in side["phases"]:
        assert {p for _c, p, _d in frames[start:ph["frames"]]} == {ph["phase"]}
        assert {c for c, _p, _d in frames[start:ph["frames"]]} == {ph["conn"]}
        start = ph["frames"]
    assert start == len(frames)


@pytest.mark.parametrize("name", CAPTURES)
@pytest.mark.parametrize("when", PHASES)
def test_stream_state_is_what_zebra_selected(name, when):
    _frames, side = capture(name)
    ph = phase(side, when)
    stream = feed_frames(frames_until(name, ph))
    got = stream_selected(stream, ifnames(side))
    want = zebra_selected(ph)
    assert got == {p: nhs for p, (nhs, _nhg) in want.items()}
    # the three OSPF prefixes as lab.daemon_routes() saw them ([] = no route)
    for prefix in OSPF_PREFIXES:
        assert sorted(gw for gw, _dev, _w in got.get(prefix, [])) == ph["daemon_routes"][prefix]
    if side["fpm_nexthop_groups"]:  # RTA_NH_ID is zebra's installed nexthop group id
        for prefix, (_nhs, nhg) in want.items():
            assert stream.routes[_prefix(prefix)].nh_id == nhg
    else:
        assert not stream.nexthops and all(r.nh_id == 0 for r in stream.routes.values())


def _prefix(text):
    net = ipaddress.ip_network(text)
    return (AF_INET if net.version == 4 else socket.AF_INET6, net.network_address.packed, net.prefixlen)


def test_the_phases_show_ecmp_single_path_and_ecmp_again():
    for name in CAPTURES:
        side = capture(name)[1]
        lan = [phase(side, p)["daemon_routes"]["192.0.2.0/24"] for p in PHASES]
        assert lan == [["10.0.12.2", "10.0.13.2"], ["10.0.13.2"], ["10.0.12.2", "10.0.13.2"],
                       ["10.0.12.2", "10.0.13.2"]]


@pytest.mark.parametrize("name", CAPTURES)
@pytest.mark.parametrize("conn", [1, 2])
def test_counters(name, conn):
    frames = [data for c, _p, data in capture(name)[0] if c == conn]
    stream = feed_frames(frames)
    counts = {"new_ospf": 0, "new_other": 0, "del_ospf": 0, "new_nh": 0, "del_nh": 0, "other": 0}
    for mtype, msg in messages(frames):
        if mtype in (RTM_NEWROUTE, RTM_DELROUTE):
            _family, _plen, _s, _t, table, proto = struct.unpack_from("=BBBBBB", msg, 16)
            assert table == MAIN
            key = ("new_" if mtype == RTM_NEWROUTE else "del_") + ("ospf" if proto == OSPF else "other")
            counts[key] = counts.get(key, 0) + 1
        elif mtype == RTM_NEWNEXTHOP:
            counts["new_nh"] += 1
        elif mtype == RTM_DELNEXTHOP:
            counts["del_nh"] += 1
        else:
            counts["other"] += 1
    assert counts["other"] == 0
    assert stream.counters == {
        "frames": len(frames),
        "routes_added": counts["new_ospf"],
        "routes_deleted": counts["del_ospf"],  # every OSPF deletion here removes a route it had
        "nexthops_added": counts["new_nh"],
        "nexthops_deleted": counts["del_nh"],
        "ignored": counts["new_other"],  # connected routes and fe80::/64 (protocol 2)
        "skipped": 0,  # every frame of zebra's decodes
    }
    nhg = name.endswith("nhg")
    assert (counts["new_nh"] > 0) == nhg
    if conn == 2:  # a replay: only additions
        assert counts["del_ospf"] == counts["del_nh"] == 0 and counts["new_ospf"] == 5


@pytest.mark.parametrize("name", CAPTURES)
@pytest.mark.parametrize("chunk", [1, 7, 4096])
def test_any_split_of_the_byte_stream_gives_the_same_state(name, chunk):
    frames, side = capture(name)
    names = ifnames(side)
    for conn in (1, 2):
        whole = [data for c, _p, data in frames if c == conn]
        ref = feed_frames(whole)
        data = b"".join(whole)
        stream = FpmStream(table=MAIN, protocols=(OSPF,))
        applied = 0
        for off in range(0, len(data), chunk):
            applied += stream.feed(data[off:off + chunk])
        assert applied == len(whole) and not stream.buffer
        assert stream.counters == ref.counters
        assert stream.routes == ref.routes and stream.nexthops == ref.nexthops
        assert stream.all_paths(names) == ref.all_paths(names)


def _oracle_leg(family, attrs, oif, hops):
    gw = attrs.get("RTA_GATEWAY")
    via = attrs.get("RTA_VIA")
    if via is not None:
        return (via["family"], socket.inet_pton(via["family"], via["addr"]), oif, hops + 1)
    return (family if gw else None, socket.inet_pton(family, gw) if gw else None, oif, hops + 1)


@pytest.mark.parametrize("name", CAPTURES)
def test_messages_decode_like_an_independent_decoder(name):
    """parse_route / parse_nexthop against pyroute2's classes (tests/support/pr2.py), message by
    message: every field the feeds read."""
    frames = [data for _c, _p, data in capture(name)[0]]
    for data in frames:
        for mtype, msg in messages([data]):
            if mtype in (RTM_NEWROUTE, RTM_DELROUTE):
                route = parse_route(msg, 16, len(msg))
                ref = rtmsg_nh(msg)
                ref.decode()
                family = ref["family"]
                attrs = dict(ref["attrs"])
                table = attrs.get("RTA_TABLE", ref["table"])
                dst = attrs.get("RTA_DST", "0.0.0.0" if family == AF_INET else "::")
                assert (format_prefix(route.prefix), route.table, route.protocol, route.type) == (
                    "%s/%d" % (dst, ref["dst_len"]), table, ref["proto"], ref["type"])
                assert (route.metric, route.nh_id) == (attrs.get("RTA_PRIORITY", 0), attrs.get("RTA_NH_ID", 0))
                if "RTA_MULTIPATH" in attrs:
                    want = [_oracle_leg(family, dict(leg["attrs"]), leg["oif"], leg["hops"])
                            for leg in attrs["RTA_MULTIPATH"]]
                elif "RTA_OIF" in attrs:
                    want = [_oracle_leg(family, attrs, attrs["RTA_OIF"], 0)]
                else:
                    want = []
                assert [tuple(leg) for leg in route.legs] == want, ref
            else:
                nh = parse_nexthop(msg, 16, len(msg))
                ref = decode_nhmsg(msg)
                assert nh.id == ref.get_attr("NHA_ID") and nh.protocol == ref["protocol"]
                assert nh.oif == (ref.get_attr("NHA_OIF") or 0)
                gw = ref.get_attr("NHA_GATEWAY")
                assert nh.gateway == (bytes(gw) if gw else None)
                group = ref.get_attr("NHA_GROUP")
                assert nh.group == (unpack_group(group) if group else ())
