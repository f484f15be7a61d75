"""Smoke test of kernelsync.lab: BIRD 2 and ExaBGP 5.0 in namespaces, two eBGP sessions."""
import json
import os
import subprocess
import sys

import pytest

from kernelsync import lab as kslab
from kernelsync.netns import wait_for

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
    if not (kslab._which("bird") and kslab._which("birdc") and kslab.exabgp_installed("5.0")):
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
