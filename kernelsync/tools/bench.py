"""``kernelsync bench``: install speed against two baselines measured in the same run (``ip
-batch``, and a minimal struct-packed netlink writer as the kernel's floor), and link-flap repair
time.  Figures are medians with their range over alternated rounds, not only the best: the
machine is shared and noisy.

Everything runs in scratch network namespaces ``ksbench-<pid>-<n>`` (created with ``ip netns
add``, deleted in ``finally``, on an exception, on SIGTERM, and on Ctrl-C); the host's own
routes are never touched.  kernelsync's sockets are opened *inside* a namespace by entering it
in-process (``setns(2)`` with CLONE_NEWNET) and returning to the original namespace at once: a
netlink socket stays bound to the namespace it was created in.

1. Install: N IPv4 /32 routes over ``groups`` shared nexthop groups of two gateway members
   (one on each of two veths), three ways, each in a fresh namespace:

   (a) ``kernelsync``: :class:`kernelsync.core.engine.Engine` over
       :class:`kernelsync.kernel.netlink.RtNetlink` (timed: ``engine.start`` + ``engine.run``,
       which creates the nexthops and groups and writes the routes; the pure netlink write
       time is measured by wrapping ``kernel.apply``; loading the RIB is timed separately and
       is not in the figure);
   (b) ``raw writer``, the kernel's floor (:class:`RawWriter`): the same nexthop objects and
       groups created by hand (ids ``RAW_NH_BASE`` + ..., outside kernelsync's range), then
       the same N RTM_NEWROUTE messages with RTA_NH_ID, packed with its own ``struct.Struct``
       layouts (this module's ``_RAW_*``; only the numeric uapi constants come from
       :mod:`kernelsync.kernel.codec`: nothing of kernelsync's engine, planner or encoder),
       RAW_CHUNK (4096, about 240 KiB, the size of kernelsync's chunks) messages per
       ``send()``, NLM_F_ACK only on the last message of each chunk, one ACK wait per chunk,
       one thread.  Timed from its first nexthop write to the last route ACK (socket opened
       and destinations packed to bytes beforehand, as kernelsync's RIB is loaded
       beforehand); the time spent inside ``send()`` + the ACK wait (the kernel's work) is
       reported too;
   (c) ``ip -n NS -batch FILE`` with ``route add ... nhid G`` lines (nexthops and groups made
       beforehand by another ``ip -batch``; timed wall clock, process start included).

   Every method's result is verified by dumps (route count, every route on one of that
   method's groups, every group with its two members).  ``repeat`` rounds; the order of
   the three is rotated from round to round (round 1: a b c, round 2: b c a, ...).  Reported
   per method: median, min and max of the seconds and of routes/s; per round the ratios
   "kernelsync's routes/s as % of the raw writer's" (raw_s / kernelsync_s, "% of the kernel's
   floor") and "kernelsync vs ip -batch" (ip_s / kernelsync_s, x faster), then their median
   and range.  The best run of each (the figures of earlier versions) is still printed and kept
   under the same JSON keys.
2. Link flap: admin down, then up, of the device of one member of every group, issued on our
   own netlink socket; a real :class:`kernelsync.daemon.Daemon` (its sockets made inside the
   namespace, no feed) is driven as its loop drives itself: ``Daemon.handle_notifications``
   when its notification socket is readable, then ``engine.run``.  Timed from the
   kernel's ACK of the link change (and, separately, from issuing it) to the end of
   ``engine.run``.  Verified by dumps after every step.  One namespace per size, all set up
   first; ``repeat`` cycles per size, the sizes alternated (rotated) from cycle to cycle.
   Reported per size: median, min and max over the cycles of down, up and total; the ratio
   largest/smallest size is taken on the medians (and, as before, on the bests).
   With (a), in the same namespace: the RIB load counted (``kernelsync_with_rib_s``: feed ->
   RIB -> kernel, and its ratios ``floor_pct_with_rib``, ``ratio_with_rib``); memory per route
   (``rss_bytes_per_route``: RSS after the install, the engine alive, minus RSS before the
   engine was made, both after a collection and glibc's ``malloc_trim``); and restart
   adoption (:func:`adopt_kernelsync`): once the first engine is dropped, a second one with
   the same RIB starts on the installed kernel: its writes (must be 0), its time (start + runs
   until nothing is due) next to :func:`raw_dump_routes` of the same routes, and its own RSS
   per route (the observed map then comes from the kernel's dump: a running daemon's state).
   ``--memory-profile``: one more install under tracemalloc (:func:`memory_profile`): bytes
   per route by allocation site and by structure (:func:`memory_breakdown`); slow at 1M
   routes (about 10 minutes), not a speed figure.
3. The table case (``--mix full`` and/or ``--withdraw``, instead of 1 and 2; :func:`table_main`):
   a mixed table (:func:`mixed_table`: ``-n`` IPv4 prefixes /8-/24, mostly /24, and ``-n``/5
   IPv6 ones /16-/48, mostly /48, on ``--mix-groups`` groups, IPv6 routes on IPv6 groups) or the
   /32s, installed by the same three methods in rotated rounds (:class:`RawTableWriter` for any
   family and length); with ``--withdraw`` each then deletes its whole table: kernelsync by
   withdrawing every prefix from the RIB (as a BGP peer's flush does) and running the engine,
   the raw writer by RTM_DELROUTE in the same chunks, ``ip -batch`` by ``route del`` lines.
   Figures (seconds, routes/s, per-round ratios, RIB work counted or not) in a table and under
   the JSON key ``table``.
4. ``net.ipv4.nexthop_compat_mode`` is set to 0 in every bench namespace (per namespace; with 1
   a group replace costs O(routes)); one extra flap at the largest size is measured with 1.

Output: readable lines, then one ``BENCH_JSON {...}`` line with every figure.  The keys of
earlier versions keep their meaning: ``install.kernelsync_s``, ``install.ip_batch_s``,
``install.ratio`` (and the other ``install.kernelsync_*``), ``install.met``,
``flap.sizes[].down_ms/up_ms/total_ms/...``, ``flap.ratio`` and ``flap.met`` are the *best*
run or cycle.  New: ``install.raw_writer_*`` (best), ``install.median`` / ``install.range``
(``[min, max]``) per figure, ``install.rounds`` (order and per-round figures and ratios),
``install.floor_pct``, ``install.met_median``, ``flap.sizes[].median`` / ``.range``,
``flap.ratio_median``, ``flap.met_median``; ``install.median``/``range`` of
``kernelsync_with_rib_s``, ``floor_pct_with_rib``, ``ratio_with_rib``, ``rss_bytes_per_route``,
``adopt_*``, ``raw_dump_s``; ``memory`` (bytes per route, target 300), ``adoption`` (writes
per round, times, target 1.5x the raw dump), ``memory_profile`` (with ``--memory-profile``).  ``ok`` is false (exit status 1) if any
verification failed; on an exception ``error`` holds it and the status is 1.
"""
from __future__ import annotations

import ctypes
import ipaddress
import gc
import json
import logging
import os
import resource
import select
import signal
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import time
import traceback
from typing import Callable, Dict, List, Optional, Sequence, Tuple

from ..config import Config
from ..core.engine import Engine, KernelConfig
from ..core.model import AF_INET, AF_INET6, KNexthop, NexthopSpec, Path
from ..daemon import Daemon
from ..kernel import codec as uapi
from ..kernel.codec import NLMSG_ERROR, NLMSGHDR, encode_link_admin, parse_error
from ..kernel.netlink import RtNetlink
from .netns import setns

TABLE = 100
PROTOCOL = 200
METRIC = 20
ID_RANGE = (100_000_000, 100_999_999)
IP_BATCH_NH_BASE = 1000  # ids of the ip -batch baseline's own nexthop objects
RAW_NH_BASE = 2000  # ids of the raw writer's own nexthop objects
GROUP_OFFSET = 500  # a baseline's group g is BASE + GROUP_OFFSET + g; its members BASE + 2g + 1, + 2
ROUTE_BASE = 0x0A000001  # 10.0.0.1, then upwards
DEV_A, PEER_A, DEV_B, PEER_B = "ksa0", "ksa1", "ksb0", "ksb1"
NET_A, NET_B = "10.255.0", "10.255.1"
VERIFY_DELAY = 0.3
INSTALL_TARGET = 3.0
REPAIR_TARGET = 2.0
MEMORY_TARGET = 300  # bytes per route (issue 14)
ADOPT_TARGET = 1.5  # restart adoption within 1.5x a raw dump of the same routes (issue 14)
METHODS = ("kernelsync", "raw_writer", "ip_batch")
LABEL = {"kernelsync": "kernelsync", "raw_writer": "raw writer", "ip_batch": "ip -batch"}

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


def check_groups(nl: RtNetlink, group_ids: Sequence[int], members: int = 2) -> Tuple[bool, str]:
    """Every group in ``group_ids`` is there with ``members`` members."""
    have = nl.dump_nexthops()
    bad = [("%d missing" % g) if g not in have else have[g].describe()
           for g in group_ids if g not in have or len(have[g].group) != members]
    if bad:
        return False, "groups without %d members: %s" % (members, bad)
    return True, "%d groups x %d members" % (len(group_ids), members)


def spread(values: Sequence[float]) -> Dict[str, float]:
    """Median, min and max."""
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


# 1. install ---------------------------------------------------------------------------------
def collect() -> None:
    """Free what a dropped engine held: ``engine.run`` freezes whatever survives it
    (``gc.freeze``), and a discarded engine's state holds reference cycles (a group and its
    members), which frozen objects never have collected: the RIB and FIB of every earlier
    round would stay in memory (measured: 200,000 routes, 65 MiB kept per dropped engine).
    Unfrozen, then collected; the next ``engine.run`` freezes again."""
    gc.unfreeze()
    gc.collect()


def rss_bytes() -> int:
    """The process's resident set size now (``/proc/self/statm``, second field), in bytes,
    after a garbage collection and glibc's ``malloc_trim(0)`` (free heap pages given back, so
    that memory freed by an earlier phase does not hide what the next one takes)."""
    collect()
    try:
        ctypes.CDLL(None).malloc_trim(0)
    except (OSError, AttributeError):  # not glibc
        pass
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def raw_dump_routes() -> Tuple[int, float]:
    """The kernel's floor for reading our routes back: one RTM_GETROUTE dump of IPv4 (all
    tables, no filter), every message walked by its header only and counted if it is in
    ``TABLE`` with ``PROTOCOL``; nothing decoded beyond that.  Opened in the caller's
    namespace.  Returns (routes counted, seconds from the request to NLMSG_DONE)."""
    sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC, uapi.NETLINK_ROUTE)
    try:
        sock.setsockopt(socket.SOL_SOCKET, uapi.SO_RCVBUFFORCE, 4 << 20)
        sock.bind((0, 0))
        # nlmsghdr + rtmsg (family AF_INET, everything else 0: all tables)
        req = _RAW_HDR.pack(16 + 12, uapi.RTM_GETROUTE, uapi.NLM_F_REQUEST | uapi.NLM_F_DUMP, 1, 0) + \
            struct.pack("=BBBBBBBBI", AF_INET, 0, 0, 0, 0, 0, 0, 0, 0)
        buf = bytearray(1 << 20)
        unpack = _RAW_HDR.unpack_from
        newroute, done_type, error_type = uapi.RTM_NEWROUTE, uapi.NLMSG_DONE, uapi.NLMSG_ERROR
        count = 0
        t0 = time.perf_counter()
        sock.send(req)
        while True:
            got = sock.recv_into(buf)
            off = 0
            while off + 16 <= got:
                length, mtype, _flags, _seq, _pid = unpack(buf, off)
                if mtype == done_type:
                    return count, time.perf_counter() - t0
                if mtype == error_type:
                    raise OSError(-_RAW_ERR.unpack_from(buf, off + 16)[0], "raw route dump refused")
                # rtmsg: family, dst_len, src_len, tos, table, protocol (bytes 16..21)
                if mtype == newroute and buf[off + 20] == TABLE and buf[off + 21] == PROTOCOL:
                    count += 1
                off += (length + 3) & ~3
    finally:
        sock.close()


