"""Export to BGP with real daemons: kernelsync (ExaBGP's process) announces guests' routes to
BIRD 2 through ExaBGP, and withdraws them when the guests go.  Guests are veth pairs whose far
end sits in a namespace of its own (a tap device's stand-in): taking that end down is a carrier
loss on the host, with no admin change.  The kernel is real (namespaces)."""
import os
import signal
import subprocess
import sys
import time

import pytest

from kernelsync.control import query
from kernelsync.tools.lab import BgpLab, install_requirements
from kernelsync.tools.netns import wait_for
from tests.support.netns import ID_RANGE, PROTO, TABLE, need_root, table_routes

pytestmark = [pytest.mark.netns, pytest.mark.slow]

GUESTS = "203.0.113.0/24"
ANYCAST = "203.0.113.20/32"
GUEST_FILTER = """
[[export.kernel]]
name = "guests"
protocols = ["boot"]
devices = ["g*"]
prefix_lengths = [32]
prefixes = ["%s"]
communities = ["65010:53"]
""" % GUESTS


@pytest.fixture(scope="module")
def daemons():
    need_root()
    install_requirements(("5.0", "4.2"))


class Side:
    """kernelsync on one lab host: its config, log, control socket and state file."""

    def __init__(self, workdir, name, export_toml):
        self.dir = workdir
        self.name = name
        self.log = os.path.join(workdir, name + ".log")
        self.sock = os.path.join(workdir, name + ".sock")
        self.state = os.path.join(workdir, name + "-exported.json")
        self.conf = os.path.join(workdir, name + ".toml")
        with open(self.conf, "w") as fh:
            fh.write("\n".join([
                "[kernel]", "table = %d" % TABLE, "protocol = %d" % PROTO,
                "nexthop_id_range = [%d, %d]" % ID_RANGE, "verify_delay = 0.3",
                "[control]", 'socket = "%s"' % self.sock,
                "[bgp]", "startup_wait = 0.5", "restart_wait = 1", "eor_timeout = 3",
                "[export]", 'state_file = "%s"' % self.state, export_toml]) + "\n")
        self.argv = [sys.executable, "-m", "kernelsync", "--log-level", "debug", "--log-file", self.log,
                     "exabgp", "-c", self.conf]

    def show(self, what="export"):
        return query(self.sock, "show %s" % what)

    def stats(self):
        return self.show("bgp")["counters"]

    def pid(self):
        return int(subprocess.run(["pgrep", "-f", "kernelsync.*exabgp -c %s" % self.conf],
                                  capture_output=True, text=True).stdout.split()[0])

    def log_tail(self, lines=40):
        try:
            with open(self.log) as fh:
                return "".join(fh.readlines()[-lines:])
        except OSError:
            return "(no log)"


def wait_imported(lab, session, prefix, gateway, timeout=10.0, what=""):
    """Wait until BIRD holds ``prefix`` from ``session`` via ``gateway`` (None: until it holds
    no such route); returns the seconds it took."""
    start = time.monotonic()

    def ok():
        got = lab.imported(session).get(prefix)
        return (gateway in (got or [])) if gateway else not got

    try:
        wait_for(ok, timeout=timeout, interval=0.01, what="%s %s %s" % (session, prefix, gateway))
    except TimeoutError:
        raise AssertionError("BIRD %s: %s not %s via %s (%s); BIRD has %s\n%s" % (
            session, prefix, "present" if gateway else "gone", gateway, what, lab.imported(session),
            lab.diagnostics())) from None
    return time.monotonic() - start


