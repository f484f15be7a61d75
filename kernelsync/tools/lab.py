"""A BGP lab in scratch network namespaces: BIRD 2 as the router, ExaBGP as the host's speaker.

Used by the demo and by the tests (``tests/test_lab.py``), and to capture the real ExaBGP JSON
in ``tests/data/exabgp-*.jsonl``.  Everything needs root (network namespaces).

Topology (see ``/work/shared/reference/real-peers-in-netns.md``, section 1)::

    namespace R (BIRD 2, AS 65001, router id 192.0.2.1)     namespace H (ExaBGP, AS 65010)
      ra 192.0.2.1/29   2001:db8:a::1/64  ---- link A ----  ha 192.0.2.2/29   2001:db8:a::2/64
      rb 192.0.2.9/29   2001:db8:b::1/64  ---- link B ----  hb 192.0.2.10/29  2001:db8:b::2/64

One eBGP session per link, BIRD protocols ``hA`` and ``hB`` (``passive on``; ExaBGP dials out),
families IPv4 and IPv6 unicast on each.  BIRD announces the same static blackhole prefixes on
both sessions (export filter: only ``RTS_STATIC``), so H gets two equal paths; over IPv6 it sends
the global next hop of its link plus the link-local one (``next hop address`` per channel).  The
namespaces get unique names (``kernelsync.tools.netns.unique_name``) so labs can run back to back.

With ``hosts=2`` ("anycast": two hosts announcing the same prefixes to one router), link B goes
to a second host namespace H2 instead, with its own ExaBGP (one neighbor each)::

    R  ra 192.0.2.1  ---- link A ----  ha 192.0.2.2   H   (ExaBGP, neighbor 192.0.2.1,
                                                           router id 192.0.2.2, AS 65010)
    R  rb 192.0.2.9  ---- link B ----  hb 192.0.2.10  H2  (ExaBGP, neighbor 192.0.2.9,
                                                           router id 192.0.2.10, AS 65010)

With ``router_kernel=True`` BIRD also exports what it learned over BGP into R's main table
(``protocol kernel`` per family, ``export where source = RTS_BGP``, ``merge paths on``): the
same prefix announced by H and H2 (or by H on both sessions) becomes one multipath route
``nexthop via 192.0.2.2 dev ra weight 1 / nexthop via 192.0.2.10 dev rb weight 1``.  The api
block of each ExaBGP (``processes [ ks ]``) lets its process announce routes, e.g. write
``announce route 203.0.113.10/32 next-hop self`` (one command per line, flushed).

API::

    install_requirements(exabgp_versions=("5.0",))  # apt bird2, pip exabgp; idempotent
    exabgp_installed(version) -> str | None         # installed version string, or None
    exabgp_argv(version, conf_path) -> list[str]    # command that runs ExaBGP "5.0" or "4.2"
    exabgp_env(version, settings=None, **kw) -> dict  # full environment for it

    with BgpLab(exabgp_version="5.0", process_argv=[...], v4_prefixes=[...],
                v6_prefixes=[...], add_path=True, workdir=None, exabgp_settings=None,
                timeout=15.0, hosts=1, process_argv2=None, router_kernel=False,
                statics={}) as lab:
        lab.established()            # {"hA": True, "hB": True}
        lab.birdc("show", "route")   # birdc output (str)
        lab.disable_session("hB"); lab.enable_session("hB")
        lab.set_prefixes(v4, v6)     # rewrite BIRD's statics, ``birdc configure``
        lab.birdc("disable", "g1")   # a static protocol of ``statics`` off: its routes withdrawn
        lab.link("hb", "down")       # host-side link ha/hb down|up (hb is in H2 if hosts=2)
        lab.wait_established()       # both sessions (or the named ones) Established again
        lab.stop_exabgp(host=None)   # SIGTERM ExaBGP only (its process gets the shutdown);
                                     #   None: every host's, 1: H's, 2: H2's
        lab.start_exabgp(host=None)  # start it (them) again (``_start_exabgp`` is the same)
        lab.exabgp_pid(host=1); lab.exabgp_log(host=1); lab.bird_log(); lab.diagnostics()
        lab.imported("hA")           # {"203.0.113.10/32": ["192.0.2.2"], ...}: BIRD's routes
                                     #   from that session (IPv4 and IPv6), via addresses
        lab.router_route("203.0.113.10/32")  # ["192.0.2.2", "192.0.2.10"]: R's kernel route
                                     #   gateways (main table), [] if absent
        lab.add_guest("vg1", host=1) # veth "vg1" in H (or H2), peer eth0 in a new guest
                                     #   namespace (NetNS returned, in lab.guests)
        lab.guest_link("vg1", "down")  # guest end down|up: "vg1" loses|regains LOWER_UP
        lab.link_flags("vg1", host=1)  # ["BROADCAST", "MULTICAST", "UP", "LOWER_UP"]
        lab.host, lab.host2, lab.router  # NetNS objects (namespaces H, H2 or None, R)
        lab.host_ns(host)            # lab.host (1) or lab.host2 (2)
        lab.workdir                  # configs, logs, pid files, control socket

``start()`` (called by ``with``) brings up namespaces and links, starts BIRD, waits until it
listens, starts ExaBGP (both with ``hosts=2``) and waits until both sessions are Established
(0.25-0.35 s with 5.0, 0.8-1 s with 4.2, which imports slower).  ``stop()``
(called by ``with`` even on errors, and by a failing ``start()``) SIGTERMs the ExaBGPs then BIRD
by pid file, kills whatever else still runs in the lab's namespaces (guests included), and
deletes them.  A workdir the lab created itself is removed on ``__exit__`` unless
``KERNELSYNC_LAB_KEEP=1``; keep a given workdir short (BIRD's control socket path must fit in
108 bytes).

BIRD runs with short timers (hold 9 s, keepalive 3 s, ``error wait time 1, 2``) and logs state
changes to ``bird.log``.  Both links keep their IPv6 addresses across ``link(..., "down")``
(``keep_addr_on_down=1``).  A session taken down by ``disable_session``/``link`` comes back
about 1 s after ``enable_session``/``link(..., "up")`` (ExaBGP redials once a second).
ExaBGP's ``exabgp.api.ack`` is left at its default (true): the process gets ``done``/``error``
lines on stdin for each command it writes.

How each ExaBGP version is run (no shell, no PYTHONPATH leaking into ExaBGP's processes):

- 5.0.15, installed in this interpreter's environment: ``python3 -m exabgp server CONF``
  (the same as the ``exabgp server CONF`` console script).
- 4.2.25, installed with ``pip install --target $KERNELSYNC_LAB_CACHE/exabgp-4.2.25``
  (default cache ``/var/cache/kernelsync-lab``): ``python3 -c "import sys;
  sys.path.insert(0, DIR); from exabgp.application.main import main; main()" CONF``; the
  equivalent by hand is ``PYTHONPATH=DIR python3 -m exabgp CONF``.  ``DIR/bin/exabgp`` alone
  would import the 5.0 package from site-packages.
"""
from __future__ import annotations