def run_until_idle(engine: Engine, now: float, limit: int = 5):
    """``engine.run`` at ``now``, then again while something is due (at most ``limit`` runs in
    all): ``(the first run's plan, how many runs)``."""
    plan = engine.run(now)
    runs = 1
    while runs < limit:
        due = engine.deadline()
        now = time.monotonic()
        if due is None or due > now:
            break
        engine.run(now)
        runs += 1
    return plan, runs


def adopt_kernelsync(nss: Namespaces, ns: str, n: int, groups: int) -> dict:
    """Restart adoption: a second Engine on ``ns``, whose kernel already holds the ``n`` routes
    (and groups) a first engine installed, given the same RIB: its ``engine.start`` + the
    ``engine.run`` calls until nothing is due (the full dump, adoption and diff) must write
    nothing.  Timed next to :func:`raw_dump_routes` of the same routes (run just before), as
    is the RIB load (the feed's re-delivery, separately)."""
    raw_routes, raw_s = nss.open_in(ns, raw_dump_routes)
    kernel = nss.open_in(ns, lambda: RtNetlink(PROTOCOL))
    try:
        timer = TimedKernel(kernel)
        rss0 = rss_bytes()
        engine = Engine(kcfg(), kernel)
        t0 = time.perf_counter()
        load_rib(engine, n, groups)
        t1 = time.perf_counter()
        now = time.monotonic()
        engine.start(now)
        _plan, runs = run_until_idle(engine, now)
        t2 = time.perf_counter()
        state = engine.state
        rss1 = rss_bytes()
        del engine
        ok, detail = check_routes(kernel, n, set(our_groups(kernel)))
    finally:
        kernel.close()
    collect()
    result = {"adopt_s": t2 - t1, "rib_load_s": t1 - t0, "writes": timer.ops, "runs": runs, "state": state,
              "raw_dump_s": raw_s, "raw_dump_routes": raw_routes,
              "vs_raw_dump": (t2 - t1) / raw_s if raw_s > 0 else float("inf"),
              "with_rib_load_s": t2 - t0, "rss_bytes_per_route": (rss1 - rss0) / n}
    if raw_routes != n:
        ok, detail = False, detail + "; raw dump counted %d routes" % raw_routes
    if timer.ops or state != "SYNCED":
        ok, detail = False, detail + "; adoption wrote %d messages, state %s" % (timer.ops, state)
    result["ok"], result["verify"] = ok, detail
    return result


def install_kernelsync(nss: Namespaces, n: int, groups: int) -> dict:
    """Install by kernelsync (see the module docstring), memory per route (RSS after the
    install, the engine alive, minus RSS before the engine was made: ``rss_bytes_per_route``),
    then :func:`adopt_kernelsync` on the same namespace once the first engine is gone."""
    ns = nss.create()
    try:
        kernel = nss.open_in(ns, lambda: RtNetlink(PROTOCOL))
        try:
            timer = TimedKernel(kernel)
            rss0 = rss_bytes()
            engine = Engine(kcfg(), kernel)
            t0 = time.perf_counter()
            load_rib(engine, n, groups)
            t1 = time.perf_counter()
            now = time.monotonic()
            engine.start(now)
            t2 = time.perf_counter()
            plan, runs = run_until_idle(engine, now)
            t3 = time.perf_counter()
            plan_ops_last = len(plan.ops)
            del plan  # its op list is not state the engine keeps
            rss1 = rss_bytes()
            ok, detail = check_routes(kernel, n, set(our_groups(kernel)))
            groups_seen = our_groups(kernel)
            if len(groups_seen) != groups or any(len(o.group) != 2 for o in groups_seen.values()):
                ok, detail = False, detail + "; groups: %s" % [o.describe() for o in groups_seen.values()]
            result = {"ns": ns, "rib_load_s": t1 - t0, "start_s": t2 - t1, "apply_s": t3 - t2,
                      "netlink_s": timer.seconds, "ops": timer.ops, "runs": runs,
                      "plan_ops_last": plan_ops_last, "sends": kernel.stats.sends,
                      "ok": ok, "verify": detail,
                      "rss_before_mib": rss0 / 2**20, "rss_after_mib": rss1 / 2**20,
                      "rss_bytes_per_route": (rss1 - rss0) / n}
            result["total_s"] = result["start_s"] + result["apply_s"]
            result["with_rib_s"] = result["rib_load_s"] + result["total_s"]
            del engine
        finally:
            kernel.close()
        collect()
        adoption = adopt_kernelsync(nss, ns, n, groups)
        result["adoption"] = adoption
        result["ok"] = result["ok"] and adoption["ok"]
        if not adoption["ok"]:
            result["verify"] += "; adoption: " + adoption["verify"]
    finally:
        nss.delete(ns)
        collect()
    return result


# the raw writer's own message layouts (host byte order, as the kernel's uapi structs)
_RAW_HDR = struct.Struct("=IHHII")  # nlmsghdr: len, type, flags, seq, pid
_RAW_ERR = struct.Struct("=i")  # nlmsgerr.error
# nlmsghdr, rtmsg, RTA_TABLE u32, RTA_DST 4 bytes, RTA_PRIORITY u32, RTA_NH_ID u32
_RAW_ROUTE = struct.Struct("=IHHII BBBBBBBBI HHI HH4s HHI HHI")
# nlmsghdr, nhmsg, NHA_ID u32, NHA_OIF u32, NHA_GATEWAY 4 bytes
_RAW_NH = struct.Struct("=IHHII BBBBI HHI HHI HH4s")
# nlmsghdr, nhmsg, NHA_ID u32, NHA_GROUP of two struct nexthop_grp {u32 id; u8 weight-1; u8; u16}
_RAW_GROUP = struct.Struct("=IHHII BBBBI HHI HH IBBH IBBH")
RAW_CHUNK = 4096  # route messages per send(): 4096 x 60 bytes, about kernelsync's 256 KiB chunk
_RAW_ADD = uapi.NLM_F_REQUEST | uapi.NLM_F_CREATE | uapi.NLM_F_EXCL


class RawWriter:
    """The kernel's floor: a minimal struct-packed rtnetlink writer, independent of kernelsync's
    engine and encoder (its own layouts above; only uapi numbers from :mod:`..kernel.codec`).
    Many messages per ``send()``, NLM_F_ACK on the last one, one ACK wait per chunk; refused
    messages are answered by the kernel with an NLMSG_ERROR each and counted."""

    def __init__(self) -> None:
        sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC, uapi.NETLINK_ROUTE)
        sock.setsockopt(socket.SOL_SOCKET, uapi.SO_SNDBUFFORCE, 4 << 20)  # a 240 KiB message fits
        sock.setsockopt(socket.SOL_SOCKET, uapi.SO_RCVBUFFORCE, 64 << 20)  # room for many refusals
        sock.setsockopt(uapi.SOL_NETLINK, uapi.NETLINK_CAP_ACK, 1)  # errors without the request
        sock.bind((0, 0))
        self.sock = sock
        self.buf = bytearray(1 << 16)
        self.seq = 0
        self.sends = 0
        self.send_s = 0.0  # inside send() and the ACK wait: the kernel's work
        self.refused: List[Tuple[int, int]] = []  # (seq, errno)

    def close(self) -> None:
        self.sock.close()

    def _send(self, data, first: int, last: int) -> None:
        t = time.perf_counter()
        self.sock.send(data)
        buf, unpack, err_at = self.buf, _RAW_HDR.unpack_from, _RAW_ERR.unpack_from
        done = False
        while not done:
            got = self.sock.recv_into(buf)
            off = 0
            while off + 16 <= got:
                length, mtype, _flags, seq, _pid = unpack(buf, off)
                if length < 16:
                    break
                if mtype == uapi.NLMSG_ERROR and first <= seq <= last:
                    err = -err_at(buf, off + 16)[0]
                    if err:
                        self.refused.append((seq, err))
                    if seq == last:
                        done = True
                off += (length + 3) & ~3
        self.send_s += time.perf_counter() - t
        self.sends += 1

    def write_nexthops(self, members: Sequence[Tuple[int, int, bytes]], groups: Sequence[Tuple[int, int, int]]) -> None:
        """``members``: (id, ifindex, IPv4 gateway); ``groups``: (id, member id, member id);
        all in one ``send()``, members first."""
        parts = []
        seq = self.seq
        for nh_id, oif, gw in members:
            seq += 1
            parts.append(_RAW_NH.pack(_RAW_NH.size, uapi.RTM_NEWNEXTHOP, _RAW_ADD, seq, 0,
                                      AF_INET, 0, PROTOCOL, 0, 0,
                                      8, uapi.NHA_ID, nh_id, 8, uapi.NHA_OIF, oif, 8, uapi.NHA_GATEWAY, gw))
        for gid, a, b in groups:
            seq += 1
            parts.append(_RAW_GROUP.pack(_RAW_GROUP.size, uapi.RTM_NEWNEXTHOP, _RAW_ADD, seq, 0,
                                         0, 0, PROTOCOL, 0, 0,
                                         8, uapi.NHA_ID, gid, 4 + 16, uapi.NHA_GROUP, a, 0, 0, 0, b, 0, 0, 0))
        data = bytearray(b"".join(parts))
        last_off = len(data) - len(parts[-1])
        _RAW_HDR.pack_into(data, last_off, len(parts[-1]), uapi.RTM_NEWNEXTHOP, _RAW_ADD | uapi.NLM_F_ACK, seq, 0)
        first, self.seq = self.seq + 1, seq
        self._send(data, first, seq)

    def write_routes(self, dsts: Sequence[bytes], nh_ids: Sequence[int]) -> None:
        """RTM_NEWROUTE of ``dsts[i]``/32 on nexthop ``nh_ids[i % len(nh_ids)]``."""
        n, k = len(dsts), len(nh_ids)
        size = _RAW_ROUTE.size
        pack_into = _RAW_ROUTE.pack_into
        buf = bytearray(RAW_CHUNK * size)
        route, table_msg = uapi.RTM_NEWROUTE, TABLE if TABLE < 256 else uapi.RT_TABLE_COMPAT
        rta_table, rta_dst, rta_prio, rta_nh = uapi.RTA_TABLE, uapi.RTA_DST, uapi.RTA_PRIORITY, uapi.RTA_NH_ID
        unicast = uapi.RTN_UNICAST
        base = self.seq + 1
        for start in range(0, n, RAW_CHUNK):
            end = min(n, start + RAW_CHUNK)
            off = 0
            for i in range(start, end):
                pack_into(buf, off, size, route, _RAW_ADD, base + i, 0,
                          AF_INET, 32, 0, 0, table_msg, PROTOCOL, 0, unicast, 0,
                          8, rta_table, TABLE, 8, rta_dst, dsts[i], 8, rta_prio, METRIC, 8, rta_nh, nh_ids[i % k])
                off += size
            # NLM_F_ACK on the chunk's last message only (flags: bytes 6-7 of its header)
            struct.pack_into("=H", buf, off - size + 6, _RAW_ADD | uapi.NLM_F_ACK)
            self._send(memoryview(buf)[:off], base + start, base + end - 1)
        self.seq = base + n - 1


