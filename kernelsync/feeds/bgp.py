"""BGP: Adj-RIB-In, best path and multipath, into the RIB.  Pure: no I/O; time is passed in.

* **Adj-RIB-In** keyed by (peer, prefix, path id): ADD-PATH (RFC 7911) paths of one peer are
  distinct; without ADD-PATH (path id 0) a new announcement replaces the old one.  Paths whose
  AS path holds our own AS (the session's local AS, or one of ``local_asns``) are dropped
  (RFC 4271 9.1.2: the loop check ExaBGP leaves to us).
* **Peers**: ExaBGP sends no withdraws when a session goes down, so ``down`` flushes the peer's
  paths, or, with ``graceful_restart`` > 0 (RFC 4724 receiving side), marks them *stale*: they
  stay in use until the peer's end-of-RIB for their family sweeps what was not announced
  again, or until the time runs out.  A route-refresh ``begin``/``end`` window (RFC 7313) is
  the same mark and sweep, per family.  ExaBGP stopping (its ``down`` reason says "shutting
  down") or its stream lost (relay gone) is our own speaker restarting (RFC 4724's restarting
  side): the FIB keeps forwarding, the peers' paths stay stale for ``restart_hold_time``.
* **Decision** (RFC 4271 9.1.2.2), among paths whose next hop resolves: highest LOCAL_PREF
  (100 when absent), shortest AS path, lowest ORIGIN, lowest MED among paths from the same
  neighbour AS, eBGP over iBGP.  The paths equal on all of these form the ECMP set; their
  resolved nexthops become one RIB path, so one nexthop group in the kernel.  The set goes to
  the RIB as source ``ebgp`` (admin distance 20) or ``ibgp`` (200).
* **Readiness**: the BGP sources count as ready (deletions may start, kernel routes of ours
  that BGP did not give are swept) once ``startup_wait`` has passed and no peer is waiting
  for an end-of-RIB or the end of a refresh.  After a restart of kernelsync the peers are
  unknown until they answer the route-refresh it asks for when an ExaBGP stream opens, so the
  wait lasts until ``restart_wait`` after a stream opened (a relay may connect late), or, with
  no stream at all, ``restart_hold_time`` after start (the routes in the kernel are held as
  long as stale paths would be); a peer first heard from then is waiting for that answer.
* **The wait follows progress** (as a graceful-restart selection deferral, RFC 4724 4.1 and
  FRR's ``select-defer-time``): a wait for a family's end-of-RIB (or refresh end) gives up
  only after ``eor_timeout`` seconds with nothing heard from that peer in that family
  (UPDATEs, end-of-RIB, refresh markers), or ``eor_max_wait`` seconds after it began,
  whichever is first.  A peer sending a large table slowly (ExaBGP passes one-prefix UPDATEs
  at about 5,000/s) is therefore never swept half-way; a silent one is given up after
  ``eor_timeout``.
* **Prefix-independent convergence when a peer comes back**: while a peer waits for its
  end-of-RIB (or a refresh end), its source holds the growth of ECMP sets in the RIB
  (:meth:`Rib.hold_growth`): a prefix whose set only gains the returning peer's next hop keeps
  its smaller group until every prefix of that group has it, so the group grows in place
  instead of each route moving (:class:`kernelsync.core.fib.FibBuilder`).  The hold ends when
  no peer of that source waits any more (at most ``eor_max_wait`` after the wait began).
"""
from __future__ import annotations

import ipaddress
import logging
from typing import Dict, Iterable, List, Optional, Set, Tuple

import attrs

from ..core.model import NexthopSpec, Path, Prefix
from ..core.rib import Rib
from .exabgp import FAMILIES, BgpAttrs, EndOfRib, Neighbor, PeerState, Refresh, Shutdown, Update
from .resolve import Resolver, spec_order

log = logging.getLogger("kernelsync.bgp")

EBGP, IBGP = "ebgp", "ibgp"
PathKey = Tuple[Prefix, int]  # (prefix, path id) within one peer
_UNSEEN = object()