@pytest.mark.parametrize("version", ["5.0", "4.2"])
def test_guest_route_lifecycle(daemons, tmp_path, version):
    """A guest's /32 reaches BIRD with the host's next hop; a second guest with the same /32
    makes one multipath device-only route and no second announcement; carrier loss of the last
    guest withdraws it within 1 s; carrier back: announced again."""
    ks = Side(str(tmp_path), "h1", GUEST_FILTER)
    with BgpLab(version, process_argv=ks.argv, workdir=str(tmp_path / "lab")) as lab:
        h = lab.host
        lab.add_guest("g1")
        h.ip("route", "add", "203.0.113.10/32", "dev", "g1")
        wait_imported(lab, "hA", "203.0.113.10/32", "192.0.2.2")
        wait_imported(lab, "hB", "203.0.113.10/32", "192.0.2.10")
        assert ks.stats()["export_announces"] == 1
        out = lab.birdc("show", "route", "all", "203.0.113.10/32", "protocol", "hA")
        assert "BGP.community: (65010,53)" in out, out

        lab.add_guest("g2")
        events = ks.stats()["route_events"]
        h.ip("route", "replace", "203.0.113.10/32", "nexthop", "dev", "g1", "nexthop", "dev", "g2")
        wait_for(lambda: ks.stats()["route_events"] > events, timeout=5, what="the replace seen")
        route = h.json("route", "show", "203.0.113.10/32")[0]
        assert sorted(n["dev"] for n in route["nexthops"]) == ["g1", "g2"]
        assert all("gateway" not in n for n in route["nexthops"])
        stats = ks.stats()
        assert stats["export_announces"] == 1 and stats["export_withdraws"] == 0, stats
        assert lab.imported("hA")["203.0.113.10/32"] == ["192.0.2.2"]

        repairs = ks.show("stats")["repairs"]
        lab.guest_link("g1", "down")
        wait_for(lambda: ks.show("stats")["repairs"] > repairs, timeout=2, what="g1's loss seen")
        assert "203.0.113.10/32" in ks.show()["announced"]  # g2 still carries it
        assert ks.stats()["export_withdraws"] == 0
        t0 = time.monotonic()
        lab.guest_link("g2", "down")
        took = wait_imported(lab, "hA", "203.0.113.10/32", None, timeout=5, what="after g2's carrier loss")
        assert time.monotonic() - t0 < 1.0, "withdraw reached BIRD after %.2f s" % (time.monotonic() - t0)
        print("carrier loss -> withdrawn at BIRD: %.0f ms" % (took * 1000))
        lab.guest_link("g2", "up")
        wait_imported(lab, "hA", "203.0.113.10/32", "192.0.2.2", timeout=5, what="g2 back")
        stats = ks.stats()
        assert stats["acks_error"] == 0, ks.show("bgp")["command_errors"]
        assert ks.show("bgp")["exabgp_versions"] == {"stdin": {"5.0": "5.0.15", "4.2": "4.2.25"}[version]}


def test_anycast_group_is_installed_and_announced_once(daemons, tmp_path):
    """An [[export.anycast]] group over two guests: kernelsync installs one resilient group of
    two device-only nexthops and announces the /32 once; members follow the guests' carrier."""
    ks = Side(str(tmp_path), "h1", """
[[export.anycast]]
prefix = "%s"
devices = ["g1", "g2"]
resilient = { buckets = 32, idle_timer = 60 }
med = 7
""" % ANYCAST)
    with BgpLab("5.0", process_argv=ks.argv, workdir=str(tmp_path / "lab")) as lab:
        h = lab.host

        def members():
            routes = table_routes(h, ANYCAST, "table", str(TABLE))
            if not routes:
                return None
            nexthops = {n["id"]: n for n in h.json("nexthop", "show")}
            group = nexthops[routes[0]["nhid"]]
            assert group.get("type") == "resilient", group
            return sorted(nexthops[m["id"]]["dev"] for m in group["group"])

        lab.add_guest("g1")
        lab.add_guest("g2")
        wait_for(lambda: members() == ["g1", "g2"], timeout=5, what="resilient group of g1, g2")
        for nh in h.json("nexthop", "show"):
            if nh.get("dev") in ("g1", "g2"):
                assert "gateway" not in nh
        wait_imported(lab, "hA", ANYCAST, "192.0.2.2")
        assert "BGP.med: 7" in lab.birdc("show", "route", "all", ANYCAST, "protocol", "hA")
        lab.guest_link("g1", "down")
        wait_for(lambda: members() == ["g2"], timeout=2, what="group shrunk to g2")
        assert ANYCAST in lab.imported("hA")
        lab.guest_link("g2", "down")
        wait_imported(lab, "hA", ANYCAST, None, timeout=1.0, what="both guests down")
        lab.guest_link("g1", "up")
        wait_for(lambda: members() == ["g1"], timeout=2, what="g1 back in the group")
        wait_imported(lab, "hA", ANYCAST, "192.0.2.2", timeout=2)
        assert ks.stats()["export_announces"] == 2 and ks.stats()["acks_error"] == 0