def install_raw_writer(nss: Namespaces, n: int, groups: int) -> dict:
    ns = nss.create()
    try:
        ifa, ifb = nss.open_in(ns, lambda: (socket.if_nametoindex(DEV_A), socket.if_nametoindex(DEV_B)))
        members, grps = [], []
        for g in range(groups):
            ga, gb = gateways(g)
            a, b = RAW_NH_BASE + 2 * g + 1, RAW_NH_BASE + 2 * g + 2
            members += [(a, ifa, socket.inet_aton(ga)), (b, ifb, socket.inet_aton(gb))]
            grps.append((RAW_NH_BASE + GROUP_OFFSET + g, a, b))
        gids = [gid for gid, _a, _b in grps]
        dsts = route_dsts(n)
        writer = nss.open_in(ns, RawWriter)
        try:
            t0 = time.perf_counter()
            writer.write_nexthops(members, grps)
            t1 = time.perf_counter()
            writer.write_routes(dsts, gids)
            t2 = time.perf_counter()
        finally:
            writer.close()
        del dsts
        nl = nss.open_in(ns, lambda: RtNetlink(PROTOCOL))
        try:
            ok, detail = check_routes(nl, n, set(gids))
            ok_g, detail_g = check_groups(nl, gids)
        finally:
            nl.close()
        if writer.refused:
            ok, detail = False, detail + "; %d messages refused, first (seq, errno): %s" % (
                len(writer.refused), writer.refused[:3])
        return {"ns": ns, "total_s": t2 - t0, "nexthops_s": t1 - t0, "routes_s": t2 - t1,
                "send_s": writer.send_s, "sends": writer.sends, "refused": len(writer.refused),
                "ok": ok and ok_g, "verify": detail + "; " + detail_g}
    finally:
        nss.delete(ns)
        collect()


def install_ip_batch(nss: Namespaces, n: int, groups: int, workdir: str) -> dict:
    ns = nss.create()
    try:
        setup = []
        for g in range(groups):
            ga, gb = gateways(g)
            a, b = IP_BATCH_NH_BASE + 2 * g + 1, IP_BATCH_NH_BASE + 2 * g + 2
            gid = IP_BATCH_NH_BASE + GROUP_OFFSET + g
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
                    IP_BATCH_NH_BASE + GROUP_OFFSET + i % groups, TABLE, PROTOCOL, METRIC))
        try:
            t0 = time.perf_counter()
            proc = subprocess.run(["ip", "-n", ns, "-batch", path], capture_output=True, text=True)
            t1 = time.perf_counter()
        finally:
            os.unlink(path)
        if proc.returncode != 0:
            raise RuntimeError("ip -batch failed: %s" % proc.stderr.strip()[:500])
        nl = nss.open_in(ns, lambda: RtNetlink(PROTOCOL))
        try:
            gids = [IP_BATCH_NH_BASE + GROUP_OFFSET + g for g in range(groups)]
            ok, detail = check_routes(nl, n, set(gids))
            ok_g, detail_g = check_groups(nl, gids)
        finally:
            nl.close()
        return {"ns": ns, "total_s": t1 - t0, "ok": ok and ok_g, "verify": detail + "; " + detail_g}
    finally:
        nss.delete(ns)
        collect()


def alternate(runners: Dict[str, Callable[[], dict]], repeat: int, runs: Dict[str, List[dict]]):
    """``repeat`` rounds of the :data:`METHODS`, the order rotated between rounds (round 1: a b
    c, round 2: b c a, ...): yields ``(round index, order, {method: its result})``, each result
    also appended to ``runs[method]``."""
    for r in range(repeat):
        order = METHODS[r % len(METHODS):] + METHODS[:r % len(METHODS)]
        got = {}
        for m in order:
            got[m] = runners[m]()
            runs[m].append(got[m])
        yield r, order, got


def run_install(nss: Namespaces, n: int, groups: int, repeat: int, workdir: str) -> dict:
    """``repeat`` rounds of the three methods, the order rotated between rounds; prints one
    line per round.  Returns every run and the per-round ratios."""
    runners: Dict[str, Callable[[], dict]] = {
        "kernelsync": lambda: install_kernelsync(nss, n, groups),
        "raw_writer": lambda: install_raw_writer(nss, n, groups),
        "ip_batch": lambda: install_ip_batch(nss, n, groups, workdir),
    }
    runs: Dict[str, List[dict]] = {m: [] for m in METHODS}
    rounds = []
    for r, order, got in alternate(runners, repeat, runs):
        ks, raw, ip = got["kernelsync"], got["raw_writer"], got["ip_batch"]
        rnd = {"order": list(order),
               "kernelsync_s": ks["total_s"], "raw_writer_s": raw["total_s"], "ip_batch_s": ip["total_s"],
               "ratio": ip["total_s"] / ks["total_s"], "floor_pct": 100.0 * raw["total_s"] / ks["total_s"],
               "kernelsync_with_rib_s": ks["with_rib_s"],
               "ratio_with_rib": ip["total_s"] / ks["with_rib_s"],
               "floor_pct_with_rib": 100.0 * raw["total_s"] / ks["with_rib_s"],
               "ok": ks["ok"] and raw["ok"] and ip["ok"]}
        rounds.append(rnd)
        status = {m: "ok" if got[m]["ok"] else "FAIL: " + got[m]["verify"] for m in METHODS}
        print("  round %d (%s): kernelsync %.3f s (engine.run %.3f s, netlink %.3f s, %d ops in %d sends; "
              "rib load %.3f s) [%s] | raw writer %.3f s (send+ACK %.3f s, %d sends) [%s] | ip -batch %.3f s [%s] "
              "| %.0f%% of the floor, %.2fx ip -batch" % (
                  r + 1, ", ".join(LABEL[m] for m in order), ks["total_s"], ks["apply_s"], ks["netlink_s"],
                  ks["ops"], ks["sends"], ks["rib_load_s"], status["kernelsync"], raw["total_s"], raw["send_s"],
                  raw["sends"], status["raw_writer"], ip["total_s"], status["ip_batch"], rnd["floor_pct"],
                  rnd["ratio"]))
        ad = ks["adoption"]
        print("    RIB load counted (feed -> RIB -> kernel): kernelsync %.3f s, %.0f%% of the floor, %.2fx ip -batch | "
              "memory %.0f B/route (RSS %.0f -> %.0f MiB) | restart adoption: %d writes, %s, %.3f s (RIB load %.3f s "
              "more) vs raw dump %.3f s (%d routes): %.2fx [%s]" % (
                  ks["with_rib_s"], rnd["floor_pct_with_rib"], rnd["ratio_with_rib"], ks["rss_bytes_per_route"],
                  ks["rss_before_mib"], ks["rss_after_mib"], ad["writes"], ad["state"], ad["adopt_s"], ad["rib_load_s"],
                  ad["raw_dump_s"], ad["raw_dump_routes"], ad["vs_raw_dump"], "ok" if ad["ok"] else "FAIL: " + ad["verify"]))
        sys.stdout.flush()
    return {"runs": runs, "rounds": rounds}


# memory profile -----------------------------------------------------------------------------
def _alloc_size(obj) -> int:
    """Bytes ``obj`` takes from the allocator: ``sys.getsizeof`` (the GC header included)
    rounded up to pymalloc's 16-byte size classes (objects up to 512 bytes)."""
    size = sys.getsizeof(obj)
    return (size + 15) & ~15 if size <= 512 else size


def memory_breakdown(engine: Engine) -> List[Tuple[str, int, int]]:
    """Where an engine's per-route bytes are: ``[(structure, bytes, objects), ...]``, largest
    first.  Each object is counted once, under the first structure (in the order below) that
    reaches it; an object shared by many routes (a paths tuple, a candidates tuple, a nexthop
    id int) is counted once.  Sizes by :func:`_alloc_size` (hash tables as allocated)."""
    seen: set = set()
    out: List[Tuple[str, int, int]] = []

    def add(name: str, objs) -> None:
        total = count = 0
        for o in objs:
            if id(o) in seen:
                continue
            seen.add(id(o))
            total += _alloc_size(o)
            count += 1
        out.append((name, total, count))

    rib, fib, nhm = engine.rib, engine.fib, engine.nhm
    add("rib.entries: the dict's table", [rib.entries])
    add("rib: Prefix tuples (family, dst, plen)", rib.entries.keys())
    add("rib: dst bytes of the Prefixes", (p[1] for p in rib.entries))
    add("rib: per-prefix entries ((source, paths), ...) (single-source ones shared)",
        (o for e in rib.entries.values() for o in (e, *e)))
    add("rib: paths tuples, Path, NexthopSpec (shared)",
        (o for e in rib.entries.values() for _source, paths in e
         for o in (paths, *paths, *(x for path in paths for x in (path, *path.nexthops))) if o is not None))
    add("fib.routes: the dict's table", [fib.routes])
    add("fib.routes: RouteKey tuples (table, family, dst, plen, metric)", fib.routes.keys())
    add("fib.routes: dst bytes not shared with the RIB", (k[2] for k in fib.routes))
    add("fib.routes: nexthop id ints", fib.routes.values())
    add("fib._cands: the dict's table", [fib._cands])
    add("fib._cands: candidates tuples (shared)", (o for c in fib._cands.values() for o in (c, *c)))
    add("nhm: users sets of nexthops and groups", (e.users for e in nhm.by_id.values()))
    add("engine.observed_routes: the dict's table", [engine.observed_routes])
    add("engine.observed_routes: RouteKey tuples not shared with fib.routes", engine.observed_routes.keys())
    add("engine.observed_routes: dst bytes not shared", (k[2] for k in engine.observed_routes))
    add("engine.observed_routes: nexthop id ints not shared", engine.observed_routes.values())
    add("engine._by_nh: RouteKey sets per nexthop id", engine._by_nh.values())
    add("engine.observed_scopes, fib.route_hints, dirty sets, nhm caches",
        [engine.observed_scopes, fib.route_hints, rib.dirty, engine.dirty, nhm._set_cache, fib.starved])
    out.sort(key=lambda x: -x[1])
    return out


def memory_profile(nss: Namespaces, n: int, groups: int, top: int = 12) -> dict:
    """One kernelsync install of ``n`` routes with ``tracemalloc`` on (started before the RIB
    load; one frame per trace), then a full sync (dump + diff: the observed map is then built
    from the kernel's dump, the steady state of a running daemon).  After each: the traced
    total per route, the top allocation sites (file:line) and :func:`memory_breakdown`.
    Slower than an untraced install: not a speed figure (RSS per route: the install rounds)."""
    import tracemalloc
    ns = nss.create()
    out: dict = {"routes": n}
    try:
        kernel = nss.open_in(ns, lambda: RtNetlink(PROTOCOL))
        try:
            collect()
            tracemalloc.start(1)
            try:
                engine = Engine(kcfg(), kernel)
                load_rib(engine, n, groups)
                now = time.monotonic()
                engine.start(now)
                engine.run(now)
                for phase in ("after install", "after a full sync"):
                    if phase == "after a full sync":
                        engine.request_full_sync()
                        engine.run(time.monotonic())
                    collect()
                    snap = tracemalloc.take_snapshot().filter_traces(
                        [tracemalloc.Filter(False, tracemalloc.__file__)])
                    traced = sum(st.size for st in snap.statistics("filename"))
                    sites = [{"site": "%s:%d" % (st.traceback[0].filename.split("/kernelsync/")[-1],
                                                 st.traceback[0].lineno),
                              "bytes_per_route": st.size / n, "blocks": st.count}
                             for st in snap.statistics("lineno")[:top]]
                    del snap
                    parts = [{"structure": name, "bytes_per_route": size / n, "objects": count}
                             for name, size, count in memory_breakdown(engine)]
                    out[phase.replace(" ", "_")] = {
                        "traced_bytes_per_route": traced / n, "sites": sites, "breakdown": parts,
                        "breakdown_bytes_per_route": sum(p["bytes_per_route"] for p in parts)}
                tracemalloc.stop()
                ok, detail = check_routes(kernel, n)
                out["ok"], out["verify"] = ok, detail
                del engine
            finally:
                if tracemalloc.is_tracing():
                    tracemalloc.stop()
        finally:
            kernel.close()
    finally:
        nss.delete(ns)
        collect()
    return out


