"""``kernelsync show`` as tables (kernelsync.showtext) and the prefix/family filter of ``show
rib|fib`` (kernelsync.control.route_filter), on the daemon's answers over the fake kernel."""
import types

import pytest

from kernelsync import showtext
from kernelsync.cli import build_parser
from kernelsync.control import route_filter
from kernelsync.core.model import parse_prefix
from tests.unit.test_show_feeds import daemon


def running():
    d, feed, _table = daemon()
    d.events, d.route_events, d.counters = types.SimpleNamespace(overflows=0), None, {}
    feed.commit(0.0)
    for name in list(d.engine.rib.ready):
        d.engine.rib.set_ready(name)
    d.engine.run(0.0)
    assert d.engine.state == "SYNCED" and len(d.engine.fib.routes) == 3
    return d


def test_route_filter_takes_a_prefix_and_or_a_family():
    inside, outside = parse_prefix("192.0.2.64/26"), parse_prefix("198.51.100.0/24")
    assert route_filter([]) is None
    match = route_filter(["192.0.2.0/24"])
    assert match(inside) and match(parse_prefix("192.0.2.0/24")) and not match(outside)
    assert route_filter(["family", "6"])(parse_prefix("2001:db8::/32")) and not route_filter(["family", "6"])(inside)
    assert route_filter(["192.0.2.0/24", "family", "4"])(inside)
    for bad in (["192.0.2.1/24"], ["192.0.2.0/24", "family", "6"], ["family"], ["family", "5"], ["a", "b"],
                ["10.0.0.0/8", "10.0.0.0/8"]):
        with pytest.raises(ValueError):
            route_filter(bad)


def test_the_daemon_filters_rib_and_fib_and_refuses_a_bad_filter():
    d = running()
    assert sorted(i["prefix"] for i in d.answer("show rib 192.0.2.0/24")) == ["192.0.2.0/24", "192.0.2.64/26"]
    assert [i["prefix"] for i in d.answer("show fib 198.51.100.0/24")] == ["198.51.100.0/24"]
    assert d.answer("show fib family 6") == [] and len(d.answer("show fib family 4")) == 3
    assert "error" in d.answer("show rib 192.0.2.1/24") and "usage" in d.answer("show fib family")["error"]
    assert len(d.answer("show rib")) == 3  # unfiltered: as before


def test_tables_show_each_route_with_its_legs_and_a_summary():
    d = running()
    rib = showtext.rib(d.answer("show rib"))
    assert rib[0].startswith("Codes:") and rib[1].split() == ["PREFIX", "SOURCE", "NEXTHOPS"]
    line = next(l for l in rib if l.startswith("192.0.2.64/26"))
    assert line.split() == ["192.0.2.64/26", ">", "ospf[110]", "via", "10.0.0.2", "dev", "v0"]
    follow = rib[rib.index(line) + 1]
    assert follow.split() == ["dev", "v3", "weight", "2"] and follow.index("dev") == line.index("via")  # its 2nd leg
    assert rib[-1] == "3 prefixes, 3 with a selected source"
    nexthops = d.answer("show nexthops")
    fib = showtext.fib(d.answer("show fib 192.0.2.64/26"), nexthops, total=3)
    assert fib[0].split() == ["PREFIX", "NHID", "SCOPE", "KERNEL", "NEXTHOPS"]
    assert fib[1].startswith("192.0.2.64/26") and fib[1].endswith("global  ok      dev v3 weight 2, via 10.0.0.2 dev v0")
    assert fib[-1] == "1 route, 1 installed, 0 pending (of 3 in the FIB)"
    link = showtext.fib(d.answer("show fib 192.0.2.0/24"), nexthops)
    assert link[1].split()[2:] == ["link", "ok", "dev", "v3"] and link[-1] == "2 routes, 2 installed, 0 pending"
    table = showtext.nexthops(nexthops)
    assert [l.split()[1:4] for l in table[1:-1]] == [["nexthop", "1", "ok"]] * 2 + [["group", "1", "ok"]]
    assert table[-1] == "3 objects: 2 nexthops, 1 group"


def test_bgp_and_export_tables():
    bgp = showtext.bgp({"peers": [{"peer": "10.0.0.2", "peer_as": 65001, "type": "ebgp", "state": "up", "paths": 5,
                                   "stale": 0, "waiting_for": ["ipv4 unicast"]}],
                        "counters": {"updates": 3}, "ready": False})
    assert bgp[1].split() == ["10.0.0.2", "65001", "ebgp", "up", "5", "0", "ipv4", "unicast"]
    assert bgp[2] == "1 peer, 1 up; initial state awaited" and bgp[3] == "counters: updates=3"
    export = showtext.export({"announced": {"203.0.113.20/32": {"command": "announce route 203.0.113.20/32 next-hop self",
                                                               "source": "guests"}},
                              "kernel_candidates": 2, "damping": {"203.0.113.9/32": {"suppressed": True}}})
    assert export[1].split()[:2] == ["203.0.113.20/32", "guests"]
    assert export[-1] == "1 prefix announced, 2 kernel candidates, damped: 203.0.113.9/32"


def test_the_cli_sends_the_filter_and_prints_tables(tmp_path, monkeypatch, capsys):
    conf = tmp_path / "k.toml"
    conf.write_text('[kernel]\ntable = 100\n[control]\nsocket = "%s"\n' % (tmp_path / "ks.sock"))
    d = running()
    asked = []

    def query(path, request):
        asked.append(request)
        return d.answer(request)

    monkeypatch.setattr("kernelsync.control.query", query)
    parser = build_parser()
    args = parser.parse_args(["show", "fib", "192.0.2.0/24", "--family", "4", "-c", str(conf)])
    assert args.func(args) == 0
    assert asked == ["show fib 192.0.2.0/24 family 4", "show stats", "show nexthops"]
    out = capsys.readouterr().out
    assert "dev v3 weight 2, via 10.0.0.2 dev v0" in out and "2 routes, 2 installed, 0 pending (of 3 in the FIB)" in out
    args = parser.parse_args(["show", "rib", "--json", "-c", str(conf)])
    assert args.func(args) == 0 and '"prefix": "192.0.2.0/24"' in capsys.readouterr().out  # JSON unchanged
    args = parser.parse_args(["show", "rib", "192.0.2.1/24", "-c", str(conf)])
    assert args.func(args) == 1 and "host bits set" in capsys.readouterr().err
