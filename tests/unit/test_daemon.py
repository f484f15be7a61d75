"""The daemon's notification dispatch (kernelsync.daemon.Daemon.handle_notifications) over
stand-in sockets and the in-memory kernel: the engine and every feed hear a burst at once,
route notifications reach only the feeds that follow routes, our own are dropped, lost
notifications count as a change of everything."""
import socket

from kernelsync import config
from kernelsync.core.engine import Engine
from kernelsync.core.model import AF_INET, KNexthop
from kernelsync.core.port import ResyncNeeded
from kernelsync.daemon import Daemon
from kernelsync.feeds.base import BaseFeed
from kernelsync.kernel import codec
from kernelsync.kernel.fake import FakeKernel
from kernelsync.kernel.netlink import Message


class Socket:
    """A notification socket holding ``messages`` (or raising ResyncNeeded: ENOBUFS)."""

    def __init__(self, *messages, overflow=False):
        self.messages = list(messages)
        self.overflow = overflow

    def read(self):
        if self.overflow:
            self.overflow = False
            raise ResyncNeeded("netlink notification buffer overflow: notifications lost")
        out, self.messages = self.messages, []
        return out


class Recorder(BaseFeed):
    def __init__(self, name, follows_routes):
        self.name = name
        self.follows_routes = follows_routes
        self.changes = []
        self.nexthop_events = []

    def on_kernel_change(self, change, now):
        self.changes.append(change)

    def on_nexthop_event(self, event, now):
        self.nexthop_events.append(event)


def message(data):
    return Message(int.from_bytes(data[4:6], "little"), data)


def daemon(events, routes):
    d = Daemon.__new__(Daemon)  # the loop's state without its sockets
    d.cfg = config.parse({"kernel": {"table": 100}})
    kernel = FakeKernel(200)
    kernel.add_link("a")
    d.kernel = kernel
    d.engine = Engine(d.cfg.kernel, kernel)
    d.engine.start(0.0)
    d.events, d.route_events = events, routes
    d.resync_feeds = False
    d.counters = dict.fromkeys(("notify_overflows", "route_notify_overflows", "feed_rereads_after_overflow",
                                "route_events_ours"), 0)
    d.feeds = [Recorder("tables", True), Recorder("static", False)]
    return d, kernel


KEY = (254, AF_INET, socket.inet_aton("198.51.100.0"), 24, 0)


def test_one_burst_one_dispatch_routes_only_to_followers_ours_dropped():
    link = message(codec.message(codec.RTM_NEWLINK, 0, 0, codec.link_dump_request()))
    nexthop = message(codec.encode_nexthop(0, KNexthop(id=5, family=AF_INET, protocol=12, oif=2), 0))
    theirs = message(codec.encode_route_set(0, KEY, 5, 12, 0))
    ours = message(codec.encode_route_set(0, KEY, 5, 200, 0))
    d, kernel = daemon(Socket(link, nexthop), Socket(theirs, ours))
    kernel.add_link("b")  # what the link notification was about
    assert d.handle_notifications(1.0)  # a link changed: a repair is due
    tables, static = d.feeds
    assert len(tables.changes) == len(static.changes) == 1
    change = tables.changes[0]
    assert change.links is not None and change.links.changed == {"b"} and not change.lost
    assert [(e.deleted, e.route.protocol) for e in change.routes] == [(False, 12)]  # ours dropped
    assert static.changes[0].routes == () and static.changes[0].links is change.links
    assert [e.nexthop.id for e in tables.nexthop_events] == [5] == [e.nexthop.id for e in static.nexthop_events]
    assert "b" in d.engine.links.by_name and d.engine.need_repair


def test_lost_notifications_are_a_change_of_everything():
    """ENOBUFS on either socket: the engine reads the kernel whole, and only then every feed is
    told to read again what it follows, links included: a carrier lost while notifications were
    lost reaches the feeds (the exporter withdraws) with the link table as the full read left it."""
    for events, routes in ((Socket(overflow=True), Socket()), (Socket(), Socket(overflow=True))):
        d, kernel = daemon(events, routes)
        d.engine.run(0.0)  # the first full sync done: nothing pending
        assert not d.engine.need_full and d.engine.links.usable("a")
        kernel.set_link("a", carrier=False)  # its notification was among the lost ones
        assert d.handle_notifications(1.0)
        assert d.engine.need_full  # the engine reads the kernel whole
        assert all(not f.changes for f in d.feeds)  # not before the engine's full read
        d.engine.run(1.0)
        d._after_run()
        for feed in d.feeds:
            (change,) = feed.changes
            assert change.lost and change.link_event
            assert change.links is not None and change.links.lost(d.engine.links) == ["a"]
        assert d.counters["feed_rereads_after_overflow"] == 1
        assert d.counters["notify_overflows"] + d.counters["route_notify_overflows"] == 1
        d._after_run()  # told once
        assert len(d.feeds[0].changes) == 1