import ipaddress
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
from typing import Dict, Iterable, List, Mapping, Optional, Sequence, Tuple

from .netns import NetNS, unique_name, wait_for

#: ExaBGP versions the lab knows, by short name -> exact PyPI version.
EXABGP_VERSIONS: Dict[str, str] = {"5.0": "5.0.15", "4.2": "4.2.25"}

ROUTER_AS = 65001
HOST_AS = 65010
ROUTER_ID = "192.0.2.1"
HOST_ROUTER_ID = "192.0.2.2"

#: Per link: BIRD protocol name, router/host interface and addresses.
LINKS: Dict[str, Dict[str, str]] = {
    "A": {"session": "hA", "rdev": "ra", "hdev": "ha",
          "r4": "192.0.2.1", "h4": "192.0.2.2", "len4": "29",
          "r6": "2001:db8:a::1", "h6": "2001:db8:a::2", "len6": "64"},
    "B": {"session": "hB", "rdev": "rb", "hdev": "hb",
          "r4": "192.0.2.9", "h4": "192.0.2.10", "len4": "29",
          "r6": "2001:db8:b::1", "h6": "2001:db8:b::2", "len6": "64"},
}
SESSIONS = tuple(link["session"] for link in LINKS.values())      # ("hA", "hB")
HOST_LINKS = tuple(link["hdev"] for link in LINKS.values())       # ("ha", "hb")

DEFAULT_V4 = ("198.51.100.0/24", "203.0.113.0/25")
DEFAULT_V6 = ("2001:db8:100::/48",)

#: Name of the guest end of :meth:`BgpLab.add_guest`'s veth pairs, inside the guest namespace.
GUEST_DEV = "eth0"

_apt_updated = False


# ---------------------------------------------------------------------------------------------
# Installing and running the daemons

def cache_dir() -> str:
    """Directory for side installs: ``$KERNELSYNC_LAB_CACHE`` or ``/var/cache/kernelsync-lab``."""
    return os.environ.get("KERNELSYNC_LAB_CACHE") or "/var/cache/kernelsync-lab"


def _check_version(version: str) -> str:
    if version not in EXABGP_VERSIONS:
        raise ValueError("unknown ExaBGP version %r (known: %s)"
                         % (version, ", ".join(sorted(EXABGP_VERSIONS))))
    return EXABGP_VERSIONS[version]


def exabgp_dir(version: str) -> Optional[str]:
    """Where the given version is installed with ``pip --target``; None: this interpreter's env."""
    exact = _check_version(version)
    if version == "5.0":
        return None
    return os.path.join(cache_dir(), "exabgp-%s" % exact)


def _python_prelude(version: str) -> str:
    target = exabgp_dir(version)
    return "import sys; sys.path.insert(0, %r); " % target if target else ""


def exabgp_installed(version: str) -> Optional[str]:
    """The exact ExaBGP version that :func:`exabgp_argv` would run (e.g. "5.0.15"), or None."""
    code = _python_prelude(version) + "from exabgp.version import version; print(version)"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd="/")
    if proc.returncode != 0:
        return None
    found = proc.stdout.strip()
    return found if found.startswith(version + ".") else None


def exabgp_argv(version: str, conf_path: str) -> List[str]:
    """argv that runs ExaBGP ``version`` ("5.0" or "4.2") on ``conf_path`` in the foreground.

    Raises ValueError for an unknown version.  Pair it with :func:`exabgp_env`.
    """
    _check_version(version)
    conf_path = os.path.abspath(conf_path)
    if version == "5.0":
        return [sys.executable, "-m", "exabgp", "server", conf_path]
    code = _python_prelude(version) + "from exabgp.application.main import main; main()"
    return [sys.executable, "-c", code, conf_path]


def _env_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def exabgp_env(version: str, settings: Optional[Mapping[str, object]] = None,
               **kw: object) -> Dict[str, str]:
    """Full environment (a copy of ``os.environ``) for running ExaBGP ``version``.

    ExaBGP settings present in ``os.environ`` (``exabgp.*``/``exabgp_*``) are dropped, then the
    lab's defaults are set: ``exabgp.daemon.user=root`` (else ExaBGP drops to nobody before it
    starts its processes), ``exabgp.daemon.daemonize=false``, ``exabgp.api.cli=false``.
    ``settings`` maps dotted names to values (``{"exabgp.log.destination": "/x/h.log"}``);
    keyword arguments name them with underscores and without the ``exabgp`` prefix
    (``api_ack=False`` is ``exabgp.api.ack=false``, ``daemon_pid=FILE``, ``log_level="INFO"``).
    Booleans become "true"/"false".  The same names work for 4.2 and 5.0.
    """
    _check_version(version)
    env = {k: v for k, v in os.environ.items()
           if not (k.startswith("exabgp.") or k.startswith("exabgp_"))}
    merged: Dict[str, object] = {
        "exabgp.daemon.user": "root",
        "exabgp.daemon.daemonize": False,
        "exabgp.api.cli": False,
    }
    for key, value in (settings or {}).items():
        merged[key if key.startswith("exabgp.") else "exabgp." + key] = value
    for key, value in kw.items():
        section, _, option = key.partition("_")
        if not option:
            raise ValueError("setting %r: use section_option, e.g. api_ack" % key)
        merged["exabgp.%s.%s" % (section, option)] = value
    for key, value in merged.items():
        env[key] = _env_value(value)
    return env


def which(name: str) -> Optional[str]:
    found = shutil.which(name)
    if found:
        return found
    for d in ("/usr/sbin", "/sbin", "/usr/local/sbin"):
        path = os.path.join(d, name)
        if os.access(path, os.X_OK):
            return path
    return None


def _run_install(argv: Sequence[str], what: str, env: Optional[Mapping[str, str]] = None) -> None:
    print("kernelsync.tools.lab: %s: %s" % (what, " ".join(argv)), flush=True)
    proc = subprocess.run(list(argv), capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        last = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-20:])
        raise RuntimeError("%s failed (exit %d): %s\n%s"
                           % (what, proc.returncode, " ".join(argv), last))


