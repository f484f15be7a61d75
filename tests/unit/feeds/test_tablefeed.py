"""The kernel-table feed (kernelsync.feeds.tablefeed) on route notifications, without a kernel:
additions and replaces are applied at once, deletions settle after the burst, and a table that
loses every route of the daemon keeps them stale.  The real BIRD: tests/netns/test_tablefeed.py
and test_ospflab.py."""
import socket

import pytest

from kernelsync.core.links import LinkTable
from kernelsync.core.model import AF_INET, KRoute, Leg, Link, parse_prefix
from kernelsync.core.rib import Rib
from kernelsync.feeds.base import SETTLE_CAP, KernelChange, RouteEvent
from kernelsync.feeds.tablefeed import TableFeed, TableFeedConfig
from tests.support.feeds import DumpingKernel

A4 = socket.inet_aton
LAN, STUB, LOOP = parse_prefix("192.0.2.0/24"), parse_prefix("198.51.100.0/24"), parse_prefix("10.255.0.2/32")
R2, R3 = "10.0.12.2", "10.0.13.2"
SETTLE = 0.2


def route(prefix, *gateways, table=100, protocol=12):
    family, dst, plen = parse_prefix(prefix)
    legs = tuple(Leg(AF_INET, A4(gw), 2 if gw == R2 else 3) for gw in gateways)
    return KRoute(family, dst, plen, table, protocol, 1, 20, legs, 0)


def gws(rib, prefix):
    entry = rib.entries.get(prefix)
    if not entry:
        return None
    ((_source, (path,)),) = entry
    return sorted(socket.inet_ntoa(n.gateway) for n in path.nexthops)


@pytest.fixture
def feed():
    """BIRD's table 100 with the LAN over r2 and r3, a stub and a loopback over r2."""
    kernel = DumpingKernel(routes=[route("192.0.2.0/24", R2, R3), route("198.51.100.0/24", R2),
                                   route("10.255.0.2/32", R2)])
    links = LinkTable({2: Link(index=2, name="e12", up=True, carrier=True),
                       3: Link(index=3, name="e13", up=True, carrier=True)})
    rib = Rib()
    f = TableFeed(rib, TableFeedConfig(table=100, protocol=12, hold_time=30, settle=SETTLE), kernel, links)
    f.start(None, 0.0)
    f.commit(0.0)
    rib.take_dirty()
    return f


def events(feed, now, *items):
    feed.on_kernel_change(KernelChange(routes=tuple(RouteEvent(deleted, r) for deleted, r in items)), now)


def test_a_replace_in_a_burst_of_deletions_is_applied_at_once_and_the_deletions_settle(feed):
    """r2's side fails (remote): BIRD replaces the LAN's ECMP route by one path and deletes what
    was only behind r2, in one burst.  The replace is not held back by the deletions."""
    rib = feed.source.rib
    events(feed, 10.0, (True, route("198.51.100.0/24", R2)), (False, route("192.0.2.0/24", R3)),
           (True, route("10.255.0.2/32", R2)))
    assert feed.deadline() == 0.0
    feed.commit(10.0)
    assert gws(rib, LAN) == [R3]  # at once
    assert gws(rib, STUB) == [R2] and gws(rib, LOOP) == [R2]  # the deletions settle
    assert feed.deadline() == pytest.approx(10.0 + SETTLE)
    feed.commit(10.0 + SETTLE)
    assert gws(rib, STUB) is None and gws(rib, LOOP) is None and feed.source.show()["stale"] == 0


def test_deletions_settle_after_the_last_one_of_the_burst_but_not_forever(feed):
    rib = feed.source.rib
    events(feed, 10.0, (True, route("198.51.100.0/24", R2)))
    events(feed, 10.15, (True, route("10.255.0.2/32", R2)))  # the burst goes on
    feed.commit(10.2)
    assert gws(rib, STUB) == [R2]  # not yet: 0.2 s after the last deletion
    assert feed.deadline() == pytest.approx(10.35)
    feed.commit(10.35)
    assert gws(rib, STUB) is None and gws(rib, LOOP) is None and gws(rib, LAN) == [R2, R3]
    # a trickle of deletions, one every 0.1 s (the table keeps a route): the first is applied at the cap
    t = 20.0
    events(feed, t, (False, route("10.0.0.0/16", R2)), (True, route("192.0.2.0/24", R2, R3)))
    for n in range(1, int(SETTLE_CAP * SETTLE * 10)):
        t = 20.0 + n / 10
        events(feed, t, (False, route("10.%d.0.0/16" % n, R2)), (True, route("10.%d.0.0/16" % (n - 1), R2)))
        feed.commit(t)
        assert gws(rib, parse_prefix("10.%d.0.0/16" % n)) == [R2]  # additions: at once
    assert gws(rib, LAN) == [R2, R3]
    feed.commit(20.0 + SETTLE_CAP * SETTLE)
    assert gws(rib, LAN) is None


def test_every_route_gone_is_a_stopping_daemon_kept_stale_and_its_return_writes_nothing(feed):
    rib = feed.source.rib
    before = {p: gws(rib, p) for p in (LAN, STUB, LOOP)}
    events(feed, 10.0, *[(True, r) for r in feed.table.values()])  # BIRD got SIGTERM
    feed.commit(10.0 + SETTLE)
    assert feed.source.show()["stale"] == 3 and rib.take_dirty() == {}
    # BIRD back: the LAN over one path first (held), then everything as it was
    events(feed, 12.0, (False, route("192.0.2.0/24", R2)))
    feed.commit(12.0)
    feed.commit(14.0)
    assert gws(rib, LAN) == [R2, R3]
    events(feed, 15.0, (False, route("192.0.2.0/24", R2, R3)), (False, route("198.51.100.0/24", R2)),
           (False, route("10.255.0.2/32", R2)))
    feed.commit(15.0)
    assert feed.deadline() == pytest.approx(16.0)  # restart_quiet
    events(feed, 15.05, (True, route("192.0.2.0/24", R2, R3)), (False, route("192.0.2.0/24", R2, R3)))
    assert feed.deadline() == pytest.approx(16.05)  # quiet, and the deletion settled: both
    feed.commit(16.05)
    assert {p: gws(rib, p) for p in (LAN, STUB, LOOP)} == before and rib.take_dirty() == {}
    assert feed.source.show()["stale"] == 0


def test_each_applied_batch_is_marked_with_its_first_notification_for_the_latency(feed):
    assert feed.input_at is None  # the start-up dump is no feed input
    events(feed, 10.0, (False, route("192.0.2.0/24", R3)), (True, route("198.51.100.0/24", R2)))
    events(feed, 10.05, (False, route("203.0.113.0/24", R3)))
    feed.commit(10.1)  # the replace and the addition at once; the deletion settles
    assert gws(feed.source.rib, LAN) == [R3] and feed.input_at == 10.0
    feed.input_at = None  # the daemon took it after its engine run
    feed.commit(10.1 + SETTLE)  # the deletion: part of the same burst, first seen at 10.0
    assert gws(feed.source.rib, STUB) is None and feed.input_at == 10.0
    feed.input_at = None
    feed.commit(11.0)
    assert feed.input_at is None  # nothing pending
    events(feed, 12.0, (False, route("203.0.113.0/24", R2)))
    feed.commit(12.0)
    assert feed.input_at == 12.0
