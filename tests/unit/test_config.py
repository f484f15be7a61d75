"""Configuration validation (kernelsync.config): every error names the file and the key; every
section (kernel, static routes, feeds, export)."""
import pathlib
import re

import pytest

from kernelsync import config
from kernelsync.core.model import AF_INET6, parse_prefix
from kernelsync.export.exporter import DampingSettings
from kernelsync.feeds.fpm import FpmFeedConfig

EXAMPLE = pathlib.Path(__file__).parents[2] / "configs" / "kernelsync.toml"
P10 = parse_prefix("203.0.113.10/32")
OSPF, ZSTATIC = 188, 196


def load_text(tmp_path, text):
    path = tmp_path / "k.toml"
    path.write_text(text)
    return config.load(str(path)), str(path)


def test_example_config_is_valid():
    cfg = config.load(str(EXAMPLE))
    assert not cfg.route_errors
    assert len(cfg.static_routes) == 4
    anycast = cfg.static_routes[0]
    assert anycast.prefix == parse_prefix("203.0.113.10/32")
    assert [nh.dev for nh in anycast.paths[0].nexthops] == ["tapA", "tapB"]
    assert all(nh.gateway is None for nh in anycast.paths[0].nexthops)
    assert anycast.paths[0].resilient.buckets == 64
    rfc5549 = cfg.static_routes[2].paths[0].nexthops[0]
    assert rfc5549.gw_family == AF_INET6


@pytest.mark.parametrize("text, message", [
    ("[kernel]\ntable = 'main'\n", "kernel.table: table must be an integer"),
    ("[kernel]\nprotocol = 2\n", "kernel.protocol: protocol number must be an integer 5..255"),
    ("[kernel]\nmetric = 0\n", "kernel.metric: metric must be an integer 1..4294967295"),
    ("[kernel]\nnexthop_id_range = [10, 1]\n", "kernel.nexthop_id_range: must be [first, last]"),
    ("[kernel]\ngroup_hold_time = -1\n", "kernel.group_hold_time: must be a number of seconds >= 0"),
    ("[kernel]\ntabel = 100\n", "kernel.tabel: unknown key"),
    ("[kernal]\n", "kernal: unknown section"),
    ("[static]\ndistance = 300\n", "static.distance: admin distance must be an integer 0..255"),
    ("[kernel\n", "TOML syntax: "),
])
def test_global_errors_name_file_and_key(tmp_path, text, message):
    with pytest.raises(config.ConfigError) as err:
        load_text(tmp_path, text)
    assert message in str(err.value)
    assert str(tmp_path / "k.toml") in str(err.value)


def test_syntax_error_gives_line(tmp_path):
    with pytest.raises(config.ConfigError) as err:
        load_text(tmp_path, "[kernel]\ntable = 100\nmetric = = 3\n")
    assert "line 3" in str(err.value)


@pytest.mark.parametrize("route, message", [
    ('prefix = "203.0.113.1/24"\nnexthops = [{dev="a"}]', "static.route[0].prefix: '203.0.113.1/24' is not a valid prefix"),
    ('prefix = "203.0.113.1/32"', "static.route[0].nexthops: required"),
    ('prefix = "203.0.113.1/32"\nnexthops = [{via="192.0.2.1"}]', "static.route[0].nexthops[0].dev: required"),
    ('prefix = "2001:db8::/64"\nnexthops = [{via="192.0.2.1", dev="a"}]', "IPv6 route cannot have the IPv4 next hop"),
    ('prefix = "203.0.113.1/32"\nnexthops = [{dev="a", weight=0}]', "static.route[0].nexthops[0].weight: must be an integer 1..256"),
    ('prefix = "203.0.113.1/32"\nnexthops = [{dev="a"}, {dev="a"}]', "static.route[0].nexthops[1]: duplicate nexthop"),
    ('prefix = "203.0.113.1/32"\nnexthops = [{dev="a"}]\nresilient = {buckets=0}', "static.route[0].resilient.buckets"),
    ('prefix = "203.0.113.1/32"\nnexthops = [{dev="a", gw="x"}]', "static.route[0].nexthops[0].gw: unknown key"),
])
def test_bad_route_is_reported_and_others_kept(tmp_path, route, message):
    good = '[[static.route]]\nprefix = "198.51.100.0/24"\nnexthops = [{dev="b"}]\n'
    cfg, _ = load_text(tmp_path, "[[static.route]]\n" + route + "\n" + good)
    assert len(cfg.route_errors) == 1 and message in cfg.route_errors[0], cfg.route_errors
    assert [r.prefix for r in cfg.static_routes] == [parse_prefix("198.51.100.0/24")]


