"""``kernelsync chaos-bgp``: kill -9 kernelsync under BGP feed load, against an oracle of BIRD's.

BIRD 2 (namespace R) announces a few thousand blackhole prefixes over two eBGP sessions (ADD-PATH)
to ExaBGP 5.0 (namespace H): the lab of :class:`kernelsync.tools.lab.BgpLab`.  kernelsync
(table 100, protocol 200) runs in one of two ways (``--mode``):

* ``relay`` (default): ``kernelsync run`` owns the FIB and listens for relays; ExaBGP's process
  is ``kernelsync exabgp --relay``.  The kill hits ``kernelsync run``; the tool restarts it at
  once, as a service manager would (the relay keeps draining ExaBGP and reconnects).
* ``stdin``: ExaBGP's process is ``kernelsync exabgp`` itself, and ExaBGP respawns it.  ExaBGP
  5.0.15 handles this badly under load: a write to the dead process fails with EPIPE, the
  process is recorded as broken for good (``Processes._broken`` is never cleared, also not by
  the respawn) and every peer then stops ("ExaBGP lost the helper process for this peer -
  stopping") and never comes back; its sessions to BIRD are gone.  The oracle below requires
  both sessions up, so such a run reports divergences: it measures ExaBGP, not kernelsync.  The prefixes come from
BIRD static protocols: one IPv4 and one IPv6 protocol that never change (``s4``, ``s6``), and
``--groups`` churn protocols (``g0``..; every fourth one IPv6) that a churn thread switches
off and on with ``birdc disable|enable`` at random (``--churn-interval`` mean seconds between
toggles): each toggle withdraws or announces its whole group, on both sessions.

Then, ``--kills`` times, kernelsync is killed with SIGKILL at a random point and restarted
(by the tool, or by ExaBGP in stdin mode).  Kinds of kill:

* **churn**: a random delay (0..``--max-delay`` s) after the previous convergence, with the
  churn running;
* **quiet** (every ``--quiet-every``-th kill): the churn is paused, the kernel is let
  converge, then the kill; the respawned process must adopt everything and write nothing;
* **early** (a ``--early-share`` of the churn kills): the respawned process is killed again
  0.1-1.5 s after it started, before it converged (its window joins the next kill's).

After each kill (except early ones) the tool waits until the restarted kernelsync reports BGP
ready (``show bgp``) with both BGP sessions Established in BIRD ("ready": rebuilt and
reconciled while the churn goes on), then pauses the churn and waits until the kernel equals
the oracle ("converged"; the churn resumes after): the routes BIRD exports on each session
(``birdc show route table master4|master6 export hA|hB``, BIRD's own view), each prefix
through the gateways of the sessions exporting it (192.0.2.1/ha and 192.0.2.9/hb;
2001:db8:a::1/ha and 2001:db8:b::1/hb).  The kernel side is ``ip -j route show table 100 proto
200`` following ``nhid`` to the nexthop object and its group members.  BIRD is read before and
after the kernel; a comparison counts only if both reads agree.  Times are from the kill; a
kill that does not converge within ``--timeout`` is a divergence (printed with a diff).

Loss: ``ip monitor route`` runs in H throughout; a ``Deleted`` of one of our routes between a
kill and the next convergence, for a prefix whose group was announced without a break from
``MARGIN`` s before the kill until that convergence, is a prefix lost during the respawn.

Rewrites: the same monitor's other messages for such prefixes in that window (a route
replaced, e.g. moved to another nexthop group by a restart that rebuilt only part of its RIB).

Writes per quiet adoption: the respawned process's ``show stats`` writes (route-set,
route-del, and all nexthop writes), read once it is ready, converged and 1 s has passed; and
the route messages ``ip monitor`` saw in that window, an independent count.

In stdin mode, ExaBGP gives up on a process that dies more than 5 times within one 64-second
window of the wall clock (``int(time) & ~63``; "Too many death"), so kills are paced: at most 5
per window, none in the last 2 s of one.

Output: kills by kind, convergence (median, p99, max), prefixes lost, writes per quiet adoption,
divergences; the exit status is 1 if any of lost prefixes, rewrites, divergences or quiet
writes is non-zero.  Needs root; everything runs in scratch namespaces and is removed at the end.
"""
from __future__ import annotations

