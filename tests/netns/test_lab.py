"""Smoke test of kernelsync.tools.lab: BIRD 2 and ExaBGP 5.0 in namespaces, two eBGP sessions."""
import json
import os
import subprocess
import sys

import pytest

from kernelsync.tools import lab as kslab
from kernelsync.tools.netns import wait_for

# An ExaBGP process that appends every line it receives on stdin to the file argv[1].
LOGGER = ("import sys\n"
          "with open(sys.argv[1], 'a') as f:\n"
          "    for line in sys.stdin:\n"
          "        f.write(line); f.flush()\n")


def announcing_peers(path, prefix):
    """Peers (neighbor.address.peer) that sent an IPv4 UPDATE announcing ``prefix``."""
    peers = set()
    try:
        with open(path) as f:
            lines = f.read().splitlines()
    except FileNotFoundError:
        return peers
    for line in lines:
        try:
            msg = json.loads(line)
        except ValueError:
            continue  # "done" acks; 4.2's route-refresh lines
        if msg.get("type") != "update":
            continue
        update = msg["neighbor"].get("message", {}).get("update", {})
        for nlris in update.get("announce", {}).get("ipv4 unicast", {}).values():
            if any(n.get("nlri") == prefix for n in nlris):
                peers.add(msg["neighbor"]["address"]["peer"])
    return peers


@pytest.mark.netns
@pytest.mark.slow
def test_bgp_lab_exabgp50_receives_both_sessions(tmp_path):
    if os.geteuid() != 0:
        pytest.skip("needs root for network namespaces")
    if not (kslab.which("bird") and kslab.which("birdc") and kslab.exabgp_installed("5.0")):
        kslab.install_requirements(("5.0",))  # never skip silently in CI
    captured = tmp_path / "stdin.jsonl"
    argv = [sys.executable, "-c", LOGGER, str(captured)]
    with kslab.BgpLab("5.0", process_argv=argv, v4_prefixes=["198.51.100.0/24"],
                      v6_prefixes=["2001:db8:100::/48"], workdir=str(tmp_path / "lab")) as lab:
        assert lab.established() == {"hA": True, "hB": True}
        try:
            wait_for(lambda: announcing_peers(captured, "198.51.100.0/24") == {
                "192.0.2.1", "192.0.2.9"}, timeout=10, what="198.51.100.0/24 from both peers")
        except TimeoutError as exc:
            text = captured.read_text() if captured.exists() else "(nothing captured)"
            pytest.fail("%s\n--- captured stdin\n%s\n%s" % (exc, text, lab.diagnostics()))
        names = (lab.host.name, lab.router.name)
    listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    assert not any(name in listed for name in names)


# An ExaBGP process that writes the commands argv[1:] (one per line, flushed), then reads its
# stdin (ExaBGP's acks and messages) until ExaBGP closes it.
ANNOUNCER = ("import sys\n"
             "for cmd in sys.argv[1:]:\n"
             "    sys.stdout.write(cmd + '\\n'); sys.stdout.flush()\n"
             "for line in sys.stdin:\n"
             "    pass\n")
ANYCAST = "203.0.113.10/32"


def _need_lab():
    if os.geteuid() != 0:
        pytest.skip("needs root for network namespaces")
    if not (kslab.which("bird") and kslab.which("birdc") and kslab.exabgp_installed("5.0")):
        kslab.install_requirements(("5.0",))  # never skip silently in CI


def _flags(ns, dev):
    """``ip -j link show dev DEV`` flags in namespace ``ns``."""
    return json.loads(ns.ip("-j", "link", "show", "dev", dev))[0]["flags"]


def _listed():
    return subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout


