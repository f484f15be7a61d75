"""The static feed (kernelsync.feeds.static): the config's routes and anycast groups into the
RIB at start, ready at once; missing devices and skipped routes are reported."""
import logging

from kernelsync.core.links import LinkTable
from kernelsync.core.model import Link, NexthopSpec, Path, parse_prefix
from kernelsync.core.rib import Rib
from kernelsync.feeds.static import StaticFeed, StaticRoute


def path(*devs):
    return (Path(tuple(NexthopSpec(None, None, d) for d in devs)),)


def test_routes_and_anycast_groups_become_two_ready_sources(caplog):
    caplog.set_level(logging.WARNING)
    rib = Rib()
    links = LinkTable({2: Link(index=2, name="tapA", up=True, carrier=True)})
    routes = [StaticRoute(parse_prefix("198.51.100.0/24"), path("tapA"), "static.route[0]"),
              StaticRoute(parse_prefix("198.51.100.1/32"), path("tapZ"), "static.route[1]")]
    anycast = [StaticRoute(parse_prefix("203.0.113.53/32"), path("tapA", "tapB", "tapC"), "export.anycast[0]")]
    feed = StaticFeed(rib, links, routes, 1, errors=["static.route[2].prefix: bad"], anycast=anycast, filename="k.toml")
    feed.start(None, 0.0)
    assert rib.distance == {"static": 1, "anycast": 1} and rib.all_ready
    assert rib.candidates(parse_prefix("203.0.113.53/32"))[0][1] == "anycast"
    assert len(rib) == 3
    assert "k.toml: skipping route: static.route[2].prefix: bad" in caplog.text
    assert "static.route[1]: route 198.51.100.1/32: device tapZ does not exist yet" in caplog.text
    assert "export.anycast[0]: anycast 203.0.113.53/32: devices tapB, tapC do not exist yet" in caplog.text
    assert feed.show() == {"routes": 2, "anycast": 1, "skipped": 1, "distance": 1}


def test_no_anycast_no_anycast_source():
    rib = Rib()
    StaticFeed(rib, LinkTable(), [], 1).start(None, 0.0)
    assert rib.distance == {"static": 1} and rib.all_ready
