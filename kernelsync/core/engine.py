"""The reconciler: the thin shell around the pure core.

State machine (Open/R Fib): AWAITING (feeds not all ready or no kernel dump yet: nothing is
deleted) -> SYNCED.  Work is driven by marks:

* a link event (admin or carrier change, device added or removed) re-reads links, updates the
  desired FIB (nexthops on a down link leave their groups; routes with no usable nexthop fall
  back or go) and runs a *repair*: re-read the nexthop objects, infer which of our routes the
  kernel deleted silently (those on a vanished nexthop or group), and apply the diff; then a
  *verify* (full dump of nexthops and our routes) follows ``verify_delay`` seconds later;
* a nexthop notification that another program caused (``ip nexthop del``, zebra re-installing
  its view of our group) runs a repair; when the same object is rewritten again and again (a
  fight: another daemon that "repairs" our object back to its view), its repairs back off
  (:class:`OutsideWrites`): at most one rewrite per hold, the hold doubling up to FIGHT_HOLD_MAX,
  warned once per object with both views;
* a route of ours deleted or rewritten by another program (``ip route del``: the daemon's route
  notifications pass another writer's changes of our protocol in our table) is repaired at once
  (:meth:`Engine.on_route_event`), with the same back-off when it is fought over;
* a full resync every ``resync_interval`` seconds repairs any other outside change;
* a full sync after the first (verify, periodic resync, an explicit request) never blocks:
  the routes are read in slices of :attr:`Engine.dump_slice` on the kernel's dump socket
  (:meth:`~kernelsync.core.port.Kernel.open_route_dump`), one slice per :meth:`Engine.run`
  (which stays due: :attr:`Engine.syncing`), events handled between slices as at any time;
  at the dump's end its view is merged with what the engine wrote, was notified of or saw
  vanish meanwhile (:meth:`Engine._merge_dump`), then every route is diffed in slices of
  :attr:`Engine.diff_slice`.  A full sync due meanwhile waits for its end; an explicit
  request (lost notifications, SIGHUP) starts it again;
* failed writes are retried with exponential backoff (``retry_initial`` doubling up to
  ``retry_max``), logged once per cause and batch; a failed nexthop leaves its groups until it
  is written.

``Engine`` never sleeps and never reads the clock: every entry point takes ``now``; the
event loop in :mod:`kernelsync.daemon` owns sockets and timers.  It reaches the kernel only
through the port (:class:`kernelsync.core.port.Kernel`) and owns the link table
(:class:`kernelsync.core.links.LinkTable`), which everyone else reads.
"""
from __future__ import annotations

import errno
import gc
import logging
from typing import Callable, Dict, List, Optional, Sequence, Set, Tuple

import attrs

from .fib import FibBuilder
from .links import LinkChange, LinkTable
from .model import RT_SCOPE_UNIVERSE, SCOPE_NAME, KNexthop, Prefix, RouteKey, format_address, format_prefix
from .nhm import NexthopManager
from .ops import NEXTHOP_SET, ROUTE_SET, NexthopDel, NexthopSet, Op, RouteDel, RouteSet, Target
from .planner import Plan, plan
from .port import Kernel, Refusal, ResyncNeeded
from .rib import Rib

log = logging.getLogger("kernelsync.engine")
GC_YOUNG_MAX = 100_000  # objects a run may leave for a young collection before the freeze
FIGHT_WRITES = 3  # outside writes to one object within FIGHT_WINDOW seconds: a fight
FIGHT_WINDOW = 10.0
FIGHT_HOLD_INITIAL = 1.0  # seconds the first hold of a fought object lasts; doubles per fight
FIGHT_HOLD_MAX = 60.0
RETRY_DOUBLINGS = 64  # the retry delay doubles at most this many times (then it is retry_max)
DUMP_SLICE = 2048  # routes a run reads of a sliced full sync's dump (5-10 ms)
DIFF_SLICE = 2048  # route keys a run diffs of a sliced full sync (5-10 ms)
RELEASE_SLICE = 4096  # entries of a replaced observed map a run frees (see Engine._release)


@attrs.frozen
class KernelConfig:
    """``[kernel]``: where and how our routes go.  ``table``, ``protocol`` (rtm_protocol and
    nhmsg protocol of everything we write), ``metric`` (RTA_PRIORITY), ``nexthop_id_range``
    (inclusive); times in seconds: ``group_hold_time`` (an unused nexthop or group is kept),
    ``resync_interval`` (full dump and diff), ``verify_delay`` (full dump after a link event),
    ``retry_initial`` doubling up to ``retry_max`` (a refused write); ``flush_on_exit``: delete
    everything of ours when stopping."""

    table: int = 254
    protocol: int = 200
    metric: int = 20
    nexthop_id_range: Tuple[int, int] = (100_000_000, 100_999_999)
    group_hold_time: float = 30.0
    resync_interval: float = 60.0
    verify_delay: float = 2.0
    flush_on_exit: bool = False
    retry_initial: float = 0.2
    retry_max: float = 30.0


@attrs.define
class Failure:
    """A write that the kernel refused: retried at ``next_try`` (seconds, engine clock)."""

    count: int
    next_try: float
    error: str
    op: Op = attrs.field(repr=False, eq=False)


@attrs.define
class OutsideWrites:
    """Another program's writes to one of our nexthop objects: RTM_NEWNEXTHOP/DELNEXTHOP
    notifications whose sender (nlmsg_pid, the writer's netlink port: a process id for iproute2
    or zebra) is not our request socket.  Times in seconds, engine clock.

    ``total``: all of them; ``recent``: within the window that began at ``since``; ``writer``,
    ``theirs``, ``ours``: the last writer and both views (``describe()`` texts); ``hold``: the
    current backoff (0: none); ``held_until``: no write to the object before then."""

    since: float
    total: int = 0
    recent: int = 0
    writer: int = 0
    theirs: str = ""
    ours: str = ""
    hold: float = 0.0
    held_until: Optional[float] = None
    warned: bool = False

    def show(self) -> dict:
        return {"outside_writes": self.total, "last_writer_port": self.writer, "theirs": self.theirs,
                "ours": self.ours, "hold_s": self.hold, "held_until": self.held_until}


@attrs.define
class _FullSync:
    """A full sync in slices (:meth:`Engine._sync_step`).  While ``dump`` is read, the routes
    it showed gather in ``routes``/``scopes``/``by_nh``; what the engine learns of meanwhile is
    recorded: ``touched``, the route keys it wrote or was notified of (or inferred lost), and
    ``vanished``, the nexthop ids that went (deleted by us or by the kernel).  Then the diff:
    ``keys``, the desired route keys when the dump ended, the keys it showed (``order``) and
    the touched ones, diffed from segment ``segment``, position ``pos`` on; ``spared``: the
    doomed objects the previous full sync spared (:meth:`Engine._spare_doomed`)."""

    dump: object
    order: List[RouteKey] = attrs.Factory(list)  # the keys the dump showed, in its order
    routes: Dict[RouteKey, int] = attrs.Factory(dict)
    scopes: Dict[RouteKey, int] = attrs.Factory(dict)
    by_nh: Dict[int, Set[RouteKey]] = attrs.Factory(dict)
    touched: Set[RouteKey] = attrs.Factory(set)
    vanished: Set[int] = attrs.Factory(set)
    keys: Optional[List[List[RouteKey]]] = None  # segments: desired keys, dump's keys, touched keys
    segment: int = 0
    pos: int = 0
    spared: Set[int] = attrs.Factory(set)
    slices: int = 0
    read: int = 0  # routes in the merged view (-1: the dump is over, to be merged)
    merged: bool = False
    rest: List[List[RouteKey]] = attrs.Factory(list)  # the keys to diff after the desired ones


