"""The export glue: the kernel's routes and links -> :class:`~kernelsync.export.exporter.Exporter`
-> ExaBGP commands on every open stream (:class:`~kernelsync.feeds.channels.ExabgpStreams`).

* At start the filters' tables (and, for routes on nexthop objects, the nexthops) are read, the
  exported set computed, and what the last run announced and is gone now (the state file,
  :class:`~kernelsync.export.state.StateFile`) queued for withdrawal.
* The whole set is announced on every stream that opens (ExaBGP restarted, or we did, or a
  relay reconnected); changes go to every open stream as they happen (withdrawals that found
  no stream open are sent when one opens).  Each command's reply is matched to it by the
  streams, and an ``error`` is logged with the command.
* Route notifications of the filters' tables update the candidates; a link event re-reads the
  tables (the kernel deletes routes on a downed link without a word) and counts lost devices
  for flap damping; a nexthop notification re-reads the nexthops the candidates use.
"""
from __future__ import annotations

import logging
import selectors
import time
from typing import Dict, Optional

from ..core.links import LinkTable
from ..core.model import Prefix
from ..core.port import ResyncNeeded
from ..feeds.base import BaseFeed, KernelChange, NexthopEvent
from ..feeds.channels import Channel, ExabgpStreams
from .exporter import ExportConfig, Exporter
from .state import StateFile

log = logging.getLogger("kernelsync.export")
REREAD_RETRY = 0.05  # seconds before a failed dump (ResyncNeeded) is tried again