def test_duplicate_prefix_names_both_places(tmp_path):
    route = '[[static.route]]\nprefix = "198.51.100.0/24"\nnexthops = [{dev="b"}]\n'
    cfg, _ = load_text(tmp_path, route + route)
    assert cfg.route_errors == ("static.route[1].prefix: 198.51.100.0/24 is already defined at static.route[0]",)


# feeds --------------------------------------------------------------------------------------
def test_table_feed_config():
    cfg = config.parse({"feed": {"table": [{"table": 101, "protocol": "bird", "name": "ospf", "hold_time": 30}]}})
    (tf,) = cfg.table_feeds
    assert (tf.table, tf.protocol, tf.name, tf.distance, tf.hold_time) == (101, 12, "ospf", 110, 30.0)
    for item, message in [({"table": 101}, "feed.table[0].protocol: required"),
                          ({"table": 101, "protocol": 200}, "kernelsync's own protocol"),
                          ({"table": 254, "protocol": 12}, "kernelsync's own table"),
                          ({"table": 101, "protocol": 12, "name": "static"}, "feed.table[0].name"),
                          ({"table": 101, "protocol": 12, "distance": 300}, "feed.table[0].distance")]:
        with pytest.raises(config.ConfigError) as err:
            config.parse({"feed": {"table": [item]}})
        assert message in str(err.value)


#: [kernel] beside [feed.fpm]: not zebra's table 254 + metric 20
NOT_ZEBRAS = {"metric": 10}


def fpm_config(fpm, **kernel):
    return config.parse({"feed": {"fpm": fpm}, "kernel": dict(NOT_ZEBRAS, **kernel)})


def test_fpm_config_defaults_and_names():
    cfg = fpm_config({})
    assert cfg.fpm_feed == FpmFeedConfig()
    assert (cfg.fpm_feed.address, cfg.fpm_feed.port, cfg.fpm_feed.protocols) == ("127.0.0.1", 2620, (OSPF,))
    cfg = fpm_config({"protocols": ["ospf", "bgp", 196], "users": ["frr", 0], "port": 2621,
                      "address": "::1", "name": "frr", "distance": 20})
    assert cfg.fpm_feed.protocols == (OSPF, 186, ZSTATIC) and cfg.fpm_feed.users == ("frr", "0")
    assert (cfg.fpm_feed.address, cfg.fpm_feed.port, cfg.fpm_feed.name, cfg.fpm_feed.distance) == ("::1", 2621, "frr", 20)


@pytest.mark.parametrize("fpm, message", [
    ({"port": 0}, "feed.fpm.port: must be a TCP port"),
    ({"address": "localhost"}, "feed.fpm.address: must be an IPv4 or IPv6 address"),
    ({"protocols": []}, "feed.fpm.protocols: must be a non-empty list"),
    ({"protocols": ["osfp"]}, "feed.fpm.protocols[0]: a route protocol number 1..255 or a name"),
    ({"protocols": [200]}, "feed.fpm.protocols[0]: 200 is kernelsync's own protocol"),
    ({"protocols": ["kernel"]}, "taking them back would loop"),
    ({"users": "frr"}, "feed.fpm.users: must be a list"),
    ({"name": "static"}, "feed.fpm.name: must be a source name other than"),
    ({"hold_time": -1}, "feed.fpm.hold_time: must be a number of seconds >= 0"),
    ({"listen": "127.0.0.1"}, "feed.fpm.listen: unknown key"),
    ([], "feed.fpm: must be a table"),
])
def test_fpm_config_errors(fpm, message):
    with pytest.raises(config.ConfigError, match=re.escape(message)):
        fpm_config(fpm)


def test_fpm_feed_with_ids_zebra_learns_is_warned():
    assert "nexthop_id_range" in fpm_config({}).warnings[0]
    safe = fpm_config({}, nexthop_id_range=[469762048, 470762047])
    assert safe.warnings == () and config.parse({}).warnings == ()