def test_our_route_deleted_by_another_program_goes_to_the_engine():
    """RTM_DELROUTE of our protocol in our table from another writer (its nlmsg_pid): the
    engine forgets the route and repairs it; our own echo (our port) and other tables are left."""
    key = (100, AF_INET, socket.inet_aton("198.51.100.0"), 24, 0)

    def deletion(table, pid):
        data = bytearray(codec.encode_route_set(0, (table,) + key[1:], 5, 200, 0))
        codec.NLMSGHDR.pack_into(data, 0, len(data), codec.RTM_DELROUTE, 0, 0, pid)
        return message(bytes(data))

    d, _kernel = daemon(Socket(), Socket(deletion(100, 4001), deletion(101, 777)))
    d.engine.observed_routes[key] = 5
    d.handle_notifications(1.0)
    assert key in d.engine.observed_routes and not d.engine.dirty  # our echo, another table
    d.route_events = Socket(deletion(100, 777))
    d.handle_notifications(2.0)
    assert key not in d.engine.observed_routes and key in d.engine.dirty
    assert d.engine.outside[key].writer == 777 and d.counters["route_events_ours"] == 1
    assert all(f.changes == [] or f.changes[-1].routes == () for f in d.feeds)  # not a feed's business


def test_echoes_of_our_own_writes_are_not_repaired_others_are():
    ours = KNexthop(id=100_000_001, family=AF_INET, protocol=200, oif=2)
    theirs = KNexthop(id=100_000_001, family=AF_INET, protocol=200, oif=3)  # another view of our object
    echo = bytearray(codec.encode_nexthop(0, ours, 0))
    codec.NLMSGHDR.pack_into(echo, 0, len(echo), codec.RTM_NEWNEXTHOP, 0, 0, 4001)  # our port (FakeKernel's)
    rewrite = bytearray(codec.encode_nexthop(0, theirs, 0))
    codec.NLMSGHDR.pack_into(rewrite, 0, len(rewrite), codec.RTM_NEWNEXTHOP, 0, 0, 777)  # zebra, say
    d, _kernel = daemon(Socket(message(bytes(echo))), Socket())
    d.engine.observed_nh[ours.id] = ours
    d.engine.need_repair = False
    d.handle_notifications(1.0)
    assert not d.engine.need_repair and [e.by_us for e in d.feeds[0].nexthop_events] == [True]
    d.events = Socket(message(bytes(rewrite)))
    d.handle_notifications(2.0)
    assert d.engine.need_repair and d.engine.outside[ours.id].writer == 777
    assert [e.by_us for e in d.feeds[0].nexthop_events] == [True, False]


def test_an_undecodable_nexthop_notification_makes_the_engine_look():
    broken = codec.encode_nexthop(0, KNexthop(id=5, family=AF_INET, protocol=12, oif=2), 0)
    d, _kernel = daemon(Socket(message(broken[:18])), Socket())  # cut inside nhmsg
    d.engine.need_repair = False
    assert not d.handle_notifications(1.0)
    assert d.engine.need_repair and [e.nexthop for e in d.feeds[0].nexthop_events] == [None]


def test_held_bgp_sources_defer_deletions_until_the_hold_ends_then_sweep():
    """``kernelsync hold``: the stopped instance's BGP routes are adopted and kept (their
    deletions held back: the BGP sources are not ready) until the hold ends, then deleted."""
    from kernelsync.core.model import NexthopSpec, Path
    from kernelsync.daemon import HeldBgp
    from kernelsync.feeds.bgp import BgpSettings

    d, kernel = daemon(Socket(), Socket())
    engine = d.engine
    engine.rib.add_source("ebgp", 20)
    engine.rib.update("ebgp", KEY[1:4], (Path((NexthopSpec(None, None, "a"),)),))
    engine.rib.set_ready("ebgp")
    engine.run(0.0)
    assert len(kernel.routes) == 1  # the first instance's BGP route
    d2, _ = daemon(Socket(), Socket())  # the holder, on the same kernel
    d2.kernel = kernel
    d2.engine = Engine(d2.cfg.kernel, kernel)
    d2.engine.start(1.0)
    held = HeldBgp(d2.engine.rib, BgpSettings(), 3.0, 1.0)
    d2.engine.run(1.0)
    assert len(kernel.routes) == 1 and d2.engine.state == "AWAITING"  # kept
    assert held.deadline() == 4.0
    held.commit(3.9)
    d2.engine.run(3.9)
    assert len(kernel.routes) == 1
    held.commit(4.0)
    d2.engine.run(4.0)
    assert kernel.routes == {} and d2.engine.state == "SYNCED" and held.deadline() is None


def test_a_signal_to_the_holder_sweeps_now_a_second_one_stops():
    import signal

    from kernelsync.daemon import HeldBgp
    from kernelsync.feeds.bgp import BgpSettings
    d, _kernel = daemon(Socket(), Socket())
    d.stopping = False
    d.held = HeldBgp(d.engine.rib, BgpSettings(), 60.0, 1.0)
    d._on_signal(signal.SIGTERM, None)
    assert not d.stopping and d.held.deadline() == 0.0
    d.held.commit(1.1)
    assert d.held.done and d.engine.rib.all_ready
    d._on_signal(signal.SIGTERM, None)
    assert d.stopping
