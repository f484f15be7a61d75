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
namespaces get unique names (``kernelsync.netns.unique_name``) so labs can run back to back.

API::

    install_requirements(exabgp_versions=("5.0",))  # apt bird2, pip exabgp; idempotent
    exabgp_installed(version) -> str | None         # installed version string, or None
    exabgp_argv(version, conf_path) -> list[str]    # command that runs ExaBGP "5.0" or "4.2"
    exabgp_env(version, settings=None, **kw) -> dict  # full environment for it

    with BgpLab(exabgp_version="5.0", process_argv=[...], v4_prefixes=[...],
                v6_prefixes=[...], add_path=True, workdir=None, exabgp_settings=None) as lab:
        lab.established()            # {"hA": True, "hB": True}
        lab.birdc("show", "route")   # birdc output (str)
        lab.disable_session("hB"); lab.enable_session("hB")
        lab.set_prefixes(v4, v6)     # rewrite BIRD's statics, ``birdc configure``
        lab.link("hb", "down")       # host-side link ha/hb down|up
        lab.wait_established()       # both sessions (or the named ones) Established again
        lab.stop_exabgp()            # SIGTERM ExaBGP only (its process gets the shutdown)
        lab.exabgp_pid(); lab.exabgp_log(); lab.bird_log()
        lab.host, lab.router         # NetNS objects (namespaces H and R)
        lab.workdir                  # configs, logs, pid files, control socket

``start()`` (called by ``with``) brings up namespaces and links, starts BIRD, waits until it
listens, starts ExaBGP and waits until both sessions are Established (0.25 s with 5.0, 0.8 s
with 4.2, which imports slower).  ``stop()``
(called by ``with`` even on errors, and by a failing ``start()``) SIGTERMs ExaBGP then BIRD by
pid file, kills whatever else still runs in the two namespaces, and deletes them.  A workdir the
lab created itself is removed on ``__exit__`` unless ``KERNELSYNC_LAB_KEEP=1``; keep a given
workdir short (BIRD's control socket path must fit in 108 bytes).

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
import os
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from typing import Dict, Iterable, List, Mapping, Optional, Sequence

from kernelsync.netns import NetNS, unique_name, wait_for

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


def _which(name: str) -> Optional[str]:
    found = shutil.which(name)
    if found:
        return found
    for d in ("/usr/sbin", "/sbin", "/usr/local/sbin"):
        path = os.path.join(d, name)
        if os.access(path, os.X_OK):
            return path
    return None


def _run_install(argv: Sequence[str], what: str, env: Optional[Mapping[str, str]] = None) -> None:
    print("kernelsync.lab: %s: %s" % (what, " ".join(argv)), flush=True)
    proc = subprocess.run(list(argv), capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-20:])
        raise RuntimeError("%s failed (exit %d): %s\n%s"
                           % (what, proc.returncode, " ".join(argv), tail))


def _apt_install(packages: Sequence[str]) -> None:
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
            f.write("#!/bin/sh\n# kernelsync.lab: no service starts during install\nexit 101\n")
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
    if not (_which("bird") and _which("birdc")):
        _apt_install(["bird2"])
        if not (_which("bird") and _which("birdc")):
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


def _alive(pid: int) -> bool:
    try:
        with open("/proc/%d/stat" % pid) as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")


def _in_netns(pid: int, ns: NetNS) -> bool:
    """Whether process ``pid`` runs in network namespace ``ns``."""
    try:
        return (os.stat("/proc/%d/ns/net" % pid).st_ino
                == os.stat("/var/run/netns/%s" % ns.name).st_ino)
    except OSError:
        return False


def _read(path: str) -> str:
    try:
        with open(path, errors="replace") as f:
            return f.read()
    except OSError:
        return ""


def _tail(text: str, lines: int = 40) -> str:
    return "\n".join(text.rstrip().splitlines()[-lines:])


