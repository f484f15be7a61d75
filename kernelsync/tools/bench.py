"""``kernelsync bench``: install speed against ``ip -batch``, and link-flap repair time.

Everything runs in scratch network namespaces ``ksbench-<pid>-<n>`` (created with ``ip netns
add``, deleted in ``finally``); the host's own routes are never touched.  kernelsync's sockets
are opened *inside* a namespace by entering it in-process (``setns(2)`` with CLONE_NEWNET) and
returning to the original namespace at once: a netlink socket stays bound to the namespace it
was created in.

1. Install: N IPv4 /32 routes over ``groups`` shared nexthop groups of two gateway members
   (one on each of two veths), (a) through :class:`kernelsync.core.engine.Engine` over
   :class:`kernelsync.kernel.netlink.RtNetlink` (timed: ``engine.start`` + ``engine.run``; the pure
   netlink write time is measured by wrapping ``kernel.apply``), (b) ``ip -n NS -batch FILE``
   with ``route add ... nhid G`` lines (timed wall clock, process start included).  Each
   repetition uses a fresh namespace; the best of ``repeat`` is reported.
2. Link flap: admin down, then up, of the device of one member of every group, issued on our
   own netlink socket; a real :class:`kernelsync.daemon.Daemon` (its sockets made inside the
   namespace, no feed) is driven as its loop drives itself: ``Daemon.handle_notifications``
   when its notification socket is readable, then ``engine.run``.  Timed from the
   kernel's ACK of the link change (and, separately, from issuing it) to the end of
   ``engine.run``.  Verified by dumps after every step.
3. ``net.ipv4.nexthop_compat_mode`` is set to 0 in every bench namespace (per namespace; with 1
   a group replace costs O(routes)); one extra flap at the largest size is measured with 1.

Output: readable lines, then one ``BENCH_JSON {...}`` line with every figure.
"""
from __future__ import annotations

import gc
import json
import logging
import os
import resource
import select
import socket
import struct
import subprocess
import sys
import tempfile
import time
from typing import Dict, List, Optional, Tuple

from ..config import Config
from ..core.engine import Engine, KernelConfig
from ..core.model import AF_INET, KNexthop, NexthopSpec, Path
from ..daemon import Daemon
from ..kernel.codec import NLMSG_ERROR, NLMSGHDR, encode_link_admin, parse_error
from ..kernel.netlink import RtNetlink
from .netns import setns

TABLE = 100
PROTOCOL = 200
METRIC = 20
ID_RANGE = (100_000_000, 100_999_999)
IP_BATCH_NH_BASE = 1000  # ids of the baseline's own nexthop objects
ROUTE_BASE = 0x0A000001  # 10.0.0.1, then upwards
DEV_A, PEER_A, DEV_B, PEER_B = "ksa0", "ksa1", "ksb0", "ksb1"
NET_A, NET_B = "10.255.0", "10.255.1"
VERIFY_DELAY = 0.3
INSTALL_TARGET = 3.0
REPAIR_TARGET = 2.0

log = logging.getLogger("kernelsync.bench")

_counter = 0


