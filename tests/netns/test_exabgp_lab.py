"""ExaBGP feed with real daemons: BIRD 2 (AS 65001) announces the same prefixes over two links to
ExaBGP (AS 65010) on the host, whose process is kernelsync; the kernel is real (namespaces).

Every test holds the foreign routes and nexthops of :func:`tests.support.netns.add_foreign` in the host
namespace and checks them unchanged at the end."""
import json
import os
import signal
import subprocess
import sys

import pytest

from kernelsync.control import query
from kernelsync.tools.lab import BgpLab, install_requirements
from kernelsync.tools.netns import kernelsync_pids, wait_for
from tests.support.netns import ID_RANGE, PROTO, TABLE, add_foreign, foreign_state, need_root

pytestmark = [pytest.mark.netns, pytest.mark.slow]

V4 = ["198.51.100.0/24", "203.0.113.0/25"]
V6 = ["2001:db8:100::/48"]
BOTH4 = [("192.0.2.1", "ha"), ("192.0.2.9", "hb")]
BOTH6 = [("2001:db8:a::1", "ha"), ("2001:db8:b::1", "hb")]


@pytest.fixture(scope="session")
def daemons():
    need_root()
    install_requirements(("5.0", "4.2"))


def ks_config(workdir, verify_delay=0.3, **exabgp):
    path = os.path.join(workdir, "ks.toml")
    lines = ["[kernel]", "table = %d" % TABLE, "protocol = %d" % PROTO,
             "nexthop_id_range = [%d, %d]" % ID_RANGE, "verify_delay = %g" % verify_delay, "group_hold_time = 5",
             "[control]", 'socket = "%s"' % os.path.join(workdir, "ks.sock"),
             "[bgp]", "startup_wait = 1", "restart_wait = 3", "eor_timeout = 5"]
    if exabgp:
        lines.append("[exabgp]")
        lines += ['%s = "%s"' % kv for kv in exabgp.items()]
    with open(path, "w") as fh:
        fh.write("\n".join(lines) + "\n")
    return path


class Host:
    """The lab, and kernelsync as ExaBGP's process (or a daemon beside a relay)."""

    def __init__(self, tmp_path, version="5.0", relay=False, verify_delay=0.3):
        self.dir = str(tmp_path)
        self.log = os.path.join(self.dir, "ks.log")
        self.sock = os.path.join(self.dir, "ks.sock")
        self.relay_sock = os.path.join(self.dir, "relay.sock")
        self.daemon = None
        base = [sys.executable, "-m", "kernelsync", "--log-level", "debug", "--log-file", self.log]
        if relay:
            conf = ks_config(self.dir, verify_delay, listen=self.relay_sock)
            process = base[:-2] + ["--log-file", os.path.join(self.dir, "relay.log"),
                                   "exabgp", "-c", conf, "--relay", self.relay_sock]
        else:
            conf = ks_config(self.dir, verify_delay)
            process = base + ["exabgp", "-c", conf]
        self.conf = conf
        self.lab = BgpLab(version, process_argv=process, v4_prefixes=V4, v6_prefixes=V6,
                          workdir=os.path.join(self.dir, "lab"))
        self.relay = relay

    def __enter__(self):
        os.makedirs(self.lab.workdir, exist_ok=True)
        try:
            self.lab._make_topology()  # the namespaces first: foreign objects go in before kernelsync
            self.ns = self.lab.host
            self.foreign = add_foreign(self.ns)
            if self.relay:
                self.daemon = subprocess.Popen(
                    ["ip", "netns", "exec", self.ns.name, sys.executable, "-m", "kernelsync", "--log-level",
                     "debug", "--log-file", self.log, "run", "-c", self.conf])
                wait_for(lambda: os.path.exists(self.relay_sock), timeout=10, what="relay socket")
            self.lab._start_bird()
            self.lab._start_exabgp()
            self.lab.wait_established()
        except Exception:
            self.close()
            raise
        return self

    def close(self):
        if self.daemon is not None and self.daemon.poll() is None:
            self.daemon.terminate()
            self.daemon.wait(10)
        self.lab.stop()

    def __exit__(self, *exc):
        try:
            if exc[0] is None:
                self.ns.ip("link", "set", "ha", "up")
                self.ns.ip("link", "set", "hb", "up")
                assert foreign_state(self.ns, self.ns.foreign_ids) == self.foreign, \
                    "a foreign route or nexthop was changed"
        finally:
            self.close()

    # views ---------------------------------------------------------------------------------
    def routes(self):
        """Our routes in the kernel: prefix -> sorted [(gateway, dev)] of their nexthop object."""
        nexthops = {n["id"]: n for n in self.ns.json("nexthop", "show")}
        out = {}
        for family in ("-4", "-6"):
            if str(TABLE) not in self.ns.ip(family, "route", "show", "table", "all"):
                continue
            for r in self.ns.json(family, "route", "show", "table", str(TABLE), "proto", str(PROTO)):
                nh = nexthops.get(r.get("nhid"))
                if nh is None:
                    out[r["dst"]] = "no nexthop object"
                    continue
                members = [nexthops.get(m["id"], {}) for m in nh["group"]] if "group" in nh else [nh]
                out[r["dst"]] = sorted((m.get("gateway"), m.get("dev")) for m in members)
        return out

    def nhids(self):
        return {r["dst"]: r["nhid"] for family in ("-4", "-6")
                for r in self.ns.json(family, "route", "show", "table", str(TABLE), "proto", str(PROTO))}

    def wait_routes(self, expected, timeout=15.0, interval=0.02):
        def ok():
            got = self.routes()
            return got == expected and got
        try:
            return wait_for(ok, timeout=timeout, interval=interval, what="routes %s" % expected)
        except TimeoutError:
            raise AssertionError("routes %s, expected %s\n--- kernelsync log (tail):\n%s"
                                 % (self.routes(), expected, self.log_tail())) from None

    def query(self, what):
        return query(self.sock, what)

    def log_tail(self, lines=60):
        try:
            return "".join(open(self.log).readlines()[-lines:])
        except OSError:
            return "(no log)"

    def kernelsync_pids(self):
        """Pids of the kernelsync processes ExaBGP runs (not a daemon we started)."""
        return kernelsync_pids(self.ns.name, "exabgp")


