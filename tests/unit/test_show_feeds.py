"""``show feeds [routes [PREFIX]]`` (kernelsync.daemon.Daemon.show_feeds, the CLI's text output,
kernelsync.feeds.routesource.RouteSource.show/show_routes): each route feed's routes on request,
with their nexthops and whether they are stale, filtered by prefix; stale times a person can
read (seconds left, UTC time) next to the monotonic value."""
import datetime
import io
import re
import socket
import time

from kernelsync import config
from kernelsync.cli import build_parser
from kernelsync.showtext import feeds as feeds_text
from kernelsync.core.engine import Engine
from kernelsync.core.model import AF_INET, KRoute, Leg, parse_prefix, prefix_within
from kernelsync.daemon import Daemon
from kernelsync.feeds.routesource import RouteSource, utc_text
from kernelsync.feeds.tablefeed import TableFeed, TableFeedConfig
from kernelsync.kernel.fake import FakeKernel


def A4(text):
    return socket.inet_aton(text)


def kroute(prefix, *legs):
    family, dst, plen = parse_prefix(prefix)
    return KRoute(family, dst, plen, 101, 12, 1, 20, tuple(legs), 0)


class Table:
    """The source table as the kernel's dump gives it."""

    def __init__(self, routes):
        self.routes = routes

    def dump_table(self, table, protocol):
        return list(self.routes)

    def dump_nexthops(self):
        return {}


def daemon():
    d = Daemon.__new__(Daemon)  # the loop's state without its sockets
    d.cfg = config.parse({"kernel": {"table": 100}})
    kernel = FakeKernel(200)
    v0, v3 = kernel.add_link("v0"), kernel.add_link("v3")
    d.kernel = kernel
    d.engine = Engine(d.cfg.kernel, kernel)
    d.engine.start(0.0)
    d.bgp = None
    table = Table([kroute("192.0.2.0/24", Leg(None, None, v3)),
                   kroute("192.0.2.64/26", Leg(AF_INET, A4("10.0.0.2"), v0, 1), Leg(None, None, v3, 2)),
                   kroute("198.51.100.0/24", Leg(AF_INET, A4("10.0.0.2"), v0))])
    feed = TableFeed(d.engine.rib, TableFeedConfig(table=101, protocol=12, hold_time=30.0), table, d.engine.links)
    feed.start(None, time.monotonic())
    d.feeds = [feed]
    return d, feed, table


COUNTS = {"table", "protocol", "distance", "routes", "stale", "stale_until", "updates", "withdrawals",
          "stale_periods", "swept", "route_events", "rereads", "lost_notifications", "reread_retries"}


def test_show_feeds_keeps_its_shape_and_adds_readable_times():
    d, feed, _ = daemon()
    view = d.answer("show feeds")["ospf"]
    assert set(view) == COUNTS | {"stale_for", "stale_until_utc"}  # the old keys, two new ones
    assert (view["routes"], view["stale"], view["stale_until"], view["stale_for"], view["stale_until_utc"]) == (
        3, 0, None, None, None)
    assert isinstance(view["routes"], int)  # a count; the listing is "show feeds routes"


def test_routes_on_request_with_their_nexthops_and_a_prefix_filter():
    d, feed, _ = daemon()
    routes = d.answer("show feeds routes")["ospf"]["routes"]
    assert routes == [
        {"prefix": "192.0.2.0/24", "stale": False,
         "paths": [{"nexthops": [{"gateway": None, "dev": "v3", "weight": 1}], "resilient": None}]},
        {"prefix": "192.0.2.64/26", "stale": False,
         "paths": [{"nexthops": [{"gateway": "10.0.0.2", "dev": "v0", "weight": 1},
                                 {"gateway": None, "dev": "v3", "weight": 2}], "resilient": None}]},
        {"prefix": "198.51.100.0/24", "stale": False,
         "paths": [{"nexthops": [{"gateway": "10.0.0.2", "dev": "v0", "weight": 1}], "resilient": None}]}]
    # within a prefix: the prefix itself and its more specifics
    assert [r["prefix"] for r in d.answer("show feeds routes 192.0.2.0/24")["ospf"]["routes"]] == [
        "192.0.2.0/24", "192.0.2.64/26"]
    assert [r["prefix"] for r in d.answer("show feeds routes 192.0.2.64/26")["ospf"]["routes"]] == ["192.0.2.64/26"]
    assert d.answer("show feeds routes 192.0.2.1")["ospf"]["routes"] == []  # a host route: none
    assert d.answer("show feeds routes 2001:db8::/32")["ospf"]["routes"] == []
    assert "error" in d.answer("show feeds routes 192.0.2.1/24")  # host bits set
    assert "error" in d.answer("show feeds nonsense")
    assert "error" in d.answer("show feeds routes 192.0.2.0/24 more")


