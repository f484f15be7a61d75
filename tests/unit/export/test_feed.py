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


def test_reconfigure_sends_only_what_differs(tmp_path):
    """A configuration reload (kernelsync.daemon.Daemon.reload): one group's attributes changed,
    one group removed, one added, a kernel filter added: only those prefixes' commands go out;
    the group that is the same is not sent again."""
    from kernelsync.export.exporter import AnycastGroup, ExportAttrs
    a = AnycastGroup(parse_prefix("203.0.113.1/32"), ("tap1",), where="export.anycast[0]")
    b = AnycastGroup(parse_prefix("203.0.113.2/32"), ("tap1",), where="export.anycast[1]")
    c = AnycastGroup(parse_prefix("203.0.113.3/32"), ("tap2",), where="export.anycast[2]")
    cfg = ExportConfig(anycast=(a, b), damping=DampingSettings(enabled=False), state_file=str(tmp_path / "s.json"))
    table = LinkTable(links())
    kernel = DumpingKernel(routes=[guest_route("198.51.100.7/32", 2)])
    streams = ExabgpStreams()
    feed = ExportFeed(cfg, kernel, 200, table, streams)
    sel = selectors.DefaultSelector()
    feed.start(sel, 0.0)
    streams.start(sel, 0.0)
    channel = RecordingChannel()
    streams.open_channel(channel, 0.0)
    assert channel.sent == ["announce route 203.0.113.1/32 next-hop self",
                            "announce route 203.0.113.2/32 next-hop self"]
    feed.reconfigure(ExportConfig(anycast=(attrs_evolve(a, ExportAttrs(communities=("65010:53",))), c),
                                  kernel=(KernelFilter(name="guests", devices=("tap2",)),),
                                  damping=DampingSettings(enabled=False), state_file=cfg.state_file))
    assert feed.deadline() == 0.0
    feed.commit(1.0)
    assert channel.sent[2:] == ["withdraw route 203.0.113.2/32 next-hop self",
                                "announce route 203.0.113.1/32 next-hop self community [65010:53]",
                                "announce route 203.0.113.3/32 next-hop self",
                                "announce route 198.51.100.7/32 next-hop self"]
    assert sorted(StateFile(cfg.state_file).load()) == sorted(map(parse_prefix, (
        "203.0.113.1/32", "203.0.113.3/32", "198.51.100.7/32")))
    feed.reconfigure(feed_config_of(feed, cfg))  # the same again: nothing sent
    feed.commit(2.0)
    assert len(channel.sent) == 6
    streams.close()


def attrs_evolve(group, export_attrs):
    import attrs
    return attrs.evolve(group, attrs=export_attrs)


def feed_config_of(feed, cfg):
    return ExportConfig(anycast=feed.exporter.anycast, kernel=feed.exporter.filters,
                        damping=feed.exporter.damping.settings, state_file=cfg.state_file)


def test_damping_settings_changed_keep_penalties_disabled_lifts_suppression():
    from kernelsync.export.exporter import Damping
    damping = Damping(DampingSettings(half_life=10.0, suppress=2.0, reuse=1.0))
    damping.lost("tap1", 0.0)
    assert damping.lost("tap1", 0.0) and damping.is_suppressed("tap1", 0.0)
    damping.set_settings(DampingSettings(half_life=1.0, suppress=2.0, reuse=1.0))
    assert damping.value("tap1", 1.0) == 1.0  # the penalty kept, halving every second now
    damping.set_settings(DampingSettings(enabled=False))
    assert not damping.is_suppressed("tap1", 0.0) and not damping.lost("tap1", 0.0)