# namespaces -------------------------------------------------------------------------------
def _run(*argv: str, input_text: Optional[str] = None) -> str:
    proc = subprocess.run(argv, input=input_text, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError("%s failed (%d): %s" % (" ".join(argv), proc.returncode, proc.stderr.strip()))
    return proc.stdout


class Namespaces:
    """Creates ``ksbench-<pid>-<n>`` namespaces and deletes every one of them on close."""

    def __init__(self) -> None:
        self.names: List[str] = []
        self.home = os.open("/proc/self/ns/net", os.O_RDONLY | os.O_CLOEXEC)

    def create(self, compat_mode: int = 0) -> str:
        """A namespace with lo up and two veth pairs ksa0/ksa1, ksb0/ksb1 (up), the first of
        each pair addressed 10.255.0.1/24 and 10.255.1.1/24."""
        global _counter
        _counter += 1
        name = "ksbench-%d-%d" % (os.getpid(), _counter)
        _run("ip", "netns", "add", name)
        self.names.append(name)
        _run("ip", "-n", name, "-batch", "-", input_text="\n".join([
            "link set lo up",
            "link add name %s type veth peer name %s" % (DEV_A, PEER_A),
            "link add name %s type veth peer name %s" % (DEV_B, PEER_B),
            "addr add %s.1/24 dev %s" % (NET_A, DEV_A),
            "addr add %s.1/24 dev %s" % (NET_B, DEV_B),
            "link set %s up" % PEER_A, "link set %s up" % PEER_B,
            "link set %s up" % DEV_A, "link set %s up" % DEV_B,
        ]) + "\n")
        set_compat_mode(name, compat_mode)
        return name

    def enter(self, name: str) -> None:
        fd = os.open("/var/run/netns/%s" % name, os.O_RDONLY | os.O_CLOEXEC)
        try:
            setns(fd)
        finally:
            os.close(fd)

    def leave(self) -> None:
        setns(self.home)

    def open_in(self, name: str, factory):
        """Call ``factory()`` inside namespace ``name`` (sockets it opens stay there)."""
        self.enter(name)
        try:
            return factory()
        finally:
            self.leave()

    def delete(self, name: str) -> None:
        if name not in self.names:
            return
        self.names.remove(name)
        # deleting the groups first drops every route on them in one step (cheap netns cleanup)
        subprocess.run(["ip", "-n", name, "nexthop", "flush"], capture_output=True)
        subprocess.run(["ip", "netns", "del", name], capture_output=True)

    def close(self) -> None:
        try:
            self.leave()
        except OSError:
            pass
        for name in list(self.names):
            self.delete(name)
        os.close(self.home)


def set_compat_mode(ns: str, value: int) -> None:
    _run("ip", "netns", "exec", ns, "sysctl", "-qw", "net.ipv4.nexthop_compat_mode=%d" % value)
    got = _run("ip", "netns", "exec", ns, "sysctl", "-n", "net.ipv4.nexthop_compat_mode").strip()
    if got != str(value):
        raise RuntimeError("net.ipv4.nexthop_compat_mode in %s is %s, wanted %d" % (ns, got, value))


class LinkSetter:
    """Admin up/down of a link with one RTM_NEWLINK on our own socket (waits for the ACK)."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC, 0)
        self.sock.bind((0, 0))
        self.seq = 1

    def set(self, index: int, up: bool) -> None:
        self.seq += 1
        self.sock.send(encode_link_admin(self.seq, index, up))
        while True:
            data = self.sock.recv(65536)
            off = 0
            while off + 16 <= len(data):
                length, mtype, flags, seq, _pid = NLMSGHDR.unpack_from(data, off)
                if mtype == NLMSG_ERROR and seq == self.seq:
                    err, text = parse_error(data, off, length, flags)
                    if err:
                        raise OSError(err, "link set: %s" % (text or os.strerror(err)))
                    return
                off += (length + 3) & ~3

    def close(self) -> None:
        self.sock.close()


# workload ---------------------------------------------------------------------------------
def gateways(g: int) -> Tuple[str, str]:
    return "%s.%d" % (NET_A, 2 + g), "%s.%d" % (NET_B, 2 + g)


def group_paths(groups: int) -> List[Tuple[Path, ...]]:
    out = []
    for g in range(groups):
        ga, gb = gateways(g)
        out.append((Path((NexthopSpec(socket.inet_aton(ga), AF_INET, DEV_A),
                          NexthopSpec(socket.inet_aton(gb), AF_INET, DEV_B))),))
    return out


def route_dsts(n: int) -> List[bytes]:
    pack = struct.Struct("!I").pack
    return [pack(ROUTE_BASE + i) for i in range(n)]


def kcfg(verify_delay: float = VERIFY_DELAY) -> KernelConfig:
    return KernelConfig(table=TABLE, protocol=PROTOCOL, metric=METRIC, nexthop_id_range=ID_RANGE,
                        verify_delay=verify_delay, resync_interval=3600.0)


def bench_config() -> Config:
    """The flap rig's daemon: :func:`kcfg`, no control socket, no feed."""
    return Config(filename="<bench>", kernel=kcfg(), control_socket=None, static_distance=1, static_routes=(),
                  route_errors=())


class TimedKernel:
    """Wraps ``kernel.apply`` on one RtNetlink instance to add up the netlink write time (which overlaps the per-chunk bookkeeping)."""

    def __init__(self, kernel: RtNetlink) -> None:
        self.seconds = 0.0
        self.ops = 0
        inner = kernel.apply

        def apply(ops, on_chunk=None):
            t = time.perf_counter()
            try:
                return inner(ops, on_chunk)
            finally:
                self.seconds += time.perf_counter() - t
                self.ops += len(ops)

        kernel.apply = apply

    def reset(self) -> None:
        self.seconds, self.ops = 0.0, 0


def load_rib(engine: Engine, n: int, groups: int) -> None:
    paths = group_paths(groups)
    engine.rib.add_source("static", 1)
    update = engine.rib.update
    for i, dst in enumerate(route_dsts(n)):
        update("static", (AF_INET, dst, 32), paths[i % groups])
    engine.rib.set_ready("static")


def check_routes(nl: RtNetlink, n: int, group_ids: Optional[set] = None) -> Tuple[bool, str]:
    routes = nl.dump_routes(TABLE, PROTOCOL)
    if len(routes) != n:
        return False, "%d routes in table %d, expected %d" % (len(routes), TABLE, n)
    nhids = set(routes.values())
    if 0 in nhids:
        return False, "routes without nhid"
    if group_ids is not None and not nhids <= group_ids:
        return False, "routes on nhid %s, expected within the groups %s" % (sorted(nhids - group_ids), sorted(group_ids))
    return True, "%d routes, nhids %s" % (len(routes), sorted(nhids))


def our_groups(nl: RtNetlink) -> Dict[int, KNexthop]:
    return {i: o for i, o in nl.dump_nexthops().items()
            if o.is_group and o.protocol == PROTOCOL and ID_RANGE[0] <= i <= ID_RANGE[1]}


# 1. install ---------------------------------------------------------------------------------
def install_kernelsync(nss: Namespaces, n: int, groups: int) -> dict:
    ns = nss.create()
    try:
        kernel = nss.open_in(ns, lambda: RtNetlink(PROTOCOL))
        try:
            timer = TimedKernel(kernel)
            engine = Engine(kcfg(), kernel)
            t0 = time.perf_counter()
            load_rib(engine, n, groups)
            t1 = time.perf_counter()
            now = time.monotonic()
            engine.start(now)
            t2 = time.perf_counter()
            plan = engine.run(now)
            runs = 1
            while runs < 5:
                due = engine.deadline()
                now = time.monotonic()
                if due is None or due > now:
                    break
                engine.run(now)
                runs += 1
            t3 = time.perf_counter()
            ok, detail = check_routes(kernel, n, set(our_groups(kernel)))
            groups_seen = our_groups(kernel)
            if len(groups_seen) != groups or any(len(o.group) != 2 for o in groups_seen.values()):
                ok, detail = False, detail + "; groups: %s" % [o.describe() for o in groups_seen.values()]
            result = {"ns": ns, "rib_load_s": t1 - t0, "start_s": t2 - t1, "apply_s": t3 - t2,
                      "netlink_s": timer.seconds, "ops": timer.ops, "runs": runs,
                      "plan_ops_last": len(plan.ops), "sends": kernel.stats.sends,
                      "ok": ok, "verify": detail}
            result["total_s"] = result["start_s"] + result["apply_s"]
            del engine
        finally:
            kernel.close()
    finally:
        nss.delete(ns)
        gc.collect()
    return result


def install_ip_batch(nss: Namespaces, n: int, groups: int, workdir: str) -> dict:
    ns = nss.create()
    try:
        setup = []
        for g in range(groups):
            ga, gb = gateways(g)
            a, b, gid = IP_BATCH_NH_BASE + 2 * g + 1, IP_BATCH_NH_BASE + 2 * g + 2, IP_BATCH_NH_BASE + 500 + g
            setup += ["nexthop add id %d via %s dev %s proto %d" % (a, ga, DEV_A, PROTOCOL),
                      "nexthop add id %d via %s dev %s proto %d" % (b, gb, DEV_B, PROTOCOL),
                      "nexthop add id %d group %d/%d proto %d" % (gid, a, b, PROTOCOL)]
        _run("ip", "-n", ns, "-batch", "-", input_text="\n".join(setup) + "\n")
        path = os.path.join(workdir, "routes-%s.batch" % ns)
        with open(path, "w") as fh:
            for i in range(n):
                addr = ROUTE_BASE + i
                fh.write("route add %d.%d.%d.%d/32 nhid %d table %d proto %d metric %d\n" % (
                    addr >> 24, (addr >> 16) & 255, (addr >> 8) & 255, addr & 255,
                    IP_BATCH_NH_BASE + 500 + i % groups, TABLE, PROTOCOL, METRIC))
        t0 = time.perf_counter()
        proc = subprocess.run(["ip", "-n", ns, "-batch", path], capture_output=True, text=True)
        t1 = time.perf_counter()
        os.unlink(path)
        if proc.returncode != 0:
            raise RuntimeError("ip -batch failed: %s" % proc.stderr.strip()[:500])
        nl = nss.open_in(ns, lambda: RtNetlink(PROTOCOL))
        try:
            gids = {IP_BATCH_NH_BASE + 500 + g for g in range(groups)}
            ok, detail = check_routes(nl, n, gids)
        finally:
            nl.close()
        return {"ns": ns, "total_s": t1 - t0, "ok": ok, "verify": detail}
    finally:
        nss.delete(ns)
        gc.collect()


# 2. link flap -------------------------------------------------------------------------------
class FlapRig:
    """One namespace with ``n`` routes installed by a daemon's engine, driven as the daemon's
    loop drives it (its notification handling included), without the loop itself."""

    def __init__(self, nss: Namespaces, n: int, groups: int) -> None:
        self.nss = nss
        self.n = n
        self.groups = groups
        self.ns = nss.create()
        # the daemon's own sockets, made inside the namespace (notifications first: nothing
        # between the first dump and the subscription is lost)
        self.daemon = nss.open_in(self.ns, lambda: Daemon(bench_config()))
        self.events = self.daemon.events
        self.kernel = self.daemon.kernel
        self.engine = self.daemon.engine
        self.check_nl = nss.open_in(self.ns, lambda: RtNetlink(PROTOCOL))
        self.links = nss.open_in(self.ns, LinkSetter)
        self.timer = TimedKernel(self.kernel)
        self.followups: List[dict] = []
        self.verifies: List[float] = []
        load_rib(self.engine, n, groups)
        now = time.monotonic()
        self.engine.start(now)
        t = time.perf_counter()
        self.engine.run(now)
        self.install_s = time.perf_counter() - t
        self.index = {l.name: l.index for l in self.engine.links.values()}
        ok, detail = check_routes(self.check_nl, n)
        if not ok:
            raise RuntimeError("flap rig: install of %d routes failed: %s" % (n, detail))
        self.group_ids = set(our_groups(self.check_nl))
        self.settle()

    def close(self) -> None:
        for s in (self.links, self.check_nl, self.daemon):
            s.close()
        self.nss.delete(self.ns)

    def drain(self) -> bool:
        """What the daemon does when its notification socket is readable."""
        return self.daemon.handle_notifications(time.monotonic())

    def settle(self, max_wait: float = VERIFY_DELAY + 0.5) -> None:
        """Let the engine do what is due soon (the verify after a link event), as the
        daemon's loop would, so the next measurement starts from a quiet state."""
        end = time.monotonic() + max_wait
        while True:
            self.drain()
            now = time.monotonic()
            due = self.engine.deadline()
            if due is None or due > end:
                return
            if due > now:
                time.sleep(due - now)
            full = self.engine.need_full or (self.engine.verify_at is not None
                                             and time.monotonic() >= self.engine.verify_at)
            t = time.perf_counter()
            self.engine.run(time.monotonic())
            if full:
                self.verifies.append(time.perf_counter() - t)

    def step(self, up: bool) -> dict:
        """Issue the link change, wait for the notification, let the engine react."""
        engine = self.engine
        self.timer.reset()
        t0 = time.perf_counter()
        self.links.set(self.index[DEV_A], up)
        t1 = time.perf_counter()
        ready, _, _ = select.select([self.events.sock], [], [], 2.0)
        if not ready:
            raise RuntimeError("no link notification within 2 s")
        t2 = time.perf_counter()
        linked = self.drain()
        t3 = time.perf_counter()
        plan = engine.run(time.monotonic())
        t4 = time.perf_counter()
        result = {"kernel_link_ms": (t1 - t0) * 1e3, "event_wait_ms": (t2 - t1) * 1e3,
                  "on_link_event_ms": (t3 - t2) * 1e3, "run_ms": (t4 - t3) * 1e3,
                  "repair_ms": (t4 - t1) * 1e3, "from_issue_ms": (t4 - t0) * 1e3,
                  "netlink_ms": self.timer.seconds * 1e3, "writes": len(plan.ops),
                  "plan": plan.counts(), "link_event_seen": linked}
        # what the daemon's loop does next: more notifications (the peer's carrier, our own
        # nexthop writes echoed back) and any run they make due at once
        follow = {"runs": 0, "ms": 0.0, "writes": 0}
        wait_until = time.monotonic() + 0.05
        while time.monotonic() < wait_until:
            ready, _, _ = select.select([self.events.sock], [], [], max(0.0, wait_until - time.monotonic()))
            if ready:
                self.drain()
            due = engine.deadline()
            if due is not None and due <= time.monotonic():
                t = time.perf_counter()
                p = engine.run(time.monotonic())
                follow["ms"] += (time.perf_counter() - t) * 1e3
                follow["runs"] += 1
                follow["writes"] += len(p.ops)
        result["followup"] = follow
        return result

    def verify(self, members: int) -> Tuple[bool, str]:
        groups = our_groups(self.check_nl)
        problems = []
        if set(groups) != self.group_ids:
            problems.append("group ids %s, expected %s" % (sorted(groups), sorted(self.group_ids)))
        bad = [o.describe() for o in groups.values() if len(o.group) != members]
        if bad:
            problems.append("groups without %d members: %s" % (members, bad))
        ok, detail = check_routes(self.check_nl, self.n, self.group_ids)
        if not ok:
            problems.append(detail)
        return (not problems), ("; ".join(problems) or "%d groups x %d members, %s" % (len(groups), members, detail))

    def flap(self) -> dict:
        down = self.step(False)
        ok_down, why_down = self.verify(1)
        self.settle()
        up = self.step(True)
        ok_up, why_up = self.verify(2)
        self.settle()
        return {"down": down, "up": up, "ok": ok_down and ok_up,
                "verify_down": why_down, "verify_up": why_up,
                "total_ms": down["repair_ms"] + up["repair_ms"],
                "total_from_issue_ms": down["from_issue_ms"] + up["from_issue_ms"]}


def flap_size(nss: Namespaces, n: int, groups: int, repeat: int, compat_cmp: bool) -> dict:
    rig = FlapRig(nss, n, groups)
    try:
        cycles = [rig.flap() for _ in range(max(1, repeat))]
        best = {
            "down_ms": min(c["down"]["repair_ms"] for c in cycles),
            "up_ms": min(c["up"]["repair_ms"] for c in cycles),
            "total_ms": min(c["total_ms"] for c in cycles),
            "down_from_issue_ms": min(c["down"]["from_issue_ms"] for c in cycles),
            "up_from_issue_ms": min(c["up"]["from_issue_ms"] for c in cycles),
            "total_from_issue_ms": min(c["total_from_issue_ms"] for c in cycles),
            "kernel_down_ms": min(c["down"]["kernel_link_ms"] for c in cycles),
            "kernel_up_ms": min(c["up"]["kernel_link_ms"] for c in cycles),
        }
        out = {"routes": n, "ns": rig.ns, "install_s": rig.install_s, "best": best, "cycles": cycles,
               "ok": all(c["ok"] for c in cycles), "verify_full_sync_s": list(rig.verifies)}
        if compat_cmp:
            set_compat_mode(rig.ns, 1)
            try:
                out["compat1"] = rig.flap()
            finally:
                set_compat_mode(rig.ns, 0)
        return out
    finally:
        rig.close()
        gc.collect()


# output -------------------------------------------------------------------------------------
def _rate(n: int, seconds: float) -> str:
    return "{:,.0f}".format(n / seconds) if seconds > 0 else "inf"


def _maxrss_mib(who: int) -> float:
    return resource.getrusage(who).ru_maxrss / 1024.0


def main(args) -> int:
    n = int(args.routes)
    groups = int(args.groups)
    repeat = max(1, int(args.repeat))
    flap_sizes = [int(s) for s in str(args.flap_sizes).replace(" ", "").split(",") if s]
    if os.geteuid() != 0:
        print("kernelsync bench needs root (network namespaces)", file=sys.stderr)
        return 2
    if not 1 <= groups <= 250 or n < 1 or n > 16_000_000:
        print("bench: --groups must be 1..250 and --routes 1..16000000", file=sys.stderr)
        return 2
    # the engine logs every batch at INFO: keep the figures readable
    ks_log = logging.getLogger("kernelsync")
    if ks_log.getEffectiveLevel() > logging.DEBUG:
        ks_log.setLevel(logging.WARNING)
    report: dict = {"routes": n, "groups": groups, "repeat": repeat, "table": TABLE, "protocol": PROTOCOL,
                    "kernel": os.uname().release, "nexthop_compat_mode": 0}
    ok = True
    nss = Namespaces()
    try:
        print("kernelsync bench: %d IPv4 /32 routes over %d groups of 2 gateway members (veths %s, %s), "
              "table %d, protocol %d; best of %d" % (n, groups, DEV_A, DEV_B, TABLE, PROTOCOL, repeat))
        print("namespaces ksbench-%d-*: net.ipv4.nexthop_compat_mode=0 set in each (per-namespace sysctl; "
              "host value untouched)" % os.getpid())
        sys.stdout.flush()
        # 1. install ---------------------------------------------------------------------
        ks_runs, ip_runs = [], []
        with tempfile.TemporaryDirectory(prefix="ksbench-") as workdir:
            for r in range(repeat):
                ks = install_kernelsync(nss, n, groups)
                ip = install_ip_batch(nss, n, groups, workdir)
                ks_runs.append(ks)
                ip_runs.append(ip)
                print("  run %d: kernelsync start+run %.3f s (rib load %.3f s, apply %.3f s, netlink %.3f s, "
                      "%d ops in %d sends) [%s] | ip -batch %.3f s [%s]" % (
                          r + 1, ks["total_s"], ks["rib_load_s"], ks["apply_s"], ks["netlink_s"], ks["ops"],
                          ks["sends"], "ok" if ks["ok"] else "FAIL: " + ks["verify"], ip["total_s"],
                          "ok" if ip["ok"] else "FAIL: " + ip["verify"]))
                sys.stdout.flush()
                ok = ok and ks["ok"] and ip["ok"]
        best_ks = min(ks_runs, key=lambda x: x["total_s"])
        best_ip = min(ip_runs, key=lambda x: x["total_s"])
        ratio = best_ip["total_s"] / best_ks["total_s"]
        rss_install = _maxrss_mib(resource.RUSAGE_SELF)
        rss_ip = _maxrss_mib(resource.RUSAGE_CHILDREN)
        print("install %d routes: kernelsync %s routes/s (%.3f s) | ip -batch %s routes/s (%.3f s) | "
              "ratio %.1fx (target >= %gx) %s" % (
                  n, _rate(n, best_ks["total_s"]), best_ks["total_s"], _rate(n, best_ip["total_s"]),
                  best_ip["total_s"], ratio, INSTALL_TARGET, "MET" if ratio >= INSTALL_TARGET else "NOT MET"))
        print("  kernelsync detail (best run): engine.run (RIB -> desired FIB -> plan -> netlink) %.3f s "
              "= %s routes/s; netlink writes (kernel.apply, bookkeeping of each chunk overlapped) %.3f s = %s routes/s; engine.start %.4f s; "
              "RIB load (rib.update x %d, not in the figure) %.3f s; with RIB load %s routes/s" % (
                  best_ks["apply_s"], _rate(n, best_ks["apply_s"]), best_ks["netlink_s"],
                  _rate(n, best_ks["netlink_s"]), best_ks["start_s"], n, best_ks["rib_load_s"],
                  _rate(n, best_ks["total_s"] + best_ks["rib_load_s"])))
        print("  peak RSS: bench process %.0f MiB after install; largest child (ip) %.0f MiB" % (rss_install, rss_ip))
        sys.stdout.flush()
        report["install"] = {
            "kernelsync_s": best_ks["total_s"], "kernelsync_routes_per_s": n / best_ks["total_s"],
            "kernelsync_apply_s": best_ks["apply_s"], "kernelsync_netlink_s": best_ks["netlink_s"],
            "kernelsync_start_s": best_ks["start_s"], "kernelsync_rib_load_s": best_ks["rib_load_s"],
            "ip_batch_s": best_ip["total_s"], "ip_batch_routes_per_s": n / best_ip["total_s"],
            "ratio": ratio, "target": INSTALL_TARGET, "met": ratio >= INSTALL_TARGET,
            "runs_kernelsync": [{k: v for k, v in x.items() if k != "ns"} for x in ks_runs],
            "runs_ip_batch": [{k: v for k, v in x.items() if k != "ns"} for x in ip_runs],
            "peak_rss_mib": rss_install, "ip_peak_rss_mib": rss_ip,
        }
        # 2. link flap -------------------------------------------------------------------
        flaps = []
        biggest = max(flap_sizes) if flap_sizes else None
        for size in flap_sizes:
            f = flap_size(nss, size, groups, repeat, compat_cmp=(size == biggest))
            flaps.append(f)
            ok = ok and f["ok"]
            b = f["best"]
            print("  flap %d routes: down %.2f ms, up %.2f ms, total %.2f ms (from the link change's ACK to "
                  "the end of engine.run); from issuing the change: down %.2f ms, up %.2f ms, total %.2f ms "
                  "(kernel link change: down %.2f ms, up %.2f ms) [%s]" % (
                      size, b["down_ms"], b["up_ms"], b["total_ms"], b["down_from_issue_ms"],
                      b["up_from_issue_ms"], b["total_from_issue_ms"], b["kernel_down_ms"], b["kernel_up_ms"],
                      "ok" if f["ok"] else "FAIL"))
            for i, c in enumerate(f["cycles"]):
                for name in ("down", "up"):
                    s = c[name]
                    print("    cycle %d %-4s: event wait %.2f ms, on_link_event %.2f ms, run %.2f ms "
                          "(netlink %.2f ms, writes %s), follow-up runs %d (%.2f ms, %d writes)" % (
                              i + 1, name, s["event_wait_ms"], s["on_link_event_ms"], s["run_ms"], s["netlink_ms"],
                              s["plan"] or 0, s["followup"]["runs"], s["followup"]["ms"], s["followup"]["writes"]))
                if not c["ok"]:
                    print("    cycle %d verify: after down: %s | after up: %s" % (i + 1, c["verify_down"], c["verify_up"]))
            if f["verify_full_sync_s"]:
                print("    verify (full dump + diff, %.1f s after each event): %s s" % (
                    VERIFY_DELAY, ", ".join("%.3f" % v for v in f["verify_full_sync_s"])))
            if "compat1" in f:
                c1 = f["compat1"]
                print("    with nexthop_compat_mode=1 (one cycle): down %.2f ms, up %.2f ms, total %.2f ms; "
                      "from issuing: total %.2f ms [%s]" % (
                          c1["down"]["repair_ms"], c1["up"]["repair_ms"], c1["total_ms"],
                          c1["total_from_issue_ms"], "ok" if c1["ok"] else "FAIL"))
                ok = ok and c1["ok"]
            sys.stdout.flush()
        if flaps:
            small = min(flaps, key=lambda f: f["routes"])
            large = max(flaps, key=lambda f: f["routes"])
            r_rep = large["best"]["total_ms"] / small["best"]["total_ms"]
            r_iss = large["best"]["total_from_issue_ms"] / small["best"]["total_from_issue_ms"]
            parts = ["%d routes: down %.2f ms, up %.2f ms" % (f["routes"], f["best"]["down_ms"], f["best"]["up_ms"])
                     for f in flaps]
            print("flap repair (compat_mode=0): %s | ratio %.1fx (target <= %gx) %s" % (
                " | ".join(parts), r_rep, REPAIR_TARGET, "MET" if r_rep <= REPAIR_TARGET else "NOT MET"))
            print("flap incl. kernel link change (compat_mode=0): %s | ratio %.1fx" % (
                " | ".join("%d routes: down %.2f ms, up %.2f ms" % (
                    f["routes"], f["best"]["down_from_issue_ms"], f["best"]["up_from_issue_ms"]) for f in flaps),
                r_iss))
            report["flap"] = {
                "sizes": [{"routes": f["routes"], "install_s": f["install_s"], "ok": f["ok"], **f["best"],
                           "verify_full_sync_s": f["verify_full_sync_s"],
                           "cycles": [{k: c[k] for k in ("down", "up", "ok", "total_ms", "total_from_issue_ms")}
                                      for c in f["cycles"]],
                           **({"compat1": {"down_ms": f["compat1"]["down"]["repair_ms"],
                                           "up_ms": f["compat1"]["up"]["repair_ms"],
                                           "total_ms": f["compat1"]["total_ms"],
                                           "total_from_issue_ms": f["compat1"]["total_from_issue_ms"],
                                           "ok": f["compat1"]["ok"]}} if "compat1" in f else {})}
                          for f in flaps],
                "ratio": r_rep, "ratio_from_issue": r_iss, "target": REPAIR_TARGET, "met": r_rep <= REPAIR_TARGET,
            }
        report["peak_rss_mib"] = _maxrss_mib(resource.RUSAGE_SELF)
        report["ok"] = ok
        print("peak RSS: %.0f MiB (bench process)%s" % (report["peak_rss_mib"], "" if ok else "; SOME CHECKS FAILED"))
    finally:
        nss.close()
    left = [l for l in _run("ip", "netns", "list").split() if l.startswith("ksbench-%d-" % os.getpid())]
    report["namespaces_left"] = left
    print("BENCH_JSON " + json.dumps(report, sort_keys=True))
    sys.stdout.flush()
    return 0 if ok else 1