def apt_install(packages: Sequence[str]) -> None:
    global _apt_updated
    if not shutil.which("apt-get"):
        raise RuntimeError("cannot install %s: no apt-get on this machine" % " ".join(packages))
    if os.geteuid() != 0:
        raise RuntimeError("cannot install %s: apt-get needs root" % " ".join(packages))
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    # never start the packages' system services (bird.service): policy-rc.d "exit 101"
    policy = "/usr/sbin/policy-rc.d"
    made_policy = not os.path.exists(policy)
    if made_policy:
        with open(policy, "w") as f:
            f.write("#!/bin/sh\n# kernelsync.tools.lab: no service starts during install\nexit 101\n")
        os.chmod(policy, 0o755)
    try:
        if not _apt_updated:
            _run_install(["apt-get", "update"], "apt-get update", env)
            _apt_updated = True
        _run_install(["apt-get", "install", "-y", "--no-install-recommends", *packages],
                     "installing %s" % " ".join(packages), env)
    finally:
        if made_policy:
            os.unlink(policy)


def install_requirements(exabgp_versions: Iterable[str] = ("5.0",)) -> None:
    """Install what the lab needs, if missing; idempotent, prints what it installs.

    - ``bird``/``birdc``: Debian package ``bird2`` (``apt-get update`` once per process, then
      ``apt-get install``; services are kept from starting).
    - ExaBGP "5.0": ``exabgp==5.0.15`` with pip into this interpreter's environment.
    - ExaBGP "4.2": ``exabgp==4.2.25`` with ``pip install --target`` into
      ``cache_dir()/exabgp-4.2.25`` (``$KERNELSYNC_LAB_CACHE``).

    Raises RuntimeError (with the installer's output) if an install fails, ValueError for an
    unknown version.
    """
    versions = list(exabgp_versions)
    for version in versions:
        _check_version(version)
    if not (which("bird") and which("birdc")):
        apt_install(["bird2"])
        if not (which("bird") and which("birdc")):
            raise RuntimeError("bird2 installed but bird/birdc not found on PATH or in /usr/sbin")
    for version in versions:
        if exabgp_installed(version):
            continue
        exact = EXABGP_VERSIONS[version]
        target = exabgp_dir(version)
        if target is None:
            _run_install([sys.executable, "-m", "pip", "install", "-q",
                          "exabgp==%s" % exact], "installing ExaBGP %s" % exact)
        else:
            os.makedirs(os.path.dirname(target), exist_ok=True)
            staging = tempfile.mkdtemp(prefix=".exabgp-%s-" % exact, dir=os.path.dirname(target))
            try:
                _run_install([sys.executable, "-m", "pip", "install", "-q", "--target", staging,
                              "exabgp==%s" % exact], "installing ExaBGP %s" % exact)
                shutil.rmtree(target, ignore_errors=True)
                os.rename(staging, target)
            finally:
                shutil.rmtree(staging, ignore_errors=True)
        if not exabgp_installed(version):
            raise RuntimeError("ExaBGP %s installed but %s cannot import it"
                               % (exact, sys.executable))


# ---------------------------------------------------------------------------------------------
# The lab

class LabError(RuntimeError):
    """The lab could not start or a daemon misbehaved; the message includes the logs."""


def _prefixes(values: Iterable[str], version: int, what: str) -> List[str]:
    out = []
    for value in values:
        try:
            net = ipaddress.ip_network(value, strict=True)
        except ValueError as exc:
            raise ValueError("%s: %s" % (what, exc)) from None
        if net.version != version:
            raise ValueError("%s: %s is not an IPv%d prefix" % (what, value, version))
        out.append(str(net))
    return out


def alive(pid: int) -> bool:
    try:
        with open("/proc/%d/stat" % pid) as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")


def in_netns(pid: int, ns: NetNS) -> bool:
    """Whether process ``pid`` runs in network namespace ``ns``."""
    try:
        return (os.stat("/proc/%d/ns/net" % pid).st_ino
                == os.stat("/var/run/netns/%s" % ns.name).st_ino)
    except OSError:
        return False


def read_text(path: str) -> str:
    try:
        with open(path, errors="replace") as f:
            return f.read()
    except OSError:
        return ""


def tail(text: str, lines: int = 40) -> str:
    return "\n".join(text.rstrip().splitlines()[-lines:])


class LabContext:
    """``with lab:`` = :meth:`start` ... :meth:`close`, for the labs (:class:`BgpLab`,
    :class:`kernelsync.tools.ospflab.OspfLab`): they give ``start``, ``stop`` and
    ``_remove_workdir`` (the workdir the lab made, unless ``KERNELSYNC_LAB_KEEP=1``)."""

    def __enter__(self):
        try:
            self.start()
        except BaseException:
            self._remove_workdir()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        """:meth:`stop`, then remove the workdir if the lab made it: what ``with`` does on
        exit; for a lab started by hand."""
        try:
            self.stop()
        finally:
            self._remove_workdir()