def full(v4=BOTH4, v6=BOTH6, prefixes4=V4, prefixes6=V6):
    out = {p: v4 for p in prefixes4}
    out.update({p: v6 for p in prefixes6})
    return out


@pytest.mark.parametrize("version", ["5.0", "4.2"])
def test_two_sessions_make_one_shared_group(daemons, tmp_path, version):
    with Host(tmp_path, version) as host:
        host.wait_routes(full())
        ids = host.nhids()
        assert ids["198.51.100.0/24"] == ids["203.0.113.0/25"], "the IPv4 prefixes share one group"
        assert ids["2001:db8:100::/48"] != ids["198.51.100.0/24"]
        stats = host.query("show stats")
        assert stats["kernel_failures"] == 0 and stats["bgp"]["bad_lines"] == 0, host.log_tail()
        peers = {p["peer"]: p for p in host.query("show bgp")["peers"]}
        assert set(peers) == {"192.0.2.1", "192.0.2.9"}
        assert all(p["state"] == "up" and p["type"] == "ebgp" for p in peers.values())
        rib = {r["prefix"]: r for r in host.query("show rib")}
        assert rib["198.51.100.0/24"]["selected"] == "ebgp"


def test_session_disabled_and_enabled(daemons, tmp_path):
    with Host(tmp_path) as host:
        host.wait_routes(full())
        host.lab.disable_session("hB")
        host.wait_routes(full(v4=BOTH4[:1], v6=BOTH6[:1]))
        host.lab.enable_session("hB")
        host.wait_routes(full())


def test_host_link_flap_repaired_by_the_link_event(daemons, tmp_path):
    """The host's link down and up: the groups shrink and grow back in place, repaired by the
    link notification itself.  With the verify after a link event and the periodic resync
    both 60 s away, nothing else can bring the routes back within the wait: no full sync
    runs, no route is written (the routes keep their nhid), a repair ran.  The repair's time
    is measured by ``kernelsync bench`` (flap repair), not asserted here."""
    with Host(tmp_path, verify_delay=60) as host:
        host.wait_routes(full())
        ids = host.nhids()
        host.lab.link("hb", "down")  # the kernel deletes hb's nexthops, silently
        host.wait_routes(full(v4=BOTH4[:1], v6=BOTH6[:1]), timeout=2)
        before = host.query("show stats")
        host.lab.link("hb", "up")
        host.wait_routes(full(), timeout=5, interval=0.005)
        after = host.query("show stats")
        assert after["full_syncs"] == before["full_syncs"], host.log_tail()
        assert after["repairs"] > before["repairs"]
        assert after["writes"]["route-set"] == before["writes"]["route-set"] and host.nhids() == ids