def test_fpm_feed_without_the_reread_is_warned():
    assert fpm_config({}, nexthop_id_range=[469762048, 470762047]).fpm_feed.resync_after_link == 2.0
    (warning,) = fpm_config({"resync_after_link": 0}, nexthop_id_range=[469762048, 470762047]).warnings
    assert "resync_after_link = 0" in warning and "misses updates" in warning


def test_fpm_and_table_feed_names_must_differ():
    with pytest.raises(config.ConfigError, match="feed.table\\[0\\].name: 'ospf' is already the name of feed.fpm"):
        config.parse({"feed": {"fpm": {"name": "ospf"}, "table": [{"table": 100, "protocol": "bird", "name": "ospf"}]},
                      "kernel": NOT_ZEBRAS})



# export -------------------------------------------------------------------------------------
def test_export_config_parses():
    cfg = config.parse({"export": {
        "state_file": "/run/ks/exported.json",
        "damping": {"half_life": 5, "suppress": 4, "reuse": 2},
        "anycast": [{"prefix": "203.0.113.10/32", "devices": ["tapA", "tapB"], "resilient": {"buckets": 32},
                     "communities": ["65010:53"], "med": 5}],
        "kernel": [{"name": "guests", "protocols": ["boot", 4], "devices": ["tap*"], "prefix_lengths": [32, 128],
                    "prefixes": ["203.0.113.0/24"], "next_hop_ipv6": "2001:db8:a::2",
                    "neighbors": ["192.0.2.1"], "large_communities": ["65010:1:2"], "local_pref": 300}]}})
    ex = cfg.export
    assert ex.enabled and ex.state_file == "/run/ks/exported.json"
    assert ex.damping == DampingSettings(half_life=5.0, suppress=4.0, reuse=2.0)
    group = ex.anycast[0]
    assert group.prefix == P10 and group.devices == ("tapA", "tapB") and group.resilient.buckets == 32
    assert [nh.dev for nh in group.path().nexthops] == ["tapA", "tapB"]
    assert all(nh.gateway is None for nh in group.path().nexthops)
    f = ex.kernel[0]
    assert f.protocols == (3, 4) and f.prefix_lengths == (32, 128) and f.table == 254
    assert f.attrs.neighbors == ("192.0.2.1",) and f.attrs.local_pref == 300
    assert not config.parse({}).export.enabled


@pytest.mark.parametrize("section, message", [
    ({"anycast": [{"prefix": "203.0.113.10/32"}]}, "export.anycast[0].devices: must be a non-empty list"),
    ({"anycast": [{"prefix": "203.0.113.300/32", "devices": ["t"]}]}, "export.anycast[0].prefix: '203.0.113.300/32'"),
    ({"anycast": [{"prefix": "203.0.113.10/32", "devices": ["t"], "colour": 1}]}, "export.anycast[0].colour: unknown"),
    ({"kernel": [{"protocols": ["nosuch"]}]}, "export.kernel[0].protocols: must be a list of protocol numbers"),
    ({"kernel": [{"next_hop_ipv4": "2001:db8::1"}]}, "export.kernel[0].next_hop_ipv4: must be \"self\" or an IPv4"),
    ({"kernel": [{"communities": ["65010:70000"]}]}, "export.kernel[0].communities: must be a list"),
    ({"kernel": [{"neighbors": ["peer1"]}]}, "export.kernel[0].neighbors: must be a list of peer addresses"),
    ({"damping": {"suppress": 1, "reuse": 2}}, "export.damping.reuse: 2 must be below suppress (1)"),
    ({"state_file": "relative.json"}, "export.state_file: must be an absolute path"),
    ({"anycast": [{"prefix": "203.0.113.10/32", "devices": ["a"]}, {"prefix": "203.0.113.10/32", "devices": ["b"]}]},
     "export.anycast[1].prefix: 203.0.113.10/32 is already exported by export.anycast[0]"),
])
def test_export_config_errors_name_the_key(section, message):
    with pytest.raises(config.ConfigError) as err:
        config.parse({"export": section}, "ks.toml")
    assert message in str(err.value)