def print_memory_profile(prof: dict) -> None:
    for phase in ("after_install", "after_a_full_sync"):
        p = prof[phase]
        print("memory profile, %d routes, %s: traced by tracemalloc %.0f B/route (everything allocated since "
              "before the RIB load and still alive), state walked %.0f B/route" % (
                  prof["routes"], phase.replace("_", " "), p["traced_bytes_per_route"],
                  p["breakdown_bytes_per_route"]))
        print("  by structure (each object once, first structure that reaches it):")
        for part in p["breakdown"]:
            if part["bytes_per_route"] >= 0.5:
                print("    %7.1f B/route  %-70s %d objects" % (part["bytes_per_route"], part["structure"],
                                                               part["objects"]))
        print("  top allocation sites (tracemalloc, file:line):")
        for site in p["sites"]:
            print("    %7.1f B/route  %s (%d blocks)" % (site["bytes_per_route"], site["site"], site["blocks"]))


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
        self.index = {name: l.index for name, l in self.engine.links.by_name.items()}
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


FLAP_FIGURES: Tuple[Tuple[str, Callable[[dict], float]], ...] = (
    ("down_ms", lambda c: c["down"]["repair_ms"]),
    ("up_ms", lambda c: c["up"]["repair_ms"]),
    ("total_ms", lambda c: c["total_ms"]),
    ("down_from_issue_ms", lambda c: c["down"]["from_issue_ms"]),
    ("up_from_issue_ms", lambda c: c["up"]["from_issue_ms"]),
    ("total_from_issue_ms", lambda c: c["total_from_issue_ms"]),
    ("kernel_down_ms", lambda c: c["down"]["kernel_link_ms"]),
    ("kernel_up_ms", lambda c: c["up"]["kernel_link_ms"]),
)


def run_flaps(nss: Namespaces, sizes: List[int], groups: int, repeat: int) -> List[dict]:
    """One rig per size (all set up first), ``repeat`` flap cycles each, the sizes rotated from
    cycle to cycle; then one extra cycle with nexthop_compat_mode=1 at the largest size."""
    rigs: List[FlapRig] = []
    try:
        for size in sizes:
            rigs.append(FlapRig(nss, size, groups))
        cycles: List[List[dict]] = [[] for _ in rigs]
        order_log = []
        idx = list(range(len(rigs)))
        for c in range(max(1, repeat)):
            order = idx[c % len(idx):] + idx[:c % len(idx)]
            order_log.append([sizes[i] for i in order])
            for i in order:
                cycles[i].append(rigs[i].flap())
        out = []
        for rig, cyc in zip(rigs, cycles):
            values = {k: [f(c) for c in cyc] for k, f in FLAP_FIGURES}
            out.append({"routes": rig.n, "ns": rig.ns, "install_s": rig.install_s, "cycles": cyc,
                        "best": {k: min(v) for k, v in values.items()},
                        "median": {k: statistics.median(v) for k, v in values.items()},
                        "range": {k: [min(v), max(v)] for k, v in values.items()},
                        "ok": all(c["ok"] for c in cyc), "verify_full_sync_s": list(rig.verifies),
                        "order": order_log})
        big = max(range(len(rigs)), key=lambda i: sizes[i])
        set_compat_mode(rigs[big].ns, 1)
        try:
            out[big]["compat1"] = rigs[big].flap()
        finally:
            set_compat_mode(rigs[big].ns, 0)
        return out
    finally:
        for rig in rigs:
            rig.close()
        collect()


# output -------------------------------------------------------------------------------------
def _rate(n: int, seconds: float) -> str:
    return "{:,.0f}".format(n / seconds) if seconds > 0 else "inf"


def _maxrss_mib(who: int) -> float:
    return resource.getrusage(who).ru_maxrss / 1024.0


def _mr(s: Dict[str, float], fmt: str = "%.3f", unit: str = "") -> str:
    """``median [min-max]``."""
    u = unit.replace("%", "%%")
    return (fmt + u + " [" + fmt + "-" + fmt + u + "]") % (s["median"], s["min"], s["max"])


def _mr_rate(s: Dict[str, float]) -> str:
    return "{:,.0f} [{:,.0f}-{:,.0f}]".format(s["median"], s["min"], s["max"])


def _on_sigterm(_signum, _frame) -> None:
    raise SystemExit(143)  # unwinds through the finally that deletes the namespaces


