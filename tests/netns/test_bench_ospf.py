"""``kernelsync bench-ospf`` runs to the end with real BIRD 2 and FRR 8.4 (one local and one remote
flap each) and its result is complete and sane: every event reached its target, every daemon
write was matched, the LAN's change is measured in every event, the remote failure's stub
deletion is measured.  No timing is asserted (speed is a benchmark's business)."""
import json
import subprocess
import sys

import pytest

from kernelsync.tools.ospflab import LAN, NH_R2, NH_R3, install_requirements
from tests.support.netns import need_root

pytestmark = [pytest.mark.netns, pytest.mark.slow]
OTHER = {"r2": NH_R3, "r3": NH_R2}


def left_by(pid):
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    return [line.split()[0] for line in out.splitlines() if "-%d-" % pid in line]


def test_bench_ospf_short_run_is_complete():
    need_root()
    install_requirements(frr=True)
    proc = subprocess.Popen([sys.executable, "-m", "kernelsync", "bench-ospf", "--daemon", "both", "--flaps", "1",
                             "--kinds", "local,remote", "--seed", "2", "--json"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        out, err = proc.communicate(timeout=150)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
    assert proc.returncode == 0, out[-3000:] + err[-3000:]
    assert not left_by(proc.pid)
    report = json.loads(out)
    assert [r["daemon"] for r in report["results"]] == ["bird", "frr"]
    for r in report["results"]:
        where = "%s: %s" % (r["daemon"], err[-3000:])
        events, measurements = r["events"], r["measurements"]
        assert [(e["kind"], e["direction"]) for e in events if e["kind"] == "local"] == [("local", "down"),
                                                                                       ("local", "up")], where
        assert sorted(e["kind"] for e in events) == ["local", "local", "remote", "remote"], where
        assert all(e["problem"] is None for e in events), where
        assert r["listener_overflows"] == 0 and r["problems"] == 0
        for m in measurements:
            assert m["status"] in ("matched", "already", "stranded", "stale"), (m, where)
            if m["status"] in ("matched", "already"):
                assert m["added_ms"] is not None and m["added_ms"] >= 0 and m["t1"] >= m["t0"], m
        for e in events:
            mine = [m for m in measurements if m["event"] == e["index"]]
            want = [OTHER[e["side"]]] if e["direction"] == "down" else sorted([NH_R2, NH_R3])
            lan = [m for m in mine if m["prefix"] == LAN and m["status"] in ("matched", "already")]
            if e["zebra_stuck"]:  # FRR 8.4 installed and streamed nothing new for the LAN: nothing to measure
                assert r["daemon"] == "frr" and e["direction"] == "up" and not lan, (e, mine)
                continue
            assert lan and lan[-1]["nexthops"] == want, (e, mine)
            if e["kind"] == "remote" and e["direction"] == "down":
                # the failed side's stub prefix is withdrawn: a deletion, measured
                assert any(m["nexthops"] is None and m["status"] in ("matched", "already") for m in mine), (e, mine)
        # the summary counts what the measurements hold
        summary = r["summary"]
        assert set(summary) == {"local/down", "local/up", "remote/down", "remote/up"}
        for key, row in summary.items():
            mine = [m for m in measurements if "%s/%s" % (events[m["event"]]["kind"],
                                                          events[m["event"]]["direction"]) == key]
            done = [m for m in mine if m["status"] in ("matched", "already")]
            assert row["events"] == 1 and row["unmatched"] == 0
            assert row["changes"]["count"] == sum(1 for m in done if m["nexthops"] is not None) >= 1
            assert row["deletions"]["count"] == sum(1 for m in done if m["nexthops"] is None)
            assert row["changes"]["max_ms"] >= row["changes"]["median_ms"] >= 0
        # kernelsync wrote, and O(flaps), not a fight
        assert 0 < r["kernelsync_writes_total"] < 100, r["kernelsync_writes"]
        if r["daemon"] == "frr":
            assert r["fpm_tap"]["connections"] >= 1 and r["fpm_tap"]["frames"] > 0