class BgpLab(LabContext):
    """BIRD (namespace ``router``) and ExaBGP (namespace ``host``, and ``host2``) with two eBGP
    sessions.

    Arguments:
        exabgp_version: "5.0" or "4.2" (see :data:`EXABGP_VERSIONS`).
        process_argv: the command H's ExaBGP runs as its ``process ks`` (``encoder json``; api:
            ``processes [ ks ]``, ``neighbor-changes`` and ``receive { parsed; update;
            notification; refresh; }`` on its neighbors, so the process also may announce
            routes to them), as an argv list (run through an ``exec`` wrapper script in
            ``workdir``, so any quoting works).  None: no process, no api block.  ValueError
            if ``process_argv[0]`` is not an executable (ExaBGP would respawn it and go on).
        v4_prefixes, v6_prefixes: prefixes BIRD announces on both sessions (static blackhole
            routes).  ValueError if one is not a valid prefix of that family.
        add_path: ExaBGP ``capability { add-path receive; route-refresh; }`` and BIRD
            ``add paths tx`` on both channels (BIRD then sends path ids); False: route-refresh
            only, no path ids.
        workdir: directory for configs, logs, pid files and BIRD's control socket; None: a new
            temp dir, removed on ``__exit__`` (kept if ``KERNELSYNC_LAB_KEEP=1``).
        exabgp_settings: extra ExaBGP environment settings, dotted names (``exabgp.api.ack``)
            or without the prefix (``api.ack``); they override the lab's (both ExaBGPs).
        timeout: seconds each wait (BIRD listening, sessions Established, stops) may take.
        hosts: 1 (default): one host namespace H with both links and one ExaBGP with both
            neighbors.  2: link A to H (ExaBGP neighbor 192.0.2.1, router id 192.0.2.2) and
            link B to a second host namespace H2 (``host2``; its own ExaBGP, neighbor
            192.0.2.9, router id 192.0.2.10); both AS 65010.
        process_argv2: like ``process_argv``, for H2's ExaBGP (``hosts=2`` only; ValueError
            otherwise).
        router_kernel: BIRD also runs ``protocol kernel`` for IPv4 and IPv6 that exports the
            routes it learned over BGP (only those) into R's main table with ``merge paths
            on``: equal paths for one prefix from H and H2 become one multipath route.
        statics: more static protocols, name -> prefixes of one family (blackhole routes,
            exported on both sessions like ``s4``/``s6``), to switch on and off with
            ``birdc enable|disable NAME`` (route churn).  ValueError for a bad or reserved
            name, an empty list, or mixed families.

    Files in ``workdir``: ``bird.conf``, ``bird.log``, ``bird.ctl``, ``bird.pid``,
    ``exabgp.conf``, ``exabgp.log``, ``exabgp.pid``, ``exabgp.out`` (its stdout/stderr),
    ``process.sh``; with ``hosts=2`` also ``exabgp2.conf``, ``exabgp2.log``, ``exabgp2.pid``,
    ``exabgp2.out``, ``process2.sh`` for H2.
    """

    def __init__(self, exabgp_version: str = "5.0", process_argv: Optional[Sequence[str]] = None,
                 v4_prefixes: Iterable[str] = DEFAULT_V4, v6_prefixes: Iterable[str] = DEFAULT_V6,
                 add_path: bool = True, workdir: Optional[str] = None,
                 exabgp_settings: Optional[Mapping[str, object]] = None,
                 timeout: float = 15.0, hosts: int = 1,
                 process_argv2: Optional[Sequence[str]] = None,
                 router_kernel: bool = False,
                 statics: Optional[Mapping[str, Iterable[str]]] = None) -> None:
        _check_version(exabgp_version)
        if hosts not in (1, 2):
            raise ValueError("hosts must be 1 or 2, not %r" % (hosts,))
        if hosts == 1 and process_argv2 is not None:
            raise ValueError("process_argv2 needs hosts=2")
        self.exabgp_version = exabgp_version
        self.hosts = hosts
        self.process_argv = self._check_argv(process_argv, "process_argv")
        self.process_argv2 = self._check_argv(process_argv2, "process_argv2")
        self.v4_prefixes = _prefixes(v4_prefixes, 4, "v4_prefixes")
        self.v6_prefixes = _prefixes(v6_prefixes, 6, "v6_prefixes")
        self.add_path = add_path
        self.router_kernel = bool(router_kernel)
        self.statics: Dict[str, Tuple[int, List[str]]] = {}
        for name, prefixes in (statics or {}).items():
            if not re.fullmatch(r"[A-Za-z][A-Za-z0-9_]{0,30}", name) or name in (
                    "s4", "s6", "k4", "k6", "host", "device") + SESSIONS:
                raise ValueError("statics: %r is not a usable protocol name" % (name,))
            prefixes = list(prefixes)
            version = ipaddress.ip_network(prefixes[0], strict=False).version if prefixes else 0
            if not version:
                raise ValueError("statics: %s has no prefixes" % name)
            self.statics[name] = (version, _prefixes(prefixes, version, "statics %s" % name))
        self.exabgp_settings = dict(exabgp_settings or {})
        self.timeout = timeout
        self._own_workdir = workdir is None
        self.workdir = os.path.abspath(workdir) if workdir else tempfile.mkdtemp(prefix="kslab-")
        os.makedirs(self.workdir, exist_ok=True)
        self.router: Optional[NetNS] = None
        self.host: Optional[NetNS] = None
        self.host2: Optional[NetNS] = None
        #: guest namespaces made by :meth:`add_guest`, by host-end interface name
        self.guests: Dict[str, NetNS] = {}
        self._guest_host: Dict[str, int] = {}
        self._exabgp: Dict[int, subprocess.Popen] = {}
        self._exabgp_out: Dict[int, object] = {}

    @staticmethod
    def _check_argv(argv: Optional[Sequence[str]], what: str) -> Optional[List[str]]:
        if argv is None:
            return None
        argv = list(argv)
        if not (argv and shutil.which(argv[0])):
            raise ValueError("%s: %r is not an executable program" % (what, argv[:1]))
        return argv

    # topology helpers ------------------------------------------------------------------------
    @property
    def host_ids(self) -> Tuple[int, ...]:
        """(1,) or (1, 2): the host numbers, each with its namespace and ExaBGP."""
        return tuple(range(1, self.hosts + 1))

    def _check_host(self, host: int) -> int:
        if host not in self.host_ids:
            raise ValueError("host must be one of %s, not %r"
                             % (", ".join(map(str, self.host_ids)), host))
        return host

    def _host_of_link(self, key: str) -> int:
        """Which host (1 or 2) link "A"/"B" goes to."""
        return 2 if (self.hosts == 2 and key == "B") else 1

    def _links_of(self, host: int) -> List[Dict[str, str]]:
        return [link for key, link in LINKS.items() if self._host_of_link(key) == host]

    def host_ns(self, host: int = 1) -> Optional[NetNS]:
        """The NetNS of host 1 (H, ``host``) or 2 (H2, ``host2``); None before start/after stop."""
        return self.host if self._check_host(host) == 1 else self.host2

    def _dev_host(self, dev: str) -> int:
        for key, link in LINKS.items():
            if link["hdev"] == dev:
                return self._host_of_link(key)
        raise ValueError("unknown host link %r (links: %s)" % (dev, ", ".join(HOST_LINKS)))

    # paths -----------------------------------------------------------------------------------
    def _path(self, name: str) -> str:
        return os.path.join(self.workdir, name)

    def _hpath(self, host: int, name: str) -> str:
        """``exabgp.log`` -> ``exabgp.log`` (host 1) or ``exabgp2.log`` (host 2)."""
        if host == 1:
            return self._path(name)
        stem, dot, ext = name.partition(".")
        return self._path("%s%d%s%s" % (stem, host, dot, ext))

    @property
    def bird_ctl(self) -> str:
        return self._path("bird.ctl")

    def _remove_workdir(self) -> None:
        if self._own_workdir and os.environ.get("KERNELSYNC_LAB_KEEP") != "1":
            shutil.rmtree(self.workdir, ignore_errors=True)

    # start / stop ----------------------------------------------------------------------------
    def start(self) -> None:
        """Namespaces, links, BIRD, ExaBGP(s); returns when hA and hB are both Established.

        Raises LabError (with BIRD's and ExaBGP's logs) if a daemon fails to start or the
        sessions are not up within ``timeout``; everything started is stopped again first.
        """
        if self.router is not None:
            raise LabError("lab already started")
        try:
            self._make_topology()
            self._start_bird()
            self._start_exabgp()
            self.wait_established()
        except BaseException:
            self.stop()
            raise

    def _make_topology(self) -> None:
        self.router = NetNS(unique_name("ksR"))
        self.host = NetNS(unique_name("ksH"))
        if self.hosts == 2:
            self.host2 = NetNS(unique_name("ksH2"))
        for ns in (self.router, self.host, self.host2):
            if ns is None:
                continue
            # keep the IPv6 addresses across `link down`, so link() flaps restore the same state
            ns.sysctl("net.ipv6.conf.all.keep_addr_on_down", "1")
            ns.sysctl("net.ipv6.conf.default.keep_addr_on_down", "1")
        for key, link in LINKS.items():
            host = self.host_ns(self._host_of_link(key))
            self.router.ip("link", "add", link["rdev"], "type", "veth",
                           "peer", "name", link["hdev"], "netns", host.name)
            for ns, dev, a4, a6 in ((self.router, link["rdev"], link["r4"], link["r6"]),
                                    (host, link["hdev"], link["h4"], link["h6"])):
                ns.ip("addr", "add", "%s/%s" % (a4, link["len4"]), "dev", dev)
                ns.ip("-6", "addr", "add", "%s/%s" % (a6, link["len6"]), "dev", dev, "nodad")
                ns.ip("link", "set", dev, "up")
        # BIRD sends the link-local next hop only if the interface has one when the session starts
        wait_for(self._linklocal_ready, timeout=self.timeout, what="fe80:: addresses on the veths")

    def _linklocal_ready(self) -> bool:
        for key, link in LINKS.items():
            for ns, dev in ((self.router, link["rdev"]),
                            (self.host_ns(self._host_of_link(key)), link["hdev"])):
                addrs = ns.json("-6", "addr", "show", "dev", dev, "scope", "link")
                if not any(a.get("local", "").startswith("fe80:") and not a.get("tentative")
                           for entry in addrs for a in entry.get("addr_info", [])):
                    return False
        return True

    def _bird_conf(self) -> str:
        def statics(name: str, family: str, prefixes: List[str]) -> str:
            routes = "".join("  route %s blackhole;\n" % p for p in prefixes)
            return "protocol static %s {\n  %s;\n%s}\n" % (name, family, routes)

        addpath = " add paths tx;" if self.add_path else ""
        sessions = []
        for link in LINKS.values():
            sessions.append(
                'protocol bgp %(session)s from host {\n'
                '  neighbor %(h4)s; interface "%(rdev)s"; source address %(r4)s;\n'
                '  ipv4 { import all; export filter to_host;%(ap)s };\n'
                '  ipv6 { import all; export filter to_host; next hop address %(r6)s;%(ap)s };\n'
                '}\n' % dict(link, ap=addpath))
        return (
            '# written by kernelsync.tools.lab\n'
            'log "%(log)s" all;\n'
            'debug protocols { states };\n'
            'router id %(rid)s;\n'
            'protocol device { scan time 10; }\n'
            '%(kernel)s'
            '%(s4)s%(s6)s'
            'filter to_host { if source != RTS_STATIC then reject; accept; }\n'
            'template bgp host {\n'
            '  local as %(ras)d; neighbor as %(has)d; passive on;\n'
            '  hold time 9; keepalive time 3; error wait time 1, 2;\n'
            '}\n'
            '%(sessions)s'
            % dict(log=self._path("bird.log"), rid=ROUTER_ID, ras=ROUTER_AS, has=HOST_AS,
                   kernel=self._bird_kernel_conf() if self.router_kernel else "",
                   s4=statics("s4", "ipv4", self.v4_prefixes),
                   s6=statics("s6", "ipv6", self.v6_prefixes) + "".join(
                       statics(name, "ipv%d" % version, prefixes)
                       for name, (version, prefixes) in self.statics.items()),
                   sessions="".join(sessions)))

    @staticmethod
    def _bird_kernel_conf() -> str:
        """``router_kernel``: BGP-learned routes into R's main table, equal paths merged."""
        return "".join(
            'protocol kernel %(name)s {\n'
            '  merge paths on;\n'
            '  %(family)s { import none; export where source = RTS_BGP; };\n'
            '}\n' % dict(name=name, family=family)
            for name, family in (("k4", "ipv4"), ("k6", "ipv6")))

    def _start_bird(self) -> None:
        bird = which("bird")
        if not bird or not which("birdc"):
            raise LabError("bird/birdc not found: run kernelsync.tools.lab.install_requirements()")
        with open(self._path("bird.conf"), "w") as f:
            f.write(self._bird_conf())
        proc = self.router.run(bird, "-c", self._path("bird.conf"), "-s", self.bird_ctl,
                               "-P", self._path("bird.pid"), check=False)
        if proc.returncode != 0:
            raise LabError("bird failed to start (exit %d): %s%s"
                           % (proc.returncode, proc.stdout, proc.stderr))
        wait_for(self._bird_listening, timeout=self.timeout, what="BIRD listening on port 179")

    def _bird_listening(self) -> bool:
        if not os.path.exists(self.bird_ctl):
            return False
        out = self.router.run("ss", "-Hltn", "sport = :179", check=False).stdout
        return bool(out.strip())

    def _argv_of(self, host: int) -> Optional[List[str]]:
        return self.process_argv if host == 1 else self.process_argv2

    def _exabgp_conf(self, host: int = 1) -> str:
        argv = self._argv_of(host)
        parts = ["# written by kernelsync.tools.lab\n"]
        if argv is not None:
            parts.append("process ks {\n    run %s;\n    encoder json;\n}\n"
                         % self._hpath(host, "process.sh"))
        # one host: H's router id for both neighbors (as ever); two: each host its link's address
        rid = HOST_ROUTER_ID if self.hosts == 1 else None
        for link in self._links_of(host):
            caps = "add-path receive; route-refresh;" if self.add_path else "route-refresh;"
            api = ("    api {\n        processes [ ks ];\n        neighbor-changes;\n"
                   "        receive { parsed; update; notification; refresh; }\n    }\n"
                   if argv is not None else "")
            parts.append(
                "neighbor %(r4)s {\n"
                "    router-id %(rid)s;\n"
                "    local-address %(h4)s;\n"
                "    local-as %(has)d;\n"
                "    peer-as %(ras)d;\n"
                "    family { ipv4 unicast; ipv6 unicast; }\n"
                "    capability { %(caps)s }\n"
                "%(api)s"
                "}\n" % dict(link, rid=rid or link["h4"], has=HOST_AS, ras=ROUTER_AS,
                             caps=caps, api=api))
        return "".join(parts)

    def _exabgp_running(self, host: int) -> bool:
        proc = self._exabgp.get(host)
        return proc is not None and proc.poll() is None

    def start_exabgp(self, host: Optional[int] = None) -> None:
        """Start host ``host``'s ExaBGP (1: H, 2: H2); None: every host's that is not running
        (after :meth:`stop_exabgp`).  Writes its config and process wrapper anew; does not wait
        (see :meth:`wait_established`).  LabError if the named one is already running."""
        if not exabgp_installed(self.exabgp_version):
            raise LabError("ExaBGP %s not installed: run kernelsync.tools.lab.install_requirements(%r)"
                           % (EXABGP_VERSIONS[self.exabgp_version], (self.exabgp_version,)))
        if host is None:
            hosts = [h for h in self.host_ids if not self._exabgp_running(h)]
        else:
            hosts = [self._check_host(host)]
            if self._exabgp_running(host):
                raise LabError("ExaBGP on host %d is already running" % host)
        for h in hosts:
            self._spawn_exabgp(h)

    _start_exabgp = start_exabgp   # the name the tests have used

    def _spawn_exabgp(self, host: int) -> None:
        argv = self._argv_of(host)
        if argv is not None:
            script = self._hpath(host, "process.sh")
            with open(script, "w") as f:
                f.write("#!/bin/sh\nexec %s\n" % " ".join(shlex.quote(a) for a in argv))
            os.chmod(script, 0o755)
        conf = self._hpath(host, "exabgp.conf")
        with open(conf, "w") as f:
            f.write(self._exabgp_conf(host))
        settings: Dict[str, object] = {
            "exabgp.log.destination": self._hpath(host, "exabgp.log"),
            "exabgp.daemon.pid": self._hpath(host, "exabgp.pid"),
        }
        settings.update({k if k.startswith("exabgp.") else "exabgp." + k: v
                         for k, v in self.exabgp_settings.items()})
        env = exabgp_env(self.exabgp_version, settings)
        old = self._exabgp_out.pop(host, None)
        if old is not None:
            old.close()
        out = self._exabgp_out[host] = open(self._hpath(host, "exabgp.out"), "ab")
        self._exabgp[host] = subprocess.Popen(
            ["ip", "netns", "exec", self.host_ns(host).name,
             *exabgp_argv(self.exabgp_version, conf)],
            env=env, cwd=self.workdir, stdin=subprocess.DEVNULL, stdout=out,
            stderr=subprocess.STDOUT, start_new_session=True)

    def wait_established(self, sessions: Iterable[str] = SESSIONS,
                         timeout: Optional[float] = None) -> None:
        """Wait until the named BIRD sessions are Established; LabError with logs on timeout
        or if an ExaBGP exits meanwhile."""
        names = list(sessions)
        for name in names:
            self._check_session(name)

        def ready() -> bool:
            for host, proc in sorted(self._exabgp.items()):
                if proc.poll() is not None:
                    raise LabError("ExaBGP%s exited with status %s\n%s"
                                   % ("" if host == 1 else " on host %d" % host,
                                      proc.returncode, self.diagnostics()))
            state = self.established()
            return all(state.get(n) for n in names)

        try:
            wait_for(ready, timeout=self.timeout if timeout is None else timeout,
                     interval=0.02, what="BGP sessions %s Established" % ", ".join(names))
        except TimeoutError as exc:
            raise LabError("%s\n%s" % (exc, self.diagnostics())) from None

    def stop_exabgp(self, timeout: Optional[float] = None,
                    host: Optional[int] = None) -> Optional[int]:
        """SIGTERM ExaBGP (it sends Cease to BIRD, the shutdown notice to its process, then
        SIGTERMs the process) and wait for it; SIGKILL after ``timeout`` seconds (default: the
        lab's).  ``host``: 1 (H) or 2 (H2); None: every ExaBGP (signalled together).  Returns
        the exit status of the named one (None: of H's), None if it was not running.  The
        namespaces stay."""
        hosts = list(self.host_ids) if host is None else [self._check_host(host)]
        procs = {h: self._exabgp.pop(h) for h in hosts if h in self._exabgp}
        targets = []
        for h, proc in procs.items():
            ns = self.host_ns(h)
            pid = self.exabgp_pid(h)
            if pid is not None and pid != proc.pid:   # daemonised by a user setting
                targets.append((pid, ns))
            targets.append((proc.pid, ns))
        self._terminate_all(targets, timeout)
        status: Dict[int, Optional[int]] = {}
        for h, proc in procs.items():
            try:
                status[h] = proc.wait(timeout=5.0)
            except subprocess.TimeoutExpired:
                proc.kill()
                status[h] = proc.wait()
        for h in hosts:
            out = self._exabgp_out.pop(h, None)
            if out is not None:
                out.close()
        return status.get(hosts[0])

    def _terminate(self, pid: int, ns: Optional[NetNS], timeout: Optional[float] = None) -> None:
        """SIGTERM ``pid`` if it runs in ``ns`` (so a stale pid file never hits another
        process), wait up to ``timeout`` seconds, then SIGKILL."""
        self._terminate_all([(pid, ns)], timeout)

    def _terminate_all(self, targets: Sequence[Tuple[int, Optional[NetNS]]],
                       timeout: Optional[float] = None) -> None:
        """:meth:`_terminate` for several (pid, namespace) at once: SIGTERM all, then wait."""
        signalled = []
        for pid, ns in targets:
            if ns is None or not alive(pid) or not in_netns(pid, ns):
                continue
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                continue
            signalled.append(pid)
        if not signalled:
            return
        try:
            wait_for(lambda: not any(alive(p) for p in signalled),
                     timeout=self.timeout if timeout is None else timeout,
                     interval=0.02, what="pids %s to exit" % signalled)
        except TimeoutError:
            for pid in signalled:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass

    def stop(self) -> None:
        """Stop the ExaBGPs, then BIRD (SIGTERM by pid file, SIGKILL after 5 s), kill anything
        left in the lab's namespaces (guests too) and delete them.  Idempotent; never raises for
        daemons that are already gone.  Takes about 0.2 s."""
        try:
            self.stop_exabgp()
        finally:
            try:
                pid = self._pidfile("bird.pid")
                if pid is not None:
                    self._terminate(pid, self.router, timeout=5.0)
            finally:
                namespaces = list(self.guests.values()) + [self.host2, self.host, self.router]
                self.guests.clear()
                self._guest_host.clear()
                for ns in namespaces:
                    if ns is not None:
                        self._kill_namespace_pids(ns)
                        ns.delete()
                self.host = self.host2 = self.router = None

    @staticmethod
    def _kill_namespace_pids(ns: NetNS) -> None:
        proc = subprocess.run(["ip", "netns", "pids", ns.name], capture_output=True, text=True)
        pids = [int(p) for p in proc.stdout.split() if p.isdigit()]
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        for pid in pids:
            try:
                wait_for(lambda: not alive(pid), timeout=5.0, what="pid %d to exit" % pid)
            except TimeoutError:
                pass

    # BIRD control ----------------------------------------------------------------------------
    def birdc(self, *args: str) -> str:
        """Run ``birdc -s bird.ctl ARGS`` and return its output (str); RuntimeError if birdc
        fails (e.g. BIRD not running)."""
        proc = subprocess.run([which("birdc") or "birdc", "-s", self.bird_ctl, *args],
                              capture_output=True, text=True, timeout=self.timeout)
        if proc.returncode != 0:
            raise RuntimeError("birdc %s: exit %d: %s%s" % (" ".join(args), proc.returncode,
                                                              proc.stdout, proc.stderr))
        return proc.stdout

    def established(self) -> Dict[str, bool]:
        """{"hA": bool, "hB": bool}: whether BIRD shows each session Established (False when
        BIRD does not answer)."""
        state = {name: False for name in SESSIONS}
        try:
            out = self.birdc("show", "protocols")
        except (RuntimeError, subprocess.TimeoutExpired):
            return state
        for line in out.splitlines():
            fields = line.split()
            if fields and fields[0] in state:
                state[fields[0]] = fields[-1] == "Established"
        return state

    @staticmethod
    def _check_session(name: str) -> None:
        if name not in SESSIONS:
            raise ValueError("unknown session %r (sessions: %s)" % (name, ", ".join(SESSIONS)))

    def disable_session(self, name: str) -> None:
        """``birdc disable NAME`` (BIRD sends Cease/Administrative Shutdown); name "hA"/"hB"."""
        self._check_session(name)
        out = self.birdc("disable", name)
        if "disabled" not in out:
            raise RuntimeError("birdc disable %s: %s" % (name, out.strip()))

    def enable_session(self, name: str) -> None:
        """``birdc enable NAME``; ExaBGP reconnects within about a second (it dials out)."""
        self._check_session(name)
        out = self.birdc("enable", name)
        if "enabled" not in out:
            raise RuntimeError("birdc enable %s: %s" % (name, out.strip()))

    def set_prefixes(self, v4: Iterable[str], v6: Iterable[str]) -> None:
        """Replace the prefixes BIRD announces: rewrite bird.conf and ``birdc configure``.
        BIRD sends the announcements/withdrawals on both sessions without resetting them.
        ValueError for a bad prefix; RuntimeError if BIRD rejects the configuration."""
        self.v4_prefixes = _prefixes(v4, 4, "v4")
        self.v6_prefixes = _prefixes(v6, 6, "v6")
        with open(self._path("bird.conf"), "w") as f:
            f.write(self._bird_conf())
        out = self.birdc("configure")
        if "Reconfigured" not in out and "Reconfiguration in progress" not in out:
            raise RuntimeError("birdc configure: %s" % out.strip())

    def link(self, name: str, state: str) -> None:
        """``ip -n H link set NAME down|up`` for the host side ``ha``/``hb`` (in H2 for ``hb``
        with ``hosts=2``; the router end sees carrier loss).  ``state`` is "up"/"down" (or a
        bool)."""
        host = self._dev_host(name)
        self.host_ns(host).ip("link", "set", name, link_state(state))

    # guests ----------------------------------------------------------------------------------
    def add_guest(self, name: str, host: int = 1) -> NetNS:
        """A veth pair: end ``name`` in host namespace H (``host=1``) or H2 (``host=2``), up,
        no address; the other end, :data:`GUEST_DEV` (``eth0``), in a new guest namespace
        (returned, also in ``lab.guests[name]``), up.  Returns once the host end has carrier
        (``LOWER_UP``).  The guest namespace is deleted by :meth:`stop`.  ValueError for a
        bad or already used name or an unknown host."""
        self._check_host(host)
        if not name or len(name) > 15 or "/" in name or name.isspace():
            raise ValueError("bad interface name %r (1-15 characters, no '/')" % (name,))
        if name in self.guests or name in HOST_LINKS or name == "lo":
            raise ValueError("interface name %r is already used" % (name,))
        ns = self.host_ns(host)
        if ns is None:
            raise LabError("lab not started")
        guest = self.guests[name] = NetNS(unique_name("ksG"))   # at once: stop() deletes it on Ctrl-C
        self._guest_host[name] = host
        try:
            ns.ip("link", "add", name, "type", "veth", "peer", "name", GUEST_DEV,
                  "netns", guest.name)
        except BaseException:
            del self.guests[name], self._guest_host[name]
            guest.delete()
            raise
        ns.ip("link", "set", name, "up")
        guest.ip("link", "set", GUEST_DEV, "up")
        self._wait_carrier(name, True)
        return guest

    def guest_link(self, name: str, state: str) -> None:
        """Set the GUEST end of :meth:`add_guest`'s pair ``name`` down/up (``state`` "down"/"up"
        or a bool): the host end ``name`` loses/regains carrier (``LOWER_UP``) while it stays
        administratively up.  Returns once the host end's flags show it."""
        if name not in self.guests:
            raise ValueError("unknown guest %r (guests: %s)"
                             % (name, ", ".join(sorted(self.guests)) or "none"))
        state = link_state(state)
        self.guests[name].ip("link", "set", GUEST_DEV, state)
        self._wait_carrier(name, state == "up")

    def link_flags(self, name: str, host: int = 1) -> List[str]:
        """Flags of interface ``name`` in host namespace ``host`` (``ip -j link``: e.g.
        ``["BROADCAST", "MULTICAST", "UP", "LOWER_UP"]``); [] if it does not exist."""
        ns = self.host_ns(host)
        if ns is None:
            return []
        proc = subprocess.run(["ip", "-n", ns.name, "-j", "link", "show", "dev", name],
                              capture_output=True, text=True)
        if proc.returncode != 0 or not proc.stdout.strip():
            return []
        entries = json.loads(proc.stdout)
        return list(entries[0].get("flags", [])) if entries else []

    def _wait_carrier(self, name: str, carrier: bool) -> None:
        host = self._guest_host[name]
        wait_for(lambda: ("LOWER_UP" in self.link_flags(name, host)) == carrier,
                 timeout=self.timeout, interval=0.005,
                 what="%s %s carrier" % (name, "to get" if carrier else "to lose"))

    # routes ----------------------------------------------------------------------------------
    def imported(self, session: str) -> Dict[str, List[str]]:
        """The routes BIRD imported from BGP session ``session`` ("hA"/"hB"), IPv4 and IPv6:
        {prefix: [next hop, ...]}, parsed from ``birdc show route protocol NAME`` (tables
        ``master4`` and ``master6``).

        Keys are the prefixes as BIRD prints them (``"203.0.113.10/32"``, ``"2001:db8::/48"``;
        normalised by :mod:`ipaddress`); values are the gateway addresses of the ``via ADDR``
        next hops, as BIRD prints them, in BIRD's order, for every route of that prefix from
        the session (several with ADD-PATH or multipath; duplicates kept).  A route without a
        gateway (``dev X``, ``blackhole``, ``unreachable``) gives [] for its prefix.  Routes
        BIRD filtered out (``show route filtered``) are not included.  RuntimeError if birdc
        fails.

        BIRD 2 prints, per table::

            Table master4:
            203.0.113.10/32      unicast [hA 12:00:01.123] * (100) [AS65010i]
                    via 192.0.2.2 on ra
                                 unicast [hA 12:00:02.456] (100) [AS65010i]
                    via 192.0.2.2 on ra

        (a line starting with the prefix opens it, indented lines continue it); BIRD 1-style
        single lines (``PREFIX via ADDR on DEV [...]``) are understood too.
        """
        self._check_session(session)
        routes: Dict[str, List[str]] = {}
        for table in ("master4", "master6"):
            out = self.birdc("show", "route", "table", table, "protocol", session)
            parse_bird_routes(out, routes)
        return routes

    def router_route(self, prefix: str) -> List[str]:
        """Gateway addresses (text, as ``ip`` prints them) of R's main-table route for
        ``prefix`` (``ip -n R -j route show exact PREFIX``): one for a single-path route, one
        per leg of a multipath one (``nexthops``, or a nexthop object's group); [] when there
        is no such route or it has no gateway.  ValueError for a bad prefix."""
        net = ipaddress.ip_network(prefix, strict=False)
        if self.router is None:
            raise LabError("lab not started")
        entries = self.router.json("-%d" % net.version, "route", "show", "table", "main",
                                   "exact", str(net))
        gateways: List[str] = []
        for entry in entries:
            if entry.get("type", "unicast") != "unicast":
                continue
            dst = entry.get("dst", "")
            if dst == "default":
                dst = "0.0.0.0/0" if net.version == 4 else "::/0"
            try:
                if ipaddress.ip_network(dst, strict=False) != net:
                    continue
            except ValueError:
                continue
            if "nhid" in entry and not (entry.get("gateway") or entry.get("nexthops")):
                gateways.extend(nexthop_gateways(self.router, entry["nhid"]))
            elif entry.get("nexthops"):
                gateways.extend(nh["gateway"] for nh in entry["nexthops"] if nh.get("gateway"))
            elif entry.get("gateway"):
                gateways.append(entry["gateway"])
        return gateways


    # introspection ---------------------------------------------------------------------------
    def _pidfile(self, name: str) -> Optional[int]:
        text = read_text(self._path(name)).strip()
        return int(text) if text.isdigit() else None

    def exabgp_pid(self, host: int = 1) -> Optional[int]:
        """The pid of host ``host``'s ExaBGP (1: H, 2: H2) from its pid file (None until
        written, about 0.2 s after start)."""
        return self._pidfile(os.path.basename(self._hpath(self._check_host(host), "exabgp.pid")))

    def bird_pid(self) -> Optional[int]:
        return self._pidfile("bird.pid")

    def exabgp_log(self, host: int = 1) -> str:
        """Host ``host``'s ExaBGP log file (``exabgp.log.destination``) as text; "" if not
        written yet."""
        return read_text(self._hpath(self._check_host(host), "exabgp.log"))

    def bird_log(self) -> str:
        """BIRD's log file (``log "bird.log" all``) as text."""
        return read_text(self._path("bird.log"))

    def diagnostics(self) -> str:
        """Tails of BIRD's and every ExaBGP's logs and ``birdc show protocols all``, for
        errors."""
        try:
            protocols = self.birdc("show", "protocols", "all", '"h*"')
        except Exception as exc:  # noqa: BLE001 - diagnostics must not fail
            protocols = "(birdc failed: %s)" % exc
        text = ("--- workdir %s\n--- birdc show protocols all \"h*\"\n%s\n--- bird.log\n%s\n"
                % (self.workdir, tail(protocols, 60), tail(self.bird_log())))
        for host in self.host_ids:
            n = "" if host == 1 else str(host)
            text += ("--- exabgp%s.log\n%s\n--- exabgp%s stdout/stderr\n%s"
                     % (n, tail(self.exabgp_log(host)), n,
                        tail(read_text(self._hpath(host, "exabgp.out")))))
            if host != self.host_ids[-1]:
                text += "\n"
        return text


