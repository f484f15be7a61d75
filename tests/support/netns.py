"""Helpers of the tests that run in a network namespace: what is ours and what is foreign in
the kernel, the kernelsync daemon as a real process inside the namespace, config text."""
import json
import os
import signal
import subprocess
import sys

import pytest

from kernelsync.control import query
from kernelsync.tools.netns import wait_for

PROTO = 200
TABLE = 100
ID_RANGE = (1000, 1999)


def need_root():
    if os.geteuid() != 0:
        pytest.skip("needs root for network namespaces")


def foreign_state(namespace, foreign_ids):
    """Every foreign object, as the kernel prints it in detail (compared as text)."""
    nexthops = [n for n in namespace.json("-d", "nexthop", "show") if n["id"] in foreign_ids]
    routes = []
    for family in ("-4", "-6"):
        for r in namespace.json("-d", family, "route", "show", "table", "all"):
            ours = str(r.get("protocol")) == str(PROTO) and str(r.get("table")) == str(TABLE)
            # only the links that carry the foreign objects: the kernel's own connected and
            # local routes of the links a test flaps or adds come and go with those links
            steady = r.get("dev", "lo") in ("lo", "f0", "f1", "fp0", "fp1")
            if not ours and steady:
                routes.append(r)
    return json.dumps({"nexthops": nexthops, "routes": routes}, sort_keys=True)


def add_foreign(namespace):
    """Foreign routes and nexthops that no test may change: another protocol in our table, our
    protocol in another table, our protocol outside our ID range, another protocol inside our ID
    range.  They live on f0/f1, which no test flaps (the kernel itself deletes nexthops on a
    link that goes down, whoever owns them).  Returns their state, for :func:`foreign_state`."""
    for n in range(2):
        namespace.veth("f%d" % n, "fp%d" % n)
        namespace.ip("addr", "add", "10.0.%d.1/24" % (8 + n), "dev", "f%d" % n)
    namespace.ip("-6", "addr", "add", "2001:db8:8::1/64", "dev", "f0", "nodad")
    namespace.ip("nexthop", "add", "id", "5", "via", "10.0.8.9", "dev", "f0", "proto", str(PROTO))
    namespace.ip("nexthop", "add", "id", str(ID_RANGE[0]), "dev", "f1", "proto", "12")
    namespace.ip("nexthop", "add", "id", "7", "group", "5/%d" % ID_RANGE[0], "proto", "12")
    namespace.ip("route", "add", "192.0.2.0/24", "nhid", "7", "proto", "12", "table", str(TABLE), "metric", "20")
    namespace.ip("route", "add", "203.0.113.1/32", "via", "10.0.8.9", "proto", "12", "table", str(TABLE), "metric", "20")
    namespace.ip("route", "add", "198.51.100.0/24", "nhid", "5", "proto", str(PROTO), "table", "254")
    namespace.ip("-6", "route", "add", "2001:db8:77::/64", "via", "2001:db8:8::9", "proto", "12", "table", str(TABLE))
    namespace.foreign_ids = {5, 7, ID_RANGE[0]}
    return foreign_state(namespace, namespace.foreign_ids)


def write_config(tmp_path, routes_toml, **kernel):
    settings = {"table": TABLE, "protocol": PROTO, "nexthop_id_range": list(ID_RANGE),
                "resync_interval": 60, "verify_delay": 0.3, "group_hold_time": 5}
    settings.update(kernel)
    lines = ["[kernel]"]
    for key, value in settings.items():
        lines.append("%s = %s" % (key, json.dumps(value)))
    lines += ["[control]", 'socket = "%s"' % (tmp_path / "ks.sock"), routes_toml]
    path = tmp_path / "kernelsync.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


class DaemonProc:
    """``kernelsync run`` as a process inside the namespace."""

    def __init__(self, namespace, config, tmp_path, name="ks"):
        self.ns = namespace
        self.config = config
        self.sock = str(tmp_path / "ks.sock")
        self.log_path = tmp_path / ("%s.log" % name)
        self.proc = None

    def start(self):
        self.logf = open(self.log_path, "a")
        self.proc = subprocess.Popen(
            ["ip", "netns", "exec", self.ns.name, sys.executable, "-m", "kernelsync", "--log-level", "debug",
             "run", "-c", str(self.config)], stdout=self.logf, stderr=subprocess.STDOUT)
        return self

    def query(self, what):
        return query(self.sock, what)

    def stats(self):
        try:
            return self.query("show stats")
        except OSError:
            assert self.proc.poll() is None, "kernelsync exited:\n" + self.log()
            return None

    def wait_synced(self, routes=None, timeout=30):
        def ok():
            s = self.stats()
            return (s and s["state"] == "SYNCED" and (routes is None or s["installed_routes"] == routes)
                    and s)
        return wait_for(ok, timeout=timeout, what="kernelsync synced")

    def log(self):
        return self.log_path.read_text()

    def stop(self, timeout=10):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc:
            self.logf.close()
        return self.proc.returncode if self.proc else None


def static_routes(routes):
    """[(prefix, [nexthop dicts], resilient or None)] -> TOML text."""
    out = []
    for prefix, nexthops, resilient in routes:
        nhs = ", ".join("{ %s }" % ", ".join("%s = %s" % (k, json.dumps(v)) for k, v in nh.items())
                        for nh in nexthops)
        out.append("[[static.route]]\nprefix = %s\nnexthops = [ %s ]" % (json.dumps(prefix), nhs))
        if resilient:
            out.append("resilient = { %s }" % ", ".join("%s = %s" % (k, json.dumps(v)) for k, v in resilient.items()))
    return "\n".join(out)


def our_nexthops(namespace):
    return {n["id"]: n for n in namespace.json("nexthop", "show")
            if ID_RANGE[0] <= n["id"] <= ID_RANGE[1] and str(n.get("protocol")) == str(PROTO)}


def our_routes(namespace, family="-4"):
    return {r["dst"]: r for r in namespace.json(family, "route", "show", "table", str(TABLE), "proto", str(PROTO))}


def table_routes(namespace, *args):
    """``ip -j route show ARGS``: [] while the table named in them does not exist yet (the
    kernel creates a table with its first route)."""
    try:
        return namespace.json("route", "show", *args)
    except RuntimeError as exc:
        if "FIB table does not exist" in str(exc):
            return []
        raise


def route_gateways(namespace, prefix, table):
    """Sorted gateways of kernelsync's route for ``prefix`` in ``table`` (its nexthop object or
    the members of its group); None if there is no such route or its object is gone."""
    routes = table_routes(namespace, prefix, "table", str(table), "proto", str(PROTO))
    if not routes:
        return None
    nexthops = {n["id"]: n for n in namespace.json("nexthop", "show")}
    nh = nexthops.get(routes[0].get("nhid"))
    if nh is None:
        return None
    members = [nexthops[m["id"]] for m in nh["group"]] if "group" in nh else [nh]
    return sorted(m.get("gateway") for m in members)


def monitor_lines_until_now(namespace, monitor):
    """The lines ``monitor`` (an ``ip monitor route`` Popen with a text stdout pipe) printed up
    to now: a marker route is added in table 103 and the lines are read until it shows."""
    namespace.ip("route", "add", "198.18.0.0/32", "dev", "v0", "table", "103")
    lines = []
    for line in monitor.stdout:
        lines.append(line)
        if "198.18.0.0" in line:
            break
    return lines


def wait_for_state(predicate, timeout=1.0, what="kernel state"):
    return wait_for(predicate, timeout=timeout, interval=0.005, what=what)