def test_withdrawn_prefix_leaves_the_kernel(daemons, tmp_path):
    with Host(tmp_path) as host:
        host.wait_routes(full())
        host.lab.set_prefixes(V4[:1], V6)
        host.wait_routes(full(prefixes4=V4[:1]))


def _monitor(ns, path):
    return subprocess.Popen(["ip", "-n", ns.name, "monitor", "route"], stdout=open(path, "w"),
                            stderr=subprocess.STDOUT)


def test_killed_process_is_respawned_without_losing_routes(daemons, tmp_path):
    with Host(tmp_path) as host:
        host.wait_routes(full())
        wait_for(lambda: host.query("show bgp")["ready"], timeout=10, what="BGP ready")
        (old,) = host.kernelsync_pids()
        monitor_log = os.path.join(host.dir, "monitor.log")
        monitor = _monitor(host.ns, monitor_log)
        try:
            os.kill(old, signal.SIGKILL)
            new = wait_for(lambda: [p for p in host.kernelsync_pids() if p != old], timeout=15,
                           what="ExaBGP to respawn kernelsync")
            assert len(new) == 1

            def rebuilt():
                try:
                    bgp = host.query("show bgp")
                except OSError:
                    return False
                return bgp["ready"] and sorted(r["prefix"] for r in host.query("show rib")) == sorted(V4 + V6) \
                    and bgp
            bgp = wait_for(rebuilt, timeout=20, what="the respawned process to rebuild its RIB")
            assert {p["peer"]: p["paths"] for p in bgp["peers"]} == {"192.0.2.1": 3, "192.0.2.9": 3}
            host.wait_routes(full())
            stats = host.query("show stats")
            assert stats["writes"]["route-set"] == 0 and stats["writes"]["route-del"] == 0, stats
        finally:
            monitor.terminate()
            monitor.wait()
        deleted = [l for l in open(monitor_log) if l.startswith("Deleted") and "proto %d" % PROTO in l]
        assert deleted == [], "routes left the kernel during the respawn: %s" % deleted


def test_relay_keeps_the_fib_manager_through_an_exabgp_restart(daemons, tmp_path):
    with Host(tmp_path, relay=True) as host:
        host.wait_routes(full())
        assert oct(os.stat(host.relay_sock).st_mode & 0o777) == "0o600"
        pid = host.daemon.pid
        monitor_log = os.path.join(host.dir, "monitor.log")
        monitor = _monitor(host.ns, monitor_log)
        try:
            host.lab.stop_exabgp()  # the relay sees stdin close; sessions go down: paths kept stale
            wait_for(lambda: all(p["state"] == "down" for p in host.query("show bgp")["peers"]), timeout=10,
                     what="peers down")
            assert host.routes() == full()
            host.lab._start_exabgp()
            host.lab.wait_established()
            wait_for(lambda: host.query("show stats")["bgp"]["relay_connections"] == 2, timeout=10,
                     what="the relay to reconnect")
            wait_for(lambda: all(p["state"] == "up" and p["stale"] == 0 for p in host.query("show bgp")["peers"]),
                     timeout=20, what="peers up, stale paths refreshed")
            host.wait_routes(full())
        finally:
            monitor.terminate()
            monitor.wait()
        assert host.daemon.poll() is None and host.daemon.pid == pid
        deleted = [l for l in open(monitor_log) if l.startswith("Deleted") and "proto %d" % PROTO in l]
        assert deleted == [], "routes left the kernel during the ExaBGP restart: %s" % deleted


# hostile input on a real process ---------------------------------------------------------
def _line(kind, body, local, peer):
    nb = {"address": {"local": local, "peer": peer}, "asn": {"local": 65010, "peer": 65001}}
    nb.update(body)
    return json.dumps({"exabgp": "5.0.0", "type": kind, "neighbor": nb})


def _announce(prefix, nexthop, local, peer, family="ipv4 unicast"):
    update = {"attribute": {"origin": "igp", "as-path": {"0": {"element": "as-sequence", "value": [65001]}}},
              "announce": {family: {nexthop: [{"nlri": prefix}]}}}
    return _line("update", {"direction": "receive", "message": {"update": update}}, local, peer)