def test_stale_routes_are_marked_and_their_end_is_readable():
    d, feed, table = daemon()
    table.routes = [kroute("198.51.100.0/24", Leg(AF_INET, A4("10.0.0.2"), 2))]
    before = time.time()
    feed.source.lost(time.monotonic())  # the daemon stopped: its routes are stale for 30 s
    view = d.answer("show feeds routes")["ospf"]
    assert view["stale"] == 3 and view["stale_until"] > 0  # still the monotonic value
    assert 29.0 <= view["stale_for"] <= 30.0
    end = datetime.datetime.strptime(view["stale_until_utc"], "%Y-%m-%dT%H:%M:%SZ").replace(
        tzinfo=datetime.timezone.utc).timestamp()
    assert before + 28 <= end <= time.time() + 31
    assert all(r["stale"] for r in view["routes"])
    # one comes back: no longer stale
    feed.source.update(parse_prefix("198.51.100.0/24"), feed.source.stale[parse_prefix("198.51.100.0/24")])
    assert {r["prefix"]: r["stale"] for r in d.answer("show feeds routes")["ospf"]["routes"]} == {
        "192.0.2.0/24": True, "192.0.2.64/26": True, "198.51.100.0/24": False}
    # the CLI's text
    out = io.StringIO()
    print("\n".join(feeds_text(d.answer("show feeds routes"))), file=out)
    text = out.getvalue()
    assert re.search(r"stale: 2 routes for (29|30) s \(until \d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ\)", text), text
    assert "  192.0.2.64/26 via 10.0.0.2 dev v0, dev v3 weight 2 [stale]\n" in text
    assert "  198.51.100.0/24 via 10.0.0.2 dev v0\n" in text


def test_route_source_show_is_as_before_and_times_come_apart():
    from kernelsync.core.rib import Rib
    source = RouteSource(Rib(), "ospf", 110, 10.0)
    assert source.show() == {"routes": 0, "stale": 0, "stale_until": None, "updates": 0, "withdrawals": 0,
                             "stale_periods": 0, "swept": 0}
    assert utc_text(0) == "1970-01-01T00:00:00Z"
    assert source.show_times(5.0, 1000.0) == {"stale_for": None, "stale_until_utc": None}
    source.update(parse_prefix("192.0.2.0/24"), ())
    source.lost(5.0)
    assert source.show_times(7.5, 1000.0) == {"stale_for": 7.5, "stale_until_utc": "1970-01-01T00:16:48Z"}
    assert source.show_times(99.0, 1000.0)["stale_for"] == 0.0  # overdue: never negative


def test_prefix_within():
    p = parse_prefix
    assert prefix_within(p("192.0.2.64/26"), p("192.0.2.0/24")) and prefix_within(p("192.0.2.0/24"), p("192.0.2.0/24"))
    assert not prefix_within(p("192.0.2.0/24"), p("192.0.2.64/26"))
    assert prefix_within(p("192.0.3.0/24"), p("192.0.2.0/23"))  # 192.0.2.0/23 holds 192.0.3.0/24
    assert not prefix_within(p("198.51.100.0/24"), p("192.0.2.0/24"))
    assert prefix_within(p("2001:db8:1::/48"), p("2001:db8::/32")) and not prefix_within(p("2001:db8:1::/48"), p("0.0.0.0/0"))
    assert prefix_within(p("10.0.0.0/8"), p("0.0.0.0/0"))


def test_cli_sends_the_request_and_prints_the_listing(tmp_path, monkeypatch, capsys):
    conf = tmp_path / "k.toml"
    conf.write_text('[kernel]\ntable = 100\n[control]\nsocket = "%s"\n' % (tmp_path / "ks.sock"))
    d, _feed, _ = daemon()
    asked = []

    def query(path, request):
        asked.append(request)
        return d.answer(request)

    monkeypatch.setattr("kernelsync.control.query", query)
    parser = build_parser()
    for argv, request in ((["show", "feeds"], "show feeds"), (["show", "feeds", "--routes"], "show feeds routes"),
                          (["show", "feeds", "192.0.2.0/24"], "show feeds routes 192.0.2.0/24")):
        args = parser.parse_args(argv + ["-c", str(conf)])
        assert args.func(args) == 0
        assert asked[-1] == request
    text = capsys.readouterr().out
    assert "  192.0.2.0/24 dev v3\n" in text and "routes: 2 listed; nothing stale" in text
    args = parser.parse_args(["show", "feeds", "192.0.2.1/24", "-c", str(conf)])
    assert args.func(args) == 1  # the daemon's error: host bits set
    args = parser.parse_args(["show", "nexthops", "192.0.2.0/24", "-c", str(conf)])
    assert args.func(args) == 2  # a prefix with a view that takes none
    args = parser.parse_args(["show", "feeds", "--family", "4", "-c", str(conf)])
    assert args.func(args) == 2  # --family goes with rib and fib only


def test_the_fpm_feed_lists_its_routes_too():
    from kernelsync.core.model import NexthopSpec, Path
    from kernelsync.feeds.fpm import FpmFeed, FpmFeedConfig
    d, table_feed, _ = daemon()
    fpm = FpmFeed(d.engine.rib, FpmFeedConfig(name="frr"), d.engine.links)
    fpm.source.update(parse_prefix("10.99.0.0/16"), (Path((NexthopSpec(A4("10.0.0.2"), AF_INET, "v0", 3),)),))
    d.feeds.append(fpm)
    out = d.answer("show feeds routes 10.0.0.0/8")
    assert out["ospf"]["routes"] == []
    assert out["frr"]["routes"] == [{"prefix": "10.99.0.0/16", "stale": False, "paths": [
        {"nexthops": [{"gateway": "10.0.0.2", "dev": "v0", "weight": 3}], "resilient": None}]}]
    assert (out["frr"]["stale_for"], out["frr"]["stale_until_utc"], out["frr"]["zebra_routes"]) == (None, None, 0)
