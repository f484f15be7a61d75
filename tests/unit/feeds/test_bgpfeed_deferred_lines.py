"""Lines of ExaBGP's stdin that the BGP feed deferred to its burst commit are always taken
(kernelsync.feeds.channels StdinChannel.pending with kernelsync.feeds.bgpfeed): a commit that
comes early (the resolver changed: a kernel route event) must not leave the reader believing a
wake-up is on its way.  Seen in the lab as ExaBGP's ``error`` for ``next-hop self`` never
counted (tests/netns/test_export_lab.py, /work/i12/flake-export-ipv6.log: ``acks_error 0``,
``refresh_windows 3`` of 4: every line after the early commit stayed in the queue)."""
import os
import selectors
import socket

from kernelsync.core.links import LinkTable
from kernelsync.core.model import AF_INET, IfAddress, KRoute, Leg, Link, parse_prefix
from kernelsync.core.rib import Rib
from kernelsync.feeds.base import KernelChange, RouteEvent
from kernelsync.feeds.bgp import BgpSettings
from kernelsync.feeds.bgpfeed import BgpFeed
from kernelsync.feeds.channels import ExabgpStreams, StdinChannel
from kernelsync.tools.netns import wait_for
from tests.support.feeds import DumpingKernel
from tests.unit.feeds.bgp_lines import announce

A4 = socket.inet_aton


def _lab():
    links = LinkTable({4: Link(index=4, name="ha", up=True, carrier=True)})
    kernel = DumpingKernel(addresses=[IfAddress(AF_INET, 4, A4("192.0.2.2"), 29)])
    streams = ExabgpStreams()
    feed = BgpFeed(Rib(), BgpSettings(startup_wait=0), kernel, 200, links, streams, 0.0)
    sel = selectors.DefaultSelector()
    feed.start(sel, 0.0)
    streams.start(sel, 0.0)
    r_in, w_in = os.pipe()
    r_out, w_out = os.pipe()
    channel = StdinChannel(streams.waker, rfile=os.fdopen(r_in, "rb"), wfile=os.fdopen(w_out, "wb"))
    streams.stdin = channel
    streams.open_channel(channel, 0.0)  # version, route-refreshes: three commands
    return feed, streams, sel, channel, w_in, r_out


def _deliver(sel, channel, w_in, data, now):
    """ExaBGP writes ``data``; the loop handles the wake-up it gets (if any) at ``now``."""
    queued = len(channel.lines)
    os.write(w_in, data)
    wait_for(lambda: len(channel.lines) > queued, timeout=5, what="the reader queued the line")
    for key, _ in sel.select(0):
        key.data(now)


def _loop(sel, feeds, now, until):
    """The daemon's loop (Daemon.run) in simulated time up to ``until``: commit every feed,
    handle what is readable, else sleep until the earliest deadline (nothing readable and no
    deadline: the real loop sleeps until something comes)."""
    for _ in range(100):
        for feed in feeds:
            feed.commit(now)
        ready = sel.select(0)
        for key, _ in ready:
            key.data(now)
        if ready:
            continue
        due = [d for d in (f.deadline() for f in feeds) if d is not None]
        if not due or min(due) > until:
            return
        now = max(now, min(due))


def test_lines_deferred_to_a_burst_commit_are_taken_when_a_route_event_commits_early():
    feed, streams, sel, channel, w_in, r_out = _lab()
    try:
        feed.commit(0.0)  # the resolver's first state
        _deliver(sel, channel, w_in, b"exabgp 5.0.15\ndone\ndone\ndone\n", 0.5)  # the greeting answered
        streams.send(channel, "announce route 2001:db8:54::10/128 next-hop self", 0.9)  # the export's
        _deliver(sel, channel, w_in, announce(["198.51.100.0/24"], "192.0.2.1").encode() + b"\n", 1.0)
        feed.commit(1.0)  # the burst window opens (COMMIT_DELAY)
        _deliver(sel, channel, w_in, announce(["203.0.113.0/25"], "192.0.2.1").encode() + b"\n", 1.001)
        assert channel.pending  # within the window: the next lines wait for the burst commit
        # a kernel route of the resolution table (ip route add ... dev g1) changes the resolver:
        # the commit runs at once, before the window ends
        family, dst, plen = parse_prefix("172.16.0.0/16")
        route = KRoute(family, dst, plen, 254, 3, 1, 0, (Leg(AF_INET, A4("192.0.2.1"), 4),), 0)
        feed.on_kernel_change(KernelChange(routes=(RouteEvent(False, route),)), 1.002)
        feed.commit(1.002)
        # ExaBGP answers the export's announce (next-hop self of another family): error
        _deliver(sel, channel, w_in, b"error\n", 1.003)
        _loop(sel, [feed, streams], 1.003, until=5.0)
        assert streams.counters["acks_error"] == 1, "ExaBGP's reply was left in the stdin queue"
        assert len(channel.lines) == 0 and feed.counters["lines"] == 7
        assert streams.show()["command_errors"] == [
            "stdin: ExaBGP rejected the command: announce route 2001:db8:54::10/128 next-hop self"]
        # and the stream is live again: the next line wakes the loop
        _deliver(sel, channel, w_in, b"done\n", 2.0)
        assert streams.counters["acks_done"] == 4
    finally:
        os.close(w_in)
        channel.reader.join(10)  # its last act is a wake-up: the waker must still be open
        channel.close()
        os.close(r_out)
        streams.waker.close()
