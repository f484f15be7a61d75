"""``kernelsync chaos``: a seeded storm of link, outside-write and crash events against a real
``kernelsync run`` in scratch network namespaces, checked by an independent oracle.

Setup: namespace A (kernelsync's) with veth links c0..c{L-1} to namespace B (their peers q*),
one more link (``late0``) that appears during the run, and two links f0/f1 that carry foreign
routes and nexthops (another protocol in our table, our protocol in the main table and outside
our ID range, another protocol inside our ID range).  The scenario (:mod:`.chaos_gen`) configures
R static routes over at least 40 distinct nexthop sets (device-only, gateway, mixed, weighted,
resilient, IPv4 and IPv6, RFC 5549, link-local) and throws N events in steps (single events
and bursts of 5-20 with no pause): admin and carrier flaps, links deleted and re-created,
IPv6 addresses lost on admin down (``keep_addr_on_down=0``) and put back, ``ip route del`` and
``ip nexthop del`` of our objects, SIGKILL and restart of kernelsync.

After every step comes a quiet point: the oracle (:mod:`.chaos_oracle`, which imports nothing of
kernelsync) reads the kernel with ``ip -j`` until it equals the expectation computed from the
configuration and the live links and addresses, or the deadline passes (a divergence, printed
as a diff).  It also measures: convergence time; dark time (a prefix absent while one of its
legs stayed usable on a link the step did not touch: seen by polling, or in ``ip -ts monitor``
as its nexthop object deleted before a route write moved it); objects of ours unused past the hold
time (leaks); foreign routes and nexthops changed (``ip -d -j``, compared as text); writes of
each restarted daemon (``show stats``) and the time to repair an outside ``ip route del``.  The
last two are figures, as is darkness during a restart; ``--strict-restart-writes``,
``--strict-route-repair`` and ``--strict-restart-dark`` make them fail.

Nothing outside the two namespaces is touched; they are deleted at the end (``--keep`` keeps them).
"""
from __future__ import annotations

import argparse
import json
import os
import random
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Set, Tuple

from . import chaos_gen as gen
from . import chaos_oracle as oracle
from .netns import NetNS, unique_name

TABLE = 100
PROTO = 200
METRIC = 20
ID_RANGE = (1000, 999_999)
FOREIGN_IDS = (5, 7, ID_RANGE[0])


@dataclass
class Options:
    """Everything ``kernelsync chaos`` takes (see :func:`add_arguments`)."""
    events: int = 1000
    seed: int = 1
    routes: int = 2000
    links: int = 8
    sets: int = 48
    kills: Optional[int] = None          # default: one per 50 events, at least 1
    deadline: float = 5.0                # seconds a quiet point may take
    restart_deadline: float = 60.0       # seconds a restarted daemon may take to be SYNCED
    hold_time: float = 1.0               # group_hold_time in the config
    leak_margin: float = 3.0             # seconds past the hold time before an unused object is a leak
    resync_interval: float = 30.0
    verify_delay: float = 0.3
    retry_max: float = 5.0
    repair_wait: float = 1.0             # seconds a quiet point waits for an outside deletion's repair
    strict_restart_writes: bool = False  # a restart after a quiet point must write no route or nexthop
    strict_restart_dark: bool = False    # no prefix dark during a restart (else only reported)
    strict_route_repair: Optional[float] = None  # seconds: outside `ip route del` repaired within it
    poll: float = 0.01                   # seconds between two reads of a quiet point
    workdir: Optional[str] = None
    monitor_log: bool = False            # keep ip monitor's lines in WORKDIR/monitor.txt
    daemon_log_level: str = "info"
    keep: bool = False
    verbose: bool = False
    json: bool = False


