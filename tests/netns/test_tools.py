"""The tools kernelsync ships run to the end (a broken tool fails CI): ``kernelsync bench`` at a
small size, ``kernelsync demo`` (bgp, hypervisor) with real BIRD and ExaBGP.  Both create their own scratch
namespaces (named after their process id) and must leave none behind."""
import json
import re
import signal
import subprocess
import sys

import pytest

from kernelsync.tools.lab import install_requirements
from tests.support.netns import need_root

pytestmark = [pytest.mark.netns, pytest.mark.slow]


def left_by(pid):
    """The namespaces a process made that are still there (scratch names carry ``-<pid>-``)."""
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    return [line.split()[0] for line in out.splitlines() if "-%d-" % pid in line]


def run(*args, timeout):
    """``kernelsync ARGS`` to the end: (exit code, stdout, stderr, pid)."""
    proc = subprocess.Popen([sys.executable, "-m", "kernelsync", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
    return proc.returncode, out, err, proc.pid


def test_bench_runs_to_the_end_and_its_checks_pass():
    need_root()
    code, out, err, pid = run("bench", "-n", "2000", "--repeat", "1", "--flap-sizes", "200,2000", "--memory-profile",
                              timeout=120)
    assert code == 0, out[-3000:] + err[-3000:]
    (line,) = [l for l in out.splitlines() if l.startswith("BENCH_JSON ")]
    report = json.loads(line[len("BENCH_JSON "):])
    assert report["ok"] and report["routes"] == 2000 and report["namespaces_left"] == []
    # the RIB load counted (feed -> RIB -> kernel): more than engine.run alone
    inst = report["install"]
    assert inst["median"]["kernelsync_with_rib_s"] > inst["median"]["kernelsync_s"]
    assert inst["median"]["floor_pct_with_rib"] < inst["median"]["floor_pct"]
    # restart adoption by a second engine: no write, SYNCED, the raw dump read every route
    (adopt,) = report["adoption"]["runs"]
    assert adopt["writes"] == 0 and adopt["state"] == "SYNCED" and adopt["ok"]
    assert adopt["raw_dump_routes"] == 2000 and adopt["raw_dump_s"] > 0
    assert "bytes_per_route" in report["memory"]
    # the memory profile names the per-route structures, each route's Prefix once
    prof = report["memory_profile"]
    parts = {p["structure"]: p for p in prof["after_a_full_sync"]["breakdown"]}
    assert parts["rib: Prefix tuples (family, dst, plen)"]["objects"] == 2000
    assert prof["after_install"]["sites"] and prof["ok"]
    assert [s["routes"] for s in report["flap"]["sizes"]] == [200, 2000]
    assert all(s["ok"] for s in report["flap"]["sizes"])
    assert left_by(pid) == []


def test_bench_table_case_mixed_and_withdrawn_runs_to_the_end():
    """``bench --mix full --withdraw`` at a small size: IPv4 and IPv6 prefixes of many lengths on
    their own families' groups, installed and then withdrawn by the three methods."""
    need_root()
    code, out, err, pid = run("bench", "-n", "2000", "--repeat", "1", "--mix", "full", "--mix-groups", "20",
                              "--withdraw", timeout=60)
    assert code == 0, out[-3000:] + err[-3000:]
    (line,) = [l for l in out.splitlines() if l.startswith("BENCH_JSON ")]
    report = json.loads(line[len("BENCH_JSON "):])
    assert report["ok"] and report["namespaces_left"] == []
    table = report["table"]
    assert (table["ipv4"], table["ipv6"], table["groups"]) == (2000, 400, 20)
    assert "24" in table["prefix_lengths"]["ipv4"] and "48" in table["prefix_lengths"]["ipv6"]  # JSON keys
    (ks,) = table["runs"]["kernelsync"]
    (raw,) = table["runs"]["raw_writer"]
    (ip,) = table["runs"]["ip_batch"]
    # each method's install and withdrawal checked by dumps; kernelsync deleted every route
    assert ks["ok"] and raw["ok"] and ip["ok"] and raw["refused"] == 0 and raw["del_refused"] == 0
    assert ks["del_ops"] >= 2400 and ks["del_with_rib_s"] > ks["del_s"]
    for key in ("floor_pct", "ratio", "del_floor_pct_with_rib", "del_ratio"):
        assert table["median"][key] > 0
    assert "withdrawal" in out and "of the raw writer's delete rate" in out
    assert left_by(pid) == []


def test_bench_bgp_two_peers_in_the_full_table_range_runs_to_the_end():
    """``bench-bgp`` at a small size in 100.64.0.0/10 (the range a full table needs), both
    sessions announcing: every prefix installed, memory per path and the CPU split reported."""
    need_root()
    install_requirements(("5.0",))
    code, out, err, pid = run("bench-bgp", "-n", "2000", "--offset", "131072", "--mode", "shared", "--peers", "2",
                              timeout=120)
    assert code == 0, out[-3000:] + err[-3000:]
    (line,) = [l for l in out.splitlines() if l.startswith("BENCH_JSON ")]
    report = json.loads(line[len("BENCH_JSON "):])
    (run_,) = report["runs"]["shared"]
    assert run_["installed_routes"] >= 2000 and run_["peers"] == 2 and run_["paths"] == 4000
    assert run_["announced"] >= 4000  # both peers' paths reached kernelsync
    assert run_["kernelsync_user_s"] > 0 and run_["ratio_user"] is not None
    assert run_["exabgp_peak_rss_mib"] > 0 and "kernelsync_bytes_per_path" in run_
    assert report["summary"]["shared"]["kernelsync_tail_s"]["min"] <= report["summary"]["shared"]["wall_s"]["max"]
    assert "100.64.0.0/32" in run_["first_prefix"]
    # the end is the last route notification's receive time, not a poll of the table
    assert run_["end_from"] == "notification" and run_["route_notifications"] >= 2000
    assert left_by(pid) == []


def test_demo_runs_to_the_end():
    need_root()
    install_requirements(("5.0",))
    code, out, err, pid = run("demo", timeout=180)
    assert code == 0, out[-3000:] + err[-3000:]
    assert "after link B went down: the groups lost hb, every route stayed" in out
    assert "kernelsync re-added hb's nexthops and re-pushed the groups" in out
    assert "namespaces deleted, daemons stopped" in out
    assert left_by(pid) == []


def test_hypervisor_demo_runs_to_the_end():
    need_root()
    install_requirements(("5.0",))
    code, out, err, pid = run("demo", "hypervisor", timeout=180)
    assert code == 0, out[-3000:] + err[-3000:]
    step = {n: out.split("=== %d." % n, 1)[1].split("\n=== ", 1)[0] for n in range(1, 6)}
    ecmp = r"core\$ ip route show 203.0.113.53\n.*\n\s+nexthop via 192.0.2.2 dev ra .*\n\s+nexthop via 192.0.2.10 dev rb "
    assert re.search(ecmp, step[1]) and re.search(ecmp, step[4]), out   # the core's ECMP over both hypervisors
    legs = r"hv1\$ ip route show 203.0.113.53\n.* scope link .*\n\s+nexthop dev vm1 weight 1\s*\n\s+nexthop dev vm3 weight 1\n"
    assert re.search(legs, step[2]), out                                 # two device-only legs
    assert "hv1 has sent ExaBGP 1 announcement(s) of 203.0.113.53/32 for its two guests" in step[2], out
    assert re.search(r"withdraw measured: \d+ ms from the guest's death to BIRD's route shrinking", step[3]), out
    assert "203.0.113.53 via 192.0.2.2 dev ra proto bird" in step[3], out              # shrunk to hv1
    assert "hv2 announces: nothing" in step[3], out
    assert "(only those moved: a join or a return takes idle buckets only)" in step[5], out
    assert "namespaces deleted, daemons stopped" in out
    assert left_by(pid) == []


def test_hypervisor_demo_cleans_up_on_ctrl_c():
    """Ctrl-C mid-demo: a message, exit 130, every namespace and daemon gone."""
    need_root()
    install_requirements(("5.0",))
    proc = subprocess.Popen([sys.executable, "-m", "kernelsync", "demo", "hypervisor"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        for line in proc.stdout:
            if line.startswith("=== 1."):           # the lab is up: three namespaces and guests to come
                proc.send_signal(signal.SIGINT)
                break
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, out[-2000:] + err[-2000:]
    assert "interrupted: namespaces deleted, daemons stopped" in err and "Traceback" not in err, err
    assert left_by(proc.pid) == []