def test_two_hosts_give_bird_an_ecmp_route(daemons, tmp_path):
    """The same anycast /32 from two hosts (each ExaBGP + kernelsync): BIRD with `merge paths`
    holds one route over both; one host's guest goes: one path left."""
    one = Side(str(tmp_path), "h1", '[[export.anycast]]\nprefix = "%s"\ndevices = ["g1"]\n' % ANYCAST)
    two = Side(str(tmp_path), "h2", '[[export.anycast]]\nprefix = "%s"\ndevices = ["g2"]\n' % ANYCAST)
    with BgpLab("5.0", process_argv=one.argv, process_argv2=two.argv, hosts=2, router_kernel=True,
                workdir=str(tmp_path / "lab")) as lab:
        lab.add_guest("g1", host=1)
        lab.add_guest("g2", host=2)
        wait_for(lambda: sorted(lab.router_route(ANYCAST)) == ["192.0.2.10", "192.0.2.2"], timeout=10,
                 what="R's ECMP route over both hosts")
        lab.guest_link("g2", "down")
        wait_for(lambda: lab.router_route(ANYCAST) == ["192.0.2.2"], timeout=2, what="only host 1 left")


def test_bgp_learned_routes_are_never_exported_back(daemons, tmp_path):
    """A filter that would take everything in kernelsync's own table: BIRD's prefixes, which
    kernelsync installed there from BGP, never go back; another program's route there does."""
    ks = Side(str(tmp_path), "h1", """
[[export.kernel]]
name = "everything"
table = %d
devices = ["*"]
gateways = true
prefixes = ["198.51.100.0/24", "203.0.113.0/24", "2001:db8::/32"]
""" % TABLE)
    with BgpLab("5.0", process_argv=ks.argv, workdir=str(tmp_path / "lab")) as lab:
        h = lab.host
        wait_for(lambda: len(table_routes(h, "table", str(TABLE), "proto", str(PROTO))) == 2, timeout=10,
                 what="BGP routes installed")
        lab.add_guest("g1")
        h.ip("route", "add", "203.0.113.77/32", "dev", "g1", "table", str(TABLE))
        wait_imported(lab, "hA", "203.0.113.77/32", "192.0.2.2")
        wait_imported(lab, "hB", "203.0.113.77/32", "192.0.2.10")  # each session in its own time
        for session in ("hA", "hB"):
            assert set(lab.imported(session)) == {"203.0.113.77/32"}, lab.imported(session)
        assert set(ks.show()["announced"]) == {"203.0.113.77/32"}


def test_respawn_withdraws_what_went_away_meanwhile(daemons, tmp_path):
    """kernelsync is stopped, a guest's route goes, kernelsync is killed and ExaBGP respawns it:
    ExaBGP still holds the old announcement; the state file makes the new process withdraw it."""
    ks = Side(str(tmp_path), "h1", GUEST_FILTER)
    with BgpLab("5.0", process_argv=ks.argv, workdir=str(tmp_path / "lab")) as lab:
        h = lab.host
        lab.add_guest("g1")
        h.ip("route", "add", "203.0.113.10/32", "dev", "g1")
        h.ip("route", "add", "203.0.113.11/32", "dev", "g1")
        wait_imported(lab, "hA", "203.0.113.11/32", "192.0.2.2")
        pid = ks.pid()
        os.kill(pid, signal.SIGSTOP)
        h.ip("route", "del", "203.0.113.10/32", "dev", "g1")
        os.kill(pid, signal.SIGKILL)
        wait_imported(lab, "hA", "203.0.113.10/32", None, timeout=10, what="after the respawn")
        assert ks.pid() != pid
        assert "203.0.113.11/32" in lab.imported("hA")
        assert set(ks.show()["announced"]) == {"203.0.113.11/32"}