import argparse
import ipaddress
import json
import math
import os
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
from typing import Dict, List, Optional, Sequence, Set, Tuple

from ..control import query
from . import lab as kslab
from .netns import kernelsync_pids, wait_for

TABLE = 100
PROTO = 200
ID_RANGE = (1000, 1999)
MARGIN = 2.0  # s: a group toggled this close before a kill is not "announced across it"
RESPAWN_WINDOW = 64  # s: ExaBGP's respawn accounting window (processes.py respawn_timemask)
RESPAWNS_PER_WINDOW = 5  # ExaBGP's respawn_number: one more in the same window ends ExaBGP
GATEWAYS = {  # session -> {IP version: (gateway, host device)} as the kernel shows them
    "hA": {4: ("192.0.2.1", "ha"), 6: ("2001:db8:a::1", "ha")},
    "hB": {4: ("192.0.2.9", "hb"), 6: ("2001:db8:b::1", "hb")},
}
Routes = Dict[str, List[Tuple[str, str]]]  # prefix -> sorted [(gateway, dev)]


# prefixes ----------------------------------------------------------------------------------
def group_prefixes(index: int, count: int, version: int) -> List[str]:
    """``count`` prefixes of group ``index`` (0 = the stable group): IPv4 /24s in
    10.(4*index + i // 256).(i % 256).0, IPv6 /64s in 2001:db8:f0II:iiii::.  ValueError past
    1,024 per group or 63 groups."""
    if not 0 <= count <= 1024 or not 0 <= index < 64:
        raise ValueError("a group holds 0..1024 prefixes, and there are at most 63 churn groups")
    if version == 4:
        return ["10.%d.%d.0/24" % (4 * index + i // 256, i % 256) for i in range(count)]
    base = (0x20010DB8 << 96) | ((0xF000 + index) << 80)
    return [str(ipaddress.IPv6Network(((base | (i << 64)), 64))) for i in range(count)]


def percentile(values: Sequence[float], share: float) -> Optional[float]:
    """Nearest-rank percentile (``share`` 0..1) of ``values``; None if empty."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(share * len(ordered) - 1e-9))
    return ordered[min(len(ordered), rank) - 1]


# the oracle and the kernel -----------------------------------------------------------------
def parse_export(out: str) -> Set[str]:
    """Prefixes in a ``birdc show route export ...`` answer (lines that open with a prefix)."""
    found = set()
    for line in out.splitlines():
        if not line or line[0].isspace():
            continue
        token = line.split(None, 1)[0]
        if "/" not in token:
            continue
        try:
            found.add(str(ipaddress.ip_network(token, strict=False)))
        except ValueError:
            continue
    return found


def bird_expected(lab: kslab.BgpLab) -> Routes:
    """The oracle: prefix -> sorted [(gateway, dev)] of the sessions BIRD exports it on."""
    out: Dict[str, List[Tuple[str, str]]] = {}
    for session, gws in GATEWAYS.items():
        for table in ("master4", "master6"):
            for prefix in parse_export(lab.birdc("show", "route", "table", table, "export", session)):
                version = 6 if ":" in prefix else 4
                out.setdefault(prefix, []).append(gws[version])
    return {p: sorted(v) for p, v in out.items()}


def kernel_routes(ns) -> Routes:
    """Our routes in the kernel (table 100, protocol 200): prefix -> sorted [(gateway, dev)]
    of the nexthop object (or group members) its ``nhid`` names; legs given inline are read
    too; a route whose object is missing maps to [("missing nexthop", nhid)]."""
    nexthops = {n["id"]: n for n in ns.json("nexthop", "show")}
    out: Routes = {}
    for family in ("-4", "-6"):
        try:
            routes = ns.json(family, "route", "show", "table", str(TABLE), "proto", str(PROTO))
        except RuntimeError as exc:
            if "does not exist" not in str(exc):  # no route in the table yet: no table
                raise
            routes = []
        for r in routes:
            dst = r.get("dst", "")
            if dst == "default":
                dst = "0.0.0.0/0" if family == "-4" else "::/0"
            dst = str(ipaddress.ip_network(dst if "/" in dst else dst + ("/32" if family == "-4" else "/128"),
                                           strict=False))
            if "nhid" in r:
                nh = nexthops.get(r["nhid"])
                if nh is None:
                    out[dst] = [("missing nexthop", str(r["nhid"]))]
                    continue
                members = [nexthops.get(m["id"], {}) for m in nh["group"]] if "group" in nh else [nh]
            else:
                members = r.get("nexthops") or [r]
            out[dst] = sorted((m.get("gateway", ""), m.get("dev", "")) for m in members)
    return out


def diff(expected: Routes, got: Routes, limit: int = 10) -> str:
    missing = sorted(set(expected) - set(got))
    extra = sorted(set(got) - set(expected))
    wrong = sorted(p for p in set(expected) & set(got) if expected[p] != got[p])
    lines = ["%d missing, %d extra, %d with other next hops" % (len(missing), len(extra), len(wrong))]
    lines += ["  missing %s (BIRD: %s)" % (p, expected[p]) for p in missing[:limit]]
    lines += ["  extra   %s -> %s" % (p, got[p]) for p in extra[:limit]]
    lines += ["  wrong   %s: kernel %s, BIRD %s" % (p, got[p], expected[p]) for p in wrong[:limit]]
    return "\n".join(lines)


# background threads ------------------------------------------------------------------------
class Monitor:
    """``ip -n H monitor route``: the deletions of our routes, stamped on arrival
    (``time.monotonic()``), and a count of all our route messages."""

    def __init__(self, ns) -> None:
        self.deleted: List[Tuple[float, str]] = []
        self.messages: List[float] = []
        self.changed: List[Tuple[float, str]] = []  # routes added or replaced
        self.lock = threading.Lock()
        self.proc = subprocess.Popen(["ip", "-n", ns.name, "monitor", "route"], stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, text=True, bufsize=1)
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        ours = "table %d " % TABLE
        proto = "proto %d " % PROTO
        for line in self.proc.stdout:
            now = time.monotonic()
            text = line.strip() + " "
            if ours not in text or proto not in text:
                continue
            with self.lock:
                self.messages.append(now)
                if text.startswith("Deleted "):
                    token = text.split()[1]
                    try:
                        net = ipaddress.ip_network(token, strict=False)
                    except ValueError:
                        continue
                    self.deleted.append((now, str(net)))
                else:
                    try:
                        net = ipaddress.ip_network(text.split()[0], strict=False)
                    except ValueError:
                        continue
                    self.changed.append((now, str(net)))

    def changes(self, start: float, end: float) -> List[Tuple[float, str]]:
        with self.lock:
            return [(t, p) for t, p in self.changed if start <= t <= end]

    def deletions(self, start: float, end: float) -> List[Tuple[float, str]]:
        with self.lock:
            return [(t, p) for t, p in self.deleted if start <= t <= end]

    def count(self, start: float, end: float) -> int:
        with self.lock:
            return sum(1 for t in self.messages if start <= t <= end)

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            self.proc.kill()


class Churn:
    """Switches random churn groups off and on in BIRD (``birdc disable|enable``); the log of
    toggles says which groups were announced without a break over a time span."""

    def __init__(self, lab: kslab.BgpLab, groups: Sequence[str], interval: float, rng: random.Random) -> None:
        self.lab = lab
        self.groups = list(groups)
        self.interval = interval
        self.rng = rng
        self.enabled = {g: True for g in groups}
        self.log: List[Tuple[float, str, bool]] = []  # (time, group, enabled after)
        self.lock = threading.Lock()
        self.run = threading.Event()
        self.run.set()
        self.idle = threading.Event()
        self.stopped = False
        self.toggles = 0
        self.thread = threading.Thread(target=self._loop, daemon=True)

    def start(self) -> None:
        if self.groups:
            self.thread.start()

    def _loop(self) -> None:
        while not self.stopped:
            if not self.run.is_set():
                self.idle.set()
                self.run.wait(0.2)
                continue
            self.idle.clear()
            time.sleep(self.rng.expovariate(1.0 / self.interval))
            if self.stopped or not self.run.is_set():
                continue
            group = self.rng.choice(self.groups)
            on = not self.enabled[group]
            self.lab.birdc("enable" if on else "disable", group)
            with self.lock:
                self.enabled[group] = on
                self.log.append((time.monotonic(), group, on))
                self.toggles += 1

    def pause(self) -> None:
        """Stop toggling; returns once no toggle is under way."""
        self.run.clear()
        if self.thread.is_alive():
            self.idle.wait(10)

    def resume(self) -> None:
        self.run.set()

    def stop(self) -> None:
        self.stopped = True
        self.run.set()
        if self.thread.is_alive():
            self.thread.join(10)

    def steady(self, start: float, end: float) -> Set[str]:
        """Groups announced without a break from ``start`` to ``end`` (monotonic seconds)."""
        with self.lock:
            state = dict(self.enabled)
            log = list(self.log)
        # walk back from now to ``start``: the state at ``start``, and who toggled after it
        toggled = set()
        for t, group, on in reversed(log):
            if t < start:
                break
            toggled.add(group)
            state[group] = not on
        return {g for g in self.groups if state[g] and g not in toggled}


# the run -----------------------------------------------------------------------------------
class Chaos:
    """One chaos run in a fresh lab; :meth:`run` returns the report (a dict)."""

    def __init__(self, kills: int, seed: int, groups: int = 8, group_size: int = 300, stable: int = 400,
                 churn_interval: float = 0.3, max_delay: float = 2.0, quiet_every: int = 5,
                 early_share: float = 0.1, timeout: float = 60.0, workdir: Optional[str] = None,
                 out=None, mode: str = "relay") -> None:
        if mode not in ("relay", "stdin"):
            raise ValueError("mode is relay or stdin, not %r" % (mode,))
        self.mode = mode
        self.daemon: Optional[subprocess.Popen] = None
        self.kills = kills
        self.seed = seed
        self.rng = random.Random(seed)
        self.churn_rng = random.Random(seed * 7919 + 1)
        self.max_delay = max_delay
        self.quiet_every = quiet_every
        self.early_share = early_share
        self.timeout = timeout
        self.churn_interval = churn_interval
        self.out = out or sys.stdout
        self.groups: Dict[str, List[str]] = {}
        for i in range(groups):
            self.groups["g%d" % i] = group_prefixes(i + 1, group_size // 2 if i % 4 == 3 else group_size,
                                                    6 if i % 4 == 3 else 4)
        self.stable4 = group_prefixes(0, stable, 4)
        self.stable6 = group_prefixes(0, stable // 2, 6)
        self.workdir = workdir
        self.respawns: Dict[int, int] = {}  # respawn window -> kills in it
        self.records: List[dict] = []
        self.divergences: List[str] = []

    # helpers ---------------------------------------------------------------------------------
    def say(self, text: str) -> None:
        print(text, file=self.out, flush=True)

    def ks_config(self) -> str:
        path = os.path.join(self.workdir, "ks.toml")
        with open(path, "w") as fh:
            fh.write("\n".join([
                "[kernel]", "table = %d" % TABLE, "protocol = %d" % PROTO,
                "nexthop_id_range = [%d, %d]" % ID_RANGE,
                "[control]", 'socket = "%s"' % self.sock,
                "[bgp]", "startup_wait = 1", "restart_wait = 2", "eor_timeout = 5",
                "[exabgp]", 'listen = "%s"' % self.relay_sock if self.mode == "relay" else "", ""]))
        return path

    def start_daemon(self) -> None:
        """relay mode: ``kernelsync run`` in H (appending to ks.log)."""
        with open(os.path.join(self.workdir, "ks.out"), "ab") as err:
            self.daemon = subprocess.Popen(
                ["ip", "netns", "exec", self.lab.host.name, *self.ks_argv, "run", "-c", self.conf],
                env=dict(os.environ, PYTHONPATH=self.package_dir), stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL, stderr=err)

    def stop_daemon(self) -> None:
        if self.daemon is not None and self.daemon.poll() is None:
            self.daemon.terminate()
            try:
                self.daemon.wait(10)
            except subprocess.TimeoutExpired:
                self.daemon.kill()
                self.daemon.wait()

    def pids(self) -> List[int]:
        """kernelsync processes ExaBGP runs in H (stdin mode)."""
        return kernelsync_pids(self.lab.host.name, "exabgp")

    def query(self, what: str):
        try:
            return query(self.sock, what, timeout=5.0)
        except (OSError, ValueError):
            return None

    def converged(self) -> Optional[Routes]:
        """BIRD's export, if the kernel equals it and BIRD did not move while we read."""
        before = bird_expected(self.lab)
        got = kernel_routes(self.lab.host)
        if got != before:
            return None
        after = bird_expected(self.lab)
        return after if after == before else None

    def ready(self) -> bool:
        bgp = self.query("show bgp")
        return bool(bgp and bgp.get("ready")) and all(self.lab.established().values())

    def wait_converged(self, t0: float) -> Tuple[Optional[float], Optional[float]]:
        """(ready, converged): seconds from ``t0`` until the running kernelsync reports BGP
        ready (with the churn going on), and until the kernel equals the oracle.  The churn
        is paused from ready on while the kernel is compared (a moving target has no
        convergence time; the pause begins only once the restarted process has rebuilt and
        reconciled under load) and resumed after.  converged None: a divergence, recorded
        with a diff, after ``timeout``."""
        deadline = t0 + self.timeout
        ready = None
        while time.monotonic() < deadline:
            if self.ready():
                ready = time.monotonic() - t0
                break
            time.sleep(0.02)
        paused = self.churn.run.is_set()
        self.churn.pause()
        try:
            while time.monotonic() < deadline:
                if self.converged() is not None:
                    return ready, time.monotonic() - t0
                time.sleep(0.02)
            expected = bird_expected(self.lab)
            bgp = self.query("show bgp")
            self.divergences.append("BIRD sessions Established: %s; kernelsync BGP ready: %s\n%s" % (
                self.lab.established(), None if bgp is None else bgp.get("ready"),
                diff(expected, kernel_routes(self.lab.host))))
            return ready, None
        finally:
            if paused:
                self.churn.resume()

    def pace(self) -> None:
        """Wait, if needed, so that this kill's respawn stays within ExaBGP's budget."""
        while True:
            now = time.time()
            window = int(now) & ~(RESPAWN_WINDOW - 1)
            left = window + RESPAWN_WINDOW - now
            if self.respawns.get(window, 0) < RESPAWNS_PER_WINDOW and left > 2.0:
                self.respawns[window] = self.respawns.get(window, 0) + 1
                return
            time.sleep(left + 0.2)

    def kill(self) -> Tuple[float, float]:
        """SIGKILL the running kernelsync; returns (kill time, seconds until it runs again:
        restarted by us in relay mode, respawned by ExaBGP in stdin mode)."""
        if self.mode == "relay":
            t_kill = time.monotonic()
            self.daemon.send_signal(signal.SIGKILL)
            self.daemon.wait()
            self.start_daemon()
            return t_kill, time.monotonic() - t_kill
        self.pace()
        (old,) = wait_for(lambda: self.pids() if len(self.pids()) == 1 else None, timeout=10,
                          what="one kernelsync process")
        t_kill = time.monotonic()
        os.kill(old, signal.SIGKILL)
        wait_for(lambda: [p for p in self.pids() if p != old], timeout=20, interval=0.005,
                 what="ExaBGP to respawn kernelsync")
        return t_kill, time.monotonic() - t_kill

    def steady_prefixes(self, t_kill: float, t_end: float) -> Set[str]:
        keep = set(self.stable4) | set(self.stable6)
        for g in self.churn.steady(t_kill - MARGIN, t_end):
            keep.update(self.groups[g])
        return keep

    def lost(self, t_kill: float, t_end: float) -> List[str]:
        keep = self.steady_prefixes(t_kill, t_end)
        return sorted({p for _, p in self.monitor.deletions(t_kill, t_end) if p in keep})

    def rewritten(self, t_kill: float, t_end: float) -> List[str]:
        """Prefixes announced throughout whose route was written (replaced: e.g. moved to
        another nexthop group) between the kill and convergence: a restart should leave them."""
        keep = self.steady_prefixes(t_kill, t_end)
        return sorted({p for _, p in self.monitor.changes(t_kill, t_end) if p in keep})

    # the run ---------------------------------------------------------------------------------
    def run(self) -> dict:
        own = self.workdir is None
        self.workdir = self.workdir or tempfile.mkdtemp(prefix="ks-chaos-")
        self.sock = os.path.join(self.workdir, "ks.sock")
        self.relay_sock = os.path.join(self.workdir, "relay.sock")
        self.package_dir = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        self.conf = self.ks_config()
        self.ks_argv = [sys.executable, "-m", "kernelsync", "--log-level", "info", "--log-file",
                        os.path.join(self.workdir, "ks.log")]
        if self.mode == "relay":
            argv = ["env", "PYTHONPATH=%s" % self.package_dir, sys.executable, "-m", "kernelsync", "--log-level",
                    "info", "--log-file", os.path.join(self.workdir, "relay.log"), "exabgp", "-c", self.conf,
                    "--relay", self.relay_sock]
        else:
            argv = ["env", "PYTHONPATH=%s" % self.package_dir, *self.ks_argv, "exabgp", "-c", self.conf]
        self.lab = kslab.BgpLab("5.0", process_argv=argv, v4_prefixes=self.stable4, v6_prefixes=self.stable6,
                                statics=self.groups, workdir=os.path.join(self.workdir, "lab"), timeout=30.0,
                                exabgp_settings={"log.level": "WARNING"})
        total = len(self.stable4) + len(self.stable6) + sum(len(v) for v in self.groups.values())
        self.say("chaos-bgp: seed %d, %d kills; BIRD -> ExaBGP %s (ADD-PATH, 2 sessions) -> %s; "
                 "%d prefixes (%d stable, %d in %d churn groups), a toggle every %.2f s on average; workdir %s"
                 % (self.seed, self.kills, kslab.exabgp_installed("5.0"),
                    "kernelsync exabgp --relay -> kernelsync run (killed)" if self.mode == "relay"
                    else "kernelsync exabgp (stdin, killed, respawned by ExaBGP)", total,
                    len(self.stable4) + len(self.stable6), total - len(self.stable4) - len(self.stable6),
                    len(self.groups), self.churn_interval, self.workdir))
        started = time.monotonic()
        try:
            try:
                self.lab._make_topology()
                if self.mode == "relay":
                    self.start_daemon()
                    wait_for(lambda: os.path.exists(self.relay_sock), timeout=20, what="the relay socket")
                self.lab._start_bird()
                self.lab.start_exabgp()
                self.lab.wait_established()
                self.monitor = Monitor(self.lab.host)
                self.churn = Churn(self.lab, list(self.groups), self.churn_interval, self.churn_rng)
                try:
                    first = self.wait_converged(time.monotonic())[1]
                    if first is None:
                        raise RuntimeError("the first start never converged:\n%s" % self.divergences[-1])
                    self.say("initial load converged in %.2f s" % first)
                    self.churn.start()
                    self._kills()
                finally:
                    self.churn.stop()
                    self.monitor.stop()
            finally:
                self.stop_daemon()
                self.lab.stop()
        finally:
            if own and not os.environ.get("KERNELSYNC_LAB_KEEP"):
                subprocess.run(["rm", "-rf", self.workdir])
        report = self.report(time.monotonic() - started)
        report["mode"] = self.mode
        return report

    def _kills(self) -> None:
        pending: Optional[dict] = None  # an early kill whose window joins the next one
        for i in range(self.kills):
            quiet = self.quiet_every > 0 and i % self.quiet_every == 1 % self.quiet_every
            early = not quiet and pending is None and i + 1 < self.kills and self.rng.random() < self.early_share
            delay = self.rng.uniform(0.0, self.max_delay)
            record = {"kill": i + 1, "kind": "quiet" if quiet else "early" if early else "churn"}
            if quiet:
                self.churn.pause()
                if self.wait_converged(time.monotonic())[1] is None:
                    record["error"] = "no convergence before the quiet kill"
                time.sleep(0.5)
            elif not early and pending is None:
                time.sleep(delay)
            t_kill, respawn = self.kill()
            record["t"] = t_kill
            record["respawn_s"] = round(respawn, 3)
            if early:
                pending = record
                time.sleep(self.rng.uniform(0.1, 1.5))
                self.records.append(record)
                continue
            ready, conv = self.wait_converged(t_kill)
            t_end = time.monotonic()
            record["ready_s"] = None if ready is None else round(ready, 3)
            record["converge_s"] = None if conv is None else round(conv, 3)
            window_start = pending["t"] if pending else t_kill
            record["lost"] = self.lost(window_start, t_end)
            record["steady_rewritten"] = len(self.rewritten(window_start, t_end))
            if pending is not None:
                pending["joined"] = i + 1
                pending = None
            if quiet:
                time.sleep(1.0)
                stats = self.query("show stats") or {}
                writes = stats.get("writes", {})
                record["writes"] = writes
                record["route_writes"] = writes.get("route-set", 0) + writes.get("route-del", 0)
                record["monitor_messages"] = self.monitor.count(t_kill, time.monotonic())
                self.churn.resume()
            self.records.append(record)
            self.say("kill %3d %-5s ready %s  converged %s  lost %d  steady rewritten %d%s"
                     % (i + 1, record["kind"], "%.2f s" % ready if ready is not None else "NEVER",
                        "%.2f s" % conv if conv is not None else "NEVER (divergence)", len(record["lost"]),
                        record["steady_rewritten"],
                        "  writes %d (ip monitor: %d)" % (record["route_writes"], record["monitor_messages"])
                        if quiet else ""))
        for r in self.records:
            r.pop("t", None)

    def report(self, elapsed: float) -> dict:
        conv = [r["converge_s"] for r in self.records if r.get("converge_s") is not None]
        ready = [r["ready_s"] for r in self.records if r.get("ready_s") is not None]
        quiet = [r for r in self.records if r["kind"] == "quiet"]
        lost = sorted({p for r in self.records for p in r.get("lost", ())})
        kinds = {k: sum(1 for r in self.records if r["kind"] == k) for k in ("churn", "quiet", "early")}
        return {
            "seed": self.seed, "kills": len(self.records), "kinds": kinds, "elapsed_s": round(elapsed, 1),
            "toggles": self.churn.toggles,
            "convergence_s": {"median": percentile(conv, 0.5), "p99": percentile(conv, 0.99),
                              "max": max(conv) if conv else None, "n": len(conv)},
            "ready_s": {"median": percentile(ready, 0.5), "p99": percentile(ready, 0.99),
                        "max": max(ready) if ready else None, "n": len(ready)},
            "lost_prefixes": len(lost), "lost_examples": lost[:10],
            "steady_rewritten": sum(r.get("steady_rewritten", 0) for r in self.records),
            "quiet_route_writes": [r.get("route_writes") for r in quiet],
            "quiet_monitor_messages": [r.get("monitor_messages") for r in quiet],
            "quiet_writes": [r.get("writes") for r in quiet],
            "divergences": self.divergences,
            "records": self.records,
        }


def summary(report: dict) -> str:
    c = report["convergence_s"]
    fmt = lambda v: "-" if v is None else "%.2f s" % v
    qw = [w for w in report["quiet_route_writes"] if w is not None]
    lines = [
        "kills: %d (%s), %d toggles of BIRD's churn groups, %.0f s" % (
            report["kills"], ", ".join("%d %s" % (n, k) for k, n in report["kinds"].items()),
            report["toggles"], report["elapsed_s"]),
        "BGP ready after the kill (under churn, %d kills): median %s, p99 %s, max %s" % (
            report["ready_s"]["n"], fmt(report["ready_s"]["median"]), fmt(report["ready_s"]["p99"]),
            fmt(report["ready_s"]["max"])),
        "convergence after the kill (kernel == BIRD's export, %d kills): median %s, p99 %s, "
        "max %s" % (c["n"], fmt(c["median"]), fmt(c["p99"]), fmt(c["max"])),
        "prefixes lost during respawn (announced throughout, deleted from the kernel): %d%s" % (
            report["lost_prefixes"], " e.g. %s" % report["lost_examples"] if report["lost_prefixes"] else ""),
        "routes of prefixes announced throughout rewritten during respawn (summed over kills): %d" % (
            report["steady_rewritten"]),
        "writes per quiet adoption (route-set + route-del): %s (max %s); ip monitor route messages: %s" % (
            qw, max(qw) if qw else "-", report["quiet_monitor_messages"]),
        "divergences: %d" % len(report["divergences"]),
    ]
    lines += report["divergences"]
    return "\n".join(lines)


def failed(report: dict) -> bool:
    return bool(report["lost_prefixes"] or report["divergences"] or report["steady_rewritten"]
                or any(w for w in report["quiet_route_writes"])
                or any(r.get("error") for r in report["records"]))


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``kernelsync chaos-bgp``."""
    parser.add_argument("--kills", type=int, default=100, help="kill -9s of kernelsync (default %(default)s)")
    parser.add_argument("--seed", type=int, default=None, help="random seed (default: a random one, printed)")
    parser.add_argument("--groups", type=int, default=8, help="churn groups, BIRD static protocols (default %(default)s)")
    parser.add_argument("--group-size", type=int, default=300, help="prefixes per IPv4 churn group; IPv6 half (default %(default)s)")
    parser.add_argument("--stable", type=int, default=400, help="IPv4 prefixes never withdrawn; IPv6 half (default %(default)s)")
    parser.add_argument("--churn-interval", type=float, default=0.3, help="mean seconds between toggles (default %(default)s)")
    parser.add_argument("--max-delay", type=float, default=2.0, help="a churn kill comes 0..this many s after convergence (default %(default)s)")
    parser.add_argument("--quiet-every", type=int, default=5, help="every Nth kill is quiet (churn paused); 0: none (default %(default)s)")
    parser.add_argument("--early-share", type=float, default=0.1, help="share of kills that hit the respawned process before it converged (default %(default)s)")
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds a respawn may take to converge (default %(default)s)")
    parser.add_argument("--mode", choices=("relay", "stdin"), default="relay",
                        help="relay: kill 'kernelsync run' behind 'kernelsync exabgp --relay' (restarted by the tool); "
                             "stdin: kill ExaBGP's process itself (respawned by ExaBGP) (default %(default)s)")
    parser.add_argument("--json", metavar="FILE", help="also write the full report (every kill) to FILE")


def main(args) -> int:
    if os.geteuid() != 0:
        print("chaos-bgp needs root (network namespaces)", file=sys.stderr)
        return 2
    if not (kslab.which("bird") and kslab.which("birdc") and kslab.exabgp_installed("5.0")):
        kslab.install_requirements(("5.0",))
    # stopped by SIGTERM or SIGINT (even started in the background, where SIGINT is ignored):
    # unwind, so the lab's daemons and namespaces are removed
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    signal.signal(signal.SIGINT, signal.default_int_handler)
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(1 << 31)
    chaos = Chaos(args.kills, seed, groups=args.groups, group_size=args.group_size, stable=args.stable,
                  churn_interval=args.churn_interval, max_delay=args.max_delay, quiet_every=args.quiet_every,
                  early_share=args.early_share, timeout=args.timeout, mode=args.mode)
    report = chaos.run()
    print(summary(report), flush=True)
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(report, fh, indent=1)
    return 1 if failed(report) else 0


__all__ = ["Chaos", "add_arguments", "main", "summary", "failed", "bird_expected", "kernel_routes",
           "group_prefixes", "percentile", "parse_export"]
