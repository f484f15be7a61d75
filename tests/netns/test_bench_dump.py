"""``kernelsync bench --dump-latency`` (kernelsync.tools.bench_dump) runs to the end at a small
size, in both modes, and its checks pass; no timing is asserted."""
import pytest

from kernelsync.tools import bench
from kernelsync.tools.bench_dump import run_dump_latency
from tests.support.netns import need_root

pytestmark = pytest.mark.netns


def test_dump_latency_figures_at_a_small_size():
    need_root()
    nss = bench.Namespaces()
    try:
        res = run_dump_latency(bench.FlapRig, nss, 3000, groups=4, rounds=1, dump_slice=256, diff_slice=256)
    finally:
        nss.close()
    assert res["ok"], [r["verify"] for r in res["rounds"]]
    assert [r["mode"] for r in res["rounds"]] == ["sliced", "one_go"]
    sliced, one_go = res["sliced"], res["one_go"]
    assert one_go["runs"]["max"] == 1 and sliced["runs"]["min"] > 10  # 3000 routes in slices of 256
    for f in (sliced, one_go):
        assert f["from_issue_ms"]["median"] > 0 and f["from_read_ms"]["median"] > 0 and f["sync_s"]["median"] > 0
