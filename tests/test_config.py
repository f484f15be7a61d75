"""Configuration validation: every error names the file and the key."""
import pathlib

import pytest

from kernelsync import config
from kernelsync.model import AF_INET6, parse_prefix

EXAMPLE = pathlib.Path(__file__).parent.parent / "configs" / "kernelsync.toml"


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
