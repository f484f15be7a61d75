"""An OSPF lab in scratch network namespaces, for tests of kernelsync's OSPF feeds.

Real routing daemons (BIRD 2, or FRR 8.4's zebra + ospfd) run by hand in three namespaces
(``/work/shared/reference/real-peers-in-netns.md``, sections 2 and 3).  Everything needs root.

Topology (namespace names are unique: ``ksO1-<pid>-<hex>`` etc.)::

    r1  lo 10.255.0.1/32              r2  lo 10.255.0.2/32
        e12 10.0.12.1/30 ---------------- e21 10.0.12.2/30
                                          st2 198.51.100.1/24  (stub)
                                          lan2 192.0.2.2/24 ---+
                                                               |  stub LAN (veth lan2-lan3)
                                      r3  lo 10.255.0.3/32     |
        e13 10.0.13.1/30 ---------------- e31 10.0.13.2/30     |
                                          lan3 192.0.2.3/24 ---+
                                          st3 203.0.113.1/24   (stub)

All OSPF links are point-to-point, cost 10, hello 1 s, dead 4 s, area 0.  r2 and r3 both
advertise the stub LAN 192.0.2.0/24 (cost 10; lan2/lan3 is a veth pair between them, no
adjacency on it), so r1 reaches it via r2 (:data:`NH_R2`, on e12) and via r3 (:data:`NH_R3`, on
e13) at metric 20: ECMP.  r2 also advertises :data:`STUB_R2` (198.51.100.0/24, on ``st2``, a veth
whose peer ``st2p`` stays in r2) and r3 :data:`STUB_R3` (203.0.113.0/24); each router's
loopback /32 (router id) is a stub too.  So r1 learns, besides the connected /30s: 192.0.2.0/24
(two paths), 198.51.100.0/24 and 10.255.0.2/32 via r2, 203.0.113.0/24 and 10.255.0.3/32 via r3.

``daemon="bird"``: BIRD 2 on r1, r2 and r3.  r1's BIRD exports every OSPF route into r1's
kernel table :data:`BIRD_TABLE` (100), protocol :data:`BIRD_PROTO` (12), metric = OSPF metric,
ECMP as one multipath route (RTA_MULTIPATH); r2 and r3 export nothing to their kernels.

``daemon="frr"``: FRR zebra + ospfd on r1, r2 and r3.  r1's zebra loads ``-M dplane_fpm_nl`` and
dials FPM at ``127.0.0.1:fpm_port`` inside r1 (the FPM server, kernelsync or
:class:`FpmCapture`, may start before or after the lab; zebra's first attempt is about 3 s after
it starts, then every 3 s); ``fpm_nexthop_groups`` chooses ``[no] fpm use-next-hop-groups``.
zebra also programs every router's kernel main table itself (routes proto ``ospf`` = 188 with
nexthop objects ``proto zebra``): that cannot be switched off.

What FRR 8.4 does, as seen here (tests/test_ospflab.py checks the FPM basics):

- ``fpm use-next-hop-groups`` is dplane_fpm_nl's *default*: without next-hop groups the config
  must say ``no fpm use-next-hop-groups`` (the lab writes one or the other).
- The FPM stream carries zebra's whole FIB, not only OSPF: connected routes (rtm_protocol 2)
  and ``fe80::/64`` too, all with RTA_PRIORITY 20, table 254.  One netlink message per frame,
  except a replace: RTM_DELROUTE + RTM_NEWROUTE in one frame.  With next-hop groups the replay
  sends every RTM_NEWNEXTHOP (members, dev-only ones, then groups) before the routes; a route
  going single-path points at the member id; a member whose link went down is never deleted
  over FPM (the kernel flushed it silently) and comes back under a new id.  Stopping ospfd
  alone: RTM_DELROUTE for its routes and RTM_DELNEXTHOP for their groups and members.
  SIGTERM to zebra (after ospfd): the RTM_DELROUTEs, no RTM_DELNEXTHOP.
- r1's kernel: zebra leaves its nexthop objects behind on SIGTERM (routes go), everything on
  SIGKILL; a restarted zebra does not clean all of them up.  zebra learns *foreign* nexthop
  objects (e.g. kernelsync's, proto 200) as "kernel" nexthop groups, allocates its own ids
  just above the highest id it has seen (kernelsync ids 1000-1002 -> zebra's 1008, 1009, ...),
  and after a carrier loss on e13 it sent RTM_NEWNEXTHOP for a foreign member id (1001) itself
  (it failed only because the carrier was down).  After a carrier flap (``peer_link``) zebra's
  kernel group kept one member (or a new group got weight 256) while zebra and FPM reported
  two, and a route install failed with "Nexthop id does not exist": for FRR,
  ``wait_routes(kernel=True)`` may never succeed after flaps; the daemon and FPM views do.

API::

    install_requirements(frr=True)      # apt bird2 (+ frr); no service starts; idempotent
    frr_installed() -> bool

    with OspfLab(daemon="bird"|"frr", fpm_port=2620, timeout=30.0, workdir=None,
                 fpm_nexthop_groups=True, fast_start=True) as lab:   # start() ... close()
        lab.r1, lab.r2, lab.r3        # NetNS of each router (None before start / after stop)
        lab.ns("r2")                  # the same by name
        lab.wait_ecmp()               # seconds waited until r1's daemon has NH_R2 and NH_R3
        lab.daemon_routes()           # ["10.0.12.2", "10.0.13.2"]: the daemon's own view
        lab.kernel_routes()           # r1's kernel route (BIRD: table 100, FRR: main table)
        lab.wait_routes([NH_R3])      # until the daemon (kernel=True: and the kernel) shows it
        lab.link("e12", "down")       # r1's end admin down/up (e12 or e13)
        lab.peer_link("e12", "down")  # the r2/r3 end down/up: r1's e12 loses carrier
        lab.stop_daemon("r1")         # SIGTERM (FRR: ospfd, then zebra; or daemons=["ospfd"])
        lab.start_daemon("r1")        # start what is not running again
        lab.kill_daemon("r1")         # SIGKILL
        lab.daemon_pids("r1")         # {"bird": 123} / {"zebra": 124, "ospfd": 130}
        lab.birdc("r1", "show", "ospf", "neighbors"); lab.vtysh("r1", "show ip ospf neighbor")
        lab.diagnostics()             # log tails, neighbors, routes

    lab = OspfLab("frr"); lab.start(daemons=False)   # namespaces and links only, then
    ...; lab.start_daemons(); ...; lab.close()       #   e.g. kernelsync in r1 first

    with FpmCapture(lab.r1, port=2620) as fpm:   # a recording FPM server inside r1
        fpm.wait(lambda m: m["type"] == RTM_NEWROUTE and m.get("dst") == LAN)
        fpm.frames, fpm.messages(), fpm.connections

``start()`` (also by ``with``) builds the namespaces and links, starts the daemons and returns
once each answers on its control socket (about 0.45 s for BIRD, r1 starting 0.3 s after r2
and r3; 0.4 s for FRR); it does not wait for routes (:meth:`OspfLab.wait_ecmp`) nor for an FPM
server.  ``stop()`` (also by ``with``, and
by a failing ``start()``; idempotent) SIGKILLs every process in the lab's namespaces --
including a kernelsync the test started in r1 -- and deletes the namespaces: nothing outlives
them (FRR's ``/var/run/frr`` is a private per-router directory, see below).  A workdir the lab
made itself is removed on ``__exit__`` (or :meth:`OspfLab.close`) unless
``KERNELSYNC_LAB_KEEP=1``.

Convergence (measured on a 2-core VM, kernel 6.18, BIRD 2.0.12, FRR 8.4.4):

- BIRD, the reference way (``fast_start=False``): ECMP 7.1 s after start.  BIRD originates its
  router-LSA on the first OSPF tick (0.1 s after the protocol starts), before any adjacency is
  Full (about 1 s with hello 1), and then enforces MinLSInterval (5 s, a compile-time constant)
  before the LSA that lists the neighbour; the SPF runs on the 1 s ticks after that.
  Measured without effect: ``rfc1583compat yes``, ``retransmit 2`` (its minimum),
  ``transmit delay 1``, ``wait 2`` (its minimum; broadcast links only): 7.3 s; ``tick 2``:
  8.3 s (``tick`` and ``hello`` are whole seconds, at least 1).
- BIRD, ``fast_start=True`` (default): ECMP in table 100 about 2.5 s after ``start()``.  Every
  BIRD starts in graceful-restart recovery (``bird -R`` with ``graceful restart yes; graceful
  restart time 2;``): a router in recovery originates no router-LSA, and on a cold start the
  recovery ends when the grace time runs out (on the tick 2.1 s after start), by which the
  adjacencies are Full, so the first router-LSA already lists the neighbours and no
  MinLSInterval hold applies.  Two more details: BIRD 2.0.12 runs the flood event an LSA
  origination schedules from a timer only at the loop's next wake-up (next packet or timer),
  so r2's and r3's LSAs, originated on their grace tick, leave only when r1's next hello
  arrives; hence r1 starts 0.3 s after r2 and r3: r1's hello (1.003 s phase) wakes them after
  their grace tick and before r1's own, and r1's SPF on its grace tick has the whole area.
  Grace time 1 would give 1.2 s, but the adjacencies get Full only ~0.1 s before that tick
  and any hiccup falls back to the 7 s path.  Recovery has no other lasting effect: the kernel
  protocol has no ``graceful restart``, and r2/r3 become helpers only on a grace-LSA, which
  nobody sends.
- BIRD flaps (each right after the previous convergence; dominated by MinLSInterval, counted
  from the router's previous origination): ``link("e12", "down")``: the kernel marks the e12
  leg of the table-100 route dead at once (no netlink message; :meth:`kernel_routes` leaves
  dead legs out), BIRD's route goes single-path 4-6 s later; ``"up"``: ECMP again after
  about 6 s; ``peer_link`` down/up: 5 s / 7-8 s.  ``stop_daemon("r1")``: 0.01 s, BIRD removes
  its table-100 routes; ``start_daemon("r1")`` (also in recovery): ECMP 1.1 s when r2's and
  r3's LSAs are older than 5 s, up to 7-12 s right after flaps (the restart drops the
  adjacencies, r2's LSA changes twice and waits for its MinLSInterval).  ``kill_daemon``
  leaves the routes in table 100; BIRD's restart prunes them and writes them anew.
- FRR (fast ospfd timers): ECMP in zebra and r1's main table about 1.2 s after ``start()``;
  link or carrier down: single path in 0.05-0.1 s; up: ECMP after 1.1-1.7 s; ``stop_daemon``
  0.03 s, restart to ECMP 0.6-1 s.  zebra dials FPM 3 s after it starts and every 3 s while
  refused; after a dropped connection it reconnects 3 s later and replays its whole FIB.

Files in ``workdir`` (``/tmp/ksospf-*`` by default, mode 0755): per router a directory ``r1``,
``r2``, ``r3`` with BIRD's ``bird.conf``, ``bird.ctl``, ``bird.pid``, ``bird.log``,
``bird.out`` or FRR's ``zebra.conf``, ``ospfd.conf``, ``*.pid``, ``*.log``, ``*.out``,
``zserv.api``, ``zebra.vty``, ``ospfd.vty`` and ``run/`` (bind-mounted on ``/var/run/frr`` in the
daemons' private mount namespaces: ospfd writes ``ospfd-gr.json`` there whatever its options,
and three ospfds would otherwise share one file).  FRR's per-router directories are owned by
frr:frr, and the workdir must be reachable by user frr (a given workdir that is not, e.g. under
pytest's 0700 ``tmp_path``, gets its FRR directories in a separate ``/tmp/ksospf-frr-*``,
:attr:`OspfLab.frr_base`; their logs and configs are copied into the workdir on close).
"""
from __future__ import annotations

