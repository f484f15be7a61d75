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


def test_fpm_config_defaults_and_names():
    cfg = config.parse({"feed": {"fpm": {}}})
    assert cfg.fpm_feed == FpmFeedConfig()
    assert (cfg.fpm_feed.address, cfg.fpm_feed.port, cfg.fpm_feed.protocols) == ("127.0.0.1", 2620, (OSPF,))
    cfg = config.parse({"feed": {"fpm": {"protocols": ["ospf", "bgp", 196], "users": ["frr", 0], "port": 2621,
                                          "address": "::1", "name": "frr", "distance": 20}}})
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
        config.parse({"feed": {"fpm": fpm}})


def test_fpm_feed_with_ids_zebra_learns_is_warned():
    assert "nexthop_id_range" in config.parse({"feed": {"fpm": {}}}).warnings[0]
    safe = config.parse({"feed": {"fpm": {}}, "kernel": {"nexthop_id_range": [469762048, 470762047]}})
    assert safe.warnings == () and config.parse({}).warnings == ()


def test_fpm_and_table_feed_names_must_differ():
    with pytest.raises(config.ConfigError, match="feed.table\\[0\\].name: 'ospf' is already the name of feed.fpm"):
        config.parse({"feed": {"fpm": {"name": "ospf"}, "table": [{"table": 100, "protocol": "bird", "name": "ospf"}]}})



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
    ({"damping": {"suppress": 1, "reuse": 2}}, "export.damping: reuse (2) must be below suppress (1)"),
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

