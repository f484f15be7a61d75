"""The OSPF lab (kernelsync.ospflab) with real daemons: BIRD 2 exporting into r1's table 100,
FRR zebra streaming its FIB over FPM to a recording server inside r1.

Every wait polls with a deadline; the durations are the daemons' own convergence times
(BIRD: cold start about 2.5 s, each flap 4-8 s because of BIRD's 5 s MinLSInterval; FRR: ECMP
about 1.2 s, zebra's first FPM connection about 3 s after it starts)."""
import socket
import struct
import subprocess
import time

import pytest

from conftest import need_root
from kernelsync.ospflab import (BIRD_PROTO, BIRD_TABLE, FRR_OSPF_PROTO, LAN, NH_R2, NH_R3,
                                RTM_DELROUTE, RTM_NEWNEXTHOP, RTM_NEWROUTE, STUB_R2, STUB_R3,
                                FpmCapture, OspfLab, decode_netlink, install_requirements)

FPM_PORT = 2620


@pytest.fixture(scope="session")
def daemons():
    need_root()
    install_requirements(frr=True)


def namespaces():
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    return {line.split()[0] for line in out.splitlines() if line.strip()}


# ---------------------------------------------------------------------------------------------
# no root needed: the FPM frame decoder

def _nla(kind, payload):
    data = struct.pack("=HH", 4 + len(payload), kind) + payload
    return data + b"\0" * (-len(data) % 4)


def _nlmsg(kind, flags, body):
    return struct.pack("=IHHII", 16 + len(body), kind, flags, 0, 0) + body


def test_decode_netlink_route_multipath_and_nexthops():
    ip = socket.inet_aton
    legs = b""
    for gw, oif in ((NH_R2, 2), (NH_R3, 3)):
        sub = _nla(5, ip(gw))
        legs += struct.pack("=HBBi", 8 + len(sub), 0, 0, oif) + sub
    route = _nlmsg(RTM_NEWROUTE, 0x501,
                   struct.pack("=BBBBBBBBI", socket.AF_INET, 24, 0, 0, 254, FRR_OSPF_PROTO, 0, 1, 0)
                   + _nla(1, ip("192.0.2.0")) + _nla(6, struct.pack("=I", 20)) + _nla(9, legs))
    member = _nlmsg(RTM_NEWNEXTHOP, 0x501, struct.pack("=BBBBI", socket.AF_INET, 0, 11, 0, 0)
                    + _nla(1, struct.pack("=I", 18)) + _nla(6, ip(NH_R2))
                    + _nla(5, struct.pack("=I", 2)))
    group = _nlmsg(RTM_NEWNEXTHOP, 0x501, struct.pack("=BBBBI", 0, 0, 11, 0, 0)
                   + _nla(1, struct.pack("=I", 23))
                   + _nla(2, struct.pack("=IBBH", 18, 0, 0, 0) + struct.pack("=IBBH", 22, 1, 0, 0)))
    msgs = decode_netlink(route + member + group)
    assert [m["name"] for m in msgs] == ["RTM_NEWROUTE", "RTM_NEWNEXTHOP", "RTM_NEWNEXTHOP"]
    assert msgs[0]["dst"] == LAN and msgs[0]["table"] == 254 and msgs[0]["metric"] == 20
    assert msgs[0]["protocol"] == FRR_OSPF_PROTO
    assert msgs[0]["multipath"] == [{"oif": 2, "weight": 1, "gateway": NH_R2},
                                    {"oif": 3, "weight": 1, "gateway": NH_R3}]
    assert msgs[1]["id"] == 18 and msgs[1]["gateway"] == NH_R2 and msgs[1]["oif"] == 2
    assert msgs[2]["group"] == [(18, 1), (22, 2)]


def test_lab_arguments():
    with pytest.raises(ValueError):
        OspfLab(daemon="quagga", workdir="/tmp/unused-ospflab")
    with pytest.raises(ValueError):
        OspfLab(daemon="frr", fpm_port=0, workdir="/tmp/unused-ospflab")


# ---------------------------------------------------------------------------------------------
# BIRD

def table100_lan(lab):
    """r1's table-100 route for LAN written by BIRD (rtm_protocol 12), as ip -j shows it."""
    entries = lab.r1.json("-4", "route", "show", "table", str(BIRD_TABLE), "proto",
                          str(BIRD_PROTO), "exact", LAN)
    return [e for e in entries if e.get("dst") == LAN]