@attrs.frozen
class BgpSettings:
    """``[bgp]`` of the config.  Times in seconds."""

    ebgp_distance: int = 20
    ibgp_distance: int = 200
    graceful_restart: float = 0.0
    restart_hold_time: float = 60.0
    startup_wait: float = 2.0
    restart_wait: float = 5.0
    eor_timeout: float = 10.0  # silence (nothing of the family from the peer) that ends a wait
    eor_max_wait: float = 1200.0  # upper bound of one wait (FRR's select-defer-time, 360 s there): a
    # million one-prefix UPDATEs take ExaBGP 6-10 min on a 2-core host
    local_asns: Tuple[int, ...] = ()
    families: Tuple[str, ...] = ("ipv4 unicast", "ipv6 unicast")
    resolve_table: int = 254
    resolve_via_default: bool = False


class BgpPath:
    """One path in the Adj-RIB-In.  ``nexthop`` = (family, packed); ``link_local``: packed
    ``fe80::`` next hop sent beside a global one; ``stale``: kept across a restart or refresh."""

    __slots__ = ("peer", "path_id", "nexthop", "link_local", "attrs", "stale")

    def __init__(self, peer: "Peer", path_id: int, nexthop: Tuple[int, bytes], link_local: Optional[bytes],
                 attrs_: BgpAttrs) -> None:
        self.peer = peer
        self.path_id = path_id
        self.nexthop = nexthop
        self.link_local = link_local
        self.attrs = attrs_
        self.stale = False


class Peer:
    """A BGP neighbour as ExaBGP reports it.  ``pending``: family -> time (s) we began waiting
    for its end-of-RIB (or refresh end); ``heard``: family -> time (s) of the last message of
    that family from the peer (the progress that extends a wait); ``stale_until``: when stale
    paths are flushed."""

    __slots__ = ("address", "neighbor", "state", "ebgp", "local_packed", "sort_key", "paths", "pending",
                 "heard", "stale_until", "stale_count", "channel", "counters")

    def __init__(self, neighbor: Neighbor, channel: object) -> None:
        self.address = neighbor.peer
        self.neighbor = neighbor
        self.state = "idle"
        self.ebgp = neighbor.ebgp
        try:
            self.local_packed: Optional[bytes] = ipaddress.ip_address(neighbor.local).packed
        except ValueError:
            self.local_packed = None
        try:
            addr = ipaddress.ip_address(neighbor.peer)
            self.sort_key = (addr.version, int(addr))
        except ValueError:
            self.sort_key = (9, 0)
        self.paths: Dict[PathKey, BgpPath] = {}
        self.pending: Dict[str, float] = {}
        self.heard: Dict[int, float] = {}  # address family (AF_INET/AF_INET6) -> time
        self.stale_until: Optional[float] = None
        self.stale_count = 0  # paths marked stale: an end-of-RIB with none left scans nothing
        self.channel = channel
        self.counters = {"announced": 0, "withdrawn": 0, "looped": 0}


def multipath(paths: List[BgpPath]) -> List[BgpPath]:
    """RFC 4271 9.1.2.2 a-d plus eBGP over iBGP: the paths equal to the best on every step.

    Steps are eliminations, so MED (compared only among paths from the same neighbour AS) can
    never remove a path that another AS's path beat earlier.  Shape: non-empty list in, non-empty
    sublist out, order kept."""
    if len(paths) == 1:
        return paths
    best_lp = max(100 if p.attrs.local_pref is None else p.attrs.local_pref for p in paths)
    paths = [p for p in paths if (100 if p.attrs.local_pref is None else p.attrs.local_pref) == best_lp]
    shortest = min(p.attrs.as_path_len for p in paths)
    paths = [p for p in paths if p.attrs.as_path_len == shortest]
    origin = min(p.attrs.origin for p in paths)
    paths = [p for p in paths if p.attrs.origin == origin]
    lowest_med: Dict[object, int] = {}
    for p in paths:
        nas = p.attrs.neighbour_as
        med = p.attrs.med or 0
        if med < lowest_med.get(nas, 1 << 33):
            lowest_med[nas] = med
    paths = [p for p in paths if (p.attrs.med or 0) == lowest_med[p.attrs.neighbour_as]]
    if any(p.peer.ebgp for p in paths) and not all(p.peer.ebgp for p in paths):
        paths = [p for p in paths if p.peer.ebgp]
    return paths