class ExportFeed(BaseFeed):
    """``[export]`` through ExaBGP.  ``kernel``: the daemon's request socket, for dumps between
    engine runs (``dump_table``, ``dump_nexthops``); ``protocol``: ours (never exported);
    ``links``: the link table (read only); ``streams``: where commands go."""

    name = "export"
    follows_routes = True

    def __init__(self, cfg: ExportConfig, kernel, protocol: int, links: LinkTable, streams: ExabgpStreams) -> None:
        self.kernel = kernel
        self.streams = streams
        self.exporter = Exporter(cfg.anycast, cfg.kernel, cfg.damping, protocol, links)
        self.state = StateFile(cfg.state_file)
        self.dirty = False
        self.routes_stale = False  # re-dump the filters' tables
        self.nexthops_stale = False
        self.unsent_withdraws: Dict[Prefix, str] = {}  # no stream was open to take them
        self.counters: Dict[str, int] = {"export_announces": 0, "export_withdraws": 0, "export_rereads": 0,
                                         "export_reread_retries": 0}
        self.retry_at: Optional[float] = None  # a dump failed (ResyncNeeded): again then

    # setup ---------------------------------------------------------------------------------
    def start(self, sel: selectors.BaseSelector, now: float) -> None:
        """Read the kernel, compute the exported set, and queue withdrawals for what the last
        run announced and is gone (from the state file)."""
        exporter = self.exporter
        self._read_routes()
        if exporter.uses_nexthops:
            exporter.set_nexthops(self.kernel.dump_nexthops())
        exporter.changes(now)
        previous = self.state.load()
        self.unsent_withdraws = {p: w for p, w in previous.items() if p not in exporter.announced}
        self._save()
        self.streams.on_open.append(self._opened)
        log.info("export: %d prefixes to announce (%d anycast groups, %d kernel filters, %d kernel routes "
                 "selected); %d announced by the last run to withdraw", len(exporter.announced),
                 len(exporter.anycast), len(exporter.filters), len(exporter.routes), len(self.unsent_withdraws))

    def reconfigure(self, cfg: ExportConfig) -> None:
        """A configuration reload changed ``[export]`` (groups, filters, attributes, damping;
        not ``state_file``): the filters' tables are read again at the next commit and only the
        prefixes whose commands differ are withdrawn or announced."""
        self.exporter.reconfigure(cfg.anycast, cfg.kernel, cfg.damping)
        self.routes_stale = self.nexthops_stale = True
        self.dirty = True
        self.retry_at = None

    def _opened(self, channel: Channel, now: float) -> None:
        withdraws = list(self.unsent_withdraws.values())
        self.unsent_withdraws.clear()
        for command in withdraws:
            self.streams.send(channel, command, now)
        for announce, _withdraw, _source in self.exporter.announced.values():
            self.streams.send(channel, announce, now)
        self.counters["export_withdraws"] += len(withdraws)
        self.counters["export_announces"] += len(self.exporter.announced)
        if withdraws:
            self._save()  # sent: no longer for a later run to withdraw
        log.info("%s: announced the exported set: %d prefixes (and %d withdrawals not sent before)",
                 channel.name, len(self.exporter.announced), len(withdraws))

    # kernel --------------------------------------------------------------------------------
    def _read_routes(self) -> None:
        routes = []
        for table, protocols in self.exporter.dump_plan().items():
            for protocol in protocols:  # 0: every protocol; else the kernel filters
                routes.extend(self.kernel.dump_table(table, protocol))
        self.exporter.set_routes(routes)
        self.routes_stale = False

    def on_kernel_change(self, change: KernelChange, now: float) -> None:
        exporter = self.exporter
        if change.lost:  # notifications were lost: the candidates and the nexthops are read again
            self.counters["export_rereads"] += 1
            self.routes_stale = self.nexthops_stale = True
            self.dirty = True
        if change.link_event:
            lost = exporter.links_changed(change.links, now) if change.links is not None else []
            if lost:
                log.info("export: device%s %s lost (up with carrier before, not now)",
                         "s" if len(lost) > 1 else "", ", ".join(lost))
            self.routes_stale = self.routes_stale or bool(exporter.filters)
            self.nexthops_stale = self.nexthops_stale or exporter.uses_nexthops
            self.dirty = True
        for event in change.routes:
            route = event.route
            if route.table in exporter.tables and exporter.route_event(event.deleted, route):
                self.dirty = True
                if route.nh_id and route.nh_id not in exporter.nexthops:
                    self.nexthops_stale = True

    def on_nexthop_event(self, event: NexthopEvent, now: float) -> None:
        """Another program's nexthop object changed (exported routes may sit on one)."""
        if not event.by_us and self.exporter.uses_nexthops:
            self.nexthops_stale = True
            self.dirty = True

    # cycle ---------------------------------------------------------------------------------
    def deadline(self) -> Optional[float]:
        return (self.retry_at or 0.0) if self.dirty else self.exporter.deadline()

    def commit(self, now: float) -> None:
        reuse = self.exporter.deadline()
        if self.dirty and self.retry_at is not None and now < self.retry_at:
            return
        if self.dirty or (reuse is not None and reuse <= now):
            try:
                self._export(now)
            except ResyncNeeded as exc:  # a dump interrupted or its replies lost: still dirty, again soon
                self.counters["export_reread_retries"] += 1
                self.retry_at = now + REREAD_RETRY
                self.dirty = True
                log.warning("export: reading the kernel failed (%s): again in %.0f ms", exc, REREAD_RETRY * 1000)
            else:
                self.retry_at = None

    def _export(self, now: float) -> None:
        """Send what changed in the exported set to every open stream."""
        exporter = self.exporter
        if self.routes_stale:
            self._read_routes()
        if self.nexthops_stale or (exporter.uses_nexthops and not exporter.nexthops):
            exporter.set_nexthops(self.kernel.dump_nexthops())
            self.nexthops_stale = False
        self.dirty = False
        changes = exporter.changes(now)
        if not changes:
            return
        for prefix, command in changes:
            # changes() made its result the announced set: any other command is a withdrawal
            withdraw = command != exporter.announced.get(prefix, ("",))[0]
            self.counters["export_withdraws" if withdraw else "export_announces"] += 1
            log.info("export: %s", command)
            self.unsent_withdraws.pop(prefix, None)
            if not self.streams.broadcast(command, now) and withdraw:
                self.unsent_withdraws[prefix] = command
        self._save()

    def _save(self) -> None:
        withdraws = {p: e[1] for p, e in self.exporter.announced.items()}
        withdraws.update(self.unsent_withdraws)
        self.state.save(withdraws)

    def show(self) -> dict:
        return {**self.exporter.show(time.monotonic()), "unsent_withdraws": len(self.unsent_withdraws),
                "command_errors": list(self.streams.last_errors)}


__all__ = ["ExportFeed"]