def main(args) -> int:
    n = int(args.routes)
    groups = int(args.groups)
    repeat = max(1, int(args.repeat))
    flap_sizes = [int(s) for s in str(args.flap_sizes).replace(" ", "").split(",") if s]
    if (getattr(args, "mix", "none") or "none") != "none" or getattr(args, "withdraw", False):
        return table_main(args)  # the table case (section 3) instead of install + flap
    if os.geteuid() != 0:
        print("kernelsync bench needs root (network namespaces)", file=sys.stderr)
        return 2
    if not 1 <= groups <= 250 or n < 1 or n > 16_000_000 or any(s < 1 for s in flap_sizes):
        print("bench: --groups must be 1..250, --routes 1..16000000, --flap-sizes positive", file=sys.stderr)
        return 2
    # the engine logs every batch at INFO: keep the figures readable
    ks_log = logging.getLogger("kernelsync")
    if ks_log.getEffectiveLevel() > logging.DEBUG:
        ks_log.setLevel(logging.WARNING)
    report: dict = {"routes": n, "groups": groups, "repeat": repeat, "table": TABLE, "protocol": PROTOCOL,
                    "kernel": os.uname().release, "nexthop_compat_mode": 0}
    ok = True
    old_term = signal.signal(signal.SIGTERM, _on_sigterm)
    nss = Namespaces()
    try:
        print("kernelsync bench: %d IPv4 /32 routes over %d groups of 2 gateway members (veths %s, %s), "
              "table %d, protocol %d; %d round%s, kernelsync / raw writer / ip -batch in rotated order, each "
              "in a fresh namespace; median [min-max]" % (n, groups, DEV_A, DEV_B, TABLE, PROTOCOL, repeat,
                                                          "" if repeat == 1 else "s"))
        print("namespaces ksbench-%d-*: net.ipv4.nexthop_compat_mode=0 set in each (per-namespace sysctl; "
              "host value untouched)" % os.getpid())
        sys.stdout.flush()
        # 1. install ---------------------------------------------------------------------
        with tempfile.TemporaryDirectory(prefix="ksbench-") as workdir:
            inst = run_install(nss, n, groups, repeat, workdir)
        runs, rounds = inst["runs"], inst["rounds"]
        ks_runs, raw_runs, ip_runs = runs["kernelsync"], runs["raw_writer"], runs["ip_batch"]
        ok = ok and all(r["ok"] for r in rounds)
        per_run = {
            "kernelsync_s": [x["total_s"] for x in ks_runs],
            "kernelsync_routes_per_s": [n / x["total_s"] for x in ks_runs],
            "kernelsync_apply_s": [x["apply_s"] for x in ks_runs],
            "kernelsync_netlink_s": [x["netlink_s"] for x in ks_runs],
            "kernelsync_start_s": [x["start_s"] for x in ks_runs],
            "kernelsync_rib_load_s": [x["rib_load_s"] for x in ks_runs],
            "raw_writer_s": [x["total_s"] for x in raw_runs],
            "raw_writer_routes_per_s": [n / x["total_s"] for x in raw_runs],
            "raw_writer_send_s": [x["send_s"] for x in raw_runs],
            "raw_writer_nexthops_s": [x["nexthops_s"] for x in raw_runs],
            "ip_batch_s": [x["total_s"] for x in ip_runs],
            "ip_batch_routes_per_s": [n / x["total_s"] for x in ip_runs],
            "ratio": [r["ratio"] for r in rounds],
            "floor_pct": [r["floor_pct"] for r in rounds],
            # feed -> RIB -> kernel: the RIB load counted
            "kernelsync_with_rib_s": [x["with_rib_s"] for x in ks_runs],
            "kernelsync_with_rib_routes_per_s": [n / x["with_rib_s"] for x in ks_runs],
            "ratio_with_rib": [r["ratio_with_rib"] for r in rounds],
            "floor_pct_with_rib": [r["floor_pct_with_rib"] for r in rounds],
            # memory: RSS after the install minus before the engine, per route
            "rss_bytes_per_route": [x["rss_bytes_per_route"] for x in ks_runs],
            # restart adoption by a second engine, next to a raw dump of the same routes
            "adopt_s": [x["adoption"]["adopt_s"] for x in ks_runs],
            "adopt_rib_load_s": [x["adoption"]["rib_load_s"] for x in ks_runs],
            "adopt_writes": [x["adoption"]["writes"] for x in ks_runs],
            "raw_dump_s": [x["adoption"]["raw_dump_s"] for x in ks_runs],
            "adopt_vs_raw_dump": [x["adoption"]["vs_raw_dump"] for x in ks_runs],
            "adopt_rss_bytes_per_route": [x["adoption"]["rss_bytes_per_route"] for x in ks_runs],
        }
        st = {k: spread(v) for k, v in per_run.items()}
        best_ks = min(ks_runs, key=lambda x: x["total_s"])
        best_raw = min(raw_runs, key=lambda x: x["total_s"])
        best_ip = min(ip_runs, key=lambda x: x["total_s"])
        ratio = best_ip["total_s"] / best_ks["total_s"]
        ratio_med = st["ratio"]["median"]
        rss_install = _maxrss_mib(resource.RUSAGE_SELF)
        rss_ip = _maxrss_mib(resource.RUSAGE_CHILDREN)
        print("install %d routes, median [min-max] of %d round%s:" % (n, repeat, "" if repeat == 1 else "s"))
        for key, what in (("kernelsync", "engine.start + engine.run"), ("raw_writer", "the kernel's floor"),
                          ("ip_batch", "wall clock, process start included")):
            print("  %-10s %s = %s routes/s  (%s)" % (LABEL[key], _mr(st[key + "_s"], unit=" s"),
                                                         _mr_rate(st[key + "_routes_per_s"]), what))
        print("  kernelsync at %s of the kernel's floor (kernelsync's routes/s as %% of the raw writer's, "
              "per round)" % _mr(st["floor_pct"], "%.0f", "%"))
        print("  kernelsync vs ip -batch: %s faster (per round) (target >= %gx) %s on the median" % (
            _mr(st["ratio"], "%.2f", "x"), INSTALL_TARGET, "MET" if ratio_med >= INSTALL_TARGET else "NOT MET"))
        print("  kernelsync detail: engine.run (RIB -> desired FIB -> plan -> netlink) %s; netlink writes "
              "(kernel.apply, bookkeeping of each chunk overlapped) %s; engine.start %s; "
              "RIB load (rib.update x %d, not in the figure) %s" % (
                  _mr(st["kernelsync_apply_s"], unit=" s"), _mr(st["kernelsync_netlink_s"], unit=" s"),
                  _mr(st["kernelsync_start_s"], "%.4f", " s"), n, _mr(st["kernelsync_rib_load_s"], unit=" s")))
        print("  raw writer detail: inside send() + ACK wait (the kernel's work) %s in %d sends of up to %d "
              "messages; nexthops + groups %s" % (
                  _mr(st["raw_writer_send_s"], unit=" s"), best_raw["sends"], RAW_CHUNK,
                  _mr({k: v * 1e3 for k, v in st["raw_writer_nexthops_s"].items()}, "%.2f", " ms")))
        print("  best of %d: kernelsync %.3f s = %s routes/s | raw writer %.3f s = %s routes/s | ip -batch %.3f s = "
              "%s routes/s | ratio of bests %.2fx, %.0f%% of the floor" % (
                  repeat, best_ks["total_s"], _rate(n, best_ks["total_s"]), best_raw["total_s"],
                  _rate(n, best_raw["total_s"]), best_ip["total_s"], _rate(n, best_ip["total_s"]), ratio,
                  100.0 * best_raw["total_s"] / best_ks["total_s"]))
        print("  RIB load counted (feed -> RIB -> kernel): kernelsync %s = %s routes/s; %s of the floor; %s faster "
              "than ip -batch (per round)" % (
                  _mr(st["kernelsync_with_rib_s"], unit=" s"), _mr_rate(st["kernelsync_with_rib_routes_per_s"]),
                  _mr(st["floor_pct_with_rib"], "%.0f", "%"), _mr(st["ratio_with_rib"], "%.2f", "x")))
        print("  memory: %s bytes/route (RSS after the install, engine alive, minus RSS before the engine); "
              "%s bytes/route after a restart adoption (the observed map read from the kernel's dump: a running "
              "daemon's state after its first verify) (target <= %d)" % (
                  _mr(st["rss_bytes_per_route"], "%.0f"), _mr(st["adopt_rss_bytes_per_route"], "%.0f"), MEMORY_TARGET))
        print("  restart adoption (a second engine on the installed namespace, same RIB): %s writes (must be 0); "
              "engine.start + runs until nothing is due %s vs a raw dump of the same routes %s: %s (target <= %gx); "
              "RIB load not counted %s" % (
                  _mr(st["adopt_writes"], "%.0f"), _mr(st["adopt_s"], unit=" s"), _mr(st["raw_dump_s"], unit=" s"),
                  _mr(st["adopt_vs_raw_dump"], "%.2f", "x"), ADOPT_TARGET, _mr(st["adopt_rib_load_s"], unit=" s")))
        print("  peak RSS: bench process %.0f MiB after install; largest child (ip) %.0f MiB" % (rss_install, rss_ip))
        sys.stdout.flush()
        strip = lambda xs: [{k: v for k, v in x.items() if k != "ns"} for x in xs]  # noqa: E731
        report["install"] = {
            # best run (as in earlier versions)
            "kernelsync_s": best_ks["total_s"], "kernelsync_routes_per_s": n / best_ks["total_s"],
            "kernelsync_apply_s": best_ks["apply_s"], "kernelsync_netlink_s": best_ks["netlink_s"],
            "kernelsync_start_s": best_ks["start_s"], "kernelsync_rib_load_s": best_ks["rib_load_s"],
            "ip_batch_s": best_ip["total_s"], "ip_batch_routes_per_s": n / best_ip["total_s"],
            "raw_writer_s": best_raw["total_s"], "raw_writer_routes_per_s": n / best_raw["total_s"],
            "raw_writer_send_s": best_raw["send_s"], "floor_pct": 100.0 * best_raw["total_s"] / best_ks["total_s"],
            "ratio": ratio, "target": INSTALL_TARGET, "met": ratio >= INSTALL_TARGET,
            # median and [min, max] over the rounds (ratio and floor_pct: computed per round)
            "median": {k: v["median"] for k, v in st.items()},
            "range": {k: [v["min"], v["max"]] for k, v in st.items()},
            "met_median": ratio_med >= INSTALL_TARGET,
            "rounds": rounds, "raw_chunk": RAW_CHUNK,
            "runs_kernelsync": strip(ks_runs), "runs_raw_writer": strip(raw_runs), "runs_ip_batch": strip(ip_runs),
            "peak_rss_mib": rss_install, "ip_peak_rss_mib": rss_ip,
        }
        report["memory"] = {"bytes_per_route": st["rss_bytes_per_route"]["median"],
                            "range": [st["rss_bytes_per_route"]["min"], st["rss_bytes_per_route"]["max"]],
                            "after_adoption_bytes_per_route": st["adopt_rss_bytes_per_route"]["median"],
                            "after_adoption_range": [st["adopt_rss_bytes_per_route"]["min"],
                                                     st["adopt_rss_bytes_per_route"]["max"]],
                            "target": MEMORY_TARGET,
                            "met_median": st["rss_bytes_per_route"]["median"] <= MEMORY_TARGET,
                            "runs": [{k: x[k] for k in ("rss_before_mib", "rss_after_mib", "rss_bytes_per_route")}
                                     for x in ks_runs]}
        report["adoption"] = {"writes": [x["adoption"]["writes"] for x in ks_runs],
                              "median": {k: st[k]["median"] for k in ("adopt_s", "raw_dump_s", "adopt_vs_raw_dump",
                                                                      "adopt_rib_load_s")},
                              "range": {k: [st[k]["min"], st[k]["max"]]
                                        for k in ("adopt_s", "raw_dump_s", "adopt_vs_raw_dump", "adopt_rib_load_s")},
                              "target": ADOPT_TARGET,
                              "met_median": st["adopt_vs_raw_dump"]["median"] <= ADOPT_TARGET
                              and not any(x["adoption"]["writes"] for x in ks_runs),
                              "runs": [x["adoption"] for x in ks_runs]}
        if getattr(args, "memory_profile", False):
            prof = memory_profile(nss, n, groups)
            print_memory_profile(prof)
            ok = ok and prof["ok"]
            report["memory_profile"] = prof
            sys.stdout.flush()
        # 2. link flap -------------------------------------------------------------------
        flaps = run_flaps(nss, flap_sizes, groups, repeat) if flap_sizes else []
        for f in flaps:
            ok = ok and f["ok"]
            m, rg = f["median"], f["range"]
            print("  flap %d routes, median [min-max] of %d cycle%s: down %s, up %s, total %s (from the link "
                  "change's ACK to the end of engine.run); from issuing the change: down %s, up %s, total %s "
                  "(kernel link change: down %s, up %s) [%s]" % tuple(
                      [f["routes"], len(f["cycles"]), "" if len(f["cycles"]) == 1 else "s"]
                      + [_mr({"median": m[k], "min": rg[k][0], "max": rg[k][1]}, "%.2f", " ms")
                         for k in ("down_ms", "up_ms", "total_ms", "down_from_issue_ms", "up_from_issue_ms",
                                   "total_from_issue_ms", "kernel_down_ms", "kernel_up_ms")]
                      + ["ok" if f["ok"] else "FAIL"]))
            for i, c in enumerate(f["cycles"]):
                for name in ("down", "up"):
                    s = c[name]
                    print("    cycle %d %-4s: repair %.2f ms = event wait %.2f ms, on_link_event %.2f ms, run %.2f ms "
                          "(netlink %.2f ms, writes %s), follow-up runs %d (%.2f ms, %d writes)" % (
                              i + 1, name, s["repair_ms"], s["event_wait_ms"], s["on_link_event_ms"], s["run_ms"],
                              s["netlink_ms"], s["plan"] or 0, s["followup"]["runs"], s["followup"]["ms"],
                              s["followup"]["writes"]))
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
            r_rep_med = large["median"]["total_ms"] / small["median"]["total_ms"]
            r_iss_med = large["median"]["total_from_issue_ms"] / small["median"]["total_from_issue_ms"]
            print("flap repair (compat_mode=0), medians: %s | ratio %d/%d routes on the medians %.2fx (target <= %gx) "
                  "%s; on the bests %.2fx" % (
                      " | ".join("%d routes: down %.2f ms, up %.2f ms" % (f["routes"], f["median"]["down_ms"],
                                                                          f["median"]["up_ms"]) for f in flaps),
                      large["routes"], small["routes"], r_rep_med, REPAIR_TARGET,
                      "MET" if r_rep_med <= REPAIR_TARGET else "NOT MET", r_rep))
            print("flap incl. kernel link change (compat_mode=0), medians: %s | ratio on the medians %.2fx; on the "
                  "bests %.2fx" % (
                      " | ".join("%d routes: down %.2f ms, up %.2f ms" % (
                          f["routes"], f["median"]["down_from_issue_ms"], f["median"]["up_from_issue_ms"])
                          for f in flaps), r_iss_med, r_iss))
            report["flap"] = {
                "sizes": [{"routes": f["routes"], "install_s": f["install_s"], "ok": f["ok"], **f["best"],
                           "median": f["median"], "range": f["range"],
                           "verify_full_sync_s": f["verify_full_sync_s"],
                           "cycles": [{k: c[k] for k in ("down", "up", "ok", "total_ms", "total_from_issue_ms")}
                                      for c in f["cycles"]],
                           **({"compat1": {"down_ms": f["compat1"]["down"]["repair_ms"],
                                           "up_ms": f["compat1"]["up"]["repair_ms"],
                                           "total_ms": f["compat1"]["total_ms"],
                                           "total_from_issue_ms": f["compat1"]["total_from_issue_ms"],
                                           "ok": f["compat1"]["ok"]}} if "compat1" in f else {})}
                          for f in flaps],
                "order": flaps[0]["order"],
                "ratio": r_rep, "ratio_from_issue": r_iss, "target": REPAIR_TARGET, "met": r_rep <= REPAIR_TARGET,
                "ratio_median": r_rep_med, "ratio_from_issue_median": r_iss_med,
                "met_median": r_rep_med <= REPAIR_TARGET,
            }
        if getattr(args, "pic", 0):  # 3. PIC: a BGP peer down and back (tools/bench_pic.py)
            from .bench_pic import print_pic, run_pic
            report["pic"] = run_pic(nss, int(args.pic), groups, kcfg(), (NET_A, NET_B))
            print_pic(report["pic"])
            ok = ok and report["pic"]["ok"]
            sys.stdout.flush()
        dump_sizes = [int(x) for x in str(getattr(args, "dump_latency", "") or "").split(",") if x.strip()]
        if dump_sizes:  # link event latency during a full sync (kernelsync.tools.bench_dump)
            from .bench_dump import run_sizes
            report["dump_latency"] = run_sizes(FlapRig, nss, dump_sizes, groups, repeat)
            ok = ok and all(r["ok"] for r in report["dump_latency"])
        report["peak_rss_mib"] = _maxrss_mib(resource.RUSAGE_SELF)
        print("peak RSS: %.0f MiB (bench process)%s" % (report["peak_rss_mib"], "" if ok else "; SOME CHECKS FAILED"))
    except Exception as exc:  # report it, still delete the namespaces and print BENCH_JSON
        traceback.print_exc()
        report["error"] = "%s: %s" % (type(exc).__name__, exc)
        print("bench FAILED: %s" % report["error"])
        ok = False
    finally:
        nss.close()
        signal.signal(signal.SIGTERM, old_term)
    report["ok"] = ok
    left = [l for l in _run("ip", "netns", "list").split() if l.startswith("ksbench-%d-" % os.getpid())]
    report["namespaces_left"] = left
    print("BENCH_JSON " + json.dumps(report, sort_keys=True))
    sys.stdout.flush()
    return 0 if ok else 1