def test_relay_announces_the_set_again_after_an_exabgp_restart(daemons, tmp_path):
    """`kernelsync run` owns the FIB and the export; ExaBGP runs the relay.  ExaBGP stops (BIRD
    loses the route with the session) and starts again: the daemon, still the same process,
    announces the exported set on the new relay connection."""
    sock = str(tmp_path / "relay.sock")
    ks = Side(str(tmp_path), "h1", GUEST_FILTER + '\n[exabgp]\nlisten = "%s"\n' % sock)
    relay = [sys.executable, "-m", "kernelsync", "--log-file", str(tmp_path / "relay.log"), "exabgp", "-c", ks.conf,
             "--relay", sock]
    lab = BgpLab("5.0", process_argv=relay, workdir=str(tmp_path / "lab"))
    daemon = None
    try:
        lab._make_topology()
        lab.add_guest("g1")
        lab.host.ip("route", "add", "203.0.113.10/32", "dev", "g1")
        daemon = subprocess.Popen(["ip", "netns", "exec", lab.host.name, sys.executable, "-m", "kernelsync",
                                   "--log-level", "debug", "--log-file", ks.log, "run", "-c", ks.conf])
        wait_for(lambda: os.path.exists(sock), timeout=10, what="relay socket")
        lab._start_bird()
        lab.start_exabgp()
        lab.wait_established()
        wait_imported(lab, "hA", "203.0.113.10/32", "192.0.2.2")
        lab.stop_exabgp()
        wait_imported(lab, "hA", "203.0.113.10/32", None, what="ExaBGP stopped")
        lab.start_exabgp()
        lab.wait_established()
        wait_imported(lab, "hA", "203.0.113.10/32", "192.0.2.2", what="ExaBGP started again")
        assert daemon.poll() is None
        stats = ks.stats()
        assert stats["relay_connections"] == 2 and stats["export_announces"] == 2, stats
    finally:
        if daemon is not None and daemon.poll() is None:
            daemon.terminate()
            daemon.wait(10)
        lab.stop()


def test_ipv6_guest_needs_an_explicit_next_hop_and_errors_are_reported(daemons, tmp_path):
    """A guest /128 over IPv4 sessions: `next-hop self` cannot serve (ExaBGP 5.0 answers
    `error`: other family than the session), which kernelsync reports with the command; a filter
    with the next hop and the one neighbor it is valid for gets the route to BIRD."""
    ks = Side(str(tmp_path), "h1", """
[[export.kernel]]
name = "guests6"
protocols = ["boot"]
devices = ["g*"]
prefix_lengths = [128]
prefixes = ["2001:db8:53::/48"]
next_hop_ipv6 = "2001:db8:a::2"
neighbors = ["192.0.2.1"]

[[export.kernel]]
name = "self6"
devices = ["g*"]
prefixes = ["2001:db8:54::/48"]
""")
    with BgpLab("5.0", process_argv=ks.argv, workdir=str(tmp_path / "lab")) as lab:
        lab.add_guest("g1")
        lab.host.ip("-6", "route", "add", "2001:db8:53::10/128", "dev", "g1")
        wait_imported(lab, "hA", "2001:db8:53::10/128", "2001:db8:a::2")
        assert "2001:db8:53::10/128" not in lab.imported("hB")
        assert ks.stats()["acks_error"] == 0, ks.show("bgp")["command_errors"]
        lab.host.ip("-6", "route", "add", "2001:db8:54::10/128", "dev", "g1")
        try:
            wait_for(lambda: ks.stats()["acks_error"] >= 1, timeout=5, what="ExaBGP's error")
        except TimeoutError as exc:
            raise AssertionError("%s\n%s\n%s\n%s" % (exc, ks.show("bgp"), ks.log_tail(80), lab.diagnostics())) from None
        errors = ks.show("bgp")["command_errors"]
        assert any(e.endswith("rejected the command: announce route 2001:db8:54::10/128 next-hop self")
                   for e in errors), errors
        assert "2001:db8:54::10/128" not in lab.imported("hA")