class BgpRib:
    """Adj-RIB-In of every peer, the decision, and its result in ``rib`` (sources ebgp/ibgp).

    Events go in through :meth:`handle`; :meth:`commit` runs the decision for the prefixes
    they touched and updates the RIB.  ``resolver`` turns next hops into kernel nexthops."""

    def __init__(self, rib: Rib, resolver: Resolver, settings: BgpSettings, now: float,
                 restart: bool = False) -> None:
        self.rib = rib
        self.resolver = resolver
        self.settings = settings
        self.started = now
        self.restart = restart
        self.wait = max(settings.startup_wait, settings.restart_wait) if restart else settings.startup_wait
        self.peers: Dict[str, Peer] = {}
        self.by_prefix: Dict[Prefix, Dict[Tuple[str, int], BgpPath]] = {}
        self.dirty: Dict[Prefix, None] = {}  # an insertion-ordered set, as Rib.dirty
        self.selected: Dict[Prefix, Tuple[str, Tuple[BgpPath, ...]]] = {}  # prefix -> (source, ECMP set)
        self.ready = False
        self.stream_at: Optional[float] = None  # when an ExaBGP stream last opened
        self._waited = False  # a tick has seen the start-up wait over
        self._holds_changed = False  # a peer's wait began or ended: the RIB's growth holds follow
        self._res_version = -1
        self._resolved: Dict[tuple, Optional[Tuple[NexthopSpec, ...]]] = {}
        self._nh_users: Dict[tuple, Set[Prefix]] = {}
        self._path_cache: Dict[Tuple[NexthopSpec, ...], Tuple[Path, ...]] = {}
        self.counters = {"updates": 0, "announced": 0, "withdrawn": 0, "looped": 0, "eor": 0,
                         "refresh_windows": 0, "eor_timeouts": 0, "stale_swept": 0, "peer_flushes": 0, "unresolved": 0}
        rib.add_source(EBGP, settings.ebgp_distance)
        rib.add_source(IBGP, settings.ibgp_distance)

    # events --------------------------------------------------------------------------------
    def handle(self, event, now: float, channel: object = None) -> None:
        """Apply one parsed ExaBGP event (from :class:`kernelsync.feeds.exabgp.Parser`)."""
        if isinstance(event, Update):
            self._update(event, now, channel)
        elif isinstance(event, PeerState):
            self._state(event, now, channel)
        elif isinstance(event, EndOfRib):
            self.counters["eor"] += 1
            peer = self._heard_from(event.neighbor, now, channel)
            self._heard(peer, event.family, now)
            self._end_window(peer, event.family, "end-of-RIB")
        elif isinstance(event, Refresh):
            peer = self._heard_from(event.neighbor, now, channel)
            self._heard(peer, event.family, now)
            if event.subtype == "begin":
                self.counters["refresh_windows"] += 1
                self._mark_stale(peer, event.family)
                peer.pending[event.family] = now
                self._holds_changed = True
            else:
                self._end_window(peer, event.family, "route-refresh end")
        elif isinstance(event, Shutdown):
            log.info("ExaBGP is shutting down")
        if self._holds_changed and not self.dirty:
            self._growth_holds()

    @staticmethod
    def _heard(peer: Peer, family: str, now: float) -> None:
        af = FAMILIES.get(family)
        if af is not None:
            peer.heard[af] = now

    def _heard_from(self, neighbor: Neighbor, now: float, channel: object) -> Peer:
        """The peer of a routing message (UPDATE, end-of-RIB, refresh): its session is up."""
        peer = self._peer(neighbor, now, channel)
        peer.state = "up"
        return peer

    def _peer(self, neighbor: Neighbor, now: float, channel: object) -> Peer:
        peer = self.peers.get(neighbor.peer)
        if peer is None:
            peer = self.peers[neighbor.peer] = Peer(neighbor, channel)
            peer.state = "up"  # heard from it: up (a respawned process hears no state message)
            if self.restart and not self.ready:
                # we asked every peer for a route-refresh of each family: its answer (begin,
                # the paths, end) is the Adj-RIB-In we lost; wait for it as for an end-of-RIB
                peer.pending = {f: now for f in self.settings.families}
                self._holds_changed = True
                log.info("peer %s (AS %d) known from its messages; waiting for its route-refresh of %s",
                         neighbor.peer, neighbor.peer_as, ", ".join(peer.pending))
            else:
                log.info("peer %s (AS %d) known from its messages", neighbor.peer, neighbor.peer_as)
        elif peer.neighbor is not neighbor and peer.neighbor != neighbor:
            peer.neighbor = neighbor
            peer.ebgp = neighbor.ebgp
        if channel is not None:
            peer.channel = channel
        return peer

    def _state(self, event: PeerState, now: float, channel: object) -> None:
        peer = self._peer(event.neighbor, now, channel)
        if event.state == "up":
            peer.state = "up"
            peer.pending = {f: now for f in self.settings.families}
            self._holds_changed = True
            log.info("peer %s up (AS %d, %s); waiting for end-of-RIB for %s", peer.address,
                     event.neighbor.peer_as, "eBGP" if peer.ebgp else "iBGP", ", ".join(peer.pending))
        elif event.state == "down":
            was = peer.state
            peer.state = "down"
            if was != "down" or peer.paths:
                if "shutting down" in event.reason:  # ExaBGP itself stops: a local restart
                    hold = max(self.settings.restart_hold_time, self.settings.graceful_restart)
                else:
                    hold = self.settings.graceful_restart
                self._down(peer, now, hold, "session down (%s)" % (event.reason or "no reason given"))

    def _down(self, peer: Peer, now: float, hold: float, why: str) -> None:
        if peer.pending:
            peer.pending.clear()
            self._holds_changed = True
        if not peer.paths:
            log.info("peer %s: %s", peer.address, why)
            return
        if hold > 0:
            self._mark_stale(peer, None)
            peer.stale_until = now + hold
            log.info("peer %s: %s; its %d paths are kept as stale for %.0f s", peer.address, why,
                     len(peer.paths), hold)
        else:
            log.info("peer %s: %s; flushing its %d paths", peer.address, why, len(peer.paths))
            self.counters["peer_flushes"] += 1
            self._remove(peer, list(peer.paths))

    def stream_opened(self, now: float) -> None:
        """An ExaBGP stream opened (kernelsync asked it for a route-refresh): after a restart,
        readiness waits ``restart_wait`` from here for the peers to answer."""
        self.stream_at = now

    def channel_closed(self, channel: object, now: float) -> None:
        """The ExaBGP stream ``channel`` ended (relay lost or ExaBGP restarting): its peers'
        paths are kept stale for ``restart_hold_time`` (at least ``graceful_restart``)."""
        hold = max(self.settings.restart_hold_time, self.settings.graceful_restart)
        for peer in self.peers.values():
            if peer.channel is channel and peer.state != "down":
                peer.state = "down"
                self._down(peer, now, hold, "ExaBGP stream closed")
        if self._holds_changed and not self.dirty:
            self._growth_holds()

    def lines_lost(self, channel: object, now: float, affected: Optional[Dict[str, Set[str]]] = None) -> None:
        """Lines of ``channel`` were dropped: the paths they may have changed are stale for
        ``restart_hold_time`` (at least ``graceful_restart``), those of ``affected`` (peer
        address -> families of the dropped UPDATEs) or, when other lines were dropped too
        (None: a peer's ``down`` may be among them), every path of the channel's peers.  The
        route-refresh asked meanwhile re-sends them: a peer with enhanced route-refresh (RFC
        7313) sweeps the rest at its refresh end; with plain route-refresh (RFC 2918, no end
        marker) what was not re-sent (a lost withdraw) is flushed when the time is over, and so
        are the paths of a peer that does not answer (down)."""
        hold = max(self.settings.restart_hold_time, self.settings.graceful_restart)
        until = now + hold
        for peer in self.peers.values():
            if peer.channel is not channel or not peer.paths:
                continue
            if affected is None:
                self._mark_stale(peer, None)
            elif peer.address in affected:
                for family in affected[peer.address]:
                    self._mark_stale(peer, family)
            else:
                continue
            peer.stale_until = until if peer.stale_until is None else max(peer.stale_until, until)

    def _update(self, event: Update, now: float, channel: object) -> None:
        peer = self._peer(event.neighbor, now, channel)
        if peer.state != "up":
            peer.state = "up"  # routes from it: its session is up (a new stream after ours was lost)
        self.counters["updates"] += 1
        heard = peer.heard  # progress of the families in this UPDATE (first and last NLRI:
        # ExaBGP lists NLRIs family by family, and there are two unicast families)
        if event.withdraw:
            heard[event.withdraw[0][0][0]] = now
            heard[event.withdraw[-1][0][0]] = now
            self._remove(peer, event.withdraw)
            self.counters["withdrawn"] += len(event.withdraw)
            peer.counters["withdrawn"] += len(event.withdraw)
        if not event.announce:
            return
        heard[event.announce[0][0][0]] = now
        heard[event.announce[-1][0][0]] = now
        attrs_ = event.attrs
        as_path = attrs_.as_path
        local_asns = self.settings.local_asns
        if event.neighbor.local_as in as_path or (local_asns and any(asn in as_path for asn in local_asns)):
            self.counters["looped"] += len(event.announce)
            peer.counters["looped"] += len(event.announce)
            # treat as withdraw: an earlier path must not stay
            self._remove(peer, [(a.prefix, a.path_id) for a in event.announce])
            return
        paths = peer.paths
        by_prefix = self.by_prefix
        dirty = self.dirty
        address = peer.address
        self.counters["announced"] += len(event.announce)
        peer.counters["announced"] += len(event.announce)
        entry_key = (address, 0)  # (peer, path id) in by_prefix; one path id mostly
        for prefix, path_id, nexthop, link_local in event.announce:
            path = BgpPath(peer, path_id, nexthop, link_local, attrs_)
            key = (prefix, path_id)
            old = paths.get(key)
            if old is not None:
                if old.stale:
                    peer.stale_count -= 1
                self._unlink(address, prefix, path_id, old)
            paths[key] = path
            if entry_key[1] != path_id:
                entry_key = (address, path_id)
            entry = by_prefix.get(prefix)
            if entry is None:
                by_prefix[prefix] = {entry_key: path}
            else:
                entry[entry_key] = path
            dirty[prefix] = None

    def _unlink(self, address: str, prefix: Prefix, path_id: int, path: BgpPath) -> None:
        entry = self.by_prefix.get(prefix)
        if entry is not None and entry.get((address, path_id)) is path:
            del entry[(address, path_id)]
            if not entry:
                del self.by_prefix[prefix]

    def _remove(self, peer: Peer, keys: Iterable[PathKey]) -> None:
        for key in keys:
            path = peer.paths.pop(key, None)
            if path is not None:
                if path.stale:
                    peer.stale_count -= 1
                self._unlink(peer.address, key[0], key[1], path)
                self.dirty[key[0]] = None

    def _mark_stale(self, peer: Peer, family: Optional[str]) -> None:
        af = FAMILIES.get(family) if family else None
        marked = 0
        for (prefix, _), path in peer.paths.items():
            if (af is None or prefix[0] == af) and not path.stale:
                path.stale = True
                marked += 1
        peer.stale_count += marked

    def _end_window(self, peer: Peer, family: str, why: str) -> None:
        """End-of-RIB or refresh end: sweep the peer's paths of ``family`` still stale."""
        if peer.pending.pop(family, None) is not None:
            self._holds_changed = True
        af = FAMILIES.get(family)
        # none stale (a peer back without graceful restart): no scan of its whole table
        stale = [k for k, p in peer.paths.items() if p.stale and k[0][0] == af] if peer.stale_count else []
        if stale:
            self.counters["stale_swept"] += len(stale)
            log.info("peer %s %s %s: sweeping %d stale paths", peer.address, family, why, len(stale))
            self._remove(peer, stale)
        if not peer.stale_count:
            peer.stale_until = None

    # timers --------------------------------------------------------------------------------
    def wait_ends(self, peer: Peer, family: str) -> float:
        """When the wait of ``peer`` for ``family``'s end-of-RIB (or refresh end) gives up (s):
        ``eor_timeout`` after the later of its start and the last message of that family from
        the peer, at most ``eor_max_wait`` after its start."""
        began = peer.pending[family]
        heard = peer.heard.get(FAMILIES.get(family), began)
        return min(began + self.settings.eor_max_wait, max(began, heard) + self.settings.eor_timeout)

    def deadline(self) -> Optional[float]:
        """When :meth:`tick` has work next (None: only after events).  Once the start-up wait
        is over, readiness waits for the peers' end-of-RIBs (their timeouts are in here) and is
        due again only when none is pending: never a time in the past meanwhile."""
        times = [self.wait_ends(peer, f) for peer in self.peers.values() for f in peer.pending]
        times += [peer.stale_until for peer in self.peers.values() if peer.stale_until is not None]
        if not self.ready and (not self._waited or not any(peer.pending for peer in self.peers.values())):
            times.append(self.wait_over_at())
        return min(times) if times else None

    def wait_over_at(self) -> float:
        """When the start-up wait is over (s): ``startup_wait`` after start; after a restart
        also ``restart_wait`` after an ExaBGP stream opened, or, while none has,
        ``restart_hold_time`` after start."""
        due = self.started + self.wait
        if self.restart:
            if self.stream_at is not None:
                due = max(due, self.stream_at + self.settings.restart_wait)
            else:
                due = max(due, self.started + self.settings.restart_hold_time)
        return due

    def tick(self, now: float) -> None:
        """Expire waits: end-of-RIB timeouts, stale paths past their time; readiness."""
        for peer in self.peers.values():
            for family in list(peer.pending):
                if self.wait_ends(peer, family) <= now:
                    began = peer.pending[family]
                    if now - began >= self.settings.eor_max_wait:
                        why = "within %.0f s (eor_max_wait)" % self.settings.eor_max_wait
                    else:
                        why = "and nothing of that family for %.0f s (eor_timeout; waited %.0f s)" % (
                            self.settings.eor_timeout, now - began)
                    log.warning("peer %s: no end-of-RIB for %s %s; sweeping its stale paths",
                                peer.address, family, why)
                    self.counters["eor_timeouts"] += 1
                    self._end_window(peer, family, "end-of-RIB timeout")
            if peer.stale_until is not None and peer.stale_until <= now and peer.state == "up" and peer.pending:
                # back and re-sending (RFC 4724 4.2: the stale routes are kept until its
                # end-of-RIB): the end of that wait sweeps what it did not send again, not this
                # timer, which would cut into a full table's re-learn (minutes at a million)
                peer.stale_until = None
            if peer.stale_until is not None and peer.stale_until <= now:
                stale = [k for k, p in peer.paths.items() if p.stale]
                log.info("peer %s: stale time over; flushing %d stale paths", peer.address, len(stale))
                self.counters["stale_swept"] += len(stale)
                self._remove(peer, stale)
                peer.stale_until = None
        if not self._waited and now >= self.wait_over_at():
            self._waited = True
        if not self.ready and self._waited and not any(peer.pending for peer in self.peers.values()):
            self.ready = True
            self.rib.set_ready(EBGP)
            self.rib.set_ready(IBGP)
            log.info("BGP initial state complete (%d peers, %d prefixes): stale kernel routes may be swept",
                     len(self.peers), len(self.by_prefix))
        if self._holds_changed and not self.dirty:
            self._growth_holds()

    def _growth_holds(self) -> None:
        """Make the RIB's growth holds (:meth:`Rib.hold_growth`, PIC when a peer comes back)
        follow the peers' waits: a source (``ebgp``, ``ibgp``) is held while any peer of it
        waits for an end-of-RIB or a refresh end, until at most ``eor_max_wait`` after the
        latest of those waits began; released when none waits.  Called only when every change
        heard so far is in the RIB (nothing left to :meth:`commit`): a release at a peer's
        end-of-RIB then finds every path the peer sent before it applied with it, so the groups
        they complete grow in place."""
        self._holds_changed = False
        ends: Dict[str, float] = {}
        for peer in self.peers.values():
            if peer.pending:
                source = EBGP if peer.ebgp else IBGP
                end = max(peer.pending.values()) + self.settings.eor_max_wait
                ends[source] = max(end, ends.get(source, end))
        for source in (EBGP, IBGP):
            if source in ends:
                self.rib.hold_growth(source, ends[source])
            else:
                self.rib.release_growth(source)

    # decision ------------------------------------------------------------------------------
    def _resolve(self, family: int, path: BgpPath) -> Optional[Tuple[NexthopSpec, ...]]:
        key = (family, path.nexthop, path.link_local, path.peer.local_packed)
        try:
            return self._resolved[key]
        except KeyError:
            pass
        found = self._resolved[key] = self.resolver.resolve(family, path.nexthop, path.link_local,
                                                            path.peer.local_packed)
        return found

    def resolver_changed(self) -> bool:
        """The resolver changed since the last :meth:`commit` (every next hop is re-resolved)."""
        return self.resolver.version != self._res_version

    def pending(self) -> bool:
        """Has :meth:`commit` work: touched prefixes, or a resolver that changed since."""
        return bool(self.dirty) or self.resolver_changed()

    def commit(self) -> int:
        """Run the decision for every prefix touched since the last commit (and every prefix
        whose next hop resolves differently now); write the result into the RIB.  Returns the
        number of prefixes decided."""
        if self.resolver.version != self._res_version:
            self._re_resolve()
        dirty, self.dirty = self.dirty, {}
        rib = self.rib
        by_prefix = self.by_prefix
        selected = self.selected
        resolve = self._resolve
        resolved = self._resolved
        nh_users = self._nh_users
        path_cache = self._path_cache
        unresolved = 0
        # the next hop of the last one-path prefix without a link-local next hop, and its lookups
        last_family = last_nexthop = last_peer = last_users = last_specs = None
        last_key = last_paths = None  # the last RIB paths and their nexthops
        for prefix in dirty:
            entry = by_prefix.get(prefix)
            best: Optional[Tuple[BgpPath, ...]] = None
            if entry:
                family = prefix[0]
                if len(entry) == 1:  # one path, the usual case: nothing to decide
                    (path,) = entry.values()
                    if (path.nexthop is last_nexthop and path.peer is last_peer and path.link_local is None
                            and family == last_family):  # as the previous prefix: a burst shares a few
                        last_users.add(prefix)
                        nexthops = last_specs
                    else:
                        key = (family, path.nexthop, path.link_local, path.peer.local_packed)
                        users = nh_users.get(key)
                        if users is None:
                            users = nh_users[key] = {prefix}
                        else:
                            users.add(prefix)
                        nexthops = resolved.get(key, _UNSEEN)
                        if nexthops is _UNSEEN:
                            nexthops = resolve(family, path)
                        if path.link_local is None:
                            last_family, last_nexthop, last_peer = family, path.nexthop, path.peer
                            last_users, last_specs = users, nexthops
                    if nexthops:
                        best = (path,)
                    else:
                        unresolved += 1
                else:
                    usable: List[BgpPath] = []
                    specs_of: Dict[int, Tuple[NexthopSpec, ...]] = {}
                    for path in entry.values():
                        key = (family, path.nexthop, path.link_local, path.peer.local_packed)
                        users = nh_users.get(key)
                        if users is None:
                            nh_users[key] = {prefix}
                        else:
                            users.add(prefix)
                        specs = resolve(family, path)
                        if specs:
                            usable.append(path)
                            specs_of[id(path)] = specs
                        else:
                            unresolved += 1
                    if usable:
                        best = tuple(multipath(usable))
                        if len(best) == 1:
                            nexthops = specs_of[id(best[0])]
                        else:
                            nexthops = tuple(sorted({s for p in best for s in specs_of[id(p)]}, key=spec_order))
            old = selected.get(prefix)
            if best is None:
                if old is not None:
                    del selected[prefix]
                    rib.withdraw(old[0], prefix)
                continue
            source = EBGP if best[0].peer.ebgp else IBGP
            if nexthops is not last_key:
                paths = path_cache.get(nexthops)
                if paths is None:
                    paths = path_cache[nexthops] = (Path(nexthops),)
                last_key, last_paths = nexthops, paths
            paths = last_paths
            selected[prefix] = (source, best)
            if old is not None and old[0] != source:
                rib.withdraw(old[0], prefix)
            rib.update(source, prefix, paths)
        self.counters["unresolved"] = unresolved
        if len(path_cache) > 65536:
            path_cache.clear()
        if self._holds_changed:
            self._growth_holds()
        return len(dirty)

    def _re_resolve(self) -> None:
        """The resolver changed: recompute every next hop in use; the prefixes using a next hop
        that resolves differently are decided again (and register themselves anew)."""
        self._res_version = self.resolver.version
        old, self._resolved = self._resolved, {}
        for key in list(self._nh_users):
            family, nexthop, link_local, local = key
            new = self._resolved[key] = self.resolver.resolve(family, nexthop, link_local, local)
            if key not in old or old[key] != new:
                self.dirty.update(dict.fromkeys(self._nh_users.pop(key)))

    # views ---------------------------------------------------------------------------------
    def show_peers(self) -> List[dict]:
        return [{"peer": p.address, "local": p.neighbor.local, "peer_as": p.neighbor.peer_as,
                 "local_as": p.neighbor.local_as, "type": "ebgp" if p.ebgp else "ibgp", "state": p.state,
                 "paths": len(p.paths), "stale": p.stale_count,
                 "waiting_for": sorted(p.pending), **p.counters}
                for p in sorted(self.peers.values(), key=lambda p: p.sort_key)]


__all__ = ["BgpRib", "BgpSettings", "BgpPath", "Peer", "multipath", "EBGP", "IBGP"]