@pytest.mark.netns
@pytest.mark.slow
def test_bird_ecmp_into_table_100_and_link_flap(daemons):
    lab = OspfLab("bird")
    with lab:
        names = {lab.r1.name, lab.r2.name, lab.r3.name}
        took = lab.wait_ecmp(timeout=15, kernel=True)
        assert time.monotonic() - lab.started_at < 10, "cold start to ECMP took too long"
        assert lab.daemon_routes() == [NH_R2, NH_R3]
        (route,) = table100_lan(lab)
        assert route["metric"] == 20
        assert sorted(nh["gateway"] for nh in route["nexthops"]) == [NH_R2, NH_R3]
        assert {nh["dev"] for nh in route["nexthops"]} == {"e12", "e13"}
        # the second stub prefixes, one path each
        assert lab.daemon_routes(STUB_R2) == [NH_R2]
        assert lab.kernel_routes(STUB_R3) == [NH_R3]
        # BIRD writes nothing into r1's main table
        assert not lab.r1.json("-4", "route", "show", "table", "main", "proto", str(BIRD_PROTO))

        lab.link("e12", "down")
        lab.wait_routes([NH_R3], timeout=15, kernel=True)
        (route,) = table100_lan(lab)
        assert route.get("gateway") == NH_R3 and not route.get("nexthops")

        lab.link("e12", "up")
        lab.wait_ecmp(timeout=20, kernel=True)
        (route,) = table100_lan(lab)
        assert sorted(nh["gateway"] for nh in route["nexthops"]) == [NH_R2, NH_R3]
        print("cold start to ECMP: %.2f s (wait %.2f s)"
              % (time.monotonic() - lab.started_at, took))
    assert lab.r1 is None and not names & namespaces()
    lab.stop()  # idempotent


@pytest.mark.netns
@pytest.mark.slow
def test_bird_daemon_stop_and_kill(daemons):
    with OspfLab("bird") as lab:
        lab.wait_ecmp(timeout=15, kernel=True)
        lab.stop_daemon("r1")
        assert lab.daemon_pids("r1") == {} and lab.daemon_routes() == []
        # on SIGTERM BIRD removes its routes
        assert lab.kernel_routes() == [] and not table100_lan(lab)
        lab.start_daemon("r1")
        lab.wait_ecmp(timeout=20, kernel=True)
        lab.kill_daemon("r1")
        # after SIGKILL they stay
        assert lab.daemon_pids("r1") == {} and lab.kernel_routes() == [NH_R2, NH_R3]
        assert set(lab.daemon_pids("r2")) == {"bird"}


# ---------------------------------------------------------------------------------------------
# FRR and FPM

def check_frames(fpm):
    assert fpm.frames and not fpm.errors
    for frame in fpm.frames:
        assert (frame.version, frame.type) == (1, 1), frame
        # the payload is whole netlink messages
        length = struct.unpack_from("=I", frame.data, 0)[0]
        assert 16 <= length <= len(frame.data)
        assert frame.messages, frame


def lan_route(msg):
    return msg["type"] == RTM_NEWROUTE and msg.get("dst") == LAN


@pytest.mark.netns
@pytest.mark.slow
@pytest.mark.parametrize("nexthop_groups", [True, False], ids=["nhg", "multipath"])
def test_frr_fpm_stream(daemons, nexthop_groups):
    lab = OspfLab("frr", fpm_port=FPM_PORT, fpm_nexthop_groups=nexthop_groups)
    # with next-hop groups the FPM server is up before zebra; without, it starts afterwards
    # (zebra dials again every 3 s)
    lab.start(daemons=not nexthop_groups)
    try:
        fpm = FpmCapture(lab.r1, FPM_PORT)
        with fpm:
            if nexthop_groups:
                lab.start_daemons()
            lab.wait_ecmp(timeout=10)
            assert lab.daemon_routes() == [NH_R2, NH_R3]
            assert lab.daemon_routes(STUB_R2) == [NH_R2]
            # zebra programs r1's main table itself as well
            lab.wait_routes([NH_R2, NH_R3], timeout=5, kernel=True)
            main = lab.r1.json("-4", "route", "show", "table", "main", "exact", LAN)
            assert main and str(main[0]["protocol"]) in ("ospf", str(FRR_OSPF_PROTO))

            route = fpm.wait(lambda m: lan_route(m) and (m.get("nh_id") or
                                                        len(m.get("multipath", ())) == 2),
                             timeout=15, what="RTM_NEWROUTE for %s over FPM" % LAN)
            check_frames(fpm)
            msgs = fpm.messages()
            assert route["table"] == 254 and route["protocol"] == FRR_OSPF_PROTO
            nexthops = {m["id"]: m for m in msgs if m["type"] == RTM_NEWNEXTHOP}
            if nexthop_groups:
                # members, then the group, then the route that uses it
                group = nexthops[route["nh_id"]]
                members = [nexthops[i] for i, _ in group["group"]]
                assert sorted(m["gateway"] for m in members) == [NH_R2, NH_R3]
                first = {m["id"]: m["frame"] for m in reversed(msgs)
                         if m["type"] == RTM_NEWNEXTHOP}
                assert max(first[i] for i, _ in group["group"]) < first[group["id"]]
                assert first[group["id"]] < route["frame"]
            else:
                assert not nexthops
                assert sorted(leg["gateway"] for leg in route["multipath"]) == [NH_R2, NH_R3]

            # ospfd goes, zebra stays: zebra withdraws the OSPF routes over FPM
            lab.stop_daemon("r1", ["ospfd"])
            assert set(lab.daemon_pids("r1")) == {"zebra"}
            fpm.wait(lambda m: m["type"] == RTM_DELROUTE and m.get("dst") == LAN
                     and m["frame"] > route["frame"], timeout=10,
                     what="RTM_DELROUTE for %s" % LAN)
            assert lab.daemon_routes() == []
    finally:
        lab.close()
