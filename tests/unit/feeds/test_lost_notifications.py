"""Lost notifications and failed re-reads in the feeds that follow the kernel (BGP resolver,
kernel-table feed, export): a KernelChange with ``lost`` makes each read again everything it
follows; a dump that fails (ResyncNeeded: interrupted by a concurrent change, replies lost)
is done again a little later, never left half done."""
import selectors
import socket

from kernelsync.core.links import LinkTable
from kernelsync.core.model import AF_INET, KRoute, Leg, Link, parse_prefix
from kernelsync.core.port import ResyncNeeded
from kernelsync.core.rib import Rib
from kernelsync.export.exporter import DampingSettings, ExportConfig, KernelFilter
from kernelsync.export.feed import ExportFeed
from kernelsync.feeds.base import KernelChange
from kernelsync.feeds.bgp import BgpSettings
from kernelsync.feeds.bgpfeed import REREAD_RETRY, BgpFeed
from kernelsync.feeds.channels import ExabgpStreams
from kernelsync.feeds.tablefeed import TableFeed, TableFeedConfig
from tests.support.feeds import DumpingKernel, RecordingChannel
from tests.unit.feeds.bgp_lines import announce

A4 = socket.inet_aton


class FailingKernel(DumpingKernel):
    """Its next ``fail`` dumps of a table raise ResyncNeeded (NLM_F_DUMP_INTR)."""

    fail = 0

    def dump_table(self, table, protocol=0):
        if self.fail:
            self.fail -= 1
            raise ResyncNeeded("dump interrupted by a concurrent change")
        return super().dump_table(table, protocol)


def links():
    return LinkTable({4: Link(index=4, name="ha", up=True, carrier=True)})


def route(text, gateway, table=254, protocol=12):
    family, dst, plen = parse_prefix(text)
    return KRoute(family, dst, plen, table, protocol, 1, 20, (Leg(AF_INET, A4(gateway), 4),), 0)


def test_bgp_resolver_rereads_after_a_failed_dump():
    kernel = FailingKernel()
    rib = Rib()
    streams = ExabgpStreams()
    feed = BgpFeed(rib, BgpSettings(startup_wait=0), kernel, 200, links(), streams, 0.0)
    sel = selectors.DefaultSelector()
    feed.start(sel, 0.0)
    streams.start(sel, 0.0)
    channel = RecordingChannel()
    streams.open_channel(channel, 0.0)
    feed.on_lines(channel, [announce(["198.51.100.0/24"], "172.16.5.5").encode()], 0.0)
    feed.commit(1.0)
    assert not rib.entries.get(parse_prefix("198.51.100.0/24"))  # 172.16.5.5 does not resolve yet
    kernel.routes.append(route("172.16.0.0/16", "192.0.2.1"))  # its notification was lost
    kernel.fail = 1
    feed.on_kernel_change(KernelChange(lost=True), 2.0)  # the re-read's dump fails
    assert feed.counters["rereads"] == 1 and feed.counters["reread_retries"] == 1
    assert feed.deadline() == 2.0 + REREAD_RETRY
    feed.commit(2.0 + REREAD_RETRY)
    feed.commit(3.0)
    entry = rib.entries.get(parse_prefix("198.51.100.0/24"))
    assert entry and [n.dev for _s, paths in entry for p in paths for n in p.nexthops] == ["ha"]


def test_table_feed_rereads_after_lost_notifications_and_after_a_failed_dump():
    kernel = FailingKernel(routes=[route("10.99.0.0/16", "192.0.2.1", table=101)])
    rib = Rib()
    feed = TableFeed(rib, TableFeedConfig(table=101, protocol=12, hold_time=0), kernel, links())
    feed.start(None, 0.0)
    feed.commit(0.0)
    assert parse_prefix("10.99.0.0/16") in rib.entries
    kernel.routes = [route("10.98.0.0/16", "192.0.2.1", table=101)]  # notifications of both lost
    kernel.fail = 1
    feed.on_kernel_change(KernelChange(lost=True), 1.0)
    feed.commit(1.0)  # the dump fails: tried again shortly
    assert feed.counters["reread_retries"] == 1 and feed.counters["lost_notifications"] == 1
    assert feed.deadline() == 1.0 + REREAD_RETRY
    feed.commit(1.0 + REREAD_RETRY)
    assert feed.deadline() is None
    assert {p for p, e in rib.entries.items() if e} == {parse_prefix("10.98.0.0/16")}


def test_export_rereads_candidates_after_lost_notifications_even_without_a_link_change(tmp_path):
    guest = route("203.0.113.10/32", "192.0.2.1")._replace(legs=(Leg(None, None, 4),), protocol=3)
    kernel = FailingKernel(routes=[guest])
    cfg = ExportConfig(kernel=(KernelFilter(name="guests", devices=("ha",)),), damping=DampingSettings(enabled=False),
                       state_file=str(tmp_path / "state.json"))
    streams = ExabgpStreams()
    feed = ExportFeed(cfg, kernel, 200, links(), streams)
    sel = selectors.DefaultSelector()
    feed.start(sel, 0.0)
    streams.start(sel, 0.0)
    channel = RecordingChannel()
    streams.open_channel(channel, 0.0)
    assert channel.sent[-1] == "announce route 203.0.113.10/32 next-hop self"
    kernel.routes = []  # the guest's route went; its RTM_DELROUTE was lost
    kernel.fail = 1
    feed.on_kernel_change(KernelChange(lost=True), 1.0)
    feed.commit(1.0)  # the dump fails
    assert feed.counters["export_reread_retries"] == 1 and feed.deadline() == 1.0 + REREAD_RETRY
    feed.commit(1.0 + REREAD_RETRY)
    assert channel.sent[-1] == "withdraw route 203.0.113.10/32 next-hop self"
    assert feed.counters["export_rereads"] == 1 and feed.deadline() is None