import ipaddress
import json
import os
import shutil
import signal
import socket
import struct
import subprocess
import tempfile
import threading
import time
from typing import Callable, Dict, Iterable, List, Optional, Sequence, Tuple

from ..core.model import format_address, format_prefix
from ..kernel.codec import (NEXTHOP_MESSAGES, NLMSGHDR, ROUTE_MESSAGES, RTM_DELNEXTHOP, RTM_DELROUTE, RTM_NEWNEXTHOP,
                            RTM_NEWROUTE, parse_nexthop, parse_route)
from .lab import (LabContext, LabError, alive, apt_install, in_netns, link_state, nexthop_gateways, parse_bird_routes,
                  read_text, tail, which)
from .netns import NetNS, unique_name, wait_for

ROUTERS = ("r1", "r2", "r3")
DAEMONS = ("bird", "frr")

#: r1's next hop via r2 (on e12) and via r3 (on e13)
NH_R2 = "10.0.12.2"
NH_R3 = "10.0.13.2"
#: the stub LAN behind r2 and r3: r1's ECMP prefix
LAN = "192.0.2.0/24"
#: r2's and r3's second stub prefixes (single path from r1)
STUB_R2 = "198.51.100.0/24"
STUB_R3 = "203.0.113.0/24"
ROUTER_IDS = {"r1": "10.255.0.1", "r2": "10.255.0.2", "r3": "10.255.0.3"}
#: BIRD's kernel table and protocol on r1
BIRD_TABLE = 100
BIRD_PROTO = 12
#: zebra's route protocol for OSPF routes (rtnetlink RTPROT_OSPF) and for its nexthop objects
FRR_OSPF_PROTO = 188
FRR_NEXTHOP_PROTO = 11
#: BIRD: graceful-restart grace time of ``fast_start`` (see the module docstring)
BIRD_GRACE_TIME = 2
#: BIRD ``fast_start``: r1 starts this many seconds after r2 and r3 (see the module docstring)
_BIRD_R1_OFFSET = 0.3