@attrs.define
class _Booking:
    """What one :meth:`Engine._apply` learnt, gathered chunk by chunk."""

    nh_failed: List[int] = attrs.Factory(list)
    nh_recovered: List[int] = attrs.Factory(list)
    nh_written: Set[int] = attrs.Factory(set)
    just_failed: Set[Target] = attrs.Factory(set)
    refused: Dict[tuple, List[Failure]] = attrs.Factory(dict)  # (kind, errno, message) -> failures
    taken: List[int] = attrs.Factory(list)  # our ids that another program turned out to hold
    recovered: int = 0
    booking_error: bool = False  # booking a chunk raised (logged once per batch)


class Engine:
    """Owns the RIB, the desired FIB and the view of the kernel; decides and applies writes."""

    def __init__(self, kcfg: KernelConfig, kernel: Kernel, dry_run: bool = False,
                 on_plan: Optional[Callable[[Plan], None]] = None) -> None:
        self.kcfg = kcfg
        self.kernel = kernel
        self.dry_run = dry_run
        self.on_plan = on_plan
        self.rib = Rib()
        self.links = LinkTable()
        self.nhm = NexthopManager(kcfg.nexthop_id_range, kcfg.group_hold_time, kcfg.protocol, self.links)
        self.fib = FibBuilder(self.rib, self.nhm, kcfg.table, kcfg.metric)
        self.observed_nh: Dict[int, KNexthop] = {}
        self.observed_routes: Dict[RouteKey, int] = {}
        # rtm_scope of our routes in the kernel, for those not RT_SCOPE_UNIVERSE (device-only)
        self.observed_scopes: Dict[RouteKey, int] = {}
        self._by_nh: Dict[int, Set[RouteKey]] = {}
        self.failures: Dict[Target, Failure] = {}
        self.dirty: Set[RouteKey] = set()
        self.dumped = False
        self.need_repair = False
        self.need_full = True
        self.verify_at: Optional[float] = None
        self.next_resync: float = 0.0
        self.gc_at: Optional[float] = None
        self.last_repair_ms: Optional[float] = None
        self.missed_link_change: Optional[LinkChange] = None
        self._doomed_seen: Set[int] = set()  # what the last full sync spared (_spare_doomed)
        self._rekey = False  # the observed view's keys are to be shared with the FIB (_share_keys)
        # full syncs after the first read the routes in slices, one per run, handling events
        # between them (False: in one run, as the first one)
        self.sliced = callable(getattr(kernel, "open_route_dump", None))
        self.dump_slice = DUMP_SLICE
        self.diff_slice = DIFF_SLICE
        self._sync: Optional[_FullSync] = None  # a sliced full sync in progress
        self._touched: Optional[Set[RouteKey]] = None  # its dump's touched keys, while it is read
        self._restart_full = False  # what the sync in progress learns is unsure: start again
        self._slice_skipped = False  # the last run did a repair instead of a slice
        self._garbage: List[object] = []  # replaced observed maps, freed a slice at a time
        # emptied by _release, they keep their size: the next sliced dump fills them without
        # growing them (a million-route dict grows by a 100 MB copy in one slice)
        self._spare_routes: Optional[Dict[RouteKey, int]] = None
        self._spare_sets: Dict[int, Set[RouteKey]] = {}  # nexthop id -> its emptied by_nh set
        self._skip_young_collect = False  # this run made a large container whose items are old
        self.outside: Dict[object, OutsideWrites] = {}  # nexthop id or RouteKey -> another program's writes to it
        self.counters: Dict[str, int] = {"repairs": 0, "full_syncs": 0, "inferred_route_losses": 0,
                                         "retries": 0, "nexthops_taken_over": 0, "outside_writes": 0,
                                         "fights": 0, "booking_errors": 0, "sliced_syncs": 0, "sync_slices": 0,
                                         "sync_restarts": 0, "dumps_interrupted": 0}

    # ownership -----------------------------------------------------------------------------
    def ours(self, obj: KNexthop) -> bool:
        return obj.protocol == self.kcfg.protocol and self.nhm.owns_id(obj.id)

    @property
    def state(self) -> str:
        return "SYNCED" if self.dumped and self.rib.all_ready else "AWAITING"

    # inputs --------------------------------------------------------------------------------
    def start(self, now: float) -> None:
        """Read links and the kernel's nexthops, adopt ours (restart without writes)."""
        self._read_links()
        self._dump_nexthops()
        self.nhm.adopt(self.observed_nh)
        self.need_full = True
        self.next_resync = now + self.kcfg.resync_interval

    def set_timers(self, kcfg: KernelConfig, now: float) -> None:
        """A configuration reload changed times of ``[kernel]`` (``group_hold_time``,
        ``resync_interval``, ``verify_delay``, ``retry_*``, ``flush_on_exit``; the caller keeps
        table, protocol, metric and ID range unchanged): the next resync is rescheduled from
        ``now``, pending retries wait at most ``retry_max``, unused objects are looked at again
        with the new hold time."""
        old, self.kcfg = self.kcfg, kcfg
        self.nhm.hold_time = kcfg.group_hold_time
        if kcfg.resync_interval != old.resync_interval:
            self.next_resync = now + kcfg.resync_interval
        for failure in self.failures.values():
            failure.next_try = min(failure.next_try, now + kcfg.retry_max)
        if self.gc_at is not None and kcfg.group_hold_time != old.group_hold_time:
            self.gc_at = now

    def _read_links(self) -> LinkChange:
        """Read the links into the link table (its only writer); mark what the change touches."""
        change = self.links.update(self.kernel.dump_links())
        if change.changed:
            self.dirty |= self.fib.links_changed(change)
        return change

    def on_link_event(self, now: float) -> LinkChange:
        """An RTM_NEWLINK/DELLINK arrived: re-read links; repair now, verify later.  Refused
        nexthop writes are retried at once: their device may be back (no backoff wait).
        Returns what changed in the link table (for the feeds)."""
        change = self._read_links()
        self._retry_nexthops_now(now)
        self.need_repair = True
        if self.kcfg.verify_delay > 0 and self.verify_at is None:
            self.verify_at = now + self.kcfg.verify_delay
        return change

    def on_address_event(self, now: float) -> None:
        """An address came or went: a nexthop refused for lack of a route to its gateway
        (IPv6 after admin up) may now be accepted; retry nexthops now."""
        self._retry_nexthops_now(now)
        self.need_repair = True

    def _retry_nexthops_now(self, now: float) -> None:
        for key, failure in self.failures.items():
            if key.what == "nh":
                failure.next_try = min(failure.next_try, now)

    def on_nexthop_event(self, deleted: bool, obj: Optional[KNexthop], now: float, writer: int = 0) -> None:
        """RTM_NEWNEXTHOP/DELNEXTHOP written by another program (``writer``: its netlink port;
        0: the kernel itself): repair if it concerns one of ours and differs from what we
        hold, unless the object is being fought over (see :class:`OutsideWrites`).  Echoes of
        our own writes are not passed here."""
        if obj is None or not self.nhm.owns_id(obj.id):
            return
        ours = self.observed_nh.get(obj.id)
        if (ours is None) if deleted else (ours == obj):
            return
        if writer == 0:  # the kernel's own change (never a fight): repaired, not counted
            self.need_repair = True
            return
        if not self._outside_write(obj.id, "nexthop id %d" % obj.id, writer, now,
                                   "deleted" if deleted else obj.describe(), ours.describe() if ours is not None else "-",
                                   "zebra learning our objects does this: see the README, FRR"):
            self.need_repair = True

    def on_route_event(self, deleted: bool, key: RouteKey, nh_id: int, now: float, writer: int,
                       scope: int = RT_SCOPE_UNIVERSE) -> None:
        """RTM_NEWROUTE/DELROUTE of our protocol in our table written by another program
        (``writer``: its netlink port; 0: the kernel itself, e.g. IPv6 routes of a downed link):
        the observed view follows it and the route is repaired at once.  Another program's
        writes are counted as outside writes; one that deletes or rewrites the same route again
        and again (another instance owning our routes) is not fought: the route is written at
        most once per hold, as for nexthop objects (:class:`OutsideWrites`, keyed by the
        RouteKey), warned once.  Echoes of our own writes are not passed here.  ``scope``: the
        route's rtm_scope (a rewrite that changes only the scope is a change)."""
        routes = self.observed_routes
        scopes = self.observed_scopes
        old = routes.get(key)
        old_scope = scopes.get(key, RT_SCOPE_UNIVERSE)
        if (old is None) if deleted else (old == nh_id and old_scope == scope):
            return
        if old is not None and old in self._by_nh:
            self._by_nh[old].discard(key)
        if self._touched is not None:
            self._touched.add(key)
        if deleted:
            del routes[key]
            scopes.pop(key, None)
        else:
            routes[key] = nh_id
            if scope:
                scopes[key] = scope
            else:
                scopes.pop(key, None)
            self._by_nh.setdefault(nh_id, set()).add(key)
        self.dirty.add(key)
        if writer:
            self._outside_write(key, "route %s" % format_prefix(key[1:4]), writer, now,
                                "deleted" if deleted else _route_view(nh_id, scope),
                                _route_view(old, old_scope) if old is not None else "-",
                                "another instance owning our table and protocol?")

    def _outside_write(self, key: object, what: str, writer: int, now: float, theirs: str, ours: str,
                       hint: str) -> bool:
        """Count another program's write (netlink port ``writer``) to our object or route
        ``key`` (a nexthop id or a RouteKey) in its :class:`OutsideWrites`.  Returns True when
        it is a fight: FIGHT_WRITES within FIGHT_WINDOW; the object is then held (rewritten at
        most once per hold, FIGHT_HOLD_INITIAL doubling to FIGHT_HOLD_MAX) and the first such
        write is warned, with both views (``theirs``, ``ours``) and ``hint``."""
        record = self.outside.get(key)
        if record is None:
            record = self.outside[key] = OutsideWrites(since=now)
        elif now - record.since > FIGHT_WINDOW:
            record.since, record.recent = now, 0
            if record.held_until is not None and now - record.held_until > FIGHT_WINDOW:
                record.hold = 0.0  # a quiet spell: the next fight starts from the first hold again
        record.total += 1
        record.recent += 1
        record.writer, record.theirs, record.ours = writer, theirs, ours
        self.counters["outside_writes"] += 1
        if record.recent < FIGHT_WRITES:
            return False
        if record.held_until is None or record.held_until <= now:  # a new hold, twice the last
            record.hold = min(max(record.hold * 2, FIGHT_HOLD_INITIAL), FIGHT_HOLD_MAX)
            record.held_until = now + record.hold
        if not record.warned:
            record.warned = True
            self.counters["fights"] += 1
            log.warning("%s: another program (netlink port %d) wrote it %d times within %.0f s: it wrote %s, we had "
                        "%s; rewriting it at most once per hold (%.0f s, doubling to %.0f s) instead of fighting (%s)",
                        what, writer, record.recent, FIGHT_WINDOW, theirs, ours, record.hold, FIGHT_HOLD_MAX, hint)
        return True

    def request_full_sync(self) -> None:
        """Read the kernel whole (SIGHUP, lost notifications, an error): a sliced full sync in
        progress is dropped and starts again (what it learnt meanwhile may be incomplete)."""
        self.need_full = True
        self._restart_full = True

    @property
    def syncing(self) -> bool:
        """A sliced full sync is in progress: :meth:`run` has a slice to do now (the daemon
        polls its sockets between slices)."""
        return self._sync is not None

    def request_repair(self) -> None:
        """Dump the nexthop objects and repair what differs (an undecodable notification)."""
        self.need_repair = True

    def take_missed_link_change(self) -> Optional[LinkChange]:
        """What full reads found changed in the links without a link notification (lost
        notifications), since the last call: the feeds are told as for an event."""
        change, self.missed_link_change = self.missed_link_change, None
        return change

    # the cycle -----------------------------------------------------------------------------
    def deadline(self) -> Optional[float]:
        """When :meth:`run` has work next (engine clock), or None for 'only on events'."""
        if (self.need_full or self.need_repair or self.dirty or self.rib.dirty or self.rib.became_ready
                or self.fib.starved_due or self._sync is not None or self._garbage):
            return 0.0
        times = [t for t in (self.next_resync, self.verify_at, self.gc_at) if t is not None]
        times += [f.next_try for f in self.failures.values()]
        times += [r.held_until for r in self.outside.values() if r.held_until is not None]
        growth = self.fib.growth_due()  # deferred ECMP growths (PIC): their source's hold ends
        if growth is not None:
            times.append(growth)
        return min(times) if times else None

    def _release_holds(self, now: float) -> None:
        """Holds over: repair the objects they held (one rewrite each)."""
        for key, record in self.outside.items():
            if record.held_until is not None and record.held_until <= now:
                record.held_until = None
                self.need_repair = True
                if isinstance(key, tuple):  # a route (on_route_event)
                    self.dirty.add(key)

    def _forget_outside(self, now: float) -> None:
        """Forget the records of objects we no longer have, and of outside writes long past that
        were no fight: there are never more records than objects of ours."""
        for nh_id, record in list(self.outside.items()):
            mine = self.fib.routes if isinstance(nh_id, tuple) else self.nhm.by_id  # a route, or an object
            if record.held_until is None and (nh_id not in mine
                                              or (not record.warned and now - record.since > FIGHT_WINDOW)):
                del self.outside[nh_id]

    def run(self, now: float) -> Plan:
        """Do whatever is due at ``now``; returns the last plan applied (or printed).

        Python's cyclic garbage collector is paused meanwhile: a full load allocates hundreds of
        thousands of acyclic tuples, and collecting them again and again cost a third of the
        time.  Afterwards whatever survives is frozen out of later collections (``gc.freeze``):
        the RIB and FIB keep a few objects per route, and full collections walking them again
        and again cost a tenth of a BGP flood's CPU.  The young generations are collected
        first (cycles that became garbage in the run go now), unless the run left more than
        GC_YOUNG_MAX objects (a full load: walking them would cost more than the load saves).
        Frozen objects are still freed by reference counting; only a cycle among them would
        stay, and the long-lived structures form none that becomes garbage (a group and its
        members unlink each other when the group is freed).  The run that ends a sliced full
        sync's dump skips the young collection too: it makes a list of every desired key
        (old objects: walking it would cost 50-80 ms at a million routes)."""
        enabled = gc.isenabled()
        gc.disable()
        try:
            return self._run(now)
        finally:
            skip, self._skip_young_collect = self._skip_young_collect, False
            if enabled:
                if gc.get_count()[0] <= GC_YOUNG_MAX and not skip:
                    gc.collect(1)
                gc.freeze()
                gc.enable()

    def _run(self, now: float) -> Plan:
        if self.outside:
            self._release_holds(now)
        if now >= self.next_resync:
            self.need_full = True
        if self.verify_at is not None and now >= self.verify_at:
            self.need_full = True
        if self._sync is not None and self._restart_full:
            self.counters["sync_restarts"] += 1
            self._drop_sync()
        self._restart_full = False
        # a full sync due while a sliced one is in progress waits for its end
        full = self.need_full and self._sync is None
        sliced = full and self.sliced and self.dumped and not self.rib.became_ready
        diff_keys: Optional[List[RouteKey]] = None
        try:
            if sliced:
                self._start_sync()
            elif full:
                self._dump_all()
            elif self.need_repair:
                self._dump_nexthops()
                self.counters["repairs"] += 1
            if self._sync is not None:
                # a run that repairs (or follows a route event) leaves the slice to the next
                # run, so the repair is written first; never two runs in a row (a steady flap
                # must not stall the sync)
                urgent = (self.need_repair or self.dirty) and not sliced
                if urgent and not self._slice_skipped:
                    self._slice_skipped = True
                else:
                    self._slice_skipped = False
                    diff_keys = self._sync_step()
        except ResyncNeeded as exc:
            log.warning("%s; full resync", exc)
            self.need_full = True
            self._restart_full = True
            return Plan()
        self.need_repair = False
        if full:
            self.need_full = False
            self.verify_at = None
            self.next_resync = now + self.kcfg.resync_interval
            if not sliced:
                self.counters["full_syncs"] += 1
            full = not sliced  # a sliced one diffs slice by slice, as incremental passes
        self.nhm.collect(now)  # entries past their hold time leave the desired state now
        if self.rib.became_ready:  # the deletions held back until now are due: plan everything
            self.rib.became_ready = False
            full = True
        last = Plan()
        for _round in range(4):
            changed = self.fib.sync_rib(now, collect=not full)
            if self._rekey:  # the dump came before the FIB was built (a start): share its keys now
                self._rekey = False
                self._observe(self._share_keys(self.observed_routes), self._share_keys(self.observed_scopes))
            if self.failures:  # a refused nexthop or group whose last user just went
                older = [f for t, f in self.failures.items() if t.what == "nh"]
                if older:
                    self._park_unused({(NEXTHOP_SET, 0, ""): older})
            keys = None
            if not full:  # the RIB's changes in their order, then the rest
                keys = changed
                for more in (self.dirty, self._retry_keys(now)):
                    keys.update(dict.fromkeys(more))
                if diff_keys is not None and _round == 0:  # a slice of a sliced full sync's diff
                    keys.update(dict.fromkeys(diff_keys))
            self.dirty = set()
            allow_delete = self.dumped and self.rib.all_ready
            result = plan(self.fib.desired_nexthops(), self.observed_nh, self.fib.routes,
                          self.observed_routes, route_keys=keys, allow_delete=allow_delete,
                          scopes=self.nhm.scopes(), observed_scopes=self.observed_scopes)
            if keys is None and allow_delete:
                self.nhm.end_adoption()  # every feed is in: whatever was not adopted is stale
                self.fib.route_hints = {}
            if result.deferred and not allow_delete:
                log.info("holding back %d deletions until every feed has sent its initial state",
                         result.deferred)
            ops = self._spare_doomed(result.ops, full=keys is None,
                                     spared=self._sync.spared if diff_keys is not None and self._sync else None)
            self._prune_failures(ops, keys)
            ops = self._due(ops, now)
            last = Plan(ops=ops, deferred=result.deferred)
            if self.on_plan is not None:
                self.on_plan(last)
            if not ops or self.dry_run:
                break
            progress = self._apply(ops, now)
            full = False
            if not progress:
                break
        if self._sync_diffed:
            self._end_sync()
        if self._garbage:
            self._release(RELEASE_SLICE)
        self.gc_at = self.nhm.collect(now)
        if self.outside:
            self._forget_outside(now)
        return last

    def _retry_keys(self, now: float) -> Set[RouteKey]:
        return {t.key for t, f in self.failures.items() if t.what == "route" and f.next_try <= now}

    def _prune_failures(self, ops: List[Op], keys: Optional[Dict[RouteKey, None]]) -> None:
        """Forget failures of writes no longer wanted (the desired state moved on)."""
        if not self.failures:
            return
        wanted = {op.target for op in ops}
        for fkey in list(self.failures):
            examined = fkey.what == "nh" or keys is None or fkey.key in keys
            if examined and fkey not in wanted:
                del self.failures[fkey]

    def _due(self, ops: List[Op], now: float) -> List[Op]:
        """``ops`` without the writes held back: a refused write waiting for its retry (unless
        its content changed), a write to an object another program is fighting over."""
        held = {i for i, r in self.outside.items() if r.held_until is not None and r.held_until > now}
        if not self.failures and not held:
            return ops
        out = []
        for op in ops:
            if held and op.target.key in held:  # a nexthop id, or a route's key (on_route_event)
                continue
            failure = self.failures.get(op.target)
            # backoff holds the same write; a write whose content changed goes at once
            if failure is None or failure.next_try <= now or failure.op != op:
                out.append(op)
        return out

    # kernel reads --------------------------------------------------------------------------
    def _dump_nexthops(self) -> None:
        everything = self.kernel.dump_nexthops()
        kernel_ids = set(everything)
        if not kernel_ids >= self.nhm.kernel_ids:
            self.nhm.released()  # objects went: their ids may be free
        self.nhm.kernel_ids = kernel_ids
        ours = {i: o for i, o in everything.items() if self.ours(o)}
        before = self.observed_nh
        vanished = [i for i in before if i not in ours]
        self.observed_nh = ours
        lost = 0
        deleted = 0
        for nh_id in vanished:
            obj = everything.get(nh_id)
            if obj is not None:
                # replaced under our id by another program (FRR's zebra re-installs the kernel's
                # nexthop objects it learned, ours too, when a link comes back): the object is
                # theirs now and left alone; our routes on it are still there, still ours, and
                # move with our entry to a new id
                self.counters["nexthops_taken_over"] += 1
                moved = self.fib.reassign(nh_id)
                self.dirty |= moved
                self.dirty.update(self._by_nh.get(nh_id, ()))
                log.warning("nexthop id %d was replaced by another program (protocol %d): left to it; ours moves to "
                            "a new id, %d routes with it", nh_id, obj.protocol, len(moved))
                continue
            deleted += 1
            if self._touched is not None:  # a sliced dump is read: what it showed on it is gone
                self._sync.vanished.add(nh_id)
            # the kernel deletes every route on a deleted nexthop or group, silently (IPv4)
            for key in self._by_nh.pop(nh_id, ()):
                if self.observed_routes.pop(key, None) is not None:
                    self.observed_scopes.pop(key, None)
                    self.dirty.add(key)
                    lost += 1
        if lost:
            self.counters["inferred_route_losses"] += lost
            log.info("kernel dropped %d of our routes with %d vanished nexthop objects", lost, deleted)
        if any(self._link_usable(before[i]) for i in vanished):
            # The kernel deletes a nexthop silently only when its device goes down or loses its
            # carrier: one that vanished from a device we believe usable means the link changed
            # after our link read (its notification is on its way).  Read the links again before
            # planning, or we would write a nexthop on a device that just went down.
            self._read_links()

    def _link_usable(self, obj: KNexthop) -> bool:
        """Whether ``obj`` is a plain nexthop on a device the link table says is usable."""
        link = self.links.by_index.get(obj.oif) if not obj.group else None
        return link is not None and link.usable

    def _doomed(self) -> Set[int]:
        """Our objects the kernel deletes itself: plain nexthops on a device that is down or
        without carrier, and groups whose every member is such a nexthop."""
        observed = self.observed_nh
        plain = {i for i, o in observed.items() if not o.group and not self._link_usable(o)}
        if not plain:
            return plain
        return plain | {i for i, o in observed.items() if o.group and all(m in plain for m, _w in o.group)}

    def _spare_doomed(self, ops: List[Op], full: bool, spared: Optional[Set[int]] = None) -> List[Op]:
        """``ops`` without the deletions of what the kernel deletes itself (:meth:`_doomed`):
        our routes on such an object, and the object.  A carrier flap shorter than the kernel's
        own handling of it (linkwatch) leaves them in place: a link read in that window sees
        the carrier off, and deleting the link's routes then made them dark until the next
        read (80-700 ms in the chaos storm); when the carrier loss is real the kernel deletes
        them within milliseconds; deleting them too would only race with it (ENOENT).  A full
        sync spares them once: what is still there, still doomed, at the next full sync is
        deleted (the kernel did not, for whatever reason).  A sliced full sync's diff runs pass
        ``spared``: what the full sync before it spared (their passes are full ones)."""
        if not self.observed_nh:
            return ops
        doomed = self._doomed()
        if full:
            spare = doomed - self._doomed_seen
            self._doomed_seen = doomed
        elif spared is not None:
            spare = doomed - spared
        else:
            spare = doomed
        if not spare:
            return ops
        observed_routes = self.observed_routes
        out = []
        for op in ops:
            if isinstance(op, RouteDel):
                if observed_routes.get(op.key) in spare:
                    continue
            elif isinstance(op, NexthopDel) and op.nexthop.id in spare:
                continue
            out.append(op)
        return out

    def _start_sync(self) -> None:
        """A sliced full sync begins: links and nexthops are read now (a few ms), the routes
        slice by slice (:meth:`_sync_step`)."""
        change = self._read_links()
        if change.changed or change.names_changed:
            self.missed_link_change = change.merged_after(self.missed_link_change)
        self._dump_nexthops()
        self._sync = _FullSync(dump=self.kernel.open_route_dump(self.kcfg.table, self.kcfg.protocol))
        spare, self._spare_routes = self._spare_routes, None
        if spare is not None and not spare and not any(g is spare for g in self._garbage):
            self._sync.routes = spare
        self._touched = self._sync.touched
        log.info("full sync: reading our routes in slices of %d", self.dump_slice)

    def _drop_sync(self) -> None:
        """Abandon the sliced full sync in progress (its dump is read to its end, discarded)."""
        sync, self._sync, self._touched = self._sync, None, None
        if sync is not None and not sync.merged:
            sync.dump.close()

    def _sync_step(self) -> Optional[List[RouteKey]]:
        """One slice of the sliced full sync: while the dump is read, up to :attr:`dump_slice`
        more routes; then, each in a run of its own, :meth:`_merge_dump` and the snapshot of
        the desired keys (a table read in one slice: all in this run); then up to
        :attr:`diff_slice` route keys to diff in this run (returned; None before)."""
        sync = self._sync
        sync.slices += 1
        self.counters["sync_slices"] += 1
        if sync.keys is None and sync.read < 0:  # the dump is over, not merged yet
            self._merge_dump()
            return []
        if not sync.merged:
            routes, scopes, done = sync.dump.read(self.dump_slice)
            sync.routes.update(routes)
            sync.order += routes
            if scopes:
                sync.scopes.update(scopes)
            by_nh = sync.by_nh
            last_nh, last_set = None, set()
            for key, nh_id in routes.items():
                if nh_id != last_nh:
                    last_set = by_nh.get(nh_id)
                    if last_set is None:
                        last_set = by_nh[nh_id] = self._spare_set(nh_id)
                    last_nh = nh_id
                last_set.add(key)
            if not done:
                return None
            if sync.slices > 1:
                sync.read = -1  # merged in the next run
                return None
            self._merge_dump()
            self._snapshot()
        elif sync.keys is None:  # merged in the last run: the keys to diff
            self._snapshot()
            return []
        out: List[RouteKey] = []
        budget = self.diff_slice
        desired = self.fib.routes
        while budget > 0 and sync.segment < len(sync.keys):
            keys = sync.keys[sync.segment]
            # observed keys are only looked up (deletions: those not desired): 8 for one diffed
            scale = 1 if sync.segment == 0 else 8
            start, end = sync.pos, min(sync.pos + budget * scale, len(keys))
            if sync.segment == 0:
                out += keys[start:end]
            else:  # the others were diffed with the desired keys
                out += [k for k in keys[start:end] if k not in desired]
            budget -= -(-(end - start) // scale)
            if end >= len(keys):
                sync.segment += 1
                sync.pos = 0
            else:
                sync.pos = end
        return out

    @property
    def _sync_diffed(self) -> bool:
        sync = self._sync
        return sync is not None and sync.keys is not None and sync.segment >= len(sync.keys)

    def _merge_dump(self) -> None:
        """The sliced dump is over: its view becomes the observed one, except for what the
        engine learnt while it was read, which is newer: a touched key keeps the engine's
        value (present or not), a route the dump showed on a nexthop id that vanished
        meanwhile is gone (the kernel deleted it with its nexthop, silently, whether the dump
        passed it before or after; one written again since is touched).  An interrupted dump
        (NLM_F_DUMP_INTR) is merged the same way: whatever changed behind its position was
        our write or a notification, both touched.  Then the diff of every route, slice by
        slice.  The merged view keeps the dump's own keys: sharing the FIB's key objects
        (:meth:`_share_keys`, as a sync in one go does) is a pass over every key in one run
        (0.1-0.2 s at a million routes), and a dict cannot swap a key object in place."""
        sync = self._sync
        self._touched = None
        routes, scopes, by_nh, touched = sync.routes, sync.scopes, sync.by_nh, sync.touched
        for nh_id in sync.vanished:
            for key in by_nh.pop(nh_id, ()):
                if key not in touched:
                    del routes[key]
                    scopes.pop(key, None)
        current, current_scopes = self.observed_routes, self.observed_scopes
        for key in touched:
            old = routes.pop(key, None)
            if old is not None:
                s = by_nh.get(old)
                if s is not None:
                    s.discard(key)
            scopes.pop(key, None)
            nh_id = current.get(key)
            if nh_id is not None:
                routes[key] = nh_id
                s = by_nh.get(nh_id)
                if s is None:
                    s = by_nh[nh_id] = set()
                s.add(key)
                scope = current_scopes.get(key)
                if scope:
                    scopes[key] = scope
        if sync.dump.interrupted:
            self.counters["dumps_interrupted"] += 1
        sync.read = len(routes)
        # the replaced view is freed a slice at a time (a million keys at once: 0.1 s)
        self._spare_sets = {}  # those this dump did not take: freed
        self._garbage += [self.observed_routes, self._by_nh, self.observed_scopes]
        self._spare_routes = self.observed_routes
        self.observed_routes, self.observed_scopes, self._by_nh = routes, scopes, by_nh
        sync.routes, sync.scopes, sync.by_nh = {}, {}, {}
        # for deletions the keys the dump showed (those also desired are skipped when diffed)
        # and the touched ones (ours, written meanwhile); every desired key: _snapshot()
        sync.rest, sync.order, sync.merged = [sync.order, list(touched)], [], True
        # the doomed objects: as a full plan spares them (_spare_doomed), once
        sync.spared = self._doomed_seen
        self._doomed_seen = self._doomed()

    def _snapshot(self) -> None:
        """The keys a sliced full sync diffs: every desired key (a million-key list made in
        this run, its keys old objects: not walked by this run's young collection, see
        :meth:`run`), then what :meth:`_merge_dump` left.  Every desired key is diffed after
        the merge: those desired now in the diff slices, those that become desired later as
        changes (incremental passes)."""
        sync = self._sync
        sync.keys = [list(self.fib.routes)] + sync.rest
        sync.rest = []
        self._skip_young_collect = True

    def _release(self, budget: int) -> None:
        """Free up to about ``budget`` entries of the replaced observed maps: dicts (of sets)
        emptied from the end."""
        garbage = self._garbage
        while garbage and budget > 0:
            obj = garbage[-1]
            if not obj:
                garbage.pop()
                continue
            if isinstance(obj, set):
                n = min(budget, len(obj))
                pop = obj.pop
                for _ in range(n):
                    pop()
                budget -= n
                continue
            n = min(budget, len(obj))
            popitem = obj.popitem
            for _ in range(n):
                key, value = popitem()
                if isinstance(value, set) and len(value) > 64:
                    garbage.insert(len(garbage) - 1, value)  # a large set: freed in slices too
                    self._spare_sets[key] = value
            budget -= n

    def _spare_set(self, nh_id: int) -> Set[RouteKey]:
        """The set of the routes on ``nh_id`` for a sliced dump: the emptied one of the view it
        replaces (:meth:`_release`) if there is one (it keeps its size), else a new one."""
        spare = self._spare_sets.pop(nh_id, None)
        if spare is None or spare or any(g is spare for g in self._garbage):
            return set()
        return spare

    def _end_sync(self) -> None:
        """Every key of the sliced full sync is diffed."""
        sync, self._sync = self._sync, None
        log.info("full sync done: %d routes of ours in the kernel, read and diffed in %d slices (%d routes changed and "
                 "%d nexthop objects went while the dump was read%s)", sync.read, sync.slices, len(sync.touched),
                 len(sync.vanished), "; the kernel flagged it interrupted" if sync.dump.interrupted else "")
        self.counters["full_syncs"] += 1
        self.counters["sliced_syncs"] += 1
        if self.dumped and self.rib.all_ready:
            self.nhm.end_adoption()  # as after a full plan: whatever was not adopted is stale
            self.fib.route_hints = {}

    def _dump_all(self) -> None:
        """Full read: links (a missed link event is caught here too, and kept for the feeds:
        :meth:`take_missed_link_change`), nexthops, our routes."""
        change = self._read_links()
        if change.changed or change.names_changed:
            self.missed_link_change = change.merged_after(self.missed_link_change)
        self._dump_nexthops()
        scopes: Dict[RouteKey, int] = {}
        routes = self.kernel.dump_routes(self.kcfg.table, self.kcfg.protocol, scopes)
        # before the FIB is built (a start adopting a full table) the keys are shared after it
        self._rekey = len(self.fib.routes) < len(routes) // 2
        self._observe(self._share_keys(routes), self._share_keys(scopes))
        self.dumped = True
        if self.nhm.adopting_groups:
            # adoption by id: the route of a prefix says which of our groups serves its set
            metric = self.kcfg.metric
            waiting = self.nhm.adopting_ids()
            self.fib.route_hints = {(k[1], k[2], k[3]): n for k, n in routes.items()
                                    if n in waiting and k[4] == metric}
            self.nhm.routed_ids = set(self.fib.route_hints.values())

    def _observe(self, routes: Dict[RouteKey, int], scopes: Dict[RouteKey, int]) -> None:
        """Take ``routes`` (key -> nh id) and ``scopes`` as the observed view; index them by id."""
        self.observed_routes = routes
        self.observed_scopes = scopes
        by_nh: Dict[int, Set[RouteKey]] = {}
        for key, nh_id in routes.items():
            s = by_nh.get(nh_id)
            if s is None:
                by_nh[nh_id] = {key}
            else:
                s.add(key)
        self._by_nh = by_nh

    def _share_keys(self, dumped: Dict[RouteKey, int]) -> Dict[RouteKey, int]:
        """``dumped`` keyed by the desired FIB's own RouteKey objects wherever the FIB has the
        route: a dump decodes a new key (and destination bytes) for every route, and kept as
        the observed view that is a second copy of the table's keys, 128 bytes a route at a
        million routes.  Costs one dict pass over the FIB (about 0.1 s a million)."""
        desired = self.fib.routes
        if not desired or not dumped:
            return dumped
        out: Dict[RouteKey, int] = {}
        pop = dumped.pop
        for key in desired:
            nh_id = pop(key, None)
            if nh_id is not None:
                out[key] = nh_id
        out.update(dumped)  # ours in the kernel that the FIB does not want (deleted next)
        return out

    # writes --------------------------------------------------------------------------------
    def _apply(self, ops: List[Op], now: float) -> bool:
        """Write ``ops``; update the observed view for those that succeeded (chunk by chunk,
        while the kernel works on the next chunk), back off the others.  Returns True if
        another planning round may find more to do."""
        book = _Booking()

        def on_chunk(start: int, end: int, refused: List[Refusal]) -> None:
            try:
                self._book(ops, start, end, refused, now, book)
            except Exception:  # noqa: BLE001 - one chunk's booking must not stop the others
                self._book_failed(ops, start, end, refused, now, book)

        try:
            failed = self.kernel.apply(ops, on_chunk=on_chunk)
        except ResyncNeeded as exc:
            log.warning("%s; full resync", exc)
            self.need_full = True
            return False
        if ops and log.isEnabledFor(logging.INFO):
            applied = ", ".join("%d %s" % (n, k) for k, n in Plan(ops=ops).counts().items())
            log.info("applied %s%s", applied, (", %d failed" % len(failed)) if failed else "")
        self._log_refusals(book, now)
        if book.recovered:
            log.info("%d writes succeeded after earlier refusals", book.recovered)
        unblocked = False
        if book.nh_written and self.failures:
            # a route refused for want of its nexthop may go now that the nexthop is written
            for fkey, failure in self.failures.items():
                op = failure.op
                if op.kind is ROUTE_SET and op.nh_id in book.nh_written and fkey not in book.just_failed:
                    failure.next_try = now
                    unblocked = True
        changed = set()
        for nh_id in book.taken:
            entry = self.nhm.by_id.get(nh_id)
            changed |= self.fib.reassign(nh_id)
            self.failures.pop(Target("nh", nh_id), None)
            log.warning("nexthop id %d is held by another program (created after our last dump): "
                        "left alone; ours moves to id %s", nh_id, entry.id if entry is not None else "-")
        self._park_unused(book.refused)
        if book.nh_failed:
            changed |= self.fib.set_failed(book.nh_failed, True)
        if book.nh_recovered:
            changed |= self.fib.set_failed(book.nh_recovered, False)
        self.dirty |= changed
        return bool(book.nh_failed or book.nh_recovered or unblocked or book.taken)

    def _book(self, ops: Sequence[Op], start: int, end: int, refused: List[Refusal], now: float,
              book: "_Booking") -> None:
        """Record the outcome of ``ops[start:end]`` in the observed view and the failures."""
        refused_at = {r.index: r for r in refused}
        observed_nh = self.observed_nh
        routes = self.observed_routes
        scopes = self.observed_scopes
        by_nh = self._by_nh
        failures = self.failures
        last_nh, last_set = None, set()  # routes in a batch mostly share a few nexthop ids
        clean = not refused_at and not failures  # the usual chunk: no refusal, no earlier failure
        touched = self._touched  # a sliced dump is read: what we write is newer than what it shows
        for i in range(start, end):
            op = ops[i]
            cls = type(op)  # dispatch on the type: op.kind, a class attribute, costs a generic lookup
            if not clean:
                refusal = refused_at.get(i)
                if refusal is not None:
                    if cls is NexthopSet and refusal.errno == errno.EEXIST and not op.replace:
                        book.taken.append(op.nexthop.id)  # another program holds that id: ours moves
                        continue
                    book.refused.setdefault((op.kind, refusal.errno, refusal.message), []).append(
                        self._failed(op, refusal.errno, refusal.message, now))
                    book.just_failed.add(op.target)
                    if cls is NexthopSet and not op.nexthop.is_group:
                        book.nh_failed.append(op.nexthop.id)
                    continue
                if failures and failures.pop(op.target, None) is not None:
                    book.recovered += 1
                    log.debug("%s succeeded after retries", op.describe())
            if cls is RouteSet:
                key, nh_id = op.key, op.nh_id
                if touched is not None:
                    touched.add(key)
                old = routes.get(key)
                if old is not None:
                    s = by_nh.get(old)
                    if s is not None:
                        s.discard(key)
                routes[key] = nh_id
                if op.scope:
                    scopes[key] = op.scope
                elif scopes:
                    scopes.pop(key, None)
                if nh_id != last_nh:
                    last_set = by_nh.get(nh_id)
                    if last_set is None:
                        last_set = by_nh[nh_id] = set()
                    last_nh = nh_id
                last_set.add(key)
            elif cls is RouteDel:
                if touched is not None:
                    touched.add(op.key)
                old = routes.pop(op.key, None)
                if scopes:
                    scopes.pop(op.key, None)
                if old is not None and old in by_nh:
                    by_nh[old].discard(op.key)
            elif cls is NexthopSet:
                obj = op.nexthop
                if self.nhm.dormant:
                    self.nhm.dormant.discard(obj.id)
                if not obj.is_group:
                    entry = self.nhm.by_id.get(obj.id)
                    if entry is not None and entry.failed:
                        # accepted now (its failure record may be long gone): back into its groups
                        book.nh_recovered.append(obj.id)
                book.nh_written.add(obj.id)
                observed_nh[obj.id] = obj
                self.nhm.kernel_ids.add(obj.id)
            else:
                obj = op.nexthop
                observed_nh.pop(obj.id, None)
                self.nhm.kernel_ids.discard(obj.id)
                self.nhm.released()
                if touched is not None:
                    self._sync.vanished.add(obj.id)
                for key in by_nh.pop(obj.id, ()):
                    routes.pop(key, None)
                    scopes.pop(key, None)

    def _park_unused(self, refused: Dict[tuple, List[Failure]]) -> None:
        """A refused nexthop or group that no route uses is not retried: its failure record
        goes, and it stays out of the desired state until a route uses it again (it is freed at
        its hold end).  Called with this batch's refusals, and before planning with the older
        failures (their last user may have gone since)."""
        for (kind, _err, _msg), failures in refused.items():
            if kind is not NEXTHOP_SET:
                continue
            for failure in failures:
                nh_id = failure.op.nexthop.id
                if self.nhm.park(nh_id):
                    self.failures.pop(failure.op.target, None)
                    log.info("nexthop id %d is used by no route: its refused write is not retried; it is freed at "
                             "its hold end, or written when a route uses it again", nh_id)

    def _book_failed(self, ops: Sequence[Op], start: int, end: int, refused: List[Refusal], now: float,
                     book: "_Booking") -> None:
        """Booking ``ops[start:end]`` raised (a bug): the chunk was written all the same, and the
        chunks after it still go.  Our view of the kernel is unsure now: a full read follows.
        Each refusal of the chunk not booked yet waits ``retry_max`` (plain code that cannot
        raise), so a booking that keeps failing cannot make the loop spin."""
        self.need_full = True
        self.counters["booking_errors"] += 1
        if not book.booking_error:
            book.booking_error = True
            log.exception("booking the kernel's answers to writes %d..%d failed; reading the kernel again",
                          start, end - 1)
        for refusal in refused:
            op = ops[refusal.index]
            target = op.target
            if target in book.just_failed:
                continue
            prev = self.failures.get(target)
            self.failures[target] = Failure(count=1 if prev is None else prev.count + 1,
                                            next_try=now + self.kcfg.retry_max, error=str(refusal.message), op=op)
            book.just_failed.add(target)

    def _failed(self, op: Op, err: int, msg: str, now: float) -> Failure:
        key = op.target
        prev = self.failures.get(key)
        count = 1 if prev is None else prev.count + 1
        # the exponent is capped: 2 ** 1024 overflows a float (attempt 1,025, some 8.5 h of a
        # refusal at the defaults); past RETRY_DOUBLINGS the delay is retry_max anyway
        delay = min(self.kcfg.retry_initial * (2.0 ** min(count - 1, RETRY_DOUBLINGS)), self.kcfg.retry_max)
        failure = self.failures[key] = Failure(count=count, next_try=now + delay, error=msg, op=op)
        if count > 1:
            self.counters["retries"] += 1
        if log.isEnabledFor(logging.DEBUG):
            log.debug("kernel refused %s: %s (errno %d); attempt %d, retry in %.1fs",
                      _describe(op), msg, err, count, delay)
        return failure

    def _log_refusals(self, book: "_Booking", now: float) -> None:
        """One warning per cause (kind, errno, kernel message), naming up to 3 of the writes:
        a link that flaps under a batch can make a thousand writes fail for one reason."""
        for (kind, err, msg), failures in book.refused.items():
            sample = ", ".join(_describe(f.op) for f in failures[:3])
            more = " and %d more" % (len(failures) - 3) if len(failures) > 3 else ""
            attempt = max(f.count for f in failures)
            delay = min(f.next_try for f in failures) - now
            log.warning("kernel refused %d %s: %s (errno %d): %s%s; attempt %d, retry in %.1fs",
                        len(failures), kind.label, msg, err, sample, more, attempt, delay)

    # shutdown ------------------------------------------------------------------------------
    def flush(self) -> Plan:
        """Delete every route and nexthop of ours (``flush_on_exit``), best effort: a dump that
        fails is replaced by what we know (the last dump and our writes since; for routes also
        every route of the desired FIB: a route delete carries our protocol);
        a batch that fails is retried one operation at a time; whatever could not be deleted is
        logged.  Never raises (it runs on the way out)."""
        problems = []
        for name, read in (("links", self._read_links), ("nexthops", self._dump_nexthops)):
            try:
                read()
            except Exception as exc:  # noqa: BLE001 - best effort on exit
                problems.append("%s dump failed: %s" % (name, exc))
        routes = dict(self.observed_routes)
        try:
            routes = self.kernel.dump_routes(self.kcfg.table, self.kcfg.protocol)
        except Exception as exc:  # noqa: BLE001
            problems.append("routes dump failed: %s" % exc)
            for key, nh_id in self.fib.routes.items():
                routes.setdefault(key, nh_id)
        if problems:
            # the observed view holds every object of ours the last dump showed or we wrote
            # since (booked); an id of our range that it lacks may be another program's: kept
            log.warning("flush: %s; deleting every object of ours we know of", "; ".join(problems))
        result = plan({}, self.observed_nh, {}, routes)
        if self.dry_run or not result.ops:
            return result
        try:
            refused = self.kernel.apply(result.ops)
        except Exception as exc:  # noqa: BLE001
            log.warning("flush: batch failed (%s); deleting one by one", exc)
            refused = []
            for i, op in enumerate(result.ops):
                try:
                    refused += [r._replace(index=i) for r in self.kernel.apply([op])]
                except Exception as exc1:  # noqa: BLE001
                    refused.append(Refusal(i, 0, str(exc1)))
        gone = (errno.ENOENT, errno.ESRCH)  # already deleted (with its nexthop, or never there)
        failed = [r for r in refused if r.errno not in gone]
        for r in failed[:10]:
            log.warning("flush: could not delete %s: %s", _describe(result.ops[r.index]), r.message)
        if failed:
            log.warning("flush: %d of %d deletions failed", len(failed), len(result.ops))
        return result

    # views ---------------------------------------------------------------------------------
    def show_rib(self, match: Optional[Callable[[Prefix], bool]] = None) -> List[dict]:
        """``show rib``: per prefix (those ``match`` accepts: all when None), the source the FIB
        selected and every source's paths, best admin distance first."""
        out = []
        for prefix, entry in self.rib.entries.items():
            if match is not None and not match(prefix):
                continue
            out.append({
                "prefix": format_prefix(prefix),
                "selected": self.fib.selected(prefix),
                "sources": [{"source": s, "distance": self.rib.distance[s],
                             "paths": [[nh.describe() for nh in p.nexthops] for p in paths]}
                            for s, paths in entry],  # best admin distance first
            })
        return out

    def show_fib(self, match: Optional[Callable[[Prefix], bool]] = None) -> List[dict]:
        """``show fib``: our desired routes (those whose prefix ``match`` accepts: all when None)
        with their nexthop id, scope and whether the kernel has them as desired."""
        out = []
        scopes = self.nhm.scopes()
        for key, nh_id in self.fib.routes.items():
            table, family, dst, plen, metric = key
            if match is not None and not match((family, dst, plen)):
                continue
            obs = self.observed_routes.get(key)
            scope = scopes.get(nh_id, RT_SCOPE_UNIVERSE)
            out.append({"prefix": format_prefix((family, dst, plen)), "table": table, "metric": metric,
                        "nhid": nh_id, "scope": SCOPE_NAME.get(scope, str(scope)),
                        "installed": obs == nh_id and self.observed_scopes.get(key, RT_SCOPE_UNIVERSE) == scope})
        return out

    def show_nexthops(self) -> List[dict]:
        out = []
        desired = self.fib.desired_nexthops()
        for entry in list(self.nhm.by_id.values()):
            item = {"id": entry.id, "users": len(entry.users),
                    "installed": entry.id in desired and self.observed_nh.get(entry.id) == desired.get(entry.id)}
            if entry.is_group:
                item["members"] = [{"id": m.id, "weight": w, "active": self.nhm.usable(m)} for m, w in entry.members]
                if entry.resilient:
                    item["resilient"] = attrs.asdict(entry.resilient)
            else:
                family, gateway, dev = entry.key
                item.update({"family": family, "dev": dev, "failed": entry.failed,
                             "gateway": format_address(family, gateway)})
            if entry.unused_since is not None:
                item["unused_since"] = entry.unused_since
            record = self.outside.get(entry.id)
            if record is not None:
                item["outside"] = record.show()
            out.append(item)
        return out

    def show_stats(self) -> dict:
        stats = self.kernel.stats
        return {"state": self.state, "rib_prefixes": len(self.rib), "fib_routes": len(self.fib.routes),
                "installed_routes": len(self.observed_routes), "nexthop_objects": len(self.observed_nh),
                "writes": dict(stats.writes), "kernel_failures": stats.failures,
                "pending_failures": {f.op.describe(): {"attempts": f.count, "error": f.error,
                                                       "next_try": f.next_try}
                                     for f in self.failures.values()},
                "fought_objects": {(format_prefix(i[1:4]) if isinstance(i, tuple) else str(i)): r.show()
                                   for i, r in self.outside.items() if r.warned},
                "last_repair_ms": self.last_repair_ms, "id_range_exhaustions": self.fib.exhaustions,
                "prefixes_waiting_for_id": len(self.fib.starved), **self.counters}


def _route_view(nh_id: int, scope: int) -> str:
    """``nhid 7`` or ``nhid 7 scope link``: a route of ours as a log line shows it."""
    return "nhid %d%s" % (nh_id, " scope %s" % SCOPE_NAME.get(scope, scope) if scope else "")


def _describe(op: Op) -> str:
    """``op.describe()``; logging never raises (a malformed operation is shown by repr)."""
    try:
        return op.describe()
    except Exception:  # noqa: BLE001
        return repr(op)


__all__ = ["Engine", "KernelConfig", "Failure", "OutsideWrites"]
