"""RIB -> desired FIB.  Pure: no I/O; time is passed in.

For each prefix the builder keeps the nexthop entry (nexthop or group, from
:class:`~kernelsync.core.nhm.NexthopManager`) of every source that offers it, best admin distance
first.  The desired route points at the first of those that can be in the kernel now (a
nexthop on a usable link, or a group with at least one active member): a route whose best
source has lost every nexthop falls back to the next-best source, or is removed.

Work is incremental: a RIB change touches its prefixes; a link change touches only the
prefixes whose entry went from usable to unusable or back (a group that keeps one active
member keeps its routes: only the group object changes).

Prefix-independent convergence (PIC) both ways: when every prefix of a group loses members in
one sync, the group is shrunk in place (:meth:`FibBuilder._shrink_in_place`); when a peer comes
back and re-announces its paths prefix by prefix over many syncs, the growth of each prefix's
ECMP set is deferred while its source re-converges (:meth:`Rib.hold_growth`), until the whole
group can grow in place at once (:meth:`FibBuilder._defer`).

Output: :attr:`FibBuilder.routes`, ``RouteKey -> nexthop id``, and
:meth:`FibBuilder.desired_nexthops`, ``id -> KNexthop``.
"""
from __future__ import annotations

import logging
from typing import Dict, Iterable, Optional, Set, Tuple

from .links import LinkChange
from .model import KNexthop, Prefix, RouteKey, format_prefix
from .nhm import Entry, IdRangeExhausted, NexthopManager
from .rib import Rib

log = logging.getLogger(__name__)
_MISSING = object()
_SAME = object()  # _grows: the new ECMP set is the content of the entry the route uses now
Growth = Tuple[str, Entry, object]  # (source, entry the route uses now, set key it grows to)


class _Waiting:
    """The deferred prefixes of one group (:meth:`FibBuilder._defer`): ``prefixes``, prefix ->
    its growth; ``counts``, set key it grows to -> prefixes; ``sources``, source -> prefixes."""

    __slots__ = ("prefixes", "counts", "sources")

    def __init__(self) -> None:
        self.prefixes: Dict[Prefix, Growth] = {}
        self.counts: Dict[object, int] = {}
        self.sources: Dict[str, int] = {}


def _count_out(counts: Dict, key, n: int) -> None:
    """``counts[key] -= n``, the key gone at 0."""
    left = counts[key] - n
    if left:
        counts[key] = left
    else:
        del counts[key]