def nexthop_gateways(ns: NetNS, nhid: int) -> List[str]:
    """The gateways of nexthop object ``nhid`` in ``ns`` (a group's members' gateways, in order)."""
    found = ns.json("nexthop", "show", "id", str(nhid))
    if not found:
        return []
    nh = found[0]
    if nh.get("group"):
        out: List[str] = []
        for member in nh["group"]:
            out.extend(nexthop_gateways(ns, member["id"]))
        return out
    return [nh["gateway"]] if nh.get("gateway") else []


def link_state(state: object) -> str:
    if isinstance(state, bool):
        return "up" if state else "down"
    if state not in ("up", "down"):
        raise ValueError("link state must be 'up' or 'down', not %r" % (state,))
    return str(state)


def parse_bird_routes(out: str, routes: Dict[str, List[str]]) -> None:
    """Add ``birdc show route`` output to ``routes`` ({prefix: [via address, ...]})."""
    current: Optional[str] = None
    for line in out.splitlines():
        if not line.strip():
            continue
        fields = line.split()
        if not line[0].isspace():
            if fields[0].startswith("Table") or fields[0] == "BIRD" or line.endswith(":"):
                current = None          # "Table master4:", "BIRD 2.0.12 ready."
                continue
            try:
                current = str(ipaddress.ip_network(fields[0], strict=False))
            except ValueError:
                current = None
                continue
            routes.setdefault(current, [])
        elif current is None:
            continue
        # "via ADDR" anywhere on the line: "\tvia 192.0.2.2 on ra", BIRD 1-style single lines
        for i, word in enumerate(fields[:-1]):
            if word == "via":
                try:
                    routes[current].append(str(ipaddress.ip_address(fields[i + 1])))
                except ValueError:
                    pass


__all__ = ["BgpLab", "LabContext", "LabError", "EXABGP_VERSIONS", "SESSIONS", "HOST_LINKS", "LINKS",
           "GUEST_DEV", "install_requirements", "exabgp_installed", "exabgp_argv",
           "exabgp_env", "exabgp_dir", "cache_dir"]