def test_hostile_lines_are_counted_and_skipped(lab, tmp_path):
    conf = ks_config(str(tmp_path))
    with open(conf, "a") as fh:  # the [bgp] section is the file's last
        fh.write("restart_hold_time = 1\n")
    log = str(tmp_path / "ks.log")
    proc = subprocess.Popen(["ip", "netns", "exec", lab.name, sys.executable, "-m", "kernelsync", "--log-file",
                             log, "exabgp", "-c", conf], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    good = [
        _line("state", {"state": "up"}, "10.0.0.1", "10.0.0.2"),
        _announce("198.51.100.0/24", "10.0.0.2", "10.0.0.1", "10.0.0.2"),
        _announce("203.0.113.0/25", "10.0.1.2", "10.0.1.1", "10.0.1.2"),
        _announce("2001:db8:100::/48", "2001:db8:1::2", "10.0.1.1", "10.0.1.2", family="ipv6 unicast"),
    ]
    bad = [
        "this is not json",
        good[1][:len(good[1]) // 2],  # truncated
        '{"type": "update", "neighbor": ' + '[' * 200_000,  # nested beyond the parser's depth
        "{" + '"k": "' + "x" * 5_000_000 + '"}',  # huge
        _line("update", {"direction": "receive", "message": {"update": {"announce": "wrong type"}}},
              "10.0.0.1", "10.0.0.2"),
        _announce("198.51.100.0/33", "10.0.0.2", "10.0.0.1", "10.0.0.2"),
        _line("state", {"state": ["up"]}, "10.0.0.1", "10.0.0.2"),
        _line("surprise", {}, "10.0.0.1", "10.0.0.2"),
        '{"exabgp": "5.0.0", "type": "update", "neighbor": {"address": {"local": 1, "peer": 2}, '
        '"asn": {"local": "a", "peer": null}, "message": {}}}',
        "\x00\xff\xfe garbage",
    ]
    unknown_family = _line("update", {"direction": "receive", "message": {"update": {
        "attribute": {"origin": "igp"}, "announce": {"ipv4 flow": {"no-nexthop": [{"destination-ipv4": ["10.0.0.0/8"]}]}}}}},
        "10.0.0.1", "10.0.0.2")
    stream = [good[0], bad[0], good[1], bad[1], bad[2], bad[3], unknown_family, good[2]] + bad[4:] + [good[3]]
    data = b"".join(l.encode("utf-8", "surrogateescape") + b"\n" for l in stream)
    proc.stdin.write(data.replace(b"\\u0000\\u00ff", b"\x00\xff"))
    proc.stdin.flush()
    try:
        def installed():
            routes = {r["dst"] for f in ("-4", "-6") if str(TABLE) in lab.ip(f, "route", "show", "table", "all")
                      for r in lab.json(f, "route", "show", "table", str(TABLE), "proto", str(PROTO))}
            return routes == {"198.51.100.0/24", "203.0.113.0/25", "2001:db8:100::/48"}
        wait_for(installed, timeout=10, what="the good routes")
        assert proc.poll() is None, "kernelsync exited"
        stats = query(str(tmp_path / "ks.sock"), "show stats")["bgp"]
        # the /33 is one bad NLRI (treated as withdrawn, counted apart), not a bad line
        assert stats["bad_lines"] == len(bad) - 1 and stats["bad_nlri"] == 1, open(log).read()[-3000:]
        assert stats["skipped_families"] == 1
        assert stats["lines"] == len(stream)
        text = open(log).read()
        assert "this is not json" in text and "... (%d characters)" % len(bad[3]) in text  # logged, truncated
        assert "update.announce.ipv4 unicast[10.0.0.2][0]: nlri '198.51.100.0/33' is not a prefix" in text
        assert "\\x00" in text and "\x00" not in text  # control bytes escaped in the log file
    finally:
        proc.stdin.close()  # ExaBGP gone: kernelsync stops, routes stay (stale) for restart_hold_time
        assert proc.wait(10) == 0
    assert {r["dst"] for r in lab.json("route", "show", "table", str(TABLE), "proto", str(PROTO))} == \
        {"198.51.100.0/24", "203.0.113.0/25"}
    wait_for(lambda: not lab.json("route", "show", "table", str(TABLE), "proto", str(PROTO)), timeout=10,
             what="the BGP routes swept after the hold time")  # by `kernelsync hold` (test_exabgp_hold.py)