class FibBuilder:
    """Keeps the desired FIB in step with the RIB and the link table.

    ``table``: kernel table our routes go to; ``metric``: their priority (RTA_PRIORITY)."""

    def __init__(self, rib: Rib, nhm: NexthopManager, table: int, metric: int) -> None:
        self.rib = rib
        self.nhm = nhm
        self.table = table
        self.metric = metric
        self.routes: Dict[RouteKey, int] = {}
        self.errors: Dict[Tuple[Prefix, str], str] = {}
        self._cands: Dict[Prefix, Tuple[Tuple[str, Entry], ...]] = {}
        self.starved: Dict[Prefix, None] = {}  # prefixes whose set found no free nexthop id
        self.exhaustions = 0  # times the id range ran out (counted once until it recovers)
        self._exhausted = False
        self._starved_frees = 0
        # prefix -> id of one of our groups awaiting adoption that the kernel's route points at
        # (set by the engine from its route dump during the start's adoption)
        self.route_hints: Dict[Prefix, int] = {}
        # the same hints, kept after the vote for the prefixes whose route may point at a twin or
        # a group of one (NexthopManager.adopt_twin): consumed by sync_rib
        self._twin_hints: Dict[Prefix, int] = {}
        # growth deferral (PIC when a peer comes back, see _defer): group -> its deferred prefixes
        self._waiting: Dict[Entry, _Waiting] = {}
        self._deferred_sources: Dict[str, int] = {}  # source -> prefixes deferred
        self._recheck: Dict[Prefix, None] = {}  # deferred prefixes whose entry changed (links): again

    def route_key(self, prefix: Prefix) -> RouteKey:
        return (self.table, prefix[0], prefix[1], prefix[2], self.metric)

    def sync_rib(self, now: float, collect: bool = True) -> Dict[RouteKey, None]:
        """Apply the RIB's pending changes.  Returns the route keys whose desired value may
        have changed, in the RIB's order (an insertion-ordered set, as :attr:`Rib.dirty`; empty
        when ``collect`` is false: a full diff follows anyway).

        This is the hot path of a full load (200,000 prefixes): locals instead of attribute
        lookups, one nexthop-manager lookup per distinct path set, and the installable id of
        each entry computed once per call (links do not change during it)."""
        changed: Dict[RouteKey, None] = {}
        rib_entries = self.rib.entries
        entries_for = self.nhm.entries_for
        installed_id = self.nhm.installed_id
        unuse = self.nhm.unuse
        cands_map = self._cands
        routes = self.routes
        errors = self.errors
        table, metric = self.table, self.metric
        installable: Dict[int, Optional[int]] = {}  # id(entry) -> installed id, this call only
        # id(rib entry) -> (family, candidates) for single-source prefixes, this call only: the
        # RIB shares one entry among the prefixes of a source on one paths tuple
        single: Dict[int, Tuple[int, Tuple[Tuple[str, Entry], ...]]] = {}
        dirty = self.rib.take_dirty()
        starved = self.starved
        if starved and (not collect or self._starved_frees != self.nhm.frees):
            # ids were freed (or a full sync): the prefixes that found none try again first
            starved.update(dirty)
            dirty, starved = starved, {}
            self.starved = starved
        if self.route_hints and self.nhm.adopting_groups:
            self._vote(dirty)
        waiting = self._waiting
        held: Dict[str, float] = {}
        if waiting or self.rib.growth_holds or self._recheck:
            held = self._growth_start(dirty, now)
        growth = bool(held or waiting)
        touched: Dict[Entry, None] = {}  # entries whose deferred prefixes or users changed
        verdicts: Dict[tuple, object] = {}  # _growth's verdicts, this call only
        # (route key, id its route pointed at) of the prefixes whose candidates changed: a group
        # all of whose prefixes moved to one subset of it is shrunk in place (_shrink_in_place)
        moved: list = []
        twin_hints = self._twin_hints
        if twin_hints and not self.nhm.adopting_groups:
            twin_hints.clear()  # adoption is over
        while True:  # a second pass applies the prefixes whose deferred growth completed a group
            for prefix in dirty:
                entry = rib_entries.get(prefix)
                if growth:
                    if waiting:  # a deferred prefix changed again: out of the deferral first
                        cands = cands_map.get(prefix)
                        if cands is not None and len(cands) == 1:
                            waits = waiting.get(cands[0][1])
                            if waits is not None:
                                grown = waits.prefixes.pop(prefix, None)
                                if grown is not None:
                                    self._undefer(waits, grown, touched)
                    if held and entry and len(entry) == 1:
                        grown = self._growth(prefix, entry, held, verdicts)
                        if grown is not None:  # the route stays as it is, for now or for good (_SAME)
                            if starved:
                                starved.pop(prefix, None)
                            if grown is not _SAME:
                                self._defer(prefix, grown, touched)
                            continue
                new: Tuple[Tuple[str, Entry], ...] = ()
                if entry:
                    try:
                        if len(entry) == 1 and not errors:
                            hit = single.get(id(entry))
                            if hit is not None and hit[0] == prefix[0]:
                                new = hit[1]
                            else:
                                ((source, paths),) = entry
                                try:
                                    new = ((source, entries_for(prefix[0], paths)),)
                                    single[id(entry)] = (prefix[0], new)
                                except ValueError:
                                    new = self._candidates(prefix, entry, now)
                        else:
                            new = self._candidates(prefix, entry, now)
                    except IdRangeExhausted:
                        # no id for its set: the prefix keeps its route as it is and stays pending,
                        # retried when ids are freed (hold ends) or at the next full sync
                        starved[prefix] = None
                        continue
                if starved:
                    starved.pop(prefix, None)  # withdrawn, or its set found an id after all
                if twin_hints and new:
                    gid = twin_hints.pop(prefix, None)
                    if gid is not None and gid != new[0][1].id:
                        twin = self.nhm.adopt_twin(new[0][1], gid)
                        if twin is not None:
                            new = ((new[0][0], twin),) + new[1:]
                old = cands_map.get(prefix, ())
                key = (table, prefix[0], prefix[1], prefix[2], metric)
                if old != new:
                    if old:
                        moved.append((key, routes.get(key)))
                    for _, e in old:
                        if all(e is not n for _, n in new):
                            unuse(e, prefix, now)
                            if waiting and e in waiting:
                                touched[e] = None
                    for _, e in new:  # NexthopManager's refcount, inlined on this hot path
                        e.users.add(prefix)
                        e.unused_since = None
                    if new:
                        cands_map[prefix] = new
                    else:
                        del cands_map[prefix]
                for source, e in new:
                    nh_id = installable.get(id(e), _MISSING)
                    if nh_id is _MISSING:
                        nh_id = installable[id(e)] = installed_id(e)
                    if nh_id is not None:
                        routes[key] = nh_id
                        break
                else:
                    routes.pop(key, None)
                if collect:
                    changed[key] = None
            if not touched:
                break
            dirty = self._growth_complete(touched)
            if not dirty:
                break
            touched = {}
            held = {}  # released: applied in this pass, whatever their source
        if moved:
            self._shrink_in_place(moved, now)
        if starved:
            self._starved_frees = self.nhm.frees
            if not self._exhausted:
                self._exhausted = True
                self.exhaustions += 1
                log.warning("nexthop id range %d..%d exhausted: %d prefixes wait for a free id (their "
                            "routes stay as they are; retried when ids are freed)",
                            self.nhm.first, self.nhm.last, len(starved))
        elif self._exhausted:
            self._exhausted = False
            log.info("nexthop id range: every waiting prefix has its id now")
        return changed

    def _shrink_in_place(self, moved, now: float) -> None:
        """Prefix-independent convergence (a BGP peer down, a next hop that stops resolving):
        ``moved`` lists ``(route key, id its route pointed at before)`` for the prefixes whose
        candidates changed in this sync.  When every prefix of a group left it, the largest
        share of them that moved to one entry whose set is a subset of the group's (the group
        lost members; or a superset: they all came back in this sync) keeps the group's id:
        the group is replaced in place (:meth:`NexthopManager.shrink_in_place`, one write)
        and their routes do not move.  The others move as usual: a group still used by
        prefixes that did not lose the member is not shrunk (the movers get routes of their
        own); a prefix whose best path changed (a set neither subset nor superset) is
        rewritten.  Forwarding stays what a fresh computation gives; only group ids differ."""
        routes = self.routes
        get = routes.get
        flows: Dict[Tuple[int, int], list] = {}  # (old id, new id) -> route keys
        last_old = last_new = _MISSING  # a batch comes in runs of one (old, new) pair
        keys: list = []
        for key, old_id in moved:
            new_id = get(key)
            if new_id == last_new and old_id == last_old:
                keys.append(key)
            elif new_id != old_id and new_id is not None and old_id is not None:
                keys = flows.get((old_id, new_id))
                if keys is None:
                    keys = flows[(old_id, new_id)] = []
                keys.append(key)
                last_old, last_new = old_id, new_id
        best: Dict[int, Tuple[int, list]] = {}  # old id -> (new id, keys) of its largest share
        for (old_id, new_id), keys in flows.items():
            if old_id not in best or len(keys) > len(best[old_id][1]):
                best[old_id] = (new_id, keys)
        by_id = self.nhm.by_id
        cands_map = self._cands
        for old_id, (new_id, keys) in best.items():
            old = by_id.get(old_id)
            new = by_id.get(new_id)
            if old is None or new is None or not old.is_group or old.users:
                continue
            movers = {(k[1], k[2], k[3]) for k in keys}
            group = self.nhm.shrink_in_place(old, new, movers, now)
            if group is None:
                continue
            if group is not new:  # a group made for the movers (of one nexthop, or a twin)
                swapped: Dict[int, tuple] = {}  # id(old candidates) -> new ones: shared, as before
                for prefix in movers:
                    cands = cands_map[prefix]
                    repl = swapped.get(id(cands))
                    if repl is None or repl[0] is not cands:
                        repl = swapped[id(cands)] = (cands, tuple((s, group if e is new else e) for s, e in cands))
                    cands_map[prefix] = repl[1]
            gid = group.id
            for key in keys:  # the movers' route was on ``new``: it is on ``group`` now, at the old id
                routes[key] = gid

    # growth deferral: PIC when a peer comes back ---------------------------------------------
    def _defer(self, prefix: Prefix, grown: Growth, touched: Dict[Entry, None]) -> None:
        """Prefix-independent convergence when a BGP peer comes back: its paths arrive prefix
        by prefix over many syncs (ExaBGP passes UPDATEs as they come; the feed commits them
        in bursts), so moving each prefix to the larger set as it comes would rewrite every
        route of the group, one by one (a million writes for one peer of a full table).

        While the prefix's source re-converges (:meth:`Rib.hold_growth`: a peer of it came up
        and has not sent its end-of-RIB), a prefix whose RIB change only *grows* its ECMP set
        (one source as before; the new set holds every member of the group its route uses now,
        same weights and group type, and more) is deferred: its candidates and route stay as
        they are, so the kernel keeps forwarding on the smaller set (correct, not full ECMP
        yet), and no entry is made for the new set.  It is applied:

        * with every other user of that group, in one sync, as soon as each of them waits for
          the same larger set (:meth:`_growth_complete`): the group then grows in place
          (:meth:`_shrink_in_place`, its superset case: one nexthop write, no route write);
        * at the source's end of re-convergence (:meth:`Rib.release_growth`: the peers'
          end-of-RIB, or the end of their wait for it), or at the hold's end (``until``,
          never later): whatever was not complete then moves as any change does;
        * at once when anything else changes it (a withdraw, another set: :meth:`sync_rib`
          takes it out of the deferral first), or the group it waits on stops being usable
          (a link: :meth:`_recheck_deferred`).

        Only a prefix on a *group* is deferred: one on a plain nexthop (a peer new to it: no
        earlier group) must move to a group anyway and is applied at once, as is a prefix with
        no route yet.  A full sync does not write a deferred prefix either: its route is the
        desired one until it is applied."""
        source, entry, key = grown
        waits = self._waiting.get(entry)
        if waits is None:
            waits = self._waiting[entry] = _Waiting()
        waits.prefixes[prefix] = grown
        waits.counts[key] = waits.counts.get(key, 0) + 1
        waits.sources[source] = waits.sources.get(source, 0) + 1
        self._deferred_sources[source] = self._deferred_sources.get(source, 0) + 1
        touched[entry] = None

    def _undefer(self, waits: "_Waiting", grown: Growth, touched: Optional[Dict[Entry, None]]) -> None:
        """Count out one deferred prefix (already taken out of ``waits.prefixes``)."""
        source, entry, key = grown
        _count_out(waits.counts, key, 1)
        _count_out(waits.sources, source, 1)
        _count_out(self._deferred_sources, source, 1)
        if not waits.prefixes:
            del self._waiting[entry]
        if touched is not None:
            touched[entry] = None

    def _growth(self, prefix: Prefix, entry, held: Dict[str, float], verdicts: Dict[tuple, object]):
        """Whether the RIB change of ``prefix`` (single source ``entry``) only grows the ECMP set
        of the group its route uses now, while its source is held: the :data:`Growth` to
        defer, _SAME (the new set is that group's content: nothing to do), or None (apply)."""
        ((source, paths),) = entry
        if source not in held:
            return None
        cands = self._cands.get(prefix)
        if cands is None or len(cands) != 1:
            return None
        cand_source, current = cands[0]
        if cand_source != source or not current.is_group:
            return None
        if self.routes.get((self.table, prefix[0], prefix[1], prefix[2], self.metric)) != current.id:
            return None  # no route on it now (members down): applied at once
        ref = (id(paths), id(current), prefix[0])
        verdict = verdicts.get(ref, _MISSING)
        if verdict is _MISSING:
            verdict = verdicts[ref] = self._grows(prefix[0], paths, current)
        if verdict is None or verdict is _SAME:
            return verdict
        return (source, current, verdict)

    def _grows(self, family: int, paths, group: Entry):
        """The set key of ``paths`` when it is ``group``'s set with more members (same weights,
        same group type), _SAME when it is ``group``'s content (a group of one member and its
        nexthop; a twin), else None.  Computed without making an entry
        (:meth:`NexthopManager.set_key`)."""
        try:
            key = self.nhm.set_key(family, paths)
        except ValueError:
            return None
        have = set(group.key[0])
        if len(key) == 3:  # one nexthop: the same forwarding as a group of that one member
            return _SAME if len(have) == 1 and next(iter(have))[0] == key else None
        if key[1] != group.resilient:
            return None
        want = set(key[0])
        if want == have:
            return _SAME
        return key if have < want else None

    def _growth_complete(self, touched: Dict[Entry, None]) -> Dict[Prefix, None]:
        """Of the groups in ``touched``, those whose every user is deferred toward one larger
        set grow in place (:meth:`NexthopManager.grow_in_place`: one write, nothing per prefix:
        their candidates and routes stay on the group, which has the larger set now); their
        users are deferred no more.  Where that cannot be (the routes' scope would change, no
        id for a new member) the users are returned, to be applied now one by one (the
        superset case of :meth:`_shrink_in_place` still keeps the group's id)."""
        released: Dict[Prefix, None] = {}
        waiting = self._waiting
        grown = prefixes = 0
        for entry in touched:
            waits = waiting.get(entry)
            if waits is None:
                continue
            users = len(entry.users)
            key = next((k for k, n in waits.counts.items() if n == users), None)
            if key is None:
                continue
            del waiting[entry]
            for source, n in waits.sources.items():
                _count_out(self._deferred_sources, source, n)
            if self.nhm.grow_in_place(entry, key):
                grown += 1
                prefixes += users
            else:
                released.update(dict.fromkeys(waits.prefixes))
        if grown:
            log.info("PIC: %d group%s grew in place (%d prefixes, each of which has the larger ECMP set now; "
                     "no route written)", grown, "" if grown == 1 else "s", prefixes)
        return released

    def _growth_start(self, dirty: Dict[Prefix, None], now: float) -> Dict[str, float]:
        """Start of a sync: the sources held now (none during the start's adoption); the
        deferred prefixes of a source no longer held (released, or its hold's end passed) and
        those to check again join ``dirty``, applied in this sync."""
        held = {} if self.nhm.adopting_groups else {s: t for s, t in self.rib.growth_holds.items() if t > now}
        if self._recheck:
            dirty.update(self._recheck)
            self._recheck = {}
        over = [s for s in self._deferred_sources if s not in held]
        if over:
            n = 0
            for waits in list(self._waiting.values()):
                for prefix, grown in list(waits.prefixes.items()):
                    if grown[0] in over:
                        del waits.prefixes[prefix]
                        self._undefer(waits, grown, None)
                        dirty[prefix] = None
                        n += 1
            log.info("PIC: %s re-converged (end-of-RIB, or the hold's end): applying %d deferred ECMP growths",
                     ", ".join(over), n)
        return held

    def growth_due(self) -> Optional[float]:
        """When deferred growths are due (engine clock): 0.0 when a source of them is no
        longer held (or prefixes wait for a check), else the earliest hold's end; None when
        nothing is deferred."""
        if self._recheck:
            return 0.0
        if not self._deferred_sources:
            return None
        holds = self.rib.growth_holds
        return min(holds.get(s, 0.0) for s in self._deferred_sources)

    @property
    def deferred(self) -> Dict[Prefix, Growth]:
        """The prefixes whose ECMP growth is deferred now (:meth:`_defer`), with their growth
        (a new dict: for views and tests)."""
        return {p: g for waits in self._waiting.values() for p, g in waits.prefixes.items()}

    def _recheck_deferred(self, prefixes: Iterable[Prefix]) -> None:
        """The entries of ``prefixes`` changed usability (a link, a failed write, an id moved):
        the deferred ones among them are decided again at the next sync (applied at once if
        their group is not installable any more)."""
        waiting = self._waiting
        cands_map = self._cands
        for prefix in prefixes:
            cands = cands_map.get(prefix)
            waits = waiting.get(cands[0][1]) if cands else None
            grown = waits.prefixes.pop(prefix, None) if waits is not None else None
            if grown is not None:
                self._undefer(waits, grown, None)
                self._recheck[prefix] = None

    @property
    def starved_due(self) -> bool:
        """Prefixes wait for an id and ids were freed since they tried: sync_rib has work."""
        return bool(self.starved) and self._starved_frees != self.nhm.frees

    def _vote(self, dirty: Iterable[Prefix]) -> None:
        """Adoption by id (see :meth:`NexthopManager.vote`): the sets the routes of ``dirty``
        would use now, and the ids of our groups their kernel routes point at."""
        hints = self.route_hints
        rib_entries = self.rib.entries
        set_key = self.nhm.set_key
        set_usable = self.nhm.set_usable
        counts: Dict[Tuple[int, int, int], int] = {}  # (family, id(paths), group id) -> routes
        keys: Dict[Tuple[int, int], object] = {}  # (family, id(paths)) -> usable set key or None
        pop = hints.pop
        get_entry = rib_entries.get
        last_entry = last_gid = None
        last_vote: Tuple[int, int, int] = (0, 0, 0)
        twin_hints = self._twin_hints
        for prefix in dirty:
            gid = pop(prefix, None)  # each route votes once
            if gid is None:
                continue
            twin_hints[prefix] = gid
            entry = get_entry(prefix)
            if not entry:
                continue
            if len(entry) == 1:
                paths = entry[0][1]
                if paths is last_entry and gid == last_gid and prefix[0] == last_vote[0]:  # a run: one set, one id
                    counts[last_vote] += 1
                    continue
            for source, paths in entry:  # best admin distance first
                ref = (prefix[0], id(paths))
                key = keys.get(ref, _MISSING)
                if key is _MISSING:
                    try:
                        key = set_key(prefix[0], paths)
                    except ValueError:
                        key = None
                    if key is not None and not set_usable(key):
                        key = None  # not the set the route uses now (as _select picks)
                    keys[ref] = key
                if key is not None:
                    vote = ref + (gid,)
                    counts[vote] = counts.get(vote, 0) + 1
                    if len(entry) == 1:
                        last_entry, last_gid, last_vote = paths, gid, vote
                    break
        claims: Dict[Tuple[object, int], int] = {}
        for (family, ref, gid), n in counts.items():
            claim = (keys[(family, ref)], gid)
            claims[claim] = claims.get(claim, 0) + n
        self.nhm.vote(claims)

    def _candidates(self, prefix: Prefix, entry, now: float) -> Tuple[Tuple[str, Entry], ...]:
        """``((source, entry), ...)`` best admin distance first; a source whose paths cannot be
        resolved (say an IPv6 route over an IPv4 nexthop) is logged once and left out.  Raises
        IdRangeExhausted when a source's set finds no free id; the entries just created for the
        sources before it are then unused from ``now`` (freed at their hold end, not leaked)."""
        cands = []
        for source, paths in entry:  # best admin distance first
            try:
                cands.append((source, self.nhm.entries_for(prefix[0], paths)))
            except IdRangeExhausted:
                for _source, made in cands:
                    if not made.users and made.unused_since is None:
                        made.unused_since = now
                raise
            except ValueError as exc:
                if self.errors.get((prefix, source)) != str(exc):
                    log.error("route %s from %s not usable: %s", format_prefix(prefix), source, exc)
                self.errors[(prefix, source)] = str(exc)
                continue
            self.errors.pop((prefix, source), None)
        return tuple(cands)

    def _select(self, prefix: Prefix) -> RouteKey:
        key = self.route_key(prefix)
        installed_id = self.nhm.installed_id
        for source, entry in self._cands.get(prefix, ()):
            nh_id = installed_id(entry)
            if nh_id is not None:
                self.routes[key] = nh_id
                return key
        self.routes.pop(key, None)
        return key

    def links_changed(self, change: LinkChange) -> Set[RouteKey]:
        """The link table was updated; returns route keys whose desired value may have changed."""
        return self._reselect(self.nhm.links_changed(change))

    def reassign(self, nh_id: int) -> Set[RouteKey]:
        """Our nexthop or group at ``nh_id`` moves to another id (that one is taken)."""
        return self._reselect(self.nhm.reassign(nh_id))

    def set_failed(self, nh_ids: Iterable[int], failed: bool) -> Set[RouteKey]:
        return self._reselect(self.nhm.set_failed(nh_ids, failed))

    def _reselect(self, prefixes: Set[Prefix]) -> Set[RouteKey]:
        if self._waiting:
            self._recheck_deferred(prefixes)
        return {self._select(p) for p in prefixes}

    def desired_nexthops(self) -> Dict[int, KNexthop]:
        return self.nhm.desired()

    def selected(self, prefix: Prefix) -> Optional[str]:
        """The source whose nexthops the route of ``prefix`` uses now (None: no route)."""
        for source, entry in self._cands.get(prefix, ()):
            if self.nhm.installed_id(entry) is not None:
                return source
        return None