#: r1's OSPF links: r1 end -> (peer router, peer end, r1 address, peer address, prefix)
LINKS: Dict[str, Dict[str, str]] = {
    "e12": {"peer": "r2", "peer_dev": "e21", "local": "10.0.12.1", "remote": NH_R2,
            "prefix": "10.0.12.0/30"},
    "e13": {"peer": "r3", "peer_dev": "e31", "local": "10.0.13.1", "remote": NH_R3,
            "prefix": "10.0.13.0/30"},
}
#: per router: OSPF point-to-point interfaces and stub interfaces (with their prefixes)
_OSPF_IFS: Dict[str, List[str]] = {"r1": ["e12", "e13"], "r2": ["e21"], "r3": ["e31"]}
_STUB_IFS: Dict[str, List[Tuple[str, str]]] = {
    "r1": [],
    "r2": [("lan2", "192.0.2.2/24"), ("st2", "198.51.100.1/24")],
    "r3": [("lan3", "192.0.2.3/24"), ("st3", "203.0.113.1/24")],
}

FRR_DIR = "/usr/lib/frr"
_FRR_ORDER = ("zebra", "ospfd")      # start order; stop order is the reverse
_COST = 10
_HELLO = 1
_DEAD = 4

_MSG_NAMES = {RTM_NEWROUTE: "RTM_NEWROUTE", RTM_DELROUTE: "RTM_DELROUTE",
              RTM_NEWNEXTHOP: "RTM_NEWNEXTHOP", RTM_DELNEXTHOP: "RTM_DELNEXTHOP"}


# ---------------------------------------------------------------------------------------------
# Installing

def frr_installed() -> bool:
    """Whether FRR's zebra, ospfd, the dplane_fpm_nl module and vtysh are present."""
    return (all(os.access(os.path.join(FRR_DIR, d), os.X_OK) for d in _FRR_ORDER)
            and bool(_fpm_module()) and bool(which("vtysh")))


def _fpm_module() -> Optional[str]:
    for d in ("/usr/lib/x86_64-linux-gnu/frr/modules", "/usr/lib/aarch64-linux-gnu/frr/modules",
              "/usr/lib/frr/modules"):
        path = os.path.join(d, "dplane_fpm_nl.so")
        if os.path.exists(path):
            return path
    return None


def install_requirements(frr: bool = True) -> None:
    """Install the lab's daemons if missing; idempotent (quick when installed), prints what it
    installs.  ``bird``/``birdc``: Debian package ``bird2``; with ``frr``: package ``frr``
    (zebra, ospfd, vtysh, dplane_fpm_nl).  ``apt-get update`` runs once per process; a
    policy-rc.d keeps the packages' services from starting.  RuntimeError if an install fails
    or the programs are still missing."""
    packages = []
    if not (which("bird") and which("birdc")):
        packages.append("bird2")
    if frr and not frr_installed():
        packages.append("frr")
    if packages:
        apt_install(packages)
    if not (which("bird") and which("birdc")):
        raise RuntimeError("bird2 installed but bird/birdc not found on PATH or in /usr/sbin")
    if frr and not frr_installed():
        raise RuntimeError("frr installed but zebra/ospfd/vtysh/dplane_fpm_nl.so not found")


# ---------------------------------------------------------------------------------------------
# The lab

def _frr_can_reach(path: str) -> bool:
    """Whether user frr can enter and write ``path``."""
    try:
        return subprocess.run(["test", "-w", path, "-a", "-x", path], user="frr", group="frr",
                              extra_groups=[]).returncode == 0
    except (KeyError, OSError):
        return False


def _gateways(entries: list, ns: NetNS, net: ipaddress.IPv4Network,
              include_dead: bool = False) -> List[str]:
    out: List[str] = []
    for entry in entries:
        if entry.get("type", "unicast") != "unicast":
            continue
        try:
            if ipaddress.ip_network(entry.get("dst", ""), strict=False) != net:
                continue
        except ValueError:
            continue
        if entry.get("nexthops"):
            out.extend(nh["gateway"] for nh in entry["nexthops"]
                       if nh.get("gateway") and (include_dead or "dead" not in nh.get("flags", ())))
        elif entry.get("gateway"):
            out.append(entry["gateway"])
        elif "nhid" in entry:
            out.extend(nexthop_gateways(ns, entry["nhid"]))
    return out


