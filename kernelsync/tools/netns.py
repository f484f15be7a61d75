"""Scratch network namespaces for the demo, the benchmark and the tests.

Uses iproute2 (``ip netns``, ``ip -n``) and ``setns(2)`` (through ctypes: Python 3.11 has no
``os.setns``) to run this process's own netlink sockets inside a namespace.  Nothing here
touches the namespace the process started in, except to come back to it.
"""
from __future__ import annotations

import contextlib
import ctypes
import json
import os
import subprocess
import time
from typing import Callable, Iterator, List, Optional

CLONE_NEWNET = 0x40000000
_libc = ctypes.CDLL(None, use_errno=True)


def setns(fd: int) -> None:
    """Move the calling thread into the network namespace open at ``fd`` (setns(2))."""
    if _libc.setns(fd, CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OSError(err, "setns: %s" % os.strerror(err))


class NetNS:
    """A named network namespace, deleted by :meth:`delete` (and by ``with``)."""

    def __init__(self, name: str, compat_mode: Optional[int] = None) -> None:
        self.name = name
        try:
            subprocess.run(["ip", "netns", "add", name], check=True)
        except subprocess.CalledProcessError:
            raise               # not made (the name may be another's): nothing of ours to delete
        except BaseException:   # Ctrl-C as ``ip netns add`` ends: it may have made the namespace
            self.delete()
            raise
        try:
            self.ip("link", "set", "lo", "up")
            self.sysctl("net.ipv6.conf.all.accept_dad", "0")
            self.sysctl("net.ipv6.conf.default.accept_dad", "0")
            if compat_mode is not None:
                self.sysctl("net.ipv4.nexthop_compat_mode", str(compat_mode))
        except BaseException:   # Ctrl-C or an error here: nobody holds the object to delete it
            self.delete()
            raise

    def __enter__(self) -> "NetNS":
        return self

    def __exit__(self, *exc) -> None:
        self.delete()

    def delete(self) -> None:
        subprocess.run(["ip", "netns", "del", self.name], check=False, stderr=subprocess.DEVNULL)

    def run(self, *argv: str, check: bool = True, **kw) -> subprocess.CompletedProcess:
        return subprocess.run(["ip", "netns", "exec", self.name, *argv], check=check,
                              capture_output=True, text=True, **kw)

    def ip(self, *args: str, check: bool = True) -> str:
        proc = subprocess.run(["ip", "-n", self.name, *args], capture_output=True, text=True)
        if check and proc.returncode != 0:
            raise RuntimeError("ip -n %s %s: %s" % (self.name, " ".join(args), proc.stderr.strip()))
        return proc.stdout

    def json(self, *args: str) -> list:
        out = self.ip("-j", *args)
        return json.loads(out) if out.strip() else []

    def sysctl(self, key: str, value: str) -> None:
        self.run("sysctl", "-qw", "%s=%s" % (key, value))

    def veth(self, name: str, peer: str, up: bool = True) -> None:
        self.ip("link", "add", "name", name, "type", "veth", "peer", "name", peer)
        if up:
            self.ip("link", "set", name, "up")
            self.ip("link", "set", peer, "up")

    @contextlib.contextmanager
    def entered(self) -> Iterator["NetNS"]:
        """Run the calling thread inside the namespace for the ``with`` block."""
        home = os.open("/proc/self/ns/net", os.O_RDONLY)
        target = os.open("/var/run/netns/%s" % self.name, os.O_RDONLY)
        try:
            setns(target)
            yield self
        finally:
            setns(home)
            os.close(home)
            os.close(target)


def wait_for(predicate: Callable[[], object], timeout: float = 10.0, interval: float = 0.01,
             what: str = "condition") -> object:
    """Poll ``predicate`` until it returns a true value or ``timeout`` seconds pass."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise TimeoutError("timed out after %.1fs waiting for %s" % (timeout, what))
        time.sleep(interval)


def unique_name(prefix: str) -> str:
    return "%s-%d-%s" % (prefix, os.getpid(), os.urandom(3).hex())


def kernelsync_pids(namespace: str, subcommand: str) -> List[int]:
    """Pids of the ``kernelsync SUBCOMMAND`` processes (``exabgp``, ``hold``, ...) running in
    the network namespace ``namespace`` (``ip netns pids``, then each one's command line)."""
    out = []
    for pid in subprocess.run(["ip", "netns", "pids", namespace], capture_output=True, text=True).stdout.split():
        try:
            with open("/proc/%s/cmdline" % pid, "rb") as fh:
                cmdline = fh.read().split(b"\0")
        except OSError:
            continue
        if b"kernelsync" in cmdline and subcommand.encode() in cmdline:
            out.append(int(pid))
    return out


__all__: List[str] = ["NetNS", "setns", "wait_for", "unique_name", "kernelsync_pids"]