def test_anycast_prefix_may_not_also_be_a_static_route():
    with pytest.raises(config.ConfigError, match="is also the static route static.route.0."):
        config.parse({"static": {"route": [{"prefix": "203.0.113.10/32", "nexthops": [{"dev": "tapA"}]}]},
                      "export": {"anycast": [{"prefix": "203.0.113.10/32", "devices": ["tapA"]}]}})



# --- values that break the loop (issue 12, defect 7) ---------------------------------------------

TIME_KEYS = [("kernel", k) for k in ("group_hold_time", "resync_interval", "verify_delay", "retry_initial",
                                     "retry_max")] + \
            [("bgp", k) for k in ("graceful_restart", "restart_hold_time", "startup_wait", "restart_wait",
                                  "eor_timeout")]
BAD_TIMES = [float("nan"), float("inf"), float("-inf"), -1, -0.5, 1e400, 10 ** 30, 4e7]


@pytest.mark.parametrize("section, key", TIME_KEYS)
@pytest.mark.parametrize("value", BAD_TIMES, ids=repr)
def test_global_times_refuse_nan_inf_negative_and_huge(section, key, value):
    with pytest.raises(config.ConfigError, match=re.escape("%s.%s: must be a number of seconds" % (section, key))):
        config.parse({section: {key: value}})


@pytest.mark.parametrize("where, data", [
    ("feed.table[0].%s", lambda k, v: {"feed": {"table": [{"table": 100, "protocol": "bird", k: v}]}}),
    ("feed.fpm.%s", lambda k, v: {"feed": {"fpm": {k: v}}, "kernel": NOT_ZEBRAS}),
    ("static.route[0].resilient.%s", lambda k, v: {"static": {"route": [
        {"prefix": "192.0.2.1/32", "nexthops": [{"dev": "a"}], "resilient": {k: v}}]}}),
    ("export.damping.%s", lambda k, v: {"export": {"damping": {k: v}}}),
])
@pytest.mark.parametrize("value", [float("nan"), float("inf"), -1.0], ids=repr)
def test_feed_and_timer_times_refuse_nan_inf_negative(where, data, value):
    keys = {"feed.table[0].%s": ("hold_time", "settle", "restart_quiet"),
            "feed.fpm.%s": ("hold_time", "settle", "replay_quiet", "resync_after_link"),
            "static.route[0].resilient.%s": ("idle_timer", "unbalanced_timer"),
            "export.damping.%s": ("half_life", "max_suppress", "suppress", "reuse")}[where]
    for key in keys:
        try:
            cfg = config.parse(data(key, value))
        except config.ConfigError as exc:
            assert (where % key) + ": must be" in str(exc)
        else:  # static routes are errors of their own
            assert cfg.route_errors and cfg.route_errors[0].startswith(where % key), (key, cfg.route_errors)


@pytest.mark.parametrize("section, key", [("kernel", "resync_interval"), ("kernel", "retry_initial"),
                                          ("kernel", "retry_max")])
def test_times_that_would_busy_loop_refuse_zero(section, key):
    with pytest.raises(config.ConfigError, match=re.escape("%s.%s: must be a number of seconds >=" % (section, key))):
        config.parse({section: {key: 0}})
    with pytest.raises(config.ConfigError, match="feed.fpm.replay_quiet: must be"):
        fpm_config({"replay_quiet": 0})
    # where 0 means something (flush at once, never, no hold) it stays valid
    cfg = config.parse({"kernel": {"group_hold_time": 0, "verify_delay": 0}, "bgp": {"graceful_restart": 0}})
    assert cfg.kernel.group_hold_time == 0 and cfg.bgp.graceful_restart == 0


def test_retry_max_below_retry_initial_is_refused():
    with pytest.raises(config.ConfigError, match="kernel.retry_max: 1 is below retry_initial"):
        config.parse({"kernel": {"retry_initial": 5, "retry_max": 1}})