# 3. full table: mixed prefix lengths, IPv4 + IPv6, and its withdrawal (issue 14) -----------------
# ``--mix full``: N IPv4 + N/5 IPv6 prefixes (1M + 200k at -n 1000000) of realistic lengths over
# ``--mix-groups`` distinct groups; ``--withdraw``: each method then deletes its whole table.
# Kept apart from the /32 install above (own rounds, own report key ``table``).
# Prefix-length weights, per mille, roughly today's global table (RIPE RIS / potaroo shares):
# IPv4 mostly /24, IPv6 mostly /48 with a large /32 share (allocations).
MIX_V4_WEIGHTS = {8: 0.02, 9: 0.03, 10: 0.05, 11: 0.1, 12: 0.3, 13: 0.5, 14: 0.8, 15: 1.0, 16: 13, 17: 8, 18: 13,
                  19: 25, 20: 45, 21: 50, 22: 130, 23: 100, 24: 613}
MIX_V6_WEIGHTS = {16: 0.05, 19: 0.1, 20: 0.3, 22: 0.3, 23: 0.2, 24: 0.5, 26: 0.5, 27: 0.5, 28: 10, 29: 30, 30: 5,
                  31: 3, 32: 150, 33: 15, 34: 10, 35: 5, 36: 30, 37: 5, 38: 10, 39: 5, 40: 60, 41: 5, 42: 15, 43: 5,
                  44: 70, 45: 10, 46: 30, 47: 25, 48: 500}
MIX_V6_SHARE = 5  # one IPv6 prefix per 5 IPv4 ones (200k for 1M)
NET6_A, NET6_B = "fd00:255:0::", "fd00:255:1::"  # the veths' IPv6 subnets (/64), gateways ::2+g
WITHDRAW_TARGET = 80.0  # % of the raw writer's delete rate (issue 14)
_RAW_DEL_FLAGS = uapi.NLM_F_REQUEST


def gateways6(g: int) -> Tuple[str, str]:
    return "%s%x" % (NET6_A, 2 + g), "%s%x" % (NET6_B, 2 + g)


class TableSpec:
    """A route table to install: ``routes`` = ``[(family, dst bytes, plen, group index), ...]``
    in feed order; IPv4 routes on groups ``0 .. groups4-1`` (IPv4 gateways), IPv6 routes on
    groups ``groups4 .. groups4+groups6-1`` (IPv6 gateways: an IPv6 route cannot use an IPv4
    nexthop).  Every group has two members, one on each veth."""

    def __init__(self, kind: str, routes: List[Tuple[int, bytes, int, int]], groups4: int, groups6: int) -> None:
        self.kind, self.routes, self.groups4, self.groups6 = kind, routes, groups4, groups6
        self.n4 = sum(1 for r in routes if r[0] == AF_INET)
        self.n6 = len(routes) - self.n4

    @property
    def groups(self) -> int:
        return self.groups4 + self.groups6

    def group_family(self, g: int) -> int:
        return AF_INET if g < self.groups4 else AF_INET6

    def gateways(self, g: int) -> Tuple[str, str]:
        return gateways(g) if g < self.groups4 else gateways6(g - self.groups4)

    def plen_histogram(self) -> Dict[str, Dict[int, int]]:
        out: Dict[str, Dict[int, int]] = {"ipv4": {}, "ipv6": {}}
        for fam, _dst, plen, _g in self.routes:
            h = out["ipv4" if fam == AF_INET else "ipv6"]
            h[plen] = h.get(plen, 0) + 1
        return {k: dict(sorted(v.items())) for k, v in out.items()}


# IPv4 space a global table does not carry (RFC 6890 special-purpose, non-global): 10/8,
# 100.64/10, 127/8, 169.254/16, 172.16/12, 192.0.0/24, 192.0.2/24, 192.168/16, 198.18/15,
# 198.51.100/24, 203.0.113/24 as (first, last) address ints
_BOGONS4 = tuple((int(ipaddress.IPv4Network(n).network_address), int(ipaddress.IPv4Network(n).broadcast_address))
                 for n in ("10.0.0.0/8", "100.64.0.0/10", "127.0.0.0/8", "169.254.0.0/16", "172.16.0.0/12",
                           "192.0.0.0/24", "192.0.2.0/24", "192.168.0.0/16", "198.18.0.0/15", "198.51.100.0/24",
                           "203.0.113.0/24"))


def _draw_prefixes(rng, count: int, weights: Dict[int, float], bits: int, lo: int, hi: int,
                   seen: set, avoid: Sequence[Tuple[int, int]] = ()) -> List[Tuple[int, int]]:
    """``count`` distinct (network int, plen) with plen drawn by ``weights``, networks drawn
    uniformly from [lo, hi) (host bits cleared), none overlapping a range of ``avoid``."""
    plens = rng.choices(list(weights), weights=list(weights.values()), k=count)
    out = []
    span = hi - lo
    shift = bits - 8
    # the first octets (of ``bits``) an avoided range touches: only those need the range test
    near = {o for first, last in avoid for o in range(first >> shift, (last >> shift) + 1)}
    randrange = rng.randrange
    for plen in plens:
        mask = ((1 << plen) - 1) << (bits - plen)
        size = 1 << (bits - plen)
        while True:
            net = (lo + randrange(span)) & mask
            if net < lo or (net, plen) in seen:
                continue
            if plen <= 8 or (net >> shift) in near:
                if any(net <= last and first < net + size for first, last in avoid):
                    continue
            break
        seen.add((net, plen))
        out.append((net, plen))
    return out


def mixed_table(n4: int, groups: int, seed: int = 14) -> TableSpec:
    """``n4`` IPv4 prefixes (/8../24, weighted as :data:`MIX_V4_WEIGHTS`, from 1.0.0.0 to
    223.255.255.255 without the non-global ranges of :data:`_BOGONS4`) and ``n4 // MIX_V6_SHARE`` IPv6 ones (/16../48 from 2000::/3) on ``groups``
    distinct groups (about 1/6 of them IPv6 ones, at least one of each family), shuffled as a
    feed would deliver them; deterministic for a ``seed``.  Raises ValueError for fewer than 2
    groups."""
    import random
    if groups < 2:
        raise ValueError("a mixed table needs at least 2 groups (one per family)")
    rng = random.Random(seed)
    n6 = n4 // MIX_V6_SHARE
    g6 = max(1, round(groups / (1 + MIX_V6_SHARE))) if n6 else 0
    g4 = groups - g6
    routes: List[Tuple[int, bytes, int, int]] = []
    pack4 = struct.Struct("!I").pack
    for i, (net, plen) in enumerate(_draw_prefixes(rng, n4, MIX_V4_WEIGHTS, 32, 1 << 24, 224 << 24, set(), _BOGONS4)):
        routes.append((AF_INET, pack4(net), plen, i % g4))
    for i, (net, plen) in enumerate(_draw_prefixes(rng, n6, MIX_V6_WEIGHTS, 128, 1 << 125, 2 << 125, set())):
        routes.append((AF_INET6, net.to_bytes(16, "big"), plen, g4 + i % g6))
    rng.shuffle(routes)
    return TableSpec("mixed", routes, g4, g6)


def host_table(n: int, groups: int) -> TableSpec:
    """The /32 workload of the install case (:func:`route_dsts`, route i on group i % groups)."""
    return TableSpec("ipv4 /32", [(AF_INET, d, 32, i % groups) for i, d in enumerate(route_dsts(n))], groups, 0)


def add_v6_addresses(ns: str) -> None:
    """The veths' IPv6 addresses (no DAD: usable at once), so that IPv6 gateways resolve."""
    _run("ip", "-n", ns, "-batch", "-", input_text="addr add %s1/64 dev %s nodad\naddr add %s1/64 dev %s nodad\n" % (
        NET6_A, DEV_A, NET6_B, DEV_B))


def table_paths(spec: TableSpec) -> List[Tuple[Path, ...]]:
    out = []
    for g in range(spec.groups):
        fam = spec.group_family(g)
        ga, gb = spec.gateways(g)
        out.append((Path((NexthopSpec(socket.inet_pton(fam, ga), fam, DEV_A),
                          NexthopSpec(socket.inet_pton(fam, gb), fam, DEV_B))),))
    return out


def check_table(nl: RtNetlink, spec: TableSpec, group_ids: Optional[set], expect: bool = True) -> Tuple[bool, str]:
    """Our table holds exactly the spec's prefixes (``expect``) or nothing, each on one of
    ``group_ids`` of its own family's groups."""
    routes = nl.dump_routes(TABLE, PROTOCOL)
    if not expect:
        return (not routes), "%d routes left in table %d" % (len(routes), TABLE)
    want = {(TABLE, fam, dst, plen, METRIC) for fam, dst, plen, _g in spec.routes}
    have = set(routes)
    if have != want:
        return False, "%d routes in table %d, %d expected; %d missing, %d extra" % (
            len(have), TABLE, len(want), len(want - have), len(have - want))
    nhids = set(routes.values())
    if group_ids is not None and not nhids <= group_ids:
        return False, "routes on nhid %s, not one of the groups" % sorted(nhids - group_ids)[:5]
    return True, "%d routes (%d IPv4, %d IPv6) on %d groups" % (len(routes), spec.n4, spec.n6, len(nhids))


def _rib_load_table(engine: Engine, spec: TableSpec) -> None:
    paths = table_paths(spec)
    engine.rib.add_source("static", 1)
    update = engine.rib.update
    for fam, dst, plen, g in spec.routes:
        update("static", (fam, dst, plen), paths[g])
    engine.rib.set_ready("static")


def table_kernelsync(nss: Namespaces, spec: TableSpec, withdraw: bool) -> dict:
    """kernelsync installs ``spec`` (RIB load, then engine.start + runs until idle), then, with
    ``withdraw``, every prefix is withdrawn from the RIB (``rib.withdraw`` per prefix: what a
    BGP peer going down does in :mod:`kernelsync.feeds.bgp`, and a feed withdrawing all) and
    the engine runs until idle (route deletes, then unused groups and nexthops)."""
    ns = nss.create()
    add_v6_addresses(ns)
    try:
        kernel = nss.open_in(ns, lambda: RtNetlink(PROTOCOL))
        try:
            timer = TimedKernel(kernel)
            rss0 = rss_bytes()
            engine = Engine(kcfg(), kernel)
            t0 = time.perf_counter()
            _rib_load_table(engine, spec)
            t1 = time.perf_counter()
            now = time.monotonic()
            engine.start(now)
            plan, runs = run_until_idle(engine, now)
            t2 = time.perf_counter()
            del plan
            rss1 = rss_bytes()
            ok, detail = check_table(kernel, spec, set(our_groups(kernel)))
            grps = our_groups(kernel)
            if len(grps) != spec.groups:
                ok, detail = False, detail + "; %d groups, %d expected" % (len(grps), spec.groups)
            out = {"ns": ns, "rib_load_s": t1 - t0, "total_s": t2 - t1, "with_rib_s": t2 - t0,
                   "netlink_s": timer.seconds, "ops": timer.ops, "runs": runs,
                   "rss_bytes_per_route": (rss1 - rss0) / len(spec.routes), "ok": ok, "verify": detail}
            if withdraw:
                timer.reset()
                rib_withdraw = engine.rib.withdraw
                t3 = time.perf_counter()
                for fam, dst, plen, _g in spec.routes:
                    rib_withdraw("static", (fam, dst, plen))
                t4 = time.perf_counter()
                _plan, druns = run_until_idle(engine, time.monotonic())
                t5 = time.perf_counter()
                del _plan
                dok, ddetail = check_table(kernel, spec, None, expect=False)
                left = our_groups(kernel)
                out.update({"del_rib_s": t4 - t3, "del_s": t5 - t4, "del_with_rib_s": t5 - t3,
                            "del_netlink_s": timer.seconds, "del_ops": timer.ops, "del_runs": druns,
                            "del_groups_left": len(left)})
                out["ok"] = out["ok"] and dok
                out["verify"] += "; withdrawal: " + ddetail
            del engine
        finally:
            kernel.close()
    finally:
        nss.delete(ns)
        collect()
    return out