def _query(path: str, request: str, timeout: float = 5.0):
    """kernelsync's control socket: one request line, a JSON answer (kept apart from
    kernelsync.control so that the oracle's side imports nothing of kernelsync)."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        sock.connect(path)
        sock.sendall(request.encode() + b"\n")
        chunks = []
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                break
            chunks.append(chunk)
    return json.loads(b"".join(chunks))


@dataclass
class View:
    """One read of the kernel: links with addresses, all nexthops, our routes (both families)."""
    at: float
    links: Dict[str, oracle.LinkState]
    nexthops: Dict[int, dict]
    routes: Dict[str, dict]


def percentile(values: List[float], p: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    k = min(len(ordered) - 1, max(0, int(round(p / 100.0 * (len(ordered) - 1)))))
    return ordered[k]


@dataclass
class Report:
    seed: int
    events: Counter = field(default_factory=Counter)
    noops: Counter = field(default_factory=Counter)
    steps: int = 0
    bursts: int = 0
    convergence_ms: List[float] = field(default_factory=list)
    restart_ms: List[float] = field(default_factory=list)
    read_ms: List[float] = field(default_factory=list)
    divergences: List[dict] = field(default_factory=list)
    dark: List[dict] = field(default_factory=list)
    restart_dark: List[dict] = field(default_factory=list)   # reported; failures with strict_restart_dark
    leaks: List[dict] = field(default_factory=list)
    foreign_changes: List[dict] = field(default_factory=list)
    restarts: List[dict] = field(default_factory=list)
    route_repair_ms: List[float] = field(default_factory=list)       # by polling (includes the rest of a burst)
    route_repair_monitor_ms: List[float] = field(default_factory=list)  # by ip monitor: our delete -> the re-add
    route_repairs_moot: int = 0
    route_repairs_pending: int = 0
    nexthop_repair_ms: List[float] = field(default_factory=list)
    strict_failures: List[str] = field(default_factory=list)
    crashed: Optional[str] = None
    topology: dict = field(default_factory=dict)
    duration_s: float = 0.0

    @property
    def failed(self) -> bool:
        return bool(self.divergences or self.dark or self.leaks or self.foreign_changes or self.strict_failures
                    or self.crashed)

    def as_dict(self) -> dict:
        def figures(values):
            return {"n": len(values), "median": round(percentile(values, 50), 1),
                    "p99": round(percentile(values, 99), 1), "max": round(max(values), 1) if values else 0.0}
        quiet = [r for r in self.restarts if r["quiet"]]
        return {
            "seed": self.seed, "ok": not self.failed, "duration_s": round(self.duration_s, 1),
            "topology": self.topology, "steps": self.steps, "bursts": self.bursts,
            "events": dict(sorted(self.events.items())), "events_total": sum(self.events.values()),
            "events_noop": dict(self.noops),
            "convergence_ms": figures(self.convergence_ms), "restart_convergence_ms": figures(self.restart_ms),
            "oracle_read_ms": figures(self.read_ms),
            "divergences": self.divergences, "dark": self.dark, "restart_dark": self.restart_dark,

            "leaked_objects": self.leaks, "foreign_changes": self.foreign_changes,
            "restarts": self.restarts,
            "writes_per_restart": {
                "all": figures([float(r["routes"] + r["nexthops"]) for r in self.restarts]),
                "after_quiet_point": figures([float(r["routes"] + r["nexthops"]) for r in quiet]),
                "quiet_restarts_writing": sum(1 for r in quiet if r["routes"] + r["nexthops"])},
            "outside_route_del_repair_ms": figures(self.route_repair_ms),
            "outside_route_del_repair_monitor_ms": figures(self.route_repair_monitor_ms),
            "outside_route_del_moot": self.route_repairs_moot,
            "outside_route_del_unrepaired_at_end": self.route_repairs_pending,
            "outside_nexthop_del_repair_ms": figures(self.nexthop_repair_ms),
            "strict_failures": self.strict_failures, "crashed": self.crashed,
        }


class Daemon:
    """``python3 -m kernelsync run`` inside the namespace."""

    def __init__(self, ns: NetNS, config: str, sock: str, log: str) -> None:
        self.ns, self.config, self.sock, self.log = ns, config, sock, log
        self.proc: Optional[subprocess.Popen] = None
        self.starts = 0
        self.log_level = "info"

    def start(self) -> None:
        self.starts += 1
        with open(self.log, "a") as fh:
            fh.write("=== chaos: start %d\n" % self.starts)
        self.logf = open(self.log, "a")
        self.proc = subprocess.Popen(
            ["ip", "netns", "exec", self.ns.name, sys.executable, "-m", "kernelsync", "--log-level", self.log_level,
             "run", "-c", self.config], stdout=self.logf, stderr=subprocess.STDOUT)

    def kill(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()
            self.logf.close()

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.kill()
        if self.proc:
            self.logf.close()

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stats(self) -> Optional[dict]:
        try:
            return _query(self.sock, "show stats")
        except (OSError, ValueError):
            return None

    def tail(self, lines: int = 30) -> str:
        try:
            with open(self.log) as fh:
                return "".join(fh.readlines()[-lines:])
        except OSError:
            return ""


class Monitor:
    """``ip -ts monitor nexthop route`` in the namespace, read by a thread: the kernel's own
    account of every write, with microsecond timestamps.  The oracle uses it to see what polling
    misses: a prefix of ours whose nexthop object is deleted while the route still points to it
    (the kernel then deletes the route silently) is dark until its next RTM_NEWROUTE, however
    short that is.  :meth:`sync` waits until every line up to now has been read (a marker route in
    table 250, added and deleted)."""

    MARKER_TABLE = 250

    def __init__(self, ns: NetNS, log: Optional[str] = None) -> None:
        import threading
        self.ns = ns
        self.log = open(log, "a") if log else None
        self.proc = subprocess.Popen(["ip", "-ts", "-n", ns.name, "monitor", "nexthop", "route"],
                                     stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, bufsize=1)
        self.lines: List[str] = []
        self.marks = 0
        self.read_upto = 0
        self.cond = threading.Condition()
        self.thread = threading.Thread(target=self._reader, daemon=True)
        self.thread.start()
        self.sync()

    def _reader(self) -> None:
        for line in self.proc.stdout:
            with self.cond:
                self.lines.append(line.rstrip("\n"))
                self.cond.notify_all()
            if self.log:
                self.log.write(line)

    def sync(self, timeout: float = 10.0) -> List[str]:
        """Every line since the last call, once the monitor has caught up with now."""
        self.marks += 1
        tag = "metric %d" % self.marks
        subprocess.run(["ip", "-n", self.ns.name, "-batch", "-"], capture_output=True, text=True,
                       input="route add 10.255.255.255/32 dev lo table %d proto 99 %s\n"
                             "route del 10.255.255.255/32 dev lo table %d proto 99 %s\n"
                             % (self.MARKER_TABLE, tag, self.MARKER_TABLE, tag))
        deadline = time.monotonic() + timeout
        with self.cond:
            while True:
                found = None
                for i in range(self.read_upto, len(self.lines)):
                    line = self.lines[i]
                    if "table %d" % self.MARKER_TABLE in line and line.rstrip().endswith(tag) \
                            and "Deleted" not in line:
                        found = i
                        break
                if found is not None:
                    break
                left = deadline - time.monotonic()
                if left <= 0 or self.proc.poll() is not None:
                    found = len(self.lines) - 1
                    break
                self.cond.wait(left)
            out = [line for line in self.lines[self.read_upto:found + 1]
                   if "table %d" % self.MARKER_TABLE not in line]
            self.read_upto = found + 1
            if self.read_upto > 100_000:           # bounded: forget what was read
                del self.lines[:self.read_upto]
                self.read_upto = 0
            return out

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait()
        self.thread.join(5)
        if self.log:
            self.log.close()


def parse_monitor_line(line: str) -> Optional[Tuple[float, str, bool, object, Optional[int]]]:
    """``[ts] [Deleted ]id N ...`` -> (ts, "nexthop", deleted, N, None); ``[ts] [Deleted ]PREFIX
    nhid N table T proto P ...`` of our table and protocol -> (ts, "route", deleted, prefix, nhid);
    anything else None."""
    import datetime
    if not line.startswith("["):
        return None
    stamp, _, rest = line.partition("] ")
    try:
        ts = datetime.datetime.fromisoformat(stamp[1:]).timestamp()
    except ValueError:
        return None
    deleted = rest.startswith("Deleted ")
    if deleted:
        rest = rest[len("Deleted "):]
    tokens = rest.split()
    if not tokens:
        return None
    if tokens[0] == "id" and len(tokens) > 1:
        return ts, "nexthop", deleted, int(tokens[1]), None
    words = dict(zip(tokens[1::2], tokens[2::2]))
    if words.get("table") != str(TABLE) or words.get("proto") != str(PROTO):
        return None
    try:
        family = 6 if ":" in tokens[0] else 4
        prefix = oracle.canonical_prefix(tokens[0], family)
    except ValueError:
        return None
    nhid = words.get("nhid")
    return ts, "route", deleted, prefix, int(nhid) if nhid and nhid.isdigit() else None


def monitor_repairs(lines: List[str], prefixes: List[str]) -> List[float]:
    """Milliseconds from each outside deletion of one of ``prefixes`` (its ``Deleted`` line in
    ``ip -ts monitor``) to the next RTM_NEWROUTE of that prefix (kernelsync's repair); a prefix
    not re-added in ``lines`` (every leg went down meanwhile) gives nothing."""
    wanted = set(prefixes)
    deleted_at: Dict[str, float] = {}
    out = []
    for line in lines:
        parsed = parse_monitor_line(line)
        if parsed is None or parsed[1] != "route" or parsed[3] not in wanted:
            continue
        ts, _what, deleted, prefix, _nhid = parsed
        if deleted:
            deleted_at.setdefault(prefix, ts)
        elif prefix in deleted_at:
            out.append((ts - deleted_at.pop(prefix)) * 1000)
    return out


class Chaos:
    """One run: :meth:`run` returns the :class:`Report`."""

    def __init__(self, opts: Options) -> None:
        self.opts = opts
        self.topo = gen.make_topology(opts.seed, opts.links, opts.routes, opts.sets)
        self.route_legs = [(r.prefix, [(leg.gateway, leg.dev, leg.weight) for leg in r.nhset.legs], r.nhset.buckets)
                           for r in self.topo.routes]
        self.family = {r.prefix: r.nhset.family for r in self.topo.routes}
        kills = opts.kills if opts.kills is not None else max(1, opts.events // 50)
        self.generator = gen.EventGenerator(opts.seed, self.topo.links, self.topo.late, opts.events, kills)
        self.report = Report(opts.seed)
        self.report.topology = {
            "links": len(self.topo.links), "late_links": len(self.topo.late), "routes": len(self.topo.routes),
            "nexthop_sets": len(self.topo.sets), "set_kinds": dict(Counter(s.kind for s in self.topo.sets)),
            "ipv6_routes": sum(1 for r in self.topo.routes if r.nhset.family == 6)}
        self.pending_route_del: Dict[str, float] = {}     # prefix -> when we deleted it
        self.step_route_dels: List[str] = []                # this step's outside route deletions
        self.first_unused: Dict[int, float] = {}
        self.leaked: Set[int] = set()
        self.view: Optional[View] = None
        self.expected: Dict[str, oracle.Entry] = {}

    # --- namespaces ------------------------------------------------------------------------
    def _peer(self, name: str) -> str:
        return "q" + name

    def _create_link(self, name: str, addr6: bool = True) -> None:
        index = self.topo.index[name]
        self.ns.ip("link", "add", "name", name, "type", "veth", "peer", "name", self._peer(name),
                   "netns", self.peer.name)
        self.ns.sysctl("net.ipv6.conf.%s.keep_addr_on_down" % name, "0")
        self.ns.sysctl("net.ipv6.conf.%s.accept_dad" % name, "0")
        self.ns.ip("addr", "add", gen.link_v4(index)[0], "dev", name)
        if addr6:
            self.ns.ip("-6", "addr", "add", gen.link_v6(index), "dev", name, "nodad")
        self.ns.ip("link", "set", name, "up")
        self.peer.ip("link", "set", self._peer(name), "up")

    def _add_foreign(self) -> None:
        ns = self.ns
        for n in range(2):
            ns.ip("link", "add", "name", "f%d" % n, "type", "veth", "peer", "name", "fq%d" % n, "netns", self.peer.name)
            ns.ip("addr", "add", "10.63.%d.1/24" % n, "dev", "f%d" % n)
            ns.ip("link", "set", "f%d" % n, "up")
            self.peer.ip("link", "set", "fq%d" % n, "up")
        ns.ip("-6", "addr", "add", "2001:db8:63::1/64", "dev", "f0", "nodad")
        ns.ip("nexthop", "add", "id", "5", "via", "10.63.0.9", "dev", "f0", "proto", str(PROTO))
        ns.ip("nexthop", "add", "id", str(ID_RANGE[0]), "dev", "f1", "proto", "12")
        ns.ip("nexthop", "add", "id", "7", "group", "5/%d" % ID_RANGE[0], "proto", "12")
        ns.ip("route", "add", "192.0.2.0/24", "nhid", "7", "proto", "12", "table", str(TABLE), "metric", str(METRIC))
        ns.ip("route", "add", "203.0.113.1/32", "via", "10.63.0.9", "proto", "12", "table", str(TABLE),
              "metric", str(METRIC))
        # the exact key of one of our routes, with another metric: ours must not replace it
        first = self.topo.routes[0].prefix
        ns.ip("route", "add", first, "dev", "f1", "proto", "12", "table", str(TABLE), "metric", str(METRIC + 1))
        ns.ip("route", "add", "198.51.100.0/24", "nhid", "5", "proto", str(PROTO), "table", "254")
        ns.ip("-6", "route", "add", "2001:db8:77::/64", "via", "2001:db8:63::9", "proto", "12", "table", str(TABLE))
        ns.ip("-6", "route", "add", "2001:db8:78::/64", "dev", "f0", "proto", str(PROTO), "table", "254")

    def foreign_state(self) -> str:
        cmds = ["nexthop show id %d" % i for i in FOREIGN_IDS]
        cmds += ["route show table %d proto 12" % TABLE, "route show table 254 proto %d" % PROTO]
        out = subprocess.run(["ip", "-d", "-j", "-n", self.ns.name, "-batch", "-"], input="\n".join(cmds) + "\n",
                             capture_output=True, text=True)
        v4 = oracle.parse_multi_json(out.stdout)
        v6 = []
        for args in (("route", "show", "table", str(TABLE), "proto", "12"),
                     ("route", "show", "table", "254", "proto", str(PROTO))):
            v6.append(self.ns.json("-d", "-6", *args))
        return json.dumps({"v4": v4, "v6": v6, "errors": out.stderr.strip()}, sort_keys=True)

    # --- the oracle's reads ----------------------------------------------------------------
    def read(self) -> View:
        t0 = time.monotonic()
        for _ in range(5):
            # both families at once (two processes: `ip -batch` takes no -6 per line)
            batch = subprocess.Popen(["ip", "-j", "-n", self.ns.name, "-batch", "-"], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            v6 = subprocess.Popen(["ip", "-j", "-6", "-n", self.ns.name, "route", "show", "table", str(TABLE),
                                   "proto", str(PROTO)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            # nexthops before and after the routes: a route written meanwhile may name an object
            # created after the first dump (or deleted before the second); the union has both,
            # the later dump's content first
            out, err = batch.communicate("nexthop show\nroute show table %d proto %d\naddr show\nnexthop show\n"
                                         % (TABLE, PROTO))
            out6, err6 = v6.communicate()
            docs = oracle.parse_multi_json(out) if batch.returncode == 0 else []
            if len(docs) == 4 and v6.returncode == 0:
                break
        else:
            raise RuntimeError("cannot read the kernel: %s %s" % (err, err6))
        nexthops = {n["id"]: n for n in docs[0]}
        nexthops.update({n["id"]: n for n in docs[3]})
        routes = {}
        for family, items in ((4, docs[1]), (6, json.loads(out6) if out6.strip() else [])):
            for r in items:
                if r.get("type", "unicast") != "unicast":
                    continue
                routes[oracle.canonical_prefix(r["dst"], family)] = r
        view = View(time.monotonic(), oracle.links_from_addr_json(docs[2]), nexthops, routes)
        self.report.read_ms.append((view.at - t0) * 1000)
        return view

    @staticmethod
    def ours(nh: dict) -> bool:
        return ID_RANGE[0] <= nh["id"] <= ID_RANGE[1] and str(nh.get("protocol")) == str(PROTO)

    def twin_groups(self, view: Optional[View]) -> int:
        """Groups of ours, in use, whose content (members, weights, type) another group of ours
        in use has too (two configured sets that differ only in a member whose link is down:
        the case of defect 11 of issue 12)."""
        if view is None:
            return 0
        used = {r.get("nhid") for r in view.routes.values()}
        contents = Counter()
        for nhid in used:
            nh = view.nexthops.get(nhid)
            if nh and "group" in nh and self.ours(nh):
                members = tuple(sorted((json.dumps(view.nexthops.get(m["id"], {}), sort_keys=True), m.get("weight", 1))
                                       for m in nh["group"]))
                contents[(members, nh.get("type"), json.dumps(nh.get("resilient_args", {}).get("buckets")))] += 1
        return sum(n for n in contents.values() if n > 1)

    def refused_gateways(self, view: Optional[View]) -> int:
        """Configured gateway legs whose device is up with carrier but that the kernel would
        refuse (no connected subnet: the IPv6 address lost on an admin down is not back)."""
        if view is None:
            return 0
        legs = {(gw, dev) for _, ls, _ in self.route_legs for gw, dev, _ in ls if gw}
        return sum(1 for gw, dev in legs if dev in view.links and view.links[dev].admin and view.links[dev].carrier
                   and not oracle.leg_usable(gw, dev, view.links))

    # --- events ----------------------------------------------------------------------------
    def _ip(self, target: NetNS, *args: str) -> bool:
        proc = subprocess.run(["ip", "-n", target.name, *args], capture_output=True, text=True)
        return proc.returncode == 0

    def _addr6(self, name: str) -> bool:
        return self._ip(self.ns, "-6", "addr", "replace", gen.link_v6(self.topo.index[name]), "dev", name, "nodad")

    def apply(self, event: gen.Event, affected: Set[str], touched: Set[str]) -> bool:
        """Do ``event``; False if the kernel refused it (the generator's model and the kernel
        disagree, or its target had gone). ``affected``: prefixes our outside deletions hit;
        ``touched``: links the event acted on."""
        kind, name = event.kind, event.link
        if name:
            touched.add(name)
        if kind == gen.ADMIN_DOWN:
            return self._ip(self.ns, "link", "set", name, "down")
        if kind == gen.ADMIN_UP:
            ok = self._ip(self.ns, "link", "set", name, "up")
            return (self._addr6(name) and ok) if event.addr6 else ok
        if kind == gen.CARRIER_DOWN:
            return self._ip(self.peer, "link", "set", self._peer(name), "down")
        if kind == gen.CARRIER_UP:
            return self._ip(self.peer, "link", "set", self._peer(name), "up")
        if kind in (gen.ADMIN_FLAP, gen.CARRIER_FLAP):
            target, dev = (self.ns, name) if kind == gen.ADMIN_FLAP else (self.peer, self._peer(name))
            ok = self._ip(target, "link", "set", dev, "down")
            if event.pause:
                time.sleep(event.pause)      # the generator's deliberate pause
            ok = self._ip(target, "link", "set", dev, "up") and ok
            if event.addr6:
                ok = self._addr6(name) and ok
            return ok
        if kind == gen.LINK_DEL:
            return self._ip(self.ns, "link", "del", name)
        if kind == gen.LINK_ADD:
            try:
                self._create_link(name, addr6=event.addr6)
            except RuntimeError:
                return False
            return True
        if kind == gen.ADDR6_ADD:
            return self._addr6(name)
        if kind == gen.ROUTE_DEL:
            candidates = sorted(self.view.routes)
            if not candidates:
                return False
            prefix = candidates[int(event.pick * len(candidates))]
            ok = self._ip(self.ns, "-%d" % self.family[prefix], "route", "del", prefix, "table", str(TABLE),
                          "proto", str(PROTO), "metric", str(METRIC))
            if ok:
                affected.add(prefix)
                self.pending_route_del[prefix] = time.monotonic()
                self.step_route_dels.append(prefix)
            return ok
        if kind == gen.NEXTHOP_DEL:
            candidates = sorted(i for i, nh in self.view.nexthops.items() if self.ours(nh))
            if not candidates:
                return False
            nhid = candidates[int(event.pick * len(candidates))]
            for prefix, route in self.view.routes.items():
                nh = self.view.nexthops.get(route.get("nhid"))
                if route.get("nhid") == nhid or (nh and any(m["id"] == nhid for m in nh.get("group", ()))):
                    affected.add(prefix)
            return self._ip(self.ns, "nexthop", "del", "id", str(nhid))
        if kind == gen.KILL:
            self.daemon.kill()
            self.daemon.start()
            return True
        raise ValueError(kind)

    # --- quiet points ----------------------------------------------------------------------
    def _guarded(self, prev: Optional[View], view: View, touched: Set[str], affected: Set[str]) -> Set[str]:
        """Prefixes that must never be dark during this step: a leg usable before and after,
        on a link the step did not touch, and not hit by our own outside deletions."""
        if prev is None:
            return set()
        out = set()
        for prefix, legs, _ in self.route_legs:
            if prefix in affected or prefix in self.pending_route_del:
                continue
            for gw, dev, _w in legs:
                if dev not in touched and oracle.leg_usable(gw, dev, prev.links) and oracle.leg_usable(gw, dev, view.links):
                    out.add(prefix)
                    break
        return out

    def quiet_point(self, step: Optional[gen.Step], started: float, touched: Set[str], affected: Set[str],
                    restart: Optional[dict]) -> None:
        opts = self.opts
        rep = self.report
        if restart is not None:
            deadline = time.monotonic() + opts.restart_deadline
            while True:
                stats = self.daemon.stats()
                if stats and stats.get("state") == "SYNCED":
                    break
                if not self.daemon.alive():
                    rep.crashed = "kernelsync exited after a restart:\n" + self.daemon.tail()
                    return
                if time.monotonic() > deadline:
                    rep.divergences.append({"step": step.number if step else 0, "what": "restart",
                                            "diff": ["kernelsync not SYNCED %.0f s after its restart"
                                                     % opts.restart_deadline]})
                    return
                time.sleep(opts.poll)
        prev = self.view
        guarded: Optional[Set[str]] = None
        dark_seen: Set[str] = set()
        last_dark = None
        deadline = time.monotonic() + opts.deadline
        converged_at = None
        while True:
            view = self.read()
            expected = oracle.expected_fib(self.route_legs, view.links)
            if guarded is None:
                guarded = self._guarded(prev, view, touched, affected)
            for prefix in list(self.pending_route_del):
                if prefix in view.routes:
                    rep.route_repair_ms.append((view.at - self.pending_route_del.pop(prefix)) * 1000)
                elif prefix not in expected:
                    self.pending_route_del.pop(prefix)
                    rep.route_repairs_moot += 1
            excused = set() if opts.strict_route_repair is not None else set(self.pending_route_del)
            comparison = oracle.compare(expected, view.routes, view.nexthops).without(excused)
            dark = {p for p in comparison.missing if p in guarded} | {p for p in comparison.broken if p in guarded}
            if dark:
                dark = self._confirm_absent(dark)
            if dark:
                if not dark_seen:
                    first_dark = {p: comparison.broken.get(p, "absent") for p in sorted(dark)[:3]}
                dark_seen |= dark
                last_dark = view.at
            if comparison.ok and converged_at is None:
                converged_at = view.at
            elif not comparison.ok:
                converged_at = None
            waiting = any(view.at - t < opts.repair_wait for t in self.pending_route_del.values())
            if comparison.ok and not waiting:
                break
            if view.at > deadline and (not comparison.ok or not waiting):
                if not comparison.ok:
                    rep.divergences.append({
                        "step": step.number if step else 0,
                        "events": [e.describe() for e in step.events] if step else ["start"],
                        "after_s": round(view.at - started, 3), "prefixes": len(comparison.prefixes()),
                        "diff": comparison.diff()})
                    if opts.verbose:
                        print("DIVERGENCE at step %s:\n  %s" % (step.number if step else 0,
                                                               "\n  ".join(comparison.diff())), file=sys.stderr)
                break
            time.sleep(opts.poll)
        lines = self.monitor.sync()
        windows = self._monitor_dark(lines, guarded or set(), affected)
        if self.step_route_dels:
            if restart is None and not any(e.kind == gen.KILL for e in (step.events if step else ())):
                rep.route_repair_monitor_ms.extend(monitor_repairs(lines, self.step_route_dels))
            self.step_route_dels = []
        converged_ms = ((converged_at or view.at) - started) * 1000
        if restart is not None:
            rep.restart_ms.append(converged_ms)
            stats = self.daemon.stats() or {}
            writes = stats.get("writes", {})
            restart.update({"routes": writes.get("route-set", 0), "nexthops": writes.get("nexthop-set", 0),
                            "route_dels": writes.get("route-del", 0), "nexthop_dels": writes.get("nexthop-del", 0),
                            "refused": stats.get("kernel_failures", 0),
                            "converged_ms": round(converged_ms, 1)})
            rep.restarts.append(restart)
            # writes the kernel refused (a gateway without its address, retried) change nothing
            accepted = restart["routes"] - restart["refused"]
            if opts.strict_restart_writes and restart["quiet"] and accepted > 0:
                rep.strict_failures.append("restart at step %d after a quiet point wrote %d routes (show stats: %d "
                                           "writes, %d refused)" % (step.number, accepted, restart["routes"],
                                                                    restart["refused"]))
            self.first_unused.clear()       # the new instance holds what it found for a hold time
        elif step is not None:
            rep.convergence_ms.append(converged_ms)
            if any(e.kind == gen.NEXTHOP_DEL for e in step.events) and not step.burst:
                rep.nexthop_repair_ms.append(converged_ms)
        if dark_seen:
            rep.dark.append({"step": step.number if step else 0, "prefixes": len(dark_seen), "source": "polling",
                             "first_seen": first_dark, "at_s": round(time.time(), 3),
                             "sample": sorted(dark_seen)[:5], "ms": round((last_dark - started) * 1000, 1),
                             "events": [e.describe() for e in step.events] if step else []})
        if windows:
            target = rep.dark if restart is None or opts.strict_restart_dark else rep.restart_dark
            target.append({"step": step.number if step else 0, "prefixes": len(windows), "source": "ip monitor",
                             "sample": sorted(windows)[:5], "ms": round(max(windows.values()) * 1000, 3),
                             "events": [e.describe() for e in step.events] if step else []})
        if restart is not None:
            parsed = [x for x in map(parse_monitor_line, lines) if x]
            restart["monitor_route_writes"] = sum(1 for x in parsed if x[1] == "route" and not x[2])
            restart["monitor_nexthop_writes"] = sum(1 for x in parsed if x[1] == "nexthop" and not x[2])
            restart["monitor_deletes"] = sum(1 for x in parsed if x[2])
            if opts.strict_restart_writes and restart["quiet"] and (
                    restart["monitor_route_writes"] + restart["monitor_nexthop_writes"]):
                rep.strict_failures.append("restart at step %d after a quiet point changed %d routes and %d nexthops "
                                           "(ip monitor)" % (step.number, restart["monitor_route_writes"],
                                                             restart["monitor_nexthop_writes"]))
        # the routes' nexthop objects as of this quiet point, for the next step's monitor lines
        self.nhid_of = {p: r.get("nhid") for p, r in view.routes.items()}
        if opts.strict_route_repair is not None:  # the kernel's own account: polling adds the burst's rest
            for ms in rep.route_repair_monitor_ms[getattr(self, "_repairs_checked", 0):]:
                if ms > opts.strict_route_repair * 1000:
                    rep.strict_failures.append("outside route deletion repaired after %.0f ms (step %d)"
                                               % (ms, step.number if step else 0))
            self._repairs_checked = len(rep.route_repair_monitor_ms)
        self.view = view
        self.expected = expected
        self._check_leaks(view)
        foreign = self.foreign_state()
        if foreign != self.foreign_before:
            rep.foreign_changes.append({"step": step.number if step else 0, "before": json.loads(self.foreign_before),
                                        "after": json.loads(foreign)})
            self.foreign_before = foreign

    def _confirm_absent(self, prefixes: Set[str]) -> Set[str]:
        """The prefixes of ``prefixes`` that a lookup of each confirms absent: a route dump that
        runs while routes are written is not atomic (an IPv6 dump was seen to skip 9 consecutive
        routes that were there all along), so a prefix missing from one dump is asked again."""
        out = set()
        for family in (4, 6):
            batch = [p for p in sorted(prefixes) if self.family.get(p) == family]
            if not batch:
                continue
            proc = subprocess.run(["ip", "-j", "-%d" % family, "-n", self.ns.name, "-batch", "-"],
                                  input="".join("route show exact %s table %d proto %d\n" % (p, TABLE, PROTO)
                                                for p in batch), capture_output=True, text=True)
            docs = oracle.parse_multi_json(proc.stdout)
            if len(docs) != len(batch):
                out.update(batch)         # cannot tell: keep them
                continue
            for prefix, found in zip(batch, docs):
                if not found:
                    out.add(prefix)
        return out

    def _monitor_dark(self, lines: List[str], guarded: Set[str], affected: Set[str]) -> Dict[str, float]:
        """Prefix -> seconds it was dark by the monitor's account: the object its route pointed
        to was deleted (RTM_DELNEXTHOP) before an RTM_NEWROUTE moved it elsewhere, or the route
        itself was deleted (RTM_DELROUTE), until its next RTM_NEWROUTE.  Only
        guarded prefixes count (a leg stayed usable on a link the step did not touch; the kernel
        never deleted them silently); not those our own outside deletions hit."""
        nhid_of = dict(getattr(self, "nhid_of", {}))
        open_since: Dict[str, float] = {}
        out: Dict[str, float] = {}
        last_ts = None
        for line in lines:
            parsed = parse_monitor_line(line)
            if parsed is None:
                continue
            ts, what, deleted, key, nhid = parsed
            last_ts = ts
            if what == "nexthop":
                if deleted:
                    for prefix, used in nhid_of.items():
                        if used == key and prefix in guarded and prefix not in affected and prefix not in open_since:
                            open_since[prefix] = ts
                continue
            if deleted:         # an explicit delete (the kernel's own flush of a link notifies none)
                nhid_of.pop(key, None)
                if key in guarded and key not in affected and key not in open_since:
                    open_since[key] = ts
                continue
            nhid_of[key] = nhid
            if key in open_since:
                out[key] = max(out.get(key, 0.0), ts - open_since.pop(key))
        for prefix, since in open_since.items():      # still dark when the quiet point ended
            out[prefix] = max(out.get(prefix, 0.0), (last_ts or since) - since)
            if self.opts.verbose:
                print("monitor: %s dark since its nexthop object was deleted" % prefix, file=sys.stderr)
        return out

    def _check_leaks(self, view: View, final: bool = False) -> Set[int]:
        unused = oracle.unused_objects(view.nexthops, view.routes, self.ours)
        for nhid in list(self.first_unused):
            if nhid not in unused:
                del self.first_unused[nhid]
        limit = self.opts.hold_time + self.opts.leak_margin
        for nhid in unused:
            since = self.first_unused.setdefault(nhid, view.at)
            if (final or view.at - since > limit) and nhid not in self.leaked:
                if view.at - since > limit:
                    self.leaked.add(nhid)
                    self.report.leaks.append({"id": nhid, "unused_s": round(view.at - since, 1),
                                              "object": view.nexthops[nhid]})
        return unused

    # --- the run ---------------------------------------------------------------------------
    def run(self) -> Report:
        opts = self.opts
        t_start = time.monotonic()
        self.workdir = opts.workdir or tempfile.mkdtemp(prefix="kschaos-")
        os.makedirs(self.workdir, exist_ok=True)
        self.ns = NetNS(unique_name("kschaos"), compat_mode=0)
        self.peer = NetNS(unique_name("kschaosp"))
        self.daemon = None
        self.monitor = None
        try:
            self._setup()
            self._storm()
            self._final()
        finally:
            if self.daemon:
                self.daemon.stop()
            if self.monitor:
                self.monitor.stop()
            if not opts.keep:
                self.ns.delete()
                self.peer.delete()
            self.report.duration_s = time.monotonic() - t_start
        return self.report

    def _setup(self) -> None:
        opts = self.opts
        for key in ("all", "default"):
            self.ns.sysctl("net.ipv6.conf.%s.keep_addr_on_down" % key, "0")
        for name in self.topo.links:
            self._create_link(name)
        self._add_foreign()
        self.foreign_before = self.foreign_state()
        sock = os.path.join(self.workdir, "ks.sock")
        config = os.path.join(self.workdir, "kernelsync.toml")
        with open(config, "w") as fh:
            fh.write(self.topo.config_toml(table=TABLE, protocol=PROTO, metric=METRIC, id_range=ID_RANGE,
                                           socket=sock, hold_time=opts.hold_time,
                                           resync_interval=opts.resync_interval, verify_delay=opts.verify_delay,
                                           retry_max=opts.retry_max))
        self.daemon = Daemon(self.ns, config, sock, os.path.join(self.workdir, "kernelsync.log"))
        self.daemon.log_level = opts.daemon_log_level
        self.monitor = Monitor(self.ns, os.path.join(self.workdir, "monitor.txt") if opts.monitor_log else None)
        started = time.monotonic()
        self.daemon.start()
        self.quiet_point(None, started, set(), set(), restart={"step": 0, "quiet": False, "initial": True})
        self.report.restarts.pop()       # the first start is no restart
        self.report.restart_ms.pop()

    def _storm(self) -> None:
        rep = self.report
        for step in self.generator:
            if rep.crashed:
                return
            rep.steps += 1
            rep.bursts += step.burst
            touched: Set[str] = set()
            affected: Set[str] = set()
            restart = None
            quiet_before = not rep.divergences or rep.divergences[-1]["step"] != step.number - 1
            for i, event in enumerate(step.events):
                rep.events[event.kind] += 1
                if not self.apply(event, affected, touched):
                    rep.noops[event.kind] += 1
                if event.kind == gen.KILL:
                    quiet = (i == len(step.events) - 1 and not self.pending_route_del and quiet_before
                             and i == 0)
                    restart = {"step": step.number, "quiet": quiet, "events_after_kill": len(step.events) - 1 - i,
                               "twin_groups": self.twin_groups(self.view),
                               "refused_gateways": self.refused_gateways(self.view)}
            started = time.monotonic()
            if self.opts.verbose:
                print("step %d: %s" % (step.number, ", ".join(e.describe() for e in step.events)), file=sys.stderr)
            if not self.daemon.alive() and not rep.crashed:
                rep.crashed = "kernelsync exited during the storm:\n" + self.daemon.tail()
                return
            self.quiet_point(step, started, touched, affected, restart)

    def _final(self) -> None:
        """Every unused object must go within the hold time (plus the margin); the outside
        deletions still pending are counted."""
        if self.report.crashed:
            return
        deadline = time.monotonic() + self.opts.hold_time + self.opts.leak_margin + 2
        while True:
            view = self.read()
            unused = self._check_leaks(view)
            if not unused or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        self.report.route_repairs_pending = len(self.pending_route_del)


# --- command line ----------------------------------------------------------------------------
def add_arguments(p: argparse.ArgumentParser) -> None:
    d = Options()
    p.add_argument("--events", type=int, default=d.events, help="events in the storm (default %(default)s)")
    p.add_argument("--seed", type=int, default=None, help="seed of topology and events (default: random, printed)")
    p.add_argument("--routes", type=int, default=d.routes, help="static routes (default %(default)s)")
    p.add_argument("--links", type=int, default=d.links, help="veth links besides the late one (default %(default)s)")
    p.add_argument("--sets", type=int, default=d.sets, help="distinct nexthop sets (default %(default)s)")
    p.add_argument("--kills", type=int, default=None, help="SIGKILL + restarts (default: events / 50)")
    p.add_argument("--deadline", type=float, default=d.deadline, help="seconds a quiet point may take (default %(default)s)")
    p.add_argument("--hold-time", type=float, default=d.hold_time, help="group_hold_time (default %(default)s)")
    p.add_argument("--resync-interval", type=float, default=d.resync_interval,
                   help="resync_interval in kernelsync's config (default %(default)s)")
    p.add_argument("--strict-restart-writes", action="store_true",
                   help="fail if a restart after a quiet point writes a route (show stats) or changes any "
                        "route or nexthop (ip monitor; a write the kernel refuses changes nothing)")
    p.add_argument("--strict-restart-dark", action="store_true",
                   help="fail if a prefix goes dark while a restarted kernelsync adopts the kernel's state "
                        "(ip monitor: its object deleted before the route moved); else reported")
    p.add_argument("--strict-route-repair", type=float, metavar="SECONDS", default=None,
                   help="fail if an outside `ip route del` of ours is not repaired within SECONDS (e.g. 0.05)")
    p.add_argument("--workdir", help="config, socket and kernelsync's log here (default: a new temp dir)")
    p.add_argument("--keep", action="store_true", help="leave the namespaces up at the end")
    p.add_argument("--monitor-log", action="store_true", help="keep ip -ts monitor's lines in WORKDIR/monitor.txt")
    p.add_argument("--daemon-log-level", default="info", choices=["debug", "info", "warning", "error"],
                   help="kernelsync's log level (its log: WORKDIR/kernelsync.log)")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.add_argument("-v", "--verbose", action="store_true", help="print every step and divergence as it happens")


def format_report(d: dict) -> str:
    lines = ["kernelsync chaos: seed %d, %s in %.1f s" % (d["seed"], "OK" if d["ok"] else "FAILED", d["duration_s"])]
    t = d["topology"]
    lines.append("topology: %d links + %d late, %d routes (%d IPv6) over %d nexthop sets %s" % (
        t["links"], t["late_links"], t["routes"], t["ipv6_routes"], t["nexthop_sets"], json.dumps(t["set_kinds"])))
    lines.append("events: %d in %d steps (%d bursts): %s" % (
        d["events_total"], d["steps"], d["bursts"], ", ".join("%s %d" % kv for kv in d["events"].items())))
    if d["events_noop"]:
        lines.append("  refused by the kernel (target gone): %s" % json.dumps(d["events_noop"]))

    def fig(name, f, unit="ms"):
        return "%s: n=%d median %.1f %s, p99 %.1f, max %.1f" % (name, f["n"], f["median"], unit, f["p99"], f["max"])
    lines.append(fig("convergence after a step", d["convergence_ms"]))
    lines.append(fig("convergence after a restart (kill -> SYNCED and kernel = oracle)", d["restart_convergence_ms"]))
    lines.append(fig("oracle read (polling step)", d["oracle_read_ms"]))
    if d.get("workdir"):
        lines.append("kernelsync's log and config: %s" % d["workdir"])
    lines.append("divergences: %d" % len(d["divergences"]))
    for div in d["divergences"][:10]:
        lines.append("  step %s (%s): %d prefixes after %.1f s" % (div["step"], "; ".join(div.get("events", [])[:6]),
                                                                   div.get("prefixes", 0), div.get("after_s", 0)))
        lines += ["    " + x for x in div["diff"]]
    lines.append("dark (a leg stayed up on an untouched link, prefix absent; by polling, or by ip monitor: its "
                 "object deleted before the route moved): %d steps, %d prefixes, worst %.3f ms"
                 % (len(d["dark"]), sum(x["prefixes"] for x in d["dark"]), max([x["ms"] for x in d["dark"]] or [0])))
    for dk in d["dark"][:8]:
        lines.append("  step %s (%s): %d prefixes, up to %.3f ms, e.g. %s; events: %s" % (
            dk["step"], dk.get("source"), dk["prefixes"], dk["ms"], dk["sample"][:3], "; ".join(dk["events"][:5])))
    lines.append("dark during restarts (reported; --strict-restart-dark fails on them): %d restarts, %d prefixes, "
                 "worst %.3f ms" % (len(d["restart_dark"]), sum(x["prefixes"] for x in d["restart_dark"]),
                                    max([x["ms"] for x in d["restart_dark"]] or [0])))
    for dk in d["restart_dark"][:5]:
        lines.append("  step %s: %d prefixes, up to %.3f ms, e.g. %s" % (dk["step"], dk["prefixes"], dk["ms"],
                                                                         dk["sample"][:3]))
    lines.append("leaked objects (unused past hold time + margin): %d" % len(d["leaked_objects"]))
    for leak in d["leaked_objects"][:5]:
        lines.append("  %s" % json.dumps(leak, sort_keys=True))
    lines.append("foreign objects changed: %d" % len(d["foreign_changes"]))
    w = d["writes_per_restart"]
    lines.append("restarts: %d; writes (routes + nexthops) per restart: %s; after a quiet point: %s; "
                 "quiet restarts that wrote: %d" % (len(d["restarts"]), json.dumps(w["all"]),
                                                   json.dumps(w["after_quiet_point"]), w["quiet_restarts_writing"]))
    for r in d["restarts"]:
        lines.append("  step %d%s: %d route writes, %d nexthop writes, %d route dels, %d nexthop dels (%s refused), "
                     "converged %.0f ms; "
                     "at the kill %d groups in use had a twin, %d gateways were refused; "
                     "ip monitor: %s route and %s nexthop changes"
                     % (r["step"], " (quiet)" if r["quiet"] else " (%d events after kill)" % r["events_after_kill"],
                        r["routes"], r["nexthops"], r["route_dels"], r["nexthop_dels"], r.get("refused", "?"),
                        r["converged_ms"],
                        r.get("twin_groups", 0), r.get("refused_gateways", 0), r.get("monitor_route_writes", "?"),
                        r.get("monitor_nexthop_writes", "?")))
    lines.append(fig("outside `ip route del` repaired after (ip monitor: our delete -> kernelsync's re-add; "
                     "steps without a kill)", d["outside_route_del_repair_monitor_ms"]))
    lines.append(fig("outside `ip route del` seen repaired by polling (after the rest of its burst)",
                     d["outside_route_del_repair_ms"]) +
                 "; moot (all legs went down first) %d, unrepaired at the end %d"
                 % (d["outside_route_del_moot"], d["outside_route_del_unrepaired_at_end"]))
    lines.append(fig("outside `ip nexthop del` (single-event steps) converged after", d["outside_nexthop_del_repair_ms"]))
    if d["strict_failures"]:
        lines.append("strict failures: %d" % len(d["strict_failures"]))
        lines += ["  " + x for x in d["strict_failures"][:10]]
    if d["crashed"]:
        lines.append("CRASHED: " + d["crashed"])
    return "\n".join(lines)


def main(args) -> int:
    if os.geteuid() != 0:
        print("kernelsync chaos needs root (it creates network namespaces)", file=sys.stderr)
        return 2
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(1 << 31)
    opts = Options(events=args.events, seed=seed, routes=args.routes, links=args.links, sets=args.sets,
                   kills=args.kills, deadline=args.deadline, hold_time=args.hold_time,
                   resync_interval=args.resync_interval, strict_restart_writes=args.strict_restart_writes,
                   strict_restart_dark=args.strict_restart_dark,
                   strict_route_repair=args.strict_route_repair, workdir=args.workdir, keep=args.keep,
                   verbose=args.verbose, json=args.json, monitor_log=args.monitor_log,
                   daemon_log_level=args.daemon_log_level)
    print("kernelsync chaos: seed %d, %d events (rerun: kernelsync chaos --seed %d --events %d)"
          % (seed, opts.events, seed, opts.events), file=sys.stderr)
    chaos = Chaos(opts)
    report = chaos.run().as_dict()
    report["workdir"] = chaos.workdir
    print(json.dumps(report, indent=1) if args.json else format_report(report))
    return 1 if not report["ok"] else 0


__all__ = ["Options", "Chaos", "Report", "add_arguments", "format_report", "main"]
