"""The OSPF lab (kernelsync.tools.ospflab) with real daemons: BIRD 2 exporting into r1's table 100,
FRR zebra streaming its FIB over FPM to a recording server inside r1.

Every wait polls with a deadline; the durations are the daemons' own convergence times
(BIRD: cold start about 2.5 s, each flap 4-8 s because of BIRD's 5 s MinLSInterval; FRR: ECMP
about 1.2 s, zebra's first FPM connection about 3 s after it starts)."""
import struct
import subprocess
import time

import pytest

from kernelsync.tools.ospflab import (BIRD_PROTO, BIRD_TABLE, FRR_OSPF_PROTO, LAN, NH_R2, NH_R3, RTM_DELROUTE,
                                      RTM_NEWNEXTHOP, RTM_NEWROUTE, STUB_R2, STUB_R3, FpmCapture, OspfLab,
                                      install_requirements)
from tests.support.netns import need_root

FPM_PORT = 2620


@pytest.fixture(scope="session")
def daemons():
    need_root()
    install_requirements(frr=True)


def namespaces():
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    return {line.split()[0] for line in out.splitlines() if line.strip()}


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