class BgpLab:
    """BIRD (namespace ``router``) and ExaBGP (namespace ``host``) with two eBGP sessions.

    Arguments:
        exabgp_version: "5.0" or "4.2" (see :data:`EXABGP_VERSIONS`).
        process_argv: the command ExaBGP runs as its ``process ks`` (``encoder json``; api:
            ``neighbor-changes`` and ``receive { parsed; update; notification; refresh; }`` on
            both neighbors), as an argv list (run through an ``exec`` wrapper script in
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
            or without the prefix (``api.ack``); they override the lab's.
        timeout: seconds each wait (BIRD listening, sessions Established, stops) may take.

    Files in ``workdir``: ``bird.conf``, ``bird.log``, ``bird.ctl``, ``bird.pid``,
    ``exabgp.conf``, ``exabgp.log``, ``exabgp.pid``, ``exabgp.out`` (its stdout/stderr),
    ``process.sh``.
    """

    def __init__(self, exabgp_version: str = "5.0", process_argv: Optional[Sequence[str]] = None,
                 v4_prefixes: Iterable[str] = DEFAULT_V4, v6_prefixes: Iterable[str] = DEFAULT_V6,
                 add_path: bool = True, workdir: Optional[str] = None,
                 exabgp_settings: Optional[Mapping[str, object]] = None,
                 timeout: float = 15.0) -> None:
        _check_version(exabgp_version)
        self.exabgp_version = exabgp_version
        self.process_argv = list(process_argv) if process_argv is not None else None
        if self.process_argv is not None and not (
                self.process_argv and shutil.which(self.process_argv[0])):
            raise ValueError("process_argv: %r is not an executable program"
                             % (self.process_argv[:1],))
        self.v4_prefixes = _prefixes(v4_prefixes, 4, "v4_prefixes")
        self.v6_prefixes = _prefixes(v6_prefixes, 6, "v6_prefixes")
        self.add_path = add_path
        self.exabgp_settings = dict(exabgp_settings or {})
        self.timeout = timeout
        self._own_workdir = workdir is None
        self.workdir = os.path.abspath(workdir) if workdir else tempfile.mkdtemp(prefix="kslab-")
        os.makedirs(self.workdir, exist_ok=True)
        self.router: Optional[NetNS] = None
        self.host: Optional[NetNS] = None
        self._exabgp: Optional[subprocess.Popen] = None
        self._exabgp_out = None

    # paths -----------------------------------------------------------------------------------
    def _path(self, name: str) -> str:
        return os.path.join(self.workdir, name)

    @property
    def bird_ctl(self) -> str:
        return self._path("bird.ctl")

    # context manager -------------------------------------------------------------------------
    def __enter__(self) -> "BgpLab":
        try:
            self.start()
        except BaseException:
            self._remove_workdir()
            raise
        return self

    def __exit__(self, *exc) -> None:
        try:
            self.stop()
        finally:
            self._remove_workdir()

    def _remove_workdir(self) -> None:
        if self._own_workdir and os.environ.get("KERNELSYNC_LAB_KEEP") != "1":
            shutil.rmtree(self.workdir, ignore_errors=True)

    # start / stop ----------------------------------------------------------------------------
    def start(self) -> None:
        """Namespaces, links, BIRD, ExaBGP; returns when hA and hB are both Established.

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
        for ns in (self.router, self.host):
            # keep the IPv6 addresses across `link down`, so link() flaps restore the same state
            ns.sysctl("net.ipv6.conf.all.keep_addr_on_down", "1")
            ns.sysctl("net.ipv6.conf.default.keep_addr_on_down", "1")
        for link in LINKS.values():
            self.router.ip("link", "add", link["rdev"], "type", "veth",
                           "peer", "name", link["hdev"], "netns", self.host.name)
            for ns, dev, a4, a6 in ((self.router, link["rdev"], link["r4"], link["r6"]),
                                    (self.host, link["hdev"], link["h4"], link["h6"])):
                ns.ip("addr", "add", "%s/%s" % (a4, link["len4"]), "dev", dev)
                ns.ip("-6", "addr", "add", "%s/%s" % (a6, link["len6"]), "dev", dev, "nodad")
                ns.ip("link", "set", dev, "up")
        # BIRD sends the link-local next hop only if the interface has one when the session starts
        wait_for(self._linklocal_ready, timeout=self.timeout, what="fe80:: addresses on the veths")

    def _linklocal_ready(self) -> bool:
        for ns, side in ((self.router, "rdev"), (self.host, "hdev")):
            for link in LINKS.values():
                addrs = ns.json("-6", "addr", "show", "dev", link[side], "scope", "link")
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
            '# written by kernelsync.lab\n'
            'log "%(log)s" all;\n'
            'debug protocols { states };\n'
            'router id %(rid)s;\n'
            'protocol device { scan time 10; }\n'
            '%(s4)s%(s6)s'
            'filter to_host { if source != RTS_STATIC then reject; accept; }\n'
            'template bgp host {\n'
            '  local as %(ras)d; neighbor as %(has)d; passive on;\n'
            '  hold time 9; keepalive time 3; error wait time 1, 2;\n'
            '}\n'
            '%(sessions)s'
            % dict(log=self._path("bird.log"), rid=ROUTER_ID, ras=ROUTER_AS, has=HOST_AS,
                   s4=statics("s4", "ipv4", self.v4_prefixes),
                   s6=statics("s6", "ipv6", self.v6_prefixes),
                   sessions="".join(sessions)))

    def _start_bird(self) -> None:
        bird = _which("bird")
        if not bird or not _which("birdc"):
            raise LabError("bird/birdc not found: run kernelsync.lab.install_requirements()")
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

    def _exabgp_conf(self) -> str:
        parts = ["# written by kernelsync.lab\n"]
        if self.process_argv is not None:
            parts.append("process ks {\n    run %s;\n    encoder json;\n}\n"
                         % self._path("process.sh"))
        for link in LINKS.values():
            caps = "add-path receive; route-refresh;" if self.add_path else "route-refresh;"
            api = ("    api {\n        processes [ ks ];\n        neighbor-changes;\n"
                   "        receive { parsed; update; notification; refresh; }\n    }\n"
                   if self.process_argv is not None else "")
            parts.append(
                "neighbor %(r4)s {\n"
                "    router-id %(rid)s;\n"
                "    local-address %(h4)s;\n"
                "    local-as %(has)d;\n"
                "    peer-as %(ras)d;\n"
                "    family { ipv4 unicast; ipv6 unicast; }\n"
                "    capability { %(caps)s }\n"
                "%(api)s"
                "}\n" % dict(link, rid=HOST_ROUTER_ID, has=HOST_AS, ras=ROUTER_AS,
                             caps=caps, api=api))
        return "".join(parts)

    def _start_exabgp(self) -> None:
        if not exabgp_installed(self.exabgp_version):
            raise LabError("ExaBGP %s not installed: run kernelsync.lab.install_requirements(%r)"
                           % (EXABGP_VERSIONS[self.exabgp_version], (self.exabgp_version,)))
        if self.process_argv is not None:
            script = self._path("process.sh")
            with open(script, "w") as f:
                f.write("#!/bin/sh\nexec %s\n" % " ".join(shlex.quote(a) for a in self.process_argv))
            os.chmod(script, 0o755)
        conf = self._path("exabgp.conf")
        with open(conf, "w") as f:
            f.write(self._exabgp_conf())
        settings: Dict[str, object] = {
            "exabgp.log.destination": self._path("exabgp.log"),
            "exabgp.daemon.pid": self._path("exabgp.pid"),
        }
        settings.update({k if k.startswith("exabgp.") else "exabgp." + k: v
                         for k, v in self.exabgp_settings.items()})
        env = exabgp_env(self.exabgp_version, settings)
        self._exabgp_out = open(self._path("exabgp.out"), "ab")
        self._exabgp = subprocess.Popen(
            ["ip", "netns", "exec", self.host.name, *exabgp_argv(self.exabgp_version, conf)],
            env=env, cwd=self.workdir, stdin=subprocess.DEVNULL, stdout=self._exabgp_out,
            stderr=subprocess.STDOUT, start_new_session=True)

    def wait_established(self, sessions: Iterable[str] = SESSIONS,
                         timeout: Optional[float] = None) -> None:
        """Wait until the named BIRD sessions are Established; LabError with logs on timeout."""
        names = list(sessions)
        for name in names:
            self._check_session(name)

        def ready() -> bool:
            if self._exabgp is not None and self._exabgp.poll() is not None:
                raise LabError("ExaBGP exited with status %s\n%s"
                               % (self._exabgp.returncode, self.diagnostics()))
            state = self.established()
            return all(state.get(n) for n in names)

        try:
            wait_for(ready, timeout=self.timeout if timeout is None else timeout,
                     interval=0.02, what="BGP sessions %s Established" % ", ".join(names))
        except TimeoutError as exc:
            raise LabError("%s\n%s" % (exc, self.diagnostics())) from None

    def stop_exabgp(self, timeout: Optional[float] = None) -> Optional[int]:
        """SIGTERM ExaBGP (it sends Cease to BIRD, the shutdown notice to its process, then
        SIGTERMs the process) and wait for it; SIGKILL after ``timeout`` seconds (default: the
        lab's).  Returns its exit status, None if it was not running.  The namespaces stay."""
        proc, self._exabgp = self._exabgp, None
        status = None
        if proc is not None:
            pid = self.exabgp_pid()
            if pid is not None and pid != proc.pid:   # daemonised by a user setting
                self._terminate(pid, self.host, timeout)
            self._terminate(proc.pid, self.host, timeout)
            try:
                status = proc.wait(timeout=5.0)
            except subprocess.TimeoutExpired:
                proc.kill()
                status = proc.wait()
        if self._exabgp_out is not None:
            self._exabgp_out.close()
            self._exabgp_out = None
        return status

    def _terminate(self, pid: int, ns: Optional[NetNS], timeout: Optional[float] = None) -> None:
        """SIGTERM ``pid`` if it runs in ``ns`` (so a stale pid file never hits another
        process), wait up to ``timeout`` seconds, then SIGKILL."""
        if ns is None or not _alive(pid) or not _in_netns(pid, ns):
            return
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            return
        try:
            wait_for(lambda: not _alive(pid), timeout=self.timeout if timeout is None else timeout,
                     interval=0.02, what="pid %d to exit" % pid)
        except TimeoutError:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

    def stop(self) -> None:
        """Stop ExaBGP, then BIRD (SIGTERM by pid file, SIGKILL after 5 s), kill anything left
        in the two namespaces and delete them.  Idempotent; never raises for daemons that are
        already gone.  Takes about 0.2 s."""
        try:
            self.stop_exabgp()
        finally:
            try:
                pid = self._pidfile("bird.pid")
                if pid is not None:
                    self._terminate(pid, self.router, timeout=5.0)
            finally:
                for ns in (self.host, self.router):
                    if ns is not None:
                        self._kill_namespace_pids(ns)
                        ns.delete()
                self.host = self.router = None

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
                wait_for(lambda: not _alive(pid), timeout=5.0, what="pid %d to exit" % pid)
            except TimeoutError:
                pass

    # BIRD control ----------------------------------------------------------------------------
    def birdc(self, *args: str) -> str:
        """Run ``birdc -s bird.ctl ARGS`` and return its output (str); RuntimeError if birdc
        fails (e.g. BIRD not running)."""
        proc = subprocess.run([_which("birdc") or "birdc", "-s", self.bird_ctl, *args],
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
        """``ip -n H link set NAME down|up`` for the host side ``ha``/``hb`` (the router end
        sees carrier loss).  ``state`` is "up"/"down" (or a bool)."""
        if name not in HOST_LINKS:
            raise ValueError("unknown host link %r (links: %s)" % (name, ", ".join(HOST_LINKS)))
        if isinstance(state, bool):
            state = "up" if state else "down"
        if state not in ("up", "down"):
            raise ValueError("link state must be 'up' or 'down', not %r" % (state,))
        self.host.ip("link", "set", name, state)

    # introspection ---------------------------------------------------------------------------
    def _pidfile(self, name: str) -> Optional[int]:
        text = _read(self._path(name)).strip()
        return int(text) if text.isdigit() else None

    def exabgp_pid(self) -> Optional[int]:
        """ExaBGP's pid from its pid file (None until written, about 0.2 s after start)."""
        return self._pidfile("exabgp.pid")

    def bird_pid(self) -> Optional[int]:
        return self._pidfile("bird.pid")

    def exabgp_log(self) -> str:
        """ExaBGP's log file (``exabgp.log.destination``) as text; "" if not written yet."""
        return _read(self._path("exabgp.log"))

    def bird_log(self) -> str:
        """BIRD's log file (``log "bird.log" all``) as text."""
        return _read(self._path("bird.log"))

    def diagnostics(self) -> str:
        """Tails of BIRD's and ExaBGP's logs and ``birdc show protocols all``, for errors."""
        try:
            protocols = self.birdc("show", "protocols", "all", '"h*"')
        except Exception as exc:  # noqa: BLE001 - diagnostics must not fail
            protocols = "(birdc failed: %s)" % exc
        return ("--- workdir %s\n--- birdc show protocols all \"h*\"\n%s\n--- bird.log\n%s\n"
                "--- exabgp.log\n%s\n--- exabgp stdout/stderr\n%s"
                % (self.workdir, _tail(protocols, 60), _tail(self.bird_log()),
                   _tail(self.exabgp_log()), _tail(_read(self._path("exabgp.out")))))


__all__ = ["BgpLab", "LabError", "EXABGP_VERSIONS", "SESSIONS", "HOST_LINKS", "LINKS",
           "install_requirements", "exabgp_installed", "exabgp_argv", "exabgp_env",
           "exabgp_dir", "cache_dir"]
