"""The BGP feed's glue (kernelsync.feeds.bgpfeed) without ExaBGP: a stream is greeted with
version and route-refreshes, lines are parsed and committed in bursts, bad lines counted and
skipped, the resolver follows the kernel's notifications, the end of a stream keeps paths
stale."""
import selectors
import socket

from kernelsync.core.links import NO_CHANGE, LinkTable
from kernelsync.core.model import AF_INET, IfAddress, KRoute, Leg, Link, parse_prefix
from kernelsync.core.rib import Rib
from kernelsync.feeds.base import KernelChange, RouteEvent
from kernelsync.feeds.bgp import BgpSettings
from kernelsync.feeds.bgpfeed import COMMIT_DELAY, BgpFeed
from kernelsync.feeds.channels import ExabgpStreams
from tests.support.feeds import DumpingKernel, RecordingChannel
from tests.unit.feeds.bgp_lines import announce

A4 = socket.inet_aton
V4 = parse_prefix("198.51.100.0/24")


def make(routes=()):
    links = LinkTable({4: Link(index=4, name="ha", up=True, carrier=True), 6: Link(index=6, name="up", up=True,
                                                                                   carrier=True)})
    kernel = DumpingKernel(routes=routes, addresses=[IfAddress(AF_INET, 4, A4("192.0.2.2"), 29)])
    rib = Rib()
    streams = ExabgpStreams()
    feed = BgpFeed(rib, BgpSettings(startup_wait=0), kernel, 200, links, streams, 0.0)
    sel = selectors.DefaultSelector()
    feed.start(sel, 0.0)
    streams.start(sel, 0.0)
    channel = RecordingChannel()
    streams.open_channel(channel, 0.0)
    return feed, rib, kernel, streams, channel


def nexthops(rib, prefix):
    entry = rib.entries.get(prefix)
    return None if not entry else sorted((socket.inet_ntoa(n.gateway), n.dev)
                                         for _s, paths in entry for p in paths for n in p.nexthops)


def test_a_stream_is_greeted_and_a_burst_is_committed_once_quiet():
    feed, rib, kernel, streams, channel = make()
    assert channel.sent == ["version", "announce route-refresh ipv4 unicast", "announce route-refresh ipv6 unicast"]
    feed.commit(0.0)  # the resolver's first state: decided at once
    feed.on_lines(channel, [announce(["198.51.100.0/24"], "192.0.2.1").encode(), b"{not json"], 1.0)
    feed.commit(1.0)
    assert nexthops(rib, V4) is None and feed.deadline() == 1.0 + COMMIT_DELAY  # waits for the rest of the burst
    feed.commit(1.0 + COMMIT_DELAY)
    assert nexthops(rib, V4) == [("192.0.2.1", "ha")]
    assert feed.counters["lines"] == 2 and feed.counters["bad_lines"] == 1
    feed.on_lines(channel, [b"done", b"error", b"exabgp 5.0.15"], 1.0)
    assert streams.counters["acks_done"] == 1 and streams.counters["acks_error"] == 1
    assert streams.show()["command_errors"] == ["test#1: ExaBGP rejected the command: announce route-refresh ipv4 unicast"]
    assert streams.show()["exabgp_versions"] == {"test#1": "5.0.15"}
    feed.on_lines(channel, [None], 2.0)  # the stream ended: ExaBGP restarting, the paths stay stale
    feed.commit(2.0)
    assert streams.channels == [] and nexthops(rib, V4) == [("192.0.2.1", "ha")]
    assert all(p.stale for peer in feed.bgp.peers.values() for p in peer.paths.values())


def test_resolver_follows_route_notifications_and_rereads_when_notifications_were_lost():
    feed, rib, kernel, _streams, channel = make()
    feed.on_lines(channel, [announce(["198.51.100.0/24"], "172.16.5.5").encode()], 0.0)
    feed.commit(1.0)
    assert nexthops(rib, V4) is None  # does not resolve yet
    family, dst, plen = parse_prefix("172.16.0.0/16")
    route = KRoute(family, dst, plen, 254, 12, 1, 0, (Leg(AF_INET, A4("192.0.2.1"), 4),), 0)
    ours = route._replace(protocol=200, dst=A4("172.16.5.0"), plen=24)
    feed.on_kernel_change(KernelChange(routes=(RouteEvent(False, route), RouteEvent(False, ours))), 2.0)
    feed.commit(2.0)
    assert nexthops(rib, V4) == [("192.0.2.1", "ha")] and feed.counters["route_events"] == 1  # ours: ignored
    tables = kernel.dumps["table"]
    feed.on_kernel_change(KernelChange(lost=True), 3.0)  # notifications lost: the kernel as it is now
    feed.commit(3.0)
    assert kernel.dumps["table"] == tables + 1 and nexthops(rib, V4) is None  # (the dump has no such route)
    feed.on_kernel_change(KernelChange(links=NO_CHANGE), 4.0)  # a link event re-reads addresses
    assert kernel.dumps["addresses"] == 3  # at start, when notifications were lost, on the link event