class RawTableWriter(RawWriter):
    """:class:`RawWriter` for any family and prefix length, and its deletes: RTM_NEWROUTE
    (table, dst, priority, RTA_NH_ID) and RTM_DELROUTE (table, dst, priority: what kernelsync's
    delete carries), RAW_CHUNK messages per ``send()``, NLM_F_ACK on each chunk's last."""

    _LAYOUT = {AF_INET: (struct.Struct("=IHHII BBBBBBBBI HHI HH4s HHI HHI"), struct.Struct("=IHHII BBBBBBBBI HHI HH4s HHI")),
               AF_INET6: (struct.Struct("=IHHII BBBBBBBBI HHI HH16s HHI HHI"),
                          struct.Struct("=IHHII BBBBBBBBI HHI HH16s HHI"))}
    _NH6 = struct.Struct("=IHHII BBBBI HHI HHI HH16s")

    def write_nexthops_any(self, members: Sequence[Tuple[int, int, int, bytes]],
                           groups: Sequence[Tuple[int, int, int]]) -> None:
        """``members``: (id, family, ifindex, gateway); ``groups``: (id, member, member)."""
        parts = []
        seq = self.seq
        for nh_id, fam, oif, gw in members:
            seq += 1
            st = _RAW_NH if fam == AF_INET else self._NH6
            parts.append(st.pack(st.size, uapi.RTM_NEWNEXTHOP, _RAW_ADD, seq, 0, fam, 0, PROTOCOL, 0, 0,
                                 8, uapi.NHA_ID, nh_id, 8, uapi.NHA_OIF, oif, 4 + len(gw), uapi.NHA_GATEWAY, gw))
        for gid, a, b in groups:
            seq += 1
            parts.append(_RAW_GROUP.pack(_RAW_GROUP.size, uapi.RTM_NEWNEXTHOP, _RAW_ADD, seq, 0, 0, 0, PROTOCOL, 0, 0,
                                         8, uapi.NHA_ID, gid, 4 + 16, uapi.NHA_GROUP, a, 0, 0, 0, b, 0, 0, 0))
        data = bytearray(b"".join(parts))
        last_off = len(data) - len(parts[-1])
        _RAW_HDR.pack_into(data, last_off, len(parts[-1]), uapi.RTM_NEWNEXTHOP, _RAW_ADD | uapi.NLM_F_ACK, seq, 0)
        first, self.seq = self.seq + 1, seq
        self._send(data, first, seq)

    def write_table(self, routes: Sequence[Tuple[int, bytes, int, int]], delete: bool = False) -> None:
        """``routes``: (family, dst, plen, nexthop id); ``delete``: RTM_DELROUTE instead."""
        n = len(routes)
        buf = bytearray(RAW_CHUNK * self._LAYOUT[AF_INET6][0].size)
        mtype, flags = (uapi.RTM_DELROUTE, _RAW_DEL_FLAGS) if delete else (uapi.RTM_NEWROUTE, _RAW_ADD)
        scope = uapi.RT_SCOPE_NOWHERE if delete else 0
        table_msg = TABLE if TABLE < 256 else uapi.RT_TABLE_COMPAT
        rta_table, rta_dst, rta_prio, rta_nh = uapi.RTA_TABLE, uapi.RTA_DST, uapi.RTA_PRIORITY, uapi.RTA_NH_ID
        unicast = uapi.RTN_UNICAST
        (s4, d4), (s6, d6) = self._LAYOUT[AF_INET], self._LAYOUT[AF_INET6]
        p4, p6, q4, q6 = s4.pack_into, s6.pack_into, d4.pack_into, d6.pack_into
        base = self.seq + 1
        for start in range(0, n, RAW_CHUNK):
            end = min(n, start + RAW_CHUNK)
            off = 0
            for i in range(start, end):
                fam, dst, plen, nh = routes[i]
                if delete:
                    size = d4.size if fam == AF_INET else d6.size
                    (q4 if fam == AF_INET else q6)(buf, off, size, mtype, flags, base + i, 0, fam, plen, 0, 0, table_msg,
                                                   PROTOCOL, scope, unicast, 0,
                                                   8, rta_table, TABLE, 4 + len(dst), rta_dst, dst, 8, rta_prio, METRIC)
                else:
                    size = s4.size if fam == AF_INET else s6.size
                    (p4 if fam == AF_INET else p6)(buf, off, size, mtype, flags, base + i, 0, fam, plen, 0, 0, table_msg,
                                                   PROTOCOL, 0, unicast, 0, 8, rta_table, TABLE, 4 + len(dst), rta_dst,
                                                   dst, 8, rta_prio, METRIC, 8, rta_nh, nh)
                last = off
                off += size
            struct.pack_into("=H", buf, last + 6, flags | uapi.NLM_F_ACK)
            self._send(memoryview(buf)[:off], base + start, base + end - 1)
        self.seq = base + n - 1


def _baseline_nexthops(spec: TableSpec, base: int, ifa: int, ifb: int):
    """Members (id, family, ifindex, gateway bytes) and groups (id, a, b) of a baseline."""
    members, grps = [], []
    for g in range(spec.groups):
        fam = spec.group_family(g)
        ga, gb = spec.gateways(g)
        a, b = base + 2 * g + 1, base + 2 * g + 2
        members += [(a, fam, ifa, socket.inet_pton(fam, ga)), (b, fam, ifb, socket.inet_pton(fam, gb))]
        grps.append((base + GROUP_OFFSET + g, a, b))
    return members, grps


def table_raw_writer(nss: Namespaces, spec: TableSpec, withdraw: bool) -> dict:
    ns = nss.create()
    add_v6_addresses(ns)
    try:
        ifa, ifb = nss.open_in(ns, lambda: (socket.if_nametoindex(DEV_A), socket.if_nametoindex(DEV_B)))
        members, grps = _baseline_nexthops(spec, RAW_NH_BASE, ifa, ifb)
        gids = [gid for gid, _a, _b in grps]
        routes = [(fam, dst, plen, gids[g]) for fam, dst, plen, g in spec.routes]
        writer = nss.open_in(ns, RawTableWriter)
        nl = nss.open_in(ns, lambda: RtNetlink(PROTOCOL))
        try:
            t0 = time.perf_counter()
            writer.write_nexthops_any(members, grps)
            writer.write_table(routes)
            t1 = time.perf_counter()
            send_s, refused = writer.send_s, len(writer.refused)
            ok, detail = check_table(nl, spec, set(gids))
            out = {"ns": ns, "total_s": t1 - t0, "send_s": send_s, "sends": writer.sends, "refused": refused}
            if withdraw:
                writer.send_s = 0.0
                t2 = time.perf_counter()
                writer.write_table(routes, delete=True)
                t3 = time.perf_counter()
                dok, ddetail = check_table(nl, spec, None, expect=False)
                out.update({"del_s": t3 - t2, "del_send_s": writer.send_s,
                            "del_refused": len(writer.refused) - refused})
                ok, detail = ok and dok, detail + "; withdrawal: " + ddetail
            if writer.refused:
                ok, detail = False, detail + "; %d messages refused, first (seq, errno): %s" % (
                    len(writer.refused), writer.refused[:3])
            out.update({"ok": ok, "verify": detail})
        finally:
            writer.close()
            nl.close()
        return out
    finally:
        nss.delete(ns)
        collect()


def _ip_prefix(fam: int, dst: bytes, plen: int) -> str:
    return "%s/%d" % (socket.inet_ntop(fam, dst), plen)


def table_ip_batch(nss: Namespaces, spec: TableSpec, withdraw: bool, workdir: str) -> dict:
    ns = nss.create()
    add_v6_addresses(ns)
    try:
        setup = []
        for g in range(spec.groups):
            ga, gb = spec.gateways(g)
            a, b = IP_BATCH_NH_BASE + 2 * g + 1, IP_BATCH_NH_BASE + 2 * g + 2
            setup += ["nexthop add id %d via %s dev %s proto %d" % (a, ga, DEV_A, PROTOCOL),
                      "nexthop add id %d via %s dev %s proto %d" % (b, gb, DEV_B, PROTOCOL),
                      "nexthop add id %d group %d/%d proto %d" % (IP_BATCH_NH_BASE + GROUP_OFFSET + g, a, b, PROTOCOL)]
        _run("ip", "-n", ns, "-batch", "-", input_text="\n".join(setup) + "\n")
        gids = [IP_BATCH_NH_BASE + GROUP_OFFSET + g for g in range(spec.groups)]
        add_path = os.path.join(workdir, "add-%s.batch" % ns)
        del_path = os.path.join(workdir, "del-%s.batch" % ns)
        tail = " table %d proto %d metric %d\n" % (TABLE, PROTOCOL, METRIC)
        with open(add_path, "w") as fa:
            for fam, dst, plen, g in spec.routes:
                fa.write("route add " + _ip_prefix(fam, dst, plen) + " nhid %d" % gids[g] + tail)
        if withdraw:
            with open(del_path, "w") as fd:
                for fam, dst, plen, _g in spec.routes:
                    fd.write("route del " + _ip_prefix(fam, dst, plen) + tail)
        nl = nss.open_in(ns, lambda: RtNetlink(PROTOCOL))
        try:
            t0 = time.perf_counter()
            proc = subprocess.run(["ip", "-n", ns, "-batch", add_path], capture_output=True, text=True)
            t1 = time.perf_counter()
            if proc.returncode != 0:
                raise RuntimeError("ip -batch failed: %s" % proc.stderr.strip()[:500])
            ok, detail = check_table(nl, spec, set(gids))
            out = {"ns": ns, "total_s": t1 - t0}
            if withdraw:
                t2 = time.perf_counter()
                proc = subprocess.run(["ip", "-n", ns, "-batch", del_path], capture_output=True, text=True)
                t3 = time.perf_counter()
                if proc.returncode != 0:
                    raise RuntimeError("ip -batch (deletes) failed: %s" % proc.stderr.strip()[:500])
                dok, ddetail = check_table(nl, spec, None, expect=False)
                out["del_s"] = t3 - t2
                ok, detail = ok and dok, detail + "; withdrawal: " + ddetail
            out.update({"ok": ok, "verify": detail})
        finally:
            nl.close()
            for p in (add_path, del_path):
                if os.path.exists(p):
                    os.unlink(p)
        return out
    finally:
        nss.delete(ns)
        collect()