@pytest.mark.parametrize("damping, message", [
    ({"max_suppress": 1e6, "half_life": 1}, "export.damping.max_suppress: 1e+06 is more than 64 half-lives"),
    ({"max_suppress": 20000, "half_life": 15}, "export.damping.max_suppress: 20000 is more than 64"),
    ({"max_suppress": 1, "half_life": 15}, "below suppress (2.5): nothing would ever be suppressed"),
    ({"suppress": 1e300}, "export.damping.suppress: must be a penalty > 0 and <= 1000"),
    ({"reuse": 0}, "export.damping.reuse: must be a penalty > 0"),
])
def test_damping_that_would_overflow_or_never_suppress_is_refused(damping, message):
    from kernelsync.export.exporter import Damping
    if "overflow" in message or "half-lives" in message:  # what it was refused for
        with pytest.raises(OverflowError):
            Damping(DampingSettings(**{k: float(v) for k, v in damping.items()}))
    with pytest.raises(config.ConfigError, match=re.escape(message)):
        config.parse({"export": {"damping": damping}})


def test_fpm_feed_on_zebras_own_table_and_metric_is_refused():
    message = "feed.fpm.table: zebra writes its own routes to table 254 with metric 20"
    with pytest.raises(config.ConfigError, match=re.escape(message)):
        config.parse({"feed": {"fpm": {}}})  # defaults: kernel table 254 metric 20, zebra's table 254
    with pytest.raises(config.ConfigError, match="feed.fpm.table: zebra writes its own routes to table 10 "):
        config.parse({"feed": {"fpm": {"table": 10}}, "kernel": {"table": 10}})
    assert config.parse({"feed": {"fpm": {}}, "kernel": {"table": 100}}).fpm_feed.table == 254
    assert config.parse({"feed": {"fpm": {}}, "kernel": {"metric": 30}}).kernel.metric == 30


@pytest.mark.parametrize("address", ["0.0.0.0", "::", "192.0.2.1", "2001:db8::1"])
def test_fpm_open_to_anyone_on_the_network_is_refused(address):
    with pytest.raises(config.ConfigError, match=re.escape("feed.fpm.users: [] (anyone) with address %s" % address)):
        fpm_config({"address": address, "users": []})
    assert fpm_config({"address": address, "users": ["frr"]}).fpm_feed.address == address
    assert fpm_config({"address": "127.0.0.1", "users": []}).fpm_feed.users == ()
    assert fpm_config({"address": "::1", "users": []}).fpm_feed.users == ()


@pytest.mark.parametrize("command", ["check", "run"])
def test_check_prints_and_run_refuses_with_the_key(tmp_path, command):
    import subprocess
    import sys
    path = tmp_path / "ks.toml"
    path.write_text("[kernel]\nresync_interval = nan\n[control]\nsocket = '%s'\n" % (tmp_path / "s"))
    out = subprocess.run([sys.executable, "-m", "kernelsync", command, "-c", str(path)], capture_output=True,
                         text=True, timeout=30)
    assert out.returncode == 2, out
    assert "%s: kernel.resync_interval: must be a number of seconds >= 0.1 and <= 31536000, not nan" % path \
        in out.stderr


@pytest.mark.parametrize("text, listen", [
    ("", None),
    ("[metrics]\nlisten = '127.0.0.1:9342'\n", ("127.0.0.1", 9342)),
    ("[metrics]\nlisten = '[::1]:9342'\n", ("::1", 9342)),
    ("[metrics]\nlisten = '0.0.0.0:1'\n", ("0.0.0.0", 1)),
])
def test_metrics_listen(text, listen):
    assert config.parse(__import__("tomllib").loads(text)).metrics.listen == listen


@pytest.mark.parametrize("value", ["'localhost:9342'", "'127.0.0.1'", "'127.0.0.1:0'", "'127.0.0.1:65536'",
                                   "'::1:9342'", "'[127.0.0.1]:9342'", "'127.0.0.1:93x'", "9342", "'[::1]:'"])
def test_bad_metrics_listen_is_refused_by_check_with_the_key(tmp_path, value):
    import subprocess
    import sys
    path = tmp_path / "ks.toml"
    path.write_text("[metrics]\nlisten = %s\n" % value)
    out = subprocess.run([sys.executable, "-m", "kernelsync", "check", "-c", str(path)], capture_output=True,
                         text=True, timeout=30)
    assert out.returncode == 2, out
    assert "%s: metrics.listen: must be \"ADDRESS:PORT\" with an IP address and a port 1..65535" % path in out.stderr


def test_unknown_metrics_key():
    with pytest.raises(config.ConfigError, match=re.escape("metrics.port: unknown key (known: listen)")):
        config.parse({"metrics": {"port": 9342}})