def test_restart_holds_bgp_until_a_stream_opened_and_answered():
    # kernelsync run restarted (its routes adopted) while the relay has not reconnected yet:
    # BGP must not count as complete with no stream (that would sweep every BGP route)
    links = LinkTable({4: Link(index=4, name="ha", up=True, carrier=True)})
    kernel = DumpingKernel(addresses=[IfAddress(AF_INET, 4, A4("192.0.2.2"), 29)])
    rib = Rib()
    streams = ExabgpStreams()
    settings = BgpSettings(startup_wait=1, restart_wait=2, restart_hold_time=60)
    feed = BgpFeed(rib, settings, kernel, 200, links, streams, 0.0, restart=True)
    sel = selectors.DefaultSelector()
    feed.start(sel, 0.0)
    streams.start(sel, 0.0)
    feed.commit(5.0)
    assert not feed.bgp.ready and feed.deadline() == 60.0  # no stream: held for restart_hold_time
    channel = RecordingChannel()
    streams.open_channel(channel, 30.0)  # the relay is back
    assert feed.deadline() == 32.0
    feed.commit(31.9)
    assert not feed.bgp.ready
    feed.commit(32.0)
    assert feed.bgp.ready and rib.all_ready


def test_restart_without_any_stream_gives_up_after_restart_hold_time():
    links = LinkTable({})
    rib = Rib()
    streams = ExabgpStreams()
    feed = BgpFeed(rib, BgpSettings(startup_wait=1, restart_wait=2, restart_hold_time=60), DumpingKernel(), 200,
                   links, streams, 0.0, restart=True)
    feed.start(selectors.DefaultSelector(), 0.0)
    feed.commit(59.9)
    assert not feed.bgp.ready
    feed.commit(60.0)
    assert feed.bgp.ready


def test_bad_nlri_is_treated_as_withdrawn_counted_and_logged_escaped(caplog):
    """Issue 12 defect 6: a bad NLRI does not discard its UPDATE: the valid prefixes are used,
    the bad one is withdrawn (every path of its prefix from that peer when its path id cannot
    be read), counted in bad_nlri and logged with its field, control bytes escaped."""
    feed, rib, kernel, streams, channel = make()
    feed.commit(0.0)
    v4b = parse_prefix("203.0.113.0/25")
    first = announce([{"nlri": "198.51.100.0/24", "path-information": "0.0.0.2"},
                      {"nlri": "198.51.100.0/24", "path-information": "0.0.0.3"}], "192.0.2.1")
    feed.on_lines(channel, [first.encode()], 1.0)
    feed.commit(1.0)
    feed.commit(1.0 + COMMIT_DELAY)
    assert nexthops(rib, V4) == [("192.0.2.1", "ha")] and len(feed.bgp.by_prefix[V4]) == 2
    second = announce([{"nlri": "198.51.100.0/24", "path-information": 1e400}, "203.0.113.0/25",
                       {"nlri": "198.51.100.7/24\x1b[2J\x00"}], "192.0.2.1")
    with caplog.at_level("WARNING", logger="kernelsync.exabgp"):
        feed.on_lines(channel, [second.encode()], 2.0)
    feed.commit(2.0)
    feed.commit(2.0 + COMMIT_DELAY)
    assert nexthops(rib, V4) is None and V4 not in feed.bgp.by_prefix  # both paths withdrawn
    assert nexthops(rib, v4b) == [("192.0.2.1", "ha")]  # the valid NLRI of the same UPDATE is used
    assert feed.counters["bad_nlri"] == 2 and feed.counters["bad_lines"] == 0
    assert feed.show()["counters"]["bad_nlri"] == 2
    (record,) = [r for r in caplog.records if "treated as withdrawn" in r.getMessage()]
    text = record.getMessage()
    assert ("update.announce.ipv4 unicast[192.0.2.1][0]: path-information inf is not a 32-bit unsigned integer"
            in text)
    assert "update.announce.ipv4 unicast[192.0.2.1][2]: nlri '198.51.100.7/24\\x1b[2J\\x00' is not a prefix" in text
    assert not any(c in text for c in "\x00\x1b\r")


def test_bad_line_is_logged_with_control_bytes_escaped(caplog):
    feed, rib, kernel, streams, channel = make()
    with caplog.at_level("WARNING", logger="kernelsync.exabgp"):
        feed.on_lines(channel, [b"{nope\x00\x1b[31m\r\xff"], 1.0)
    (record,) = caplog.records
    text = record.getMessage()
    assert feed.counters["bad_lines"] == 1 and "{nope\\x00\\x1b[31m\\r\ufffd" in text, text
    assert not any(c in text for c in "\x00\x1b\r")


def test_a_bug_on_a_line_is_one_log_record_with_its_traceback(caplog, monkeypatch):
    feed, _rib, _kernel, _streams, channel = make()

    def broken(text):
        raise KeyError("bug")

    monkeypatch.setattr(feed.parser, "parse", broken)
    with caplog.at_level("WARNING", logger="kernelsync.exabgp"):
        feed.on_lines(channel, [b'{"type": "update"}'], 1.0)
    records = [r for r in caplog.records if r.name == "kernelsync.exabgp"]
    assert len(records) == 1, [r.getMessage() for r in records]  # not a traceback and then the skipped line
    assert "skipped line, parsing it failed" in records[0].getMessage() and records[0].exc_info is not None
    assert feed.counters["bad_lines"] == 1


def test_a_committed_batch_is_marked_with_its_first_line_for_the_latency():
    feed, rib, _kernel, _streams, channel = make()
    feed.commit(0.0)
    assert feed.input_at is None
    feed.on_lines(channel, [announce(["198.51.100.0/24"], "192.0.2.1").encode()], 1.0)
    feed.commit(1.0)
    feed.on_lines(channel, [announce(["198.51.100.128/25"], "192.0.2.1").encode()], 1.005)
    feed.commit(1.005)
    assert feed.input_at is None  # not committed yet
    feed.commit(1.0 + COMMIT_DELAY)
    assert nexthops(rib, V4) == [("192.0.2.1", "ha")]
    assert feed.input_at == 1.0  # the batch's first line