class OspfLab(LabContext):
    """Three routers r1, r2, r3 running OSPF (BIRD 2 or FRR); kernelsync runs in ``r1``.

    Arguments:
        daemon: "bird" (BIRD 2 everywhere; r1 exports into kernel table 100, proto 12) or
            "frr" (zebra + ospfd everywhere; r1's zebra streams its FIB over FPM).
        fpm_port: FRR: the TCP port r1's zebra dials (``fpm address 127.0.0.1 port N``), inside
            r1.  Ignored for BIRD.
        timeout: seconds each wait may take by default (daemon start/stop, wait_ecmp).
        workdir: directory for configs, logs, pid files and control sockets; None: a new
            ``/tmp/ksospf-*`` (mode 0755), removed on ``__exit__`` unless
            ``KERNELSYNC_LAB_KEEP=1``.  Keep it short (unix socket paths must fit 108 bytes).
        fpm_nexthop_groups: FRR: ``fpm use-next-hop-groups`` (RTM_NEWNEXTHOP objects, routes
            with RTA_NH_ID) or not (routes with RTA_MULTIPATH).
        fast_start: BIRD: start in graceful-restart recovery for a 2.5 s cold start instead of
            7 s (module docstring); also used by :meth:`start_daemon`.  Ignored for FRR.
    """

    def __init__(self, daemon: str = "bird", fpm_port: int = 2620, timeout: float = 30.0,
                 workdir: Optional[str] = None, fpm_nexthop_groups: bool = True,
                 fast_start: bool = True) -> None:
        if daemon not in DAEMONS:
            raise ValueError("daemon must be one of %s, not %r" % (", ".join(DAEMONS), daemon))
        if not (isinstance(fpm_port, int) and 0 < fpm_port < 65536):
            raise ValueError("bad fpm_port %r" % (fpm_port,))
        self.daemon = daemon
        self.fpm_port = fpm_port
        self.fpm_nexthop_groups = bool(fpm_nexthop_groups)
        self.fast_start = bool(fast_start)
        self.timeout = timeout
        self._own_workdir = workdir is None
        if workdir is None:
            self.workdir = tempfile.mkdtemp(prefix="ksospf-")
            os.chmod(self.workdir, 0o755)
        else:
            self.workdir = os.path.abspath(workdir)
            os.makedirs(self.workdir, exist_ok=True)
        #: where FRR's per-router directories go (see :meth:`_frr_base`); None until start
        self.frr_base: Optional[str] = None
        self._own_frr_base = False
        self._ns: Dict[str, Optional[NetNS]] = {r: None for r in ROUTERS}
        #: time.monotonic() when start() began / the daemons were started
        self.started_at: Optional[float] = None
        self.daemons_started_at: Optional[float] = None

    # namespaces ------------------------------------------------------------------------------
    @property
    def r1(self) -> Optional[NetNS]:
        """r1's NetNS (where kernelsync runs); None before start / after stop."""
        return self._ns["r1"]

    @property
    def r2(self) -> Optional[NetNS]:
        return self._ns["r2"]

    @property
    def r3(self) -> Optional[NetNS]:
        return self._ns["r3"]

    def ns(self, router: str) -> NetNS:
        """The NetNS of ``router`` ("r1", "r2", "r3"); LabError if the lab is not started."""
        self._check_router(router)
        ns = self._ns[router]
        if ns is None:
            raise LabError("lab not started")
        return ns

    @staticmethod
    def _check_router(router: str) -> str:
        if router not in ROUTERS:
            raise ValueError("unknown router %r (routers: %s)" % (router, ", ".join(ROUTERS)))
        return router

    # paths -----------------------------------------------------------------------------------
    def router_dir(self, router: str) -> str:
        """The directory of ``router``'s daemon files (FRR: owned by frr:frr)."""
        self._check_router(router)
        if self.daemon == "frr" and self.frr_base:
            return os.path.join(self.frr_base, router)
        return os.path.join(self.workdir, router)

    def _path(self, router: str, name: str) -> str:
        return os.path.join(self.router_dir(router), name)

    def bird_ctl(self, router: str = "r1") -> str:
        return self._path(router, "bird.ctl")

    def _remove_workdir(self) -> None:
        if os.environ.get("KERNELSYNC_LAB_KEEP") == "1":
            return
        if self._own_frr_base and self.frr_base:
            if not self._own_workdir:
                # a given workdir keeps the logs and configs of the separate FRR directories
                for router in ROUTERS:
                    src = os.path.join(self.frr_base, router)
                    dst = os.path.join(self.workdir, router)
                    os.makedirs(dst, exist_ok=True)
                    for name in os.listdir(src) if os.path.isdir(src) else ():
                        if name.endswith((".log", ".out", ".conf")):
                            shutil.copy(os.path.join(src, name), dst)
            shutil.rmtree(self.frr_base, ignore_errors=True)
        if self._own_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    # start / stop ----------------------------------------------------------------------------
    def start(self, daemons: bool = True) -> None:
        """Namespaces, links and (unless ``daemons`` is False) the daemons, as
        :meth:`start_daemons`; returns once every daemon answers on its control socket
        (routes come later: :meth:`wait_ecmp`).  With ``daemons=False`` the namespaces exist
        on return (e.g. to start an FPM server or kernelsync in r1 first) and
        :meth:`start_daemons` starts them.  LabError (with the logs) if a daemon fails;
        everything started is stopped again first."""
        if self.r1 is not None:
            raise LabError("lab already started")
        if self.daemon == "bird" and not (which("bird") and which("birdc")):
            raise LabError("bird/birdc not found: run kernelsync.tools.ospflab.install_requirements()")
        if self.daemon == "frr" and not frr_installed():
            raise LabError("FRR not found: run kernelsync.tools.ospflab.install_requirements(frr=True)")
        self.started_at = time.monotonic()
        try:
            self._make_topology()
            self._prepare_dirs()
            if daemons:
                self.start_daemons()
        except BaseException:
            self.stop()
            raise

    def start_daemons(self) -> None:
        """Start every router's daemons (BIRD: r2 and r3, then r1 0.3 s later with
        ``fast_start``; FRR: zebra then ospfd on r1, r2, r3) and wait until they answer.
        LabError (with the logs) if one fails; the lab stays up (``stop()`` cleans up)."""
        self.ns("r1")
        if any(self.daemon_pids(r) for r in ROUTERS):
            raise LabError("daemons already running: %s"
                           % {r: self.daemon_pids(r) for r in ROUTERS})
        self.daemons_started_at = time.monotonic()
        if self.daemon == "bird":
            # r2 and r3 first: their grace time ends (and their router-LSAs go out) just
            # before r1's, so r1's SPF on that tick sees the whole area
            for router in ("r2", "r3"):
                self._spawn_bird(router)
            for router in ("r2", "r3"):
                self._wait_bird(router)
            if self.fast_start:
                # the phase of r1's ticks and hellos against r2's and r3's (docstring)
                delay = self.daemons_started_at + _BIRD_R1_OFFSET - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
            self._spawn_bird("r1")
            self._wait_bird("r1")
        else:
            for router in ROUTERS:
                self._start_frr(router, _FRR_ORDER)

    def _make_topology(self) -> None:
        for n, router in enumerate(ROUTERS, 1):
            ns = self._ns[router] = NetNS(unique_name("ksO%d" % n))
            ns.sysctl("net.ipv4.ip_forward", "1")
            ns.ip("addr", "add", ROUTER_IDS[router] + "/32", "dev", "lo")
        r1 = self._ns["r1"]
        for dev, link in LINKS.items():
            peer = self._ns[link["peer"]]
            r1.ip("link", "add", dev, "type", "veth", "peer", "name", link["peer_dev"],
                  "netns", peer.name)
            r1.ip("addr", "add", link["local"] + "/30", "dev", dev)
            peer.ip("addr", "add", link["remote"] + "/30", "dev", link["peer_dev"])
            r1.ip("link", "set", dev, "up")
            peer.ip("link", "set", link["peer_dev"], "up")
        r2, r3 = self._ns["r2"], self._ns["r3"]
        r2.ip("link", "add", "lan2", "type", "veth", "peer", "name", "lan3", "netns", r3.name)
        for router in ("r2", "r3"):
            ns = self._ns[router]
            for dev, addr in _STUB_IFS[router]:
                if dev.startswith("st"):
                    ns.ip("link", "add", dev, "type", "veth", "peer", "name", dev + "p")
                    ns.ip("link", "set", dev + "p", "up")
                ns.ip("addr", "add", addr, "dev", dev)
                ns.ip("link", "set", dev, "up")

    def _prepare_dirs(self) -> None:
        if self.daemon == "frr":
            self.frr_base = self.workdir
            if not _frr_can_reach(self.workdir):
                self.frr_base = tempfile.mkdtemp(prefix="ksospf-frr-")
                os.chmod(self.frr_base, 0o755)
                self._own_frr_base = True
        for router in ROUTERS:
            d = self.router_dir(router)
            os.makedirs(d, exist_ok=True)
            if self.daemon == "frr":
                os.makedirs(os.path.join(d, "run"), exist_ok=True)
                for path in (d, os.path.join(d, "run")):
                    shutil.chown(path, "frr", "frr")
                    os.chmod(path, 0o755)

    def stop(self) -> None:
        """SIGKILL every process in the lab's namespaces (daemons, and whatever else a test
        started there, e.g. kernelsync) and delete the namespaces.  Idempotent; about 0.1 s."""
        namespaces = [ns for ns in self._ns.values() if ns is not None]
        for router in ROUTERS:
            self._ns[router] = None
        pids: List[int] = []
        for ns in namespaces:
            proc = subprocess.run(["ip", "netns", "pids", ns.name], capture_output=True,
                                  text=True)
            pids.extend(int(p) for p in proc.stdout.split() if p.isdigit())
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        try:
            wait_for(lambda: not any(alive(p) for p in pids), timeout=10.0, interval=0.01,
                     what="the lab's processes to exit")
        except TimeoutError:
            pass
        for ns in namespaces:
            ns.delete()

    # daemons ---------------------------------------------------------------------------------
    def _daemon_names(self, router: str, daemons: Optional[Iterable[str]]) -> List[str]:
        known = ["bird"] if self.daemon == "bird" else list(_FRR_ORDER)
        if daemons is None:
            return known
        names = [daemons] if isinstance(daemons, str) else list(daemons)
        for name in names:
            if name not in known:
                raise ValueError("unknown daemon %r for %s (known: %s)"
                                 % (name, self.daemon, ", ".join(known)))
        return [n for n in known if n in names]

    def daemon_pids(self, router: str = "r1") -> Dict[str, int]:
        """{daemon name: pid} of ``router``'s routing daemons that are running (in the
        router's namespace): ``{"bird": pid}`` or ``{"zebra": pid, "ospfd": pid}``."""
        ns = self._ns[self._check_router(router)]
        out: Dict[str, int] = {}
        if ns is None:
            return out
        for name in self._daemon_names(router, None):
            text = read_text(self._path(router, name + ".pid")).strip()
            if text.isdigit() and alive(int(text)) and in_netns(int(text), ns):
                out[name] = int(text)
        return out

    def _signal(self, router: str, daemons: Optional[Iterable[str]], sig: int,
                timeout: Optional[float]) -> None:
        names = self._daemon_names(router, daemons)
        running = self.daemon_pids(router)
        # FRR: ospfd before zebra (zebra then sees its client go and withdraws its routes)
        for name in reversed(names):
            pid = running.get(name)
            if pid is None:
                continue
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                continue
            try:
                wait_for(lambda: not alive(pid), interval=0.01,
                         timeout=self.timeout if timeout is None else timeout,
                         what="%s %s (pid %d) to exit" % (router, name, pid))
            except TimeoutError:
                os.kill(pid, signal.SIGKILL)
                wait_for(lambda: not alive(pid), timeout=5.0, interval=0.01,
                         what="%s %s (pid %d) to exit after SIGKILL" % (router, name, pid))

    def stop_daemon(self, router: str = "r1", daemons: Optional[Iterable[str]] = None,
                    timeout: Optional[float] = None) -> None:
        """SIGTERM ``router``'s routing daemons and wait until they exited (SIGKILL after
        ``timeout``).  ``daemons``: None = all of them (BIRD: "bird"; FRR: "ospfd" then
        "zebra"), or a subset, e.g. ``["ospfd"]`` (zebra stays and withdraws the OSPF
        routes).  BIRD removes its table-100 routes on SIGTERM and exits within about 0.01 s;
        zebra (0.03 s) removes its main-table routes and leaves its nexthop objects."""
        self.ns(router)
        self._signal(router, daemons, signal.SIGTERM, timeout)

    def kill_daemon(self, router: str = "r1", daemons: Optional[Iterable[str]] = None) -> None:
        """SIGKILL ``router``'s routing daemons (all, or the named ones) and wait until they
        are gone.  Their kernel routes (and zebra's nexthop objects) stay behind."""
        self.ns(router)
        self._signal(router, daemons, signal.SIGKILL, 5.0)

    def start_daemon(self, router: str = "r1", daemons: Optional[Iterable[str]] = None) -> None:
        """Start ``router``'s routing daemons that are not running (all, or the named ones;
        FRR: zebra before ospfd) with the same configuration, and wait until they answer.
        Does not wait for routes."""
        self.ns(router)
        names = [n for n in self._daemon_names(router, daemons)
                 if n not in self.daemon_pids(router)]
        if not names:
            return
        if self.daemon == "bird":
            self._spawn_bird(router)
            self._wait_bird(router)
        else:
            self._start_frr(router, names)

    # BIRD ------------------------------------------------------------------------------------
    def bird_conf(self, router: str) -> str:
        """The BIRD configuration of ``router`` (as written to ``rN/bird.conf``)."""
        gr = ("  graceful restart yes; graceful restart time %d;\n" % BIRD_GRACE_TIME
              if self.fast_start else "")
        kernel = ""
        if router == "r1":
            kernel = ("protocol kernel kt100 {\n"
                      "  kernel table %d; learn no; persist no; scan time 20; metric 0;\n"
                      "  ipv4 { import none; export filter { krt_metric = ospf_metric1; "
                      "accept; }; };\n"
                      "}\n" % BIRD_TABLE)
        ptp = ", ".join('"%s"' % dev for dev in _OSPF_IFS[router])
        stubs = ", ".join('"%s"' % dev for dev in [d for d, _ in _STUB_IFS[router]] + ["lo"])
        return (
            "# written by kernelsync.tools.ospflab\n"
            'log "%(log)s" all;\n'
            "debug protocols { states, events };\n"
            "router id %(rid)s;\n"
            "protocol device { scan time 10; }\n"
            "%(kernel)s"
            "protocol ospf v2 ospf1 {\n"
            "  ecmp yes;\n"
            "%(gr)s"
            "  ipv4 { import all; export none; };\n"
            "  area 0 {\n"
            "    interface %(ptp)s { type ptp; hello %(hello)d; dead %(dead)d; cost %(cost)d; };\n"
            "    interface %(stubs)s { stub yes; cost %(cost)d; };\n"
            "  };\n"
            "}\n" % dict(log=self._path(router, "bird.log"), rid=ROUTER_IDS[router],
                         kernel=kernel, gr=gr, ptp=ptp, stubs=stubs, hello=_HELLO, dead=_DEAD,
                         cost=_COST))

    def _spawn_bird(self, router: str) -> None:
        ns = self.ns(router)
        conf = self._path(router, "bird.conf")
        with open(conf, "w") as f:
            f.write(self.bird_conf(router))
        argv = [which("bird") or "bird", "-c", conf, "-s", self.bird_ctl(router),
                "-P", self._path(router, "bird.pid")]
        if self.fast_start:
            argv.append("-R")
        with open(self._path(router, "bird.out"), "ab") as out:
            proc = subprocess.run(["ip", "netns", "exec", ns.name, *argv], stdout=out,
                                  stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        if proc.returncode != 0:
            raise LabError("%s: bird failed to start (exit %d)\n%s"
                           % (router, proc.returncode, self.diagnostics()))

    def _wait_bird(self, router: str) -> None:
        def up() -> bool:
            if not os.path.exists(self.bird_ctl(router)):
                return False
            try:
                return "ospf1" in self.birdc(router, "show", "protocols")
            except (RuntimeError, subprocess.TimeoutExpired):
                return False
        try:
            wait_for(up, timeout=self.timeout, interval=0.005,
                     what="%s's BIRD to answer" % router)
        except TimeoutError as exc:
            raise LabError("%s\n%s" % (exc, self.diagnostics())) from None

    def birdc(self, router: str, *args: str) -> str:
        """``birdc -s rN/bird.ctl ARGS``'s output; RuntimeError if birdc fails (BIRD down)."""
        proc = subprocess.run([which("birdc") or "birdc", "-s", self.bird_ctl(router), *args],
                              capture_output=True, text=True, timeout=self.timeout)
        if proc.returncode != 0:
            raise RuntimeError("%s: birdc %s: exit %d: %s%s" % (router, " ".join(args),
                               proc.returncode, proc.stdout, proc.stderr))
        return proc.stdout

    # FRR -------------------------------------------------------------------------------------
    def zebra_conf(self, router: str) -> str:
        """zebra's configuration of ``router`` (FPM lines on r1 only)."""
        lines = ["! written by kernelsync.tools.ospflab", "hostname %s" % router,
                 "log file %s informational" % self._path(router, "zebra.log")]
        if router == "r1":
            lines.append("fpm address 127.0.0.1 port %d" % self.fpm_port)
            # FRR 8.4's dplane_fpm_nl has next-hop groups on by default: say it either way
            lines.append("fpm use-next-hop-groups" if self.fpm_nexthop_groups
                         else "no fpm use-next-hop-groups")
        return "\n".join(lines) + "\n"

    def ospfd_conf(self, router: str) -> str:
        """ospfd's configuration of ``router``."""
        lines = ["! written by kernelsync.tools.ospflab", "hostname %s" % router,
                 "log file %s informational" % self._path(router, "ospfd.log")]
        for dev in _OSPF_IFS[router]:
            lines += ["interface %s" % dev, " ip ospf network point-to-point",
                      " ip ospf hello-interval %d" % _HELLO, " ip ospf dead-interval %d" % _DEAD,
                      " ip ospf cost %d" % _COST]
        for dev, _ in _STUB_IFS[router]:
            lines += ["interface %s" % dev, " ip ospf cost %d" % _COST]
        lines += ["router ospf", " ospf router-id %s" % ROUTER_IDS[router]]
        nets = [LINKS[d]["prefix"] for d in LINKS if d in _OSPF_IFS[router]]
        nets += [l["prefix"] for l in LINKS.values() if l["peer_dev"] in _OSPF_IFS[router]]
        nets += [str(ipaddress.ip_interface(a).network) for _, a in _STUB_IFS[router]]
        nets.append(ROUTER_IDS[router] + "/32")
        lines += [" network %s area 0" % n for n in nets]
        lines += [" passive-interface %s" % d for d, _ in _STUB_IFS[router]]
        lines += [" passive-interface lo",
                  " timers throttle spf 0 50 1000",
                  " timers throttle lsa all 0",
                  " timers lsa min-arrival 0"]
        return "\n".join(lines) + "\n"

    def _frr_argv(self, router: str, name: str) -> List[str]:
        d = self.router_dir(router)
        argv = [os.path.join(FRR_DIR, name), "-d"]
        if name == "zebra" and router == "r1":
            argv += ["-M", "dplane_fpm_nl"]
        argv += ["-f", self._path(router, name + ".conf"), "-i", self._path(router, name + ".pid"),
                 "-z", self._path(router, "zserv.api"), "--vty_socket", d, "-P", "0",
                 "-u", "frr", "-g", "frr"]
        return argv

    def _start_frr(self, router: str, names: Sequence[str]) -> None:
        ns = self.ns(router)
        for name in _FRR_ORDER:
            if name not in names:
                continue
            conf = self._path(router, name + ".conf")
            with open(conf, "w") as f:
                f.write(self.zebra_conf(router) if name == "zebra" else self.ospfd_conf(router))
            shutil.chown(conf, "frr", "frr")
            for stale in (name + ".pid", name + ".vty") + (("zserv.api",) if name == "zebra"
                                                          else ()):
                try:
                    os.unlink(self._path(router, stale))
                except FileNotFoundError:
                    pass
            # a private /var/run/frr per router: `ip netns exec` runs the command in a new
            # mount namespace, so the bind mount is seen by this daemon only
            script = 'mount --bind "$1" /var/run/frr && shift && exec "$@"'
            with open(self._path(router, name + ".out"), "ab") as out:
                proc = subprocess.run(
                    ["ip", "netns", "exec", ns.name, "/bin/sh", "-c", script, "sh",
                     self._path(router, "run"), *self._frr_argv(router, name)],
                    stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
            if proc.returncode != 0:
                raise LabError("%s: %s failed to start (exit %d)\n%s"
                               % (router, name, proc.returncode, self.diagnostics()))
            ready = [self._path(router, name + ".vty")]
            if name == "zebra":
                ready.append(self._path(router, "zserv.api"))
            try:
                wait_for(lambda: (name in self.daemon_pids(router)
                                  and all(os.path.exists(p) for p in ready)),
                         timeout=self.timeout, interval=0.005,
                         what="%s's %s to start" % (router, name))
            except TimeoutError as exc:
                raise LabError("%s\n%s" % (exc, self.diagnostics())) from None

    def vtysh(self, router: str, *commands: str) -> str:
        """``vtysh --vty_socket rN -c CMD ...``'s output; RuntimeError if vtysh fails."""
        argv = [which("vtysh") or "vtysh", "--vty_socket", self.router_dir(router)]
        for cmd in commands:
            argv += ["-c", cmd]
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=self.timeout)
        if proc.returncode != 0:
            raise RuntimeError("%s: vtysh %s: exit %d: %s%s" % (router, " ".join(commands),
                               proc.returncode, proc.stdout, proc.stderr))
        return proc.stdout

    # routes ----------------------------------------------------------------------------------
    def daemon_routes(self, prefix: str = LAN) -> List[str]:
        """What r1's routing daemon itself believes for ``prefix``: the sorted gateway
        addresses of its selected route (BIRD: ``birdc show route PREFIX``; FRR: ``vtysh -c
        'show ip route PREFIX json'``, active next hops of the selected route, as zebra
        has it); [] if there is no route or the daemon (BIRD; FRR: zebra) is not running."""
        net = str(ipaddress.ip_network(prefix, strict=False))
        running = self.daemon_pids("r1")
        if self.daemon == "bird":
            if "bird" not in running:
                return []
            try:
                out = self.birdc("r1", "show", "route", net)
            except RuntimeError as exc:
                if "Network not found" in str(exc):
                    return []
                raise
            routes: Dict[str, List[str]] = {}
            parse_bird_routes(out, routes)
            return sorted(set(routes.get(net, [])), key=ipaddress.ip_address)
        if "zebra" not in running:
            return []
        out = self.vtysh("r1", "show ip route %s json" % net)
        data = json.loads(out) if out.strip() else {}
        gateways = set()
        for entry in data.get(net, []):
            if not entry.get("selected"):
                continue
            for nh in entry.get("nexthops", []):
                if nh.get("active") and nh.get("ip"):
                    gateways.add(nh["ip"])
        return sorted(gateways, key=ipaddress.ip_address)

    def kernel_routes(self, prefix: str = LAN, table: Optional[int] = None,
                      include_dead: bool = False) -> List[str]:
        """Sorted gateways of r1's kernel route for ``prefix`` in ``table`` (default: where
        r1's daemon writes: BIRD table 100, FRR main table 254); one per leg of a multipath
        route or nexthop group; [] if none.  Legs of a multipath route that the kernel marks
        ``dead`` (their link is admin down: the kernel keeps the route and skips the leg,
        until the daemon rewrites it) are left out unless ``include_dead``."""
        net = ipaddress.ip_network(prefix, strict=False)
        if table is None:
            table = BIRD_TABLE if self.daemon == "bird" else 254
        r1 = self.ns("r1")
        entries = r1.json("-4", "route", "show", "table", str(table), "exact", str(net))
        return sorted(_gateways(entries, r1, net, include_dead), key=ipaddress.ip_address)

    def wait_routes(self, expected: Sequence[str], prefix: str = LAN,
                    timeout: Optional[float] = None, kernel: bool = False) -> float:
        """Wait until :meth:`daemon_routes` (and with ``kernel`` also :meth:`kernel_routes`)
        for ``prefix`` equals ``expected`` (any order); returns the seconds waited.
        LabError with the diagnostics on timeout."""
        want = sorted(expected, key=ipaddress.ip_address)
        t0 = time.monotonic()

        def ok() -> bool:
            if self.daemon_routes(prefix) != want:
                return False
            return not kernel or self.kernel_routes(prefix) == want

        try:
            wait_for(ok, timeout=self.timeout if timeout is None else timeout, interval=0.02,
                     what="r1's %s route %s = %s%s" % (self.daemon, prefix, want,
                                                       " (and in the kernel)" if kernel else ""))
        except TimeoutError as exc:
            raise LabError("%s: daemon %s, kernel %s\n%s"
                           % (exc, self.daemon_routes(prefix), self.kernel_routes(prefix),
                              self.diagnostics())) from None
        return time.monotonic() - t0

    def wait_ecmp(self, timeout: Optional[float] = None, kernel: bool = False) -> float:
        """Wait until r1's daemon has both next hops for :data:`LAN` (:data:`NH_R2` and
        :data:`NH_R3`); with ``kernel`` also r1's kernel route.  Returns the seconds waited."""
        return self.wait_routes([NH_R2, NH_R3], LAN, timeout, kernel)

    # links -----------------------------------------------------------------------------------
    @staticmethod
    def _check_link(name: str) -> Dict[str, str]:
        if name not in LINKS:
            raise ValueError("unknown link %r (r1's links: %s)" % (name, ", ".join(LINKS)))
        return LINKS[name]

    def link(self, name: str, state) -> None:
        """Set r1's end ``name`` ("e12"/"e13") administratively down/up (``state`` "down"/"up"
        or a bool).  The kernel drops r1's routes over a downed link itself."""
        self._check_link(name)
        self.ns("r1").ip("link", "set", name, link_state(state))

    def peer_link(self, name: str, state) -> None:
        """Set the r2/r3 end of r1's link ``name`` ("e12": r2's e21, "e13": r3's e31) down/up:
        r1's end stays admin up and loses/regains carrier (``LOWER_UP``).  Returns once r1's
        end shows it."""
        link = self._check_link(name)
        state = link_state(state)
        self.ns(link["peer"]).ip("link", "set", link["peer_dev"], state)
        wait_for(lambda: ("LOWER_UP" in self.link_flags(name)) == (state == "up"),
                 timeout=self.timeout, interval=0.005,
                 what="r1's %s to %s carrier" % (name, "get" if state == "up" else "lose"))

    def link_flags(self, name: str, router: str = "r1") -> List[str]:
        """``ip -j link`` flags of ``name`` in ``router`` ([] if it does not exist)."""
        proc = subprocess.run(["ip", "-n", self.ns(router).name, "-j", "link", "show", "dev",
                               name], capture_output=True, text=True)
        if proc.returncode != 0 or not proc.stdout.strip():
            return []
        entries = json.loads(proc.stdout)
        return list(entries[0].get("flags", [])) if entries else []

    # diagnostics -----------------------------------------------------------------------------
    def diagnostics(self) -> str:
        """Per router: the daemons' log tails, OSPF neighbours; r1's routes (daemon and
        kernel).  Never raises."""
        parts = ["--- workdir %s (daemon %s)" % (self.workdir, self.daemon)]
        for router in ROUTERS:
            if self.daemon == "bird":
                files = ["bird.log", "bird.out"]
                cmds: List[Tuple[str, Callable[[], str]]] = [
                    ("birdc show ospf neighbors",
                     lambda r=router: self.birdc(r, "show", "ospf", "neighbors"))]
                if router == "r1":
                    cmds.append(("birdc show route", lambda: self.birdc("r1", "show", "route")))
            else:
                files = ["zebra.log", "ospfd.log", "zebra.out", "ospfd.out"]
                cmds = [("show ip ospf neighbor",
                         lambda r=router: self.vtysh(r, "show ip ospf neighbor"))]
                if router == "r1":
                    cmds.append(("show ip route", lambda: self.vtysh("r1", "show ip route")))
            parts.append("=== %s: running %s" % (router, self.daemon_pids(router)
                                                    if self._ns[router] else "(no namespace)"))
            for name in files:
                text = read_text(self._path(router, name))
                if text.strip():
                    parts.append("--- %s/%s\n%s" % (router, name, tail(text, 30)))
            if self._ns[router] is None:
                continue
            for title, cmd in cmds:
                try:
                    parts.append("--- %s %s\n%s" % (router, title, tail(cmd(), 40)))
                except Exception as exc:  # noqa: BLE001 - diagnostics must not fail
                    parts.append("--- %s %s: failed: %s" % (router, title, exc))
        if self.r1 is not None:
            for table in (str(BIRD_TABLE), "main"):
                proc = subprocess.run(["ip", "-n", self.r1.name, "route", "show", "table", table],
                                      capture_output=True, text=True)
                parts.append("--- r1 ip route show table %s\n%s%s"
                             % (table, proc.stdout, proc.stderr))
            proc = subprocess.run(["ip", "-n", self.r1.name, "nexthop", "show"],
                                  capture_output=True, text=True)
            parts.append("--- r1 ip nexthop show\n%s%s" % (proc.stdout, proc.stderr))
        return "\n".join(parts)


# ---------------------------------------------------------------------------------------------
# A recording FPM server

def _addr(family: int, raw: Optional[bytes]) -> Optional[str]:
    try:
        return format_address(family, raw)
    except (ValueError, OSError):
        return raw.hex()


def decode_netlink(data: bytes) -> List[dict]:
    """The netlink messages of one FPM frame's payload as dicts (decoded by
    :mod:`kernelsync.kernel.codec`): ``type`` (24 RTM_NEWROUTE, 25 RTM_DELROUTE, 104
    RTM_NEWNEXTHOP, 105 RTM_DELNEXTHOP, ...), ``name``, ``flags``, ``len``; routes: ``family``,
    ``dst`` ("192.0.2.0/24"), ``table``, ``protocol``, ``rtype``, ``metric``, ``nh_id`` (when
    set), and ``multipath`` ([{oif, weight, gateway}]) for more than one leg, else ``gateway``
    and ``oif``; nexthops: ``family``, ``protocol``, ``id``, ``group`` ([(id, weight)]),
    ``gateway``, ``oif``, ``blackhole``.  Only what is present is set; a message that cannot be
    decoded gets ``error``."""
    out: List[dict] = []
    offset = 0
    while offset + NLMSGHDR.size <= len(data):
        length, kind, flags, _seq, _pid = NLMSGHDR.unpack_from(data, offset)
        if length < NLMSGHDR.size or offset + length > len(data):
            break
        msg: dict = {"type": kind, "name": _MSG_NAMES.get(kind, str(kind)), "flags": flags, "len": length}
        body, end = offset + NLMSGHDR.size, offset + length
        try:
            if kind in ROUTE_MESSAGES:
                route = parse_route(data, body, end)
                if route is not None:
                    msg.update(family=route.family, dst=format_prefix(route.prefix), table=route.table,
                               protocol=route.protocol, rtype=route.type, metric=route.metric)
                    if route.nh_id:
                        msg["nh_id"] = route.nh_id
                    legs = [{"oif": leg.ifindex, "weight": leg.weight, **(
                        {"gateway": _addr(leg.gw_family, leg.gateway)} if leg.gateway is not None else {})}
                        for leg in route.legs]
                    if len(legs) > 1:
                        msg["multipath"] = legs
                    elif legs:
                        msg.update({k: v for k, v in legs[0].items() if k != "weight"})
            elif kind in NEXTHOP_MESSAGES:
                nh = parse_nexthop(data, body, end)
                if nh is not None:
                    msg.update(family=nh.family, protocol=nh.protocol, id=nh.id)
                    if nh.group:
                        msg["group"] = list(nh.group)
                    if nh.oif:
                        msg["oif"] = nh.oif
                    if nh.gateway is not None:
                        msg["gateway"] = _addr(nh.family, nh.gateway)
                    if nh.blackhole:
                        msg["blackhole"] = True
        except struct.error as exc:
            msg["error"] = str(exc)
        out.append(msg)
        offset += (length + 3) & ~3
    return out


class FpmFrame:
    """One FPM frame: ``conn`` (1 for the first connection), ``time`` (monotonic),
    ``version``, ``type`` (1 = netlink), ``data`` (the payload after the 4-byte header) and
    ``messages`` (:func:`decode_netlink`; [] for other types)."""

    __slots__ = ("conn", "time", "version", "type", "data", "messages")

    def __init__(self, conn: int, version: int, kind: int, data: bytes) -> None:
        self.conn = conn
        self.time = time.monotonic()
        self.version = version
        self.type = kind
        self.data = data
        self.messages = decode_netlink(data) if kind == 1 else []

    def __repr__(self) -> str:
        return "FpmFrame(conn=%d, v%d, type %d, %d bytes, %s)" % (
            self.conn, self.version, self.type, len(self.data),
            [m["name"] for m in self.messages])


class FpmCapture:
    """A recording FPM server: listens on ``host:port`` inside namespace ``ns`` (the socket
    is made there; the accepting thread runs anywhere), accepts zebra's connections one after
    the other and records every frame (4-byte header: u8 version, u8 type, u16 length in
    network byte order including the header).  Never sends anything.

    ``frames``: [:class:`FpmFrame`]; ``connections``: how many connections were accepted;
    ``messages()``: every decoded netlink message in order (each with ``conn`` and
    ``frame`` index added); ``wait(predicate)``: until a message matches.
    """

    def __init__(self, ns: NetNS, port: int = 2620, host: str = "127.0.0.1") -> None:
        self.ns = ns
        self.port = port
        self.host = host
        self.frames: List[FpmFrame] = []
        self.connections = 0
        self.errors: List[str] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._listener: Optional[socket.socket] = None
        self._conn: Optional[socket.socket] = None
        self._thread: Optional[threading.Thread] = None

    def __enter__(self) -> "FpmCapture":
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def start(self) -> None:
        with self.ns.entered():
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self.host, self.port))
        sock.listen(4)
        sock.settimeout(0.05)
        self._listener = sock
        self._thread = threading.Thread(target=self._run, name="fpm-capture", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5.0)
        if self._listener is not None:
            self._listener.close()
            self._listener = None

    def close_connection(self) -> None:
        """Drop the current connection (zebra reconnects and replays its FIB)."""
        conn = self._conn
        if conn is not None:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._listener.accept()
            except socket.timeout:
                continue
            except OSError as exc:
                self.errors.append("accept: %s" % exc)
                return
            with self._lock:
                self.connections += 1
                number = self.connections
            self._conn = conn
            try:
                self._read(conn, number)
            finally:
                self._conn = None
                conn.close()

    def _read(self, conn: socket.socket, number: int) -> None:
        conn.settimeout(0.05)
        buf = b""
        while not self._stop.is_set():
            try:
                chunk = conn.recv(65536)
            except socket.timeout:
                continue
            except OSError:
                return
            if not chunk:
                return
            buf += chunk
            while len(buf) >= 4:
                version, kind, length = struct.unpack_from("!BBH", buf, 0)
                if length < 4:
                    self.errors.append("conn %d: bad frame length %d" % (number, length))
                    return
                if len(buf) < length:
                    break
                frame = FpmFrame(number, version, kind, buf[4:length])
                buf = buf[length:]
                with self._lock:
                    self.frames.append(frame)

    def messages(self) -> List[dict]:
        """Every decoded message so far, in arrival order, each with ``conn`` and ``frame``
        (index into :attr:`frames`)."""
        with self._lock:
            frames = list(self.frames)
        out = []
        for index, frame in enumerate(frames):
            for msg in frame.messages:
                out.append(dict(msg, conn=frame.conn, frame=index))
        return out

    def wait(self, predicate: Callable[[dict], bool], timeout: float = 15.0,
             what: str = "an FPM message") -> dict:
        """Wait until a recorded message satisfies ``predicate``; returns the first one.
        TimeoutError after ``timeout`` seconds."""
        def found():
            for msg in self.messages():
                if predicate(msg):
                    return msg
            return None
        return wait_for(found, timeout=timeout, interval=0.02, what=what)


__all__ = ["OspfLab", "FpmCapture", "FpmFrame", "LabError", "decode_netlink",
           "install_requirements", "frr_installed", "NH_R2", "NH_R3", "LAN", "STUB_R2",
           "STUB_R3", "ROUTER_IDS", "LINKS", "ROUTERS", "DAEMONS", "BIRD_TABLE", "BIRD_PROTO",
           "FRR_OSPF_PROTO", "FRR_NEXTHOP_PROTO", "BIRD_GRACE_TIME",
           "RTM_NEWROUTE", "RTM_DELROUTE", "RTM_NEWNEXTHOP", "RTM_DELNEXTHOP"]
