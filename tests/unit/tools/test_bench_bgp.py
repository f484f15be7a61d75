"""``kernelsync bench-bgp``'s pure parts: a prefix range large enough for a full table, the
two-peer lab configuration, the per-case summary."""
import ipaddress

import pytest

from kernelsync.tools import bench_bgp


def test_prefixes_reach_a_full_table_distinct_and_the_first_ones_unchanged():
    small = bench_bgp.bench_prefixes(1000)
    assert small[0] == "198.18.0.0/32" and small[-1] == "198.18.3.231/32"  # as before the range grew
    full = bench_bgp.bench_prefixes(200_000)  # beyond the 131,072 of 198.18.0.0/15
    assert len(set(full)) == 200_000
    assert full[131_071] == "198.19.255.255/32" and full[131_072] == "100.64.0.0/32"
    nets = [ipaddress.ip_network(n) for n in bench_bgp.BENCH_NETS]
    for p in full[::997] + full[-3:]:
        assert any(ipaddress.ip_network(p).subnet_of(net) for net in nets)
    assert bench_bgp.MAX_PREFIXES == 131_072 + 4_194_304  # 1M and more fit
    # a small run in the full-table range (CI), and one across both
    assert bench_bgp.bench_prefixes(2, offset=131_072) == ["100.64.0.0/32", "100.64.0.1/32"]
    assert bench_bgp.bench_prefixes(2, offset=131_071) == ["198.19.255.255/32", "100.64.0.0/32"]
    assert bench_bgp.bench_prefixes(1, offset=bench_bgp.MAX_PREFIXES - 1) == ["100.127.255.255/32"]
    with pytest.raises(ValueError):
        bench_bgp.bench_prefixes(2, offset=bench_bgp.MAX_PREFIXES - 1)
    with pytest.raises(ValueError):
        bench_bgp.bench_prefixes(bench_bgp.MAX_PREFIXES + 1)


def test_two_peers_announce_on_both_sessions_one_peer_on_ha_only(tmp_path):
    one = bench_bgp.BenchLab(["100.64.0.1/32"], False, peers=1, process_argv=["true"], workdir=str(tmp_path))
    two = bench_bgp.BenchLab(["100.64.0.1/32"], False, peers=2, process_argv=["true"], workdir=str(tmp_path))
    assert one.carrying == ("hA",) and one.expect_up == ("hB",)
    assert two.carrying == ("hA", "hB") and two.expect_up == ()
    conf = two._bird_conf()
    for session in ("hA", "hB"):
        block = conf[conf.index("protocol bgp %s " % session):]
        block = block[:block.index("\n}\n")]
        assert "disabled;" in block and "export filter to_host;" in block
    assert "protocol bgp listener" in conf  # BIRD listens while both carrying sessions are disabled
    conf = one._bird_conf()
    assert "protocol bgp listener" not in conf
    block = conf[conf.index("protocol bgp hB "):]
    assert "disabled;" not in block[:block.index("\n}\n")] and "export none;" in block
    with pytest.raises(ValueError):
        bench_bgp.carrying_sessions(3)
    # a hold time a full table survives (the lab's 9 s expired while ExaBGP parsed 1M prefixes)
    assert "hold time 90; keepalive time 30;" in conf
    short = bench_bgp.BenchLab(["100.64.0.1/32"], False, hold_time=9, process_argv=["true"], workdir=str(tmp_path))
    assert "hold time 9; keepalive time 3;" in short._bird_conf()


def test_summary_gives_median_and_range_per_case():
    runs = {"shared": [{"wall_s": 3.0, "ratio_user": 0.5}, {"wall_s": 1.0, "ratio_user": None},
                       {"wall_s": 2.0, "ratio_user": 0.3}]}
    fig = bench_bgp.summarize(runs)["shared"]
    assert fig["wall_s"] == {"median": 2.0, "min": 1.0, "max": 3.0}
    assert fig["ratio_user"] == {"median": 0.4, "min": 0.3, "max": 0.5}
    assert bench_bgp._mmm(fig["ratio_user"], ".1f", 100) == "40.0 [30.0-50.0]"


def test_the_benchmark_runs_the_kernelsync_it_belongs_to():
    """None when a fresh interpreter imports this very package, else the directory to put first
    on sys.path: the one holding the package (not the package directory itself)."""
    import os
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(bench_bgp.__file__))))
    env_root = os.environ.get("PYTHONPATH", "").split(os.pathsep)[0]
    found = bench_bgp._own_tree_unless_installed()
    if env_root and os.path.realpath(env_root) == os.path.realpath(root):
        assert found is None  # a fresh interpreter (same PYTHONPATH) imports this tree
    else:
        assert found in (None, root)


def test_the_config_takes_a_resync_interval_kernelsync_accepts(tmp_path):
    from kernelsync.config import load
    assert load(bench_bgp.write_config(str(tmp_path), 3600)).kernel.resync_interval == 3600.0
    assert load(bench_bgp.write_config(str(tmp_path))).kernel.resync_interval == 60.0  # kernelsync's default