@pytest.mark.netns
@pytest.mark.slow
def test_bgp_lab_two_hosts_router_kernel_merges_anycast_paths(tmp_path):
    _need_lab()
    argv = [sys.executable, "-c", ANNOUNCER, "announce route %s next-hop self" % ANYCAST]
    with kslab.BgpLab("5.0", process_argv=argv, process_argv2=argv, hosts=2,
                      router_kernel=True, v4_prefixes=["198.51.100.0/24"], v6_prefixes=[],
                      workdir=str(tmp_path / "lab")) as lab:
        try:
            assert lab.established() == {"hA": True, "hB": True}
            assert lab.host2 is not None and lab.host_ns(2) is lab.host2
            # one ExaBGP per host, each with its own files and its one neighbor
            assert lab.exabgp_pid(1) and lab.exabgp_pid(2) and lab.exabgp_pid(1) != lab.exabgp_pid(2)
            conf1 = (tmp_path / "lab" / "exabgp.conf").read_text()
            conf2 = (tmp_path / "lab" / "exabgp2.conf").read_text()
            assert "neighbor 192.0.2.1 " in conf1 and "neighbor 192.0.2.9 " not in conf1
            assert "neighbor 192.0.2.9 " in conf2 and "router-id 192.0.2.10;" in conf2
            assert "ha" in {l["ifname"] for l in lab.host.json("link")}
            assert "hb" in {l["ifname"] for l in lab.host2.json("link")}

            # both hosts announce the /32: R's kernel gets one route with two legs
            wait_for(lambda: sorted(lab.router_route(ANYCAST)) == ["192.0.2.10", "192.0.2.2"],
                     timeout=10, what="%s via both hosts in R's kernel" % ANYCAST)
            route = lab.router.json("route", "show", "exact", ANYCAST)
            assert len(route) == 1 and len(route[0]["nexthops"]) == 2
            assert lab.imported("hA")[ANYCAST] == ["192.0.2.2"]
            assert lab.imported("hB")[ANYCAST] == ["192.0.2.10"]
            assert lab.router_route("192.0.2.128/32") == []
            assert " Kernel " in lab.birdc("show", "protocols")

            # H2's ExaBGP alone stops: its path goes, H's stays (single-path route)
            lab.stop_exabgp(host=2)
            assert lab.exabgp_pid(1) is not None and lab._exabgp_running(1)
            wait_for(lambda: lab.router_route(ANYCAST) == ["192.0.2.2"], timeout=10,
                     what="%s via H only" % ANYCAST)
            assert ANYCAST not in lab.imported("hB")
            lab.start_exabgp(host=2)
            lab.wait_established()
            wait_for(lambda: len(lab.router_route(ANYCAST)) == 2, timeout=10,
                     what="%s via both hosts again" % ANYCAST)

            # a guest behind H2: carrier follows the guest end, the host end stays admin-up
            guest = lab.add_guest("vg2", host=2)
            assert lab.guests["vg2"] is guest and "LOWER_UP" in _flags(lab.host2, "vg2")
            lab.guest_link("vg2", "down")
            assert "UP" in _flags(lab.host2, "vg2") and "LOWER_UP" not in _flags(lab.host2, "vg2")
        except (AssertionError, TimeoutError):
            print(lab.diagnostics())
            raise
        names = (lab.host.name, lab.host2.name, lab.router.name, guest.name)
    listed = _listed()
    assert not any(name in listed for name in names)


@pytest.mark.netns
@pytest.mark.slow
def test_bgp_lab_guest_link_toggles_host_end_carrier(tmp_path):
    _need_lab()
    with kslab.BgpLab("5.0", v4_prefixes=["198.51.100.0/24"], v6_prefixes=[],
                      workdir=str(tmp_path / "lab")) as lab:
        assert lab.host2 is None and lab.exabgp_pid(1) is not None
        with pytest.raises(ValueError):
            lab.exabgp_pid(2)
        guest = lab.add_guest("vg1")
        assert guest.name in _listed()
        flags = _flags(lab.host, "vg1")
        assert "UP" in flags and "LOWER_UP" in flags
        assert not any(e.get("addr_info") for e in lab.host.json("-4", "addr", "show", "dev", "vg1"))
        assert "UP" in _flags(guest, kslab.GUEST_DEV)
        with pytest.raises(ValueError):
            lab.add_guest("vg1")
        lab.guest_link("vg1", "down")
        flags = _flags(lab.host, "vg1")
        assert "UP" in flags and "LOWER_UP" not in flags and "NO-CARRIER" in flags
        lab.guest_link("vg1", "up")
        flags = _flags(lab.host, "vg1")
        assert "UP" in flags and "LOWER_UP" in flags
        assert lab.link_flags("vg1") == flags
        # the default lab: both sessions on H, no kernel protocol on R
        assert lab.imported("hA") == {} and " Kernel " not in lab.birdc("show", "protocols")
        assert lab.router_route("198.51.100.0/24") == []
        names = (lab.host.name, lab.router.name, guest.name)
    listed = _listed()
    assert not any(name in listed for name in names)


@pytest.mark.parametrize("where", ["ip netns add", "sysctl"])
def test_netns_interrupted_while_it_sets_up_leaves_no_namespace(monkeypatch, where):
    """Ctrl-C (or an error) once ``ip netns add`` has made the namespace but before NetNS() returns
    (as ``ip netns add`` ends, or during the sysctls): nobody holds the object to delete it, so
    NetNS deletes the namespace itself (the hypervisor demo's Ctrl-C leaked guest namespaces)."""
    from tests.support.netns import need_root
    from kernelsync.tools.netns import NetNS, unique_name
    need_root()
    name = unique_name("kst-int")
    real_run = subprocess.run

    def run(argv, *args, **kw):
        done = real_run(argv, *args, **kw)
        if where == "ip netns add" and list(argv[:3]) == ["ip", "netns", "add"]:
            raise KeyboardInterrupt
        return done

    def sysctl(self, key, value):
        raise KeyboardInterrupt

    monkeypatch.setattr(subprocess, "run", run)
    if where == "sysctl":
        monkeypatch.setattr(NetNS, "sysctl", sysctl)
    try:
        with pytest.raises(KeyboardInterrupt):
            NetNS(name)
    finally:
        monkeypatch.undo()
        listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout.split()
        subprocess.run(["ip", "netns", "del", name], stderr=subprocess.DEVNULL)
    assert name not in listed


def test_netns_never_deletes_a_namespace_it_could_not_make():
    """``ip netns add`` refuses an existing name: that namespace is not ours, and stays."""
    from tests.support.netns import need_root
    from kernelsync.tools.netns import NetNS, unique_name
    need_root()
    with NetNS(unique_name("kst-own")) as ns:
        with pytest.raises(subprocess.CalledProcessError):
            NetNS(ns.name)
        assert ns.name in subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout.split()
