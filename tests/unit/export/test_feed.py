"""The export glue (kernelsync.export.feed) without ExaBGP: the kernel read at start, the whole
set announced on every stream that opens, changes to every open stream, withdrawals kept for
the next stream when none is open, the state file."""
import selectors

from kernelsync.core.links import LinkTable
from kernelsync.core.model import KRoute, Leg, Link, parse_prefix
from kernelsync.export.exporter import DampingSettings, ExportConfig, KernelFilter
from kernelsync.export.feed import ExportFeed
from kernelsync.export.state import StateFile
from kernelsync.feeds.base import KernelChange, RouteEvent
from kernelsync.feeds.channels import ExabgpStreams
from tests.support.feeds import DumpingKernel, RecordingChannel

BOOT = 3


def guest_route(text, ifindex):
    family, dst, plen = parse_prefix(text)
    return KRoute(family, dst, plen, 254, BOOT, 1, 0, (Leg(None, None, ifindex),), 0)


def links(tap1=True, tap2=True):
    return {1: Link(index=1, name="tap1", up=True, carrier=tap1), 2: Link(index=2, name="tap2", up=True, carrier=tap2)}


def test_set_announced_on_open_changes_broadcast_withdrawals_kept_for_the_next_stream(tmp_path):
    state = str(tmp_path / "exported.json")
    StateFile(state).save({parse_prefix("203.0.113.9/32"): "withdraw route 203.0.113.9/32 next-hop self"})
    cfg = ExportConfig(kernel=(KernelFilter(name="guests", devices=("tap*",)),),
                       damping=DampingSettings(enabled=False), state_file=state)
    table = LinkTable(links())
    kernel = DumpingKernel(routes=[guest_route("203.0.113.10/32", 1)])
    streams = ExabgpStreams()
    feed = ExportFeed(cfg, kernel, 200, table, streams)
    sel = selectors.DefaultSelector()
    feed.start(sel, 0.0)
    streams.start(sel, 0.0)
    first = RecordingChannel()
    streams.open_channel(first, 0.0)
    assert first.sent == ["withdraw route 203.0.113.9/32 next-hop self",  # gone while we were not running
                          "announce route 203.0.113.10/32 next-hop self"]
    assert feed.deadline() is None

    feed.on_kernel_change(KernelChange(links=table.update(links(tap1=False))), 1.0)  # the guest's carrier
    assert feed.deadline() == 0.0
    feed.commit(1.0)
    assert first.sent[-1] == "withdraw route 203.0.113.10/32 next-hop self"
    assert kernel.dumps["table"] == 2  # re-read on the link event: the kernel deletes silently

    streams.closed(first)  # ExaBGP went away; meanwhile a second guest comes and the first goes
    feed.on_kernel_change(KernelChange(links=table.update(links(tap1=True))), 2.0)
    feed.commit(2.0)  # announced, but there is nobody to tell
    kernel.routes = [guest_route("203.0.113.11/32", 2)]
    feed.on_kernel_change(KernelChange(routes=(RouteEvent(True, guest_route("203.0.113.10/32", 1)),
                                               RouteEvent(False, guest_route("203.0.113.11/32", 2)))), 3.0)
    feed.commit(3.0)
    second = RecordingChannel("test#2")
    streams.open_channel(second, 4.0)
    assert second.sent == ["withdraw route 203.0.113.10/32 next-hop self",
                           "announce route 203.0.113.11/32 next-hop self"]
    assert feed.counters == {"export_announces": 4, "export_withdraws": 4,  # as decided, and as sent later
                             "export_rereads": 0, "export_reread_retries": 0}
    assert StateFile(state).load() == {parse_prefix("203.0.113.11/32"): "withdraw route 203.0.113.11/32 next-hop self"}
    assert feed.show()["announced"] == {"203.0.113.11/32": {"command": "announce route 203.0.113.11/32 next-hop self",
                                                            "source": "kernel filter guests"}}
    streams.close()