def run_table(nss: Namespaces, spec: TableSpec, repeat: int, withdraw: bool, workdir: str) -> dict:
    """``repeat`` rounds of the three methods on ``spec`` (order rotated per round), each
    installing then (``withdraw``) deleting the whole table in its own namespace.  Per round:
    kernelsync as % of the raw writer's rate and x ip -batch, RIB work counted and not, for the
    install and the withdrawal."""
    runners: Dict[str, Callable[[], dict]] = {
        "kernelsync": lambda: table_kernelsync(nss, spec, withdraw),
        "raw_writer": lambda: table_raw_writer(nss, spec, withdraw),
        "ip_batch": lambda: table_ip_batch(nss, spec, withdraw, workdir),
    }
    runs: Dict[str, List[dict]] = {m: [] for m in METHODS}
    rounds = []
    for r, order, got in alternate(runners, repeat, runs):
        for result in got.values():
            result.pop("ns", None)
        ks, raw, ip = got["kernelsync"], got["raw_writer"], got["ip_batch"]
        rnd = {"order": list(order), "ok": ks["ok"] and raw["ok"] and ip["ok"],
               "floor_pct": 100.0 * raw["total_s"] / ks["total_s"],
               "floor_pct_with_rib": 100.0 * raw["total_s"] / ks["with_rib_s"],
               "ratio": ip["total_s"] / ks["total_s"], "ratio_with_rib": ip["total_s"] / ks["with_rib_s"]}
        if withdraw:
            rnd.update({"del_floor_pct": 100.0 * raw["del_s"] / ks["del_s"],
                        "del_floor_pct_with_rib": 100.0 * raw["del_s"] / ks["del_with_rib_s"],
                        "del_ratio": ip["del_s"] / ks["del_s"], "del_ratio_with_rib": ip["del_s"] / ks["del_with_rib_s"]})
        rounds.append(rnd)
        line = ("  round %d (%s): install kernelsync %.3f s (+ RIB load %.3f s) | raw writer %.3f s | ip -batch %.3f s"
                % (r + 1, ", ".join(LABEL[m] for m in order), ks["total_s"], ks["rib_load_s"], raw["total_s"],
                   ip["total_s"]))
        if withdraw:
            line += (" || withdrawal kernelsync %.3f s (+ RIB withdraw %.3f s, %d writes) | raw writer %.3f s | "
                     "ip -batch %.3f s" % (ks["del_s"], ks["del_rib_s"], ks["del_ops"], raw["del_s"], ip["del_s"]))
        bad = ["%s: %s" % (LABEL[m], got[m]["verify"]) for m in METHODS if not got[m]["ok"]]
        print(line + (" [ok]" if not bad else " [FAIL: %s]" % "; ".join(bad)))
        sys.stdout.flush()
    return {"runs": runs, "rounds": rounds}


def table_report(spec: TableSpec, res: dict, withdraw: bool) -> dict:
    """Medians and ranges of :func:`run_table`'s figures (seconds, routes/s, per-round ratios),
    printed as a table; returns the JSON part."""
    runs, rounds = res["runs"], res["rounds"]
    n = len(spec.routes)
    ks, raw, ip = runs["kernelsync"], runs["raw_writer"], runs["ip_batch"]
    per = {"kernelsync_s": [x["total_s"] for x in ks], "kernelsync_with_rib_s": [x["with_rib_s"] for x in ks],
           "kernelsync_rib_load_s": [x["rib_load_s"] for x in ks], "kernelsync_netlink_s": [x["netlink_s"] for x in ks],
           "rss_bytes_per_route": [x["rss_bytes_per_route"] for x in ks],
           "raw_writer_s": [x["total_s"] for x in raw], "ip_batch_s": [x["total_s"] for x in ip]}
    for k in ("floor_pct", "floor_pct_with_rib", "ratio", "ratio_with_rib"):
        per[k] = [r[k] for r in rounds]
    if withdraw:
        per.update({"del_kernelsync_s": [x["del_s"] for x in ks], "del_kernelsync_with_rib_s": [x["del_with_rib_s"] for x in ks],
                    "del_kernelsync_rib_s": [x["del_rib_s"] for x in ks],
                    "del_kernelsync_netlink_s": [x["del_netlink_s"] for x in ks],
                    "del_raw_writer_s": [x["del_s"] for x in raw], "del_ip_batch_s": [x["del_s"] for x in ip]})
        for k in ("del_floor_pct", "del_floor_pct_with_rib", "del_ratio", "del_ratio_with_rib"):
            per[k] = [r[k] for r in rounds]
    st = {k: spread(v) for k, v in per.items()}
    def rate(k: str) -> Dict[str, float]:  # routes/s: the fastest run is the shortest time
        return {"median": n / st[k]["median"], "min": n / st[k]["max"], "max": n / st[k]["min"]}

    print("%s table: %d routes (%d IPv4, %d IPv6) on %d groups (%d IPv4, %d IPv6), median [min-max] of %d round%s:" % (
        spec.kind, n, spec.n4, spec.n6, spec.groups, spec.groups4, spec.groups6, len(rounds),
        "" if len(rounds) == 1 else "s"))
    rows = [("kernelsync, engine.start + runs", "kernelsync_s"), ("kernelsync, RIB load counted", "kernelsync_with_rib_s"),
            ("raw writer (the kernel's floor)", "raw_writer_s"), ("ip -batch", "ip_batch_s")]
    dels = [("kernelsync, engine.run", "del_kernelsync_s"), ("kernelsync, RIB withdraw counted", "del_kernelsync_with_rib_s"),
            ("raw writer (RTM_DELROUTE)", "del_raw_writer_s"), ("ip -batch (route del)", "del_ip_batch_s")]
    print("  %-34s %-26s %-30s %-26s %s" % ("", "install", "routes/s", "withdrawal" if withdraw else "",
                                            "routes/s" if withdraw else ""))
    for (label, key), dl in zip(rows, dels if withdraw else [None] * 4):
        cells = "  %-34s %-26s %-30s" % (label, _mr(st[key], unit=" s"), _mr_rate(rate(key)))
        if dl:
            cells += " %-26s %s" % (_mr(st[dl[1]], unit=" s"), _mr_rate(rate(dl[1])))
        print(cells.rstrip())
    print("  install: kernelsync at %s of the raw writer's rate (RIB load counted: %s); %s ip -batch (counted: %s); "
          "RIB load %s; memory %s B/route" % (
              _mr(st["floor_pct"], "%.0f", "%"), _mr(st["floor_pct_with_rib"], "%.0f", "%"),
              _mr(st["ratio"], "%.2f", "x"), _mr(st["ratio_with_rib"], "%.2f", "x"),
              _mr(st["kernelsync_rib_load_s"], unit=" s"), _mr(st["rss_bytes_per_route"], "%.0f")))
    out = {"kind": spec.kind, "routes": n, "ipv4": spec.n4, "ipv6": spec.n6, "groups": spec.groups,
           "groups_ipv4": spec.groups4, "groups_ipv6": spec.groups6, "prefix_lengths": spec.plen_histogram(),
           "median": {k: v["median"] for k, v in st.items()}, "range": {k: [v["min"], v["max"]] for k, v in st.items()},
           "rounds": rounds, "runs": runs, "ok": all(r["ok"] for r in rounds)}
    if withdraw:
        med = st["del_floor_pct_with_rib"]["median"]
        print("  withdrawal (every prefix withdrawn from the RIB, as a BGP peer's flush does, then engine.run): "
              "kernelsync at %s of the raw writer's delete rate, RIB withdraw counted %s (target >= %.0f%%: %s); "
              "%s ip -batch (counted: %s); RIB withdraw %s; writes %s, groups left %s" % (
                  _mr(st["del_floor_pct"], "%.0f", "%"), _mr(st["del_floor_pct_with_rib"], "%.0f", "%"),
                  WITHDRAW_TARGET, "MET" if med >= WITHDRAW_TARGET else "NOT MET", _mr(st["del_ratio"], "%.2f", "x"),
                  _mr(st["del_ratio_with_rib"], "%.2f", "x"), _mr(st["del_kernelsync_rib_s"], unit=" s"),
                  "/".join(str(x["del_ops"]) for x in ks), "/".join(str(x["del_groups_left"]) for x in ks)))
        out["withdraw"] = {"target_pct": WITHDRAW_TARGET, "met_median": med >= WITHDRAW_TARGET,
                           "path": "rib.withdraw per prefix (a BGP peer flush) + engine.run until idle"}
    sys.stdout.flush()
    return out


def table_main(args) -> int:
    """``bench --mix full`` and/or ``--withdraw``: the table case (:func:`run_table`) instead of
    the /32 install and flap case; ``--mix full`` = :func:`mixed_table` of ``-n`` IPv4 and
    ``-n``/5 IPv6 prefixes on ``--mix-groups`` groups, else the /32s on ``--groups``.  One
    ``BENCH_JSON`` line, its figures under ``table``."""
    n, repeat = int(args.routes), max(1, int(args.repeat))
    mix = getattr(args, "mix", "none") or "none"
    withdraw = bool(getattr(args, "withdraw", False))
    groups = int(getattr(args, "mix_groups", 40)) if mix == "full" else int(args.groups)
    if os.geteuid() != 0:
        print("kernelsync bench needs root (network namespaces)", file=sys.stderr)
        return 2
    if not (2 if mix == "full" else 1) <= groups <= 250 or not 1 <= n <= 16_000_000:
        print("bench: --mix-groups must be 2..250, --groups 1..250, --routes 1..16000000", file=sys.stderr)
        return 2
    ks_log = logging.getLogger("kernelsync")
    if ks_log.getEffectiveLevel() > logging.DEBUG:
        ks_log.setLevel(logging.WARNING)
    report: dict = {"routes": n, "repeat": repeat, "mix": mix, "withdraw": withdraw, "table": TABLE,
                    "protocol": PROTOCOL, "kernel": os.uname().release, "nexthop_compat_mode": 0}
    ok = True
    old_term = signal.signal(signal.SIGTERM, _on_sigterm)
    nss = Namespaces()
    try:
        t = time.perf_counter()
        spec = mixed_table(n, groups) if mix == "full" else host_table(n, groups)
        print("kernelsync bench (table case%s): %d routes (%d IPv4, %d IPv6), generated in %.1f s; %d round%s, "
              "kernelsync / raw writer / ip -batch rotated, each in a fresh namespace (nexthop_compat_mode=0)" % (
                  ", withdrawal" if withdraw else "", len(spec.routes), spec.n4, spec.n6, time.perf_counter() - t,
                  repeat, "" if repeat == 1 else "s"))
        sys.stdout.flush()
        with tempfile.TemporaryDirectory(prefix="ksbench-") as workdir:
            res = run_table(nss, spec, repeat, withdraw, workdir)
        report["table"] = table_report(spec, res, withdraw)
        ok = report["table"]["ok"]
        report["peak_rss_mib"] = _maxrss_mib(resource.RUSAGE_SELF)
        report["ip_peak_rss_mib"] = _maxrss_mib(resource.RUSAGE_CHILDREN)
        print("peak RSS: %.0f MiB (bench process), %.0f MiB (largest child, ip)%s" % (
            report["peak_rss_mib"], report["ip_peak_rss_mib"], "" if ok else "; SOME CHECKS FAILED"))
    except Exception as exc:
        traceback.print_exc()
        report["error"] = "%s: %s" % (type(exc).__name__, exc)
        print("bench FAILED: %s" % report["error"])
        ok = False
    finally:
        nss.close()
        signal.signal(signal.SIGTERM, old_term)
    report["ok"] = ok
    report["namespaces_left"] = [l for l in _run("ip", "netns", "list").split()
                                 if l.startswith("ksbench-%d-" % os.getpid())]
    print("BENCH_JSON " + json.dumps(report, sort_keys=True))
    sys.stdout.flush()
    return 0 if ok else 1
