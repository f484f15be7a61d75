"""Nexthop manager: shared kernel nexthop objects and groups, by content.  Pure (time passed in).

* One kernel nexthop per distinct ``(family, gateway, device)`` (:class:`NhEntry`).
* One group per distinct weighted member set and group type (:class:`GroupEntry`), shared by
  every prefix whose ECMP set it is.  A set of one nexthop is no group: the route points at
  the nexthop itself.
* Entries are refcounted by the prefixes that use them (``users``); an entry nobody uses is
  kept for ``hold_time`` seconds (a flapping route does not churn IDs) and then freed.
* IDs come from a reserved range and never collide with IDs the kernel already holds
  (another program's objects, or ours not yet adopted).
* A group's kernel members are its *active* members: nexthops whose device is up with
  carrier (read from the shared :class:`~kernelsync.core.links.LinkTable`) and whose last
  write did not fail.  A group with no active member cannot exist in
  the kernel; routes on it fall back (see :mod:`kernelsync.core.fib`).
* On start, :meth:`NexthopManager.adopt` keeps our kernel objects for adoption, so a restart
  writes nothing: a plain nexthop is adopted by content (family, gateway, device); a group *by
  id*: the routes of ours in the kernel say which id serves which set (:meth:`vote`, most
  routes win), so two sets with the same live members (a member down) keep their own groups,
  and a group whose live members changed while we were away is replaced in place (one write
  per group, none per route).  A group no route points at is adopted by content, or swept.
* An id range with no free id left: the prefixes whose set needs one wait (the FIB retries
  them when ids are freed); an unused entry whose write is refused is parked, not retried.

Mirrors FRR zebra_nhg.c (content-hashed, refcounted, members before groups, kept a while after
the last user) and the kernel's include/uapi/linux/nexthop.h.
"""
from __future__ import annotations

import logging
from typing import Dict, Iterable, List, Optional, Set, Tuple, Union

from .links import LinkChange, LinkTable
from .model import AF_INET, AF_INET6, GRP_MPATH, GRP_RES, RT_SCOPE_LINK, RT_SCOPE_UNIVERSE, KNexthop, Path, Prefix, ResilientSpec

log = logging.getLogger(__name__)

NhKey = Tuple[int, Optional[bytes], str]  # (nexthop family, packed gateway or None, device name)
GroupKey = Tuple[Tuple[Tuple[NhKey, int], ...], Optional[ResilientSpec]]


class TwinKey(tuple):
    """The key of a group with the same content as the group ``key`` (a GroupKey), made when a
    group shrunk in place (:meth:`NexthopManager.shrink_in_place`) took the content of a group
    other prefixes use: unequal to ``key`` and to every other twin of it (``n``), so the two
    entries live side by side; new prefixes of that set get the plain one (:meth:`entries_for`)."""

    def __new__(cls, key: "GroupKey", n: int) -> "TwinKey":
        twin = super().__new__(cls, key)
        twin.n = n
        return twin

    def __eq__(self, other: object) -> bool:
        return isinstance(other, TwinKey) and other.n == self.n and tuple.__eq__(self, other)

    def __ne__(self, other: object) -> bool:
        return not self.__eq__(other)

    def __hash__(self) -> int:
        return hash((tuple(self), "twin", self.n))


class IdRangeExhausted(RuntimeError):
    pass


def nexthop_scope(key: NhKey) -> int:
    """rtm_scope of a route on the nexthop ``key``: RT_SCOPE_LINK for a device-only IPv4
    nexthop (as ``ip route add P dev X`` and BIRD write it), else RT_SCOPE_UNIVERSE (a gateway;
    IPv6, whose routes the kernel keeps universe whatever is written)."""
    return RT_SCOPE_LINK if key[1] is None and key[0] == AF_INET else RT_SCOPE_UNIVERSE


class NhEntry:
    """A kernel nexthop object we manage.  ``users``: prefixes using it alone (not in a group);
    ``scope``: rtm_scope of the routes on it (:func:`nexthop_scope`)."""

    __slots__ = ("key", "id", "users", "groups", "unused_since", "failed", "scope")
    is_group = False

    def __init__(self, key: NhKey, nh_id: int) -> None:
        self.key = key
        self.id = nh_id
        self.scope = nexthop_scope(key)
        self.users: Set[Prefix] = set()
        self.groups: Set["GroupEntry"] = set()
        self.unused_since: Optional[float] = None
        self.failed = False

    def __repr__(self) -> str:
        return "NhEntry(id=%d, key=%r)" % (self.id, self.key)


class GroupEntry:
    """A kernel nexthop group we manage; ``members`` = [(NhEntry, weight)] in key order;
    ``scope``: rtm_scope of the routes on it, RT_SCOPE_LINK when every member of the set (active
    or not: the scope does not change with a link) is device-only IPv4, else RT_SCOPE_UNIVERSE."""

    __slots__ = ("key", "id", "users", "members", "resilient", "unused_since", "scope")
    is_group = True

    def __init__(self, key: GroupKey, gid: int, members: List[Tuple[NhEntry, int]]) -> None:
        self.key = key
        self.id = gid
        scopes = {nexthop_scope(k) for k, _w in key[0]}
        self.scope = scopes.pop() if len(scopes) == 1 else RT_SCOPE_UNIVERSE
        self.users: Set[Prefix] = set()
        self.members = members
        self.resilient: Optional[ResilientSpec] = key[1]
        self.unused_since: Optional[float] = None

    def __repr__(self) -> str:
        return "GroupEntry(id=%d, members=%r)" % (self.id, [(m.id, w) for m, w in self.members])


Entry = Union[NhEntry, GroupEntry]


class NexthopManager:
    """Allocates and tracks nexthop objects and groups; yields the desired kernel objects.

    ``id_range``: inclusive ``(first, last)`` IDs reserved for us; ``hold_time``: seconds an
    unused entry is kept; ``protocol``: the nhmsg protocol number written on every object;
    ``links``: the link table (read only).
    """

    def __init__(self, id_range: Tuple[int, int], hold_time: float, protocol: int, links: LinkTable) -> None:
        first, last = id_range
        if not 1 <= first <= last <= 0xFFFFFFFF:
            raise ValueError("nexthop id range %r is not within 1..4294967295" % (id_range,))
        self.first, self.last = first, last
        self.hold_time = hold_time
        self.protocol = protocol
        self.nexthops: Dict[NhKey, NhEntry] = {}
        self.groups: Dict[GroupKey, GroupEntry] = {}
        self.by_id: Dict[int, Entry] = {}
        self.by_dev: Dict[str, Set[NhEntry]] = {}
        self.links = links
        self.kernel_ids: Set[int] = set()  # every id the kernel holds (ours or not)
        self._cursor = first
        # (route family, paths) -> entry; cleared whenever an entry is freed
        self._set_cache: Dict[Tuple[int, Tuple[Path, ...]], Entry] = {}
        self._adopt_plain: Dict[Tuple[int, Optional[bytes], int], int] = {}
        self._adopt_group: Dict[tuple, int] = {}
        self._adopt_ids: Set[int] = set()
        self._adopt_groups: Dict[int, KNexthop] = {}  # id -> our kernel group awaiting adoption
        self._adopt_by_set: Dict[GroupKey, int] = {}  # set -> the id its routes point at (vote)
        self.routed_ids: Set[int] = set()  # our groups awaiting adoption that routes point at
        self._full_at = -1  # value of ``frees`` when the range was last found full
        self.frees = 0  # collections that freed entries (ids): the FIB retries prefixes that found none
        self.dormant: Set[int] = set()  # unused entries whose write was refused: not retried
        self._twins = 0  # TwinKeys made (their numbers)
        self._twin_of: Dict[int, Entry] = {}  # during adoption: id of a twin adopted -> the set's entry

    # ids -----------------------------------------------------------------------------------
    def owns_id(self, nh_id: int) -> bool:
        return self.first <= nh_id <= self.last

    def _alloc(self) -> int:
        if self._full_at == self.frees:  # exhausted, and nothing freed since: no scan
            raise IdRangeExhausted("no free nexthop id in %d..%d" % (self.first, self.last))
        span = self.last - self.first + 1
        for _ in range(span):
            nh_id = self._cursor
            self._cursor = self.first if nh_id >= self.last else nh_id + 1
            if nh_id not in self.by_id and nh_id not in self.kernel_ids and nh_id not in self._adopt_ids:
                return nh_id
        self._full_at = self.frees
        raise IdRangeExhausted("no free nexthop id in %d..%d" % (self.first, self.last))

    def released(self) -> None:
        """Ids may have become free (an entry freed, a kernel object deleted, adoption over)."""
        self.frees += 1

    def adopt(self, observed: Dict[int, KNexthop]) -> None:
        """Remember the kernel objects of ours (``observed``: id -> object) so that entries
        created later with the same content take their IDs (restart without writes)."""
        for obj in observed.values():
            if obj.is_group:
                self._adopt_group[(obj.grp_type, obj.res, obj.group)] = obj.id
                self._adopt_groups[obj.id] = obj
            elif obj.oif in self.links.names:
                self._adopt_plain[(obj.family, obj.gateway, obj.oif)] = obj.id
        # kept out of allocation until adopted or forgotten, even if the kernel drops them
        self._adopt_ids = set(self._adopt_plain.values()) | set(self._adopt_groups)

    @property
    def adopting_groups(self) -> bool:
        """Kernel groups of ours are still waiting to be adopted (the start's adoption)."""
        return bool(self._adopt_groups) and bool(self._adopt_ids)

    def vote(self, claims: Dict[Tuple[Union[NhKey, GroupKey], int], int]) -> None:
        """Adoption by id: ``claims`` maps ``(set key, id)`` to a number of routes of ours in the
        kernel that point at ``id``, one of our groups waiting for adoption, and whose desired
        set (the one the route would use now, :meth:`set_key`) is that set.  Each set gets the id most
        of its routes point at; an id goes to one set only (most routes first).  A group whose
        content changed meanwhile (a member down or back, or twins: two sets with the same live
        members) keeps its id and is replaced in place: one write per group, none per route."""
        counts = {(gkey, gid): n for (gkey, gid), n in claims.items()
                  if len(gkey) == 2 and gkey not in self.groups and gkey not in self._adopt_by_set}
        taken = set(self._adopt_by_set.values())
        for (gkey, gid), _n in sorted(counts.items(), key=lambda i: -i[1]):
            if gkey in self._adopt_by_set or gid in taken or gid not in self._adopt_ids:
                continue
            obj = self._adopt_groups.get(gid)
            res = gkey[1]
            if obj is None or obj.grp_type != (GRP_RES if res else GRP_MPATH):
                continue  # the kernel cannot change a group's type in place
            if res is not None and (obj.res is None or obj.res[0] != res.buckets):
                continue  # nor a resilient group's number of buckets
            self._adopt_by_set[gkey] = gid
            taken.add(gid)
            for ckey, cid in list(self._adopt_group.items()):  # claimed: no twin takes it by content
                if cid == gid:
                    del self._adopt_group[ckey]

    def adopting_ids(self) -> Set[int]:
        """Ids of our kernel groups still waiting for adoption."""
        return {i for i in self._adopt_groups if i in self._adopt_ids}

    def set_usable(self, key: Union[NhKey, GroupKey]) -> bool:
        """Whether the set of ``key`` has a nexthop on a usable link now."""
        by_name = self.links.by_name
        devs = (key[2],) if len(key) == 3 else [k[2] for k, _ in key[0]]
        for dev in devs:
            link = by_name.get(dev)
            if link is not None and link.usable:
                return True
        return False

    def reassign(self, nh_id: int) -> Set[Prefix]:
        """Another program holds ``nh_id`` (our create was refused with EEXIST): move our entry
        to a free id and never use this one while the kernel has it.  Returns the prefixes
        whose route must point at the new id (groups holding a moved member are re-pushed
        from their members' ids anyway)."""
        entry = self.by_id.pop(nh_id, None)
        self.kernel_ids.add(nh_id)
        if entry is None:
            return set()
        entry.id = self._alloc()
        self.by_id[entry.id] = entry
        return set(entry.users)

    def end_adoption(self) -> None:
        """Every feed has delivered its initial state: what was not adopted by now is stale
        (the planner sweeps it), and its IDs may be allocated once the kernel lets them go."""
        self._adopt_plain.clear()
        self._adopt_group.clear()
        self._adopt_groups.clear()
        self._adopt_by_set.clear()
        self._twin_of.clear()
        self.routed_ids = set()
        if self._adopt_ids:
            self.released()
        self._adopt_ids.clear()

    def _take_adopted(self, table: dict, key) -> Optional[int]:
        nh_id = table.pop(key, None)
        if nh_id is None or nh_id in self.by_id:
            return None
        self._adopt_ids.discard(nh_id)
        return nh_id

    # usability -----------------------------------------------------------------------------
    def usable(self, nh: NhEntry) -> bool:
        link = self.links.by_name.get(nh.key[2])
        return link is not None and link.usable and not nh.failed

    def active_members(self, group: GroupEntry) -> Tuple[Tuple[int, int], ...]:
        """``((member id, weight), ...)`` sorted by id: what the kernel group should hold."""
        return tuple(sorted((m.id, w) for m, w in group.members if self.usable(m)))

    def installed_id(self, entry: Entry) -> Optional[int]:
        """The id a route on ``entry`` points at, or None if the entry cannot be in the kernel."""
        if entry.is_group:
            for m, _ in entry.members:
                if self.usable(m):
                    return entry.id
            return None
        return entry.id if self.usable(entry) else None

    def links_changed(self, change: LinkChange) -> Set[Prefix]:
        """The link table was updated (``change``).  Returns the prefixes whose best choice may
        have changed (their nexthop or group went from usable to not, or back)."""
        before = {}
        for name in change.changed:
            was = change.was_usable(name)
            for nh in self.by_dev.get(name, ()):
                before[nh] = was and not nh.failed
        return self._affected(before)

    def set_failed(self, nh_ids: Iterable[int], failed: bool) -> Set[Prefix]:
        """Mark nexthops whose last write failed (or succeeded again).  A failed nexthop is no
        active member of its groups until a write succeeds.  Returns affected prefixes."""
        before = {}
        for nh_id in nh_ids:
            nh = self.by_id.get(nh_id)
            if nh is not None and not nh.is_group and nh.failed != failed:
                before[nh] = self.usable(nh)
                nh.failed = failed
        return self._affected(before)

    def _affected(self, before: Dict[NhEntry, bool]) -> Set[Prefix]:
        """Prefixes to re-select after the nexthops in ``before`` (nexthop -> usable before the
        change) may have changed: users of a nexthop that flipped, and users of a group whose
        having-an-active-member flipped.  A group is judged on all its members' old and new
        states together: several members can flip in one change."""
        affected: Set[Prefix] = set()
        groups: Set[GroupEntry] = set()
        for nh, was in before.items():
            if was != self.usable(nh):
                affected |= nh.users
                groups |= nh.groups
        for group in groups:
            had = any(before[m] if m in before else self.usable(m) for m, _ in group.members)
            has = any(self.usable(m) for m, _ in group.members)
            if had != has:
                affected |= group.users
        return affected

    # entries -------------------------------------------------------------------------------
    def entries_for(self, family: int, paths: Tuple[Path, ...]) -> Entry:
        """The entry (nexthop or group) for the ECMP set of ``paths`` on a ``family`` route."""
        cache_key = (family, paths)
        cached = self._set_cache.get(cache_key)
        if cached is not None:
            return cached
        key = self.set_key(family, paths)
        entry: Entry = self._group(key) if len(key) == 2 else self._nexthop(key)
        self._set_cache[cache_key] = entry
        return entry

    @staticmethod
    def set_key(family: int, paths: Tuple[Path, ...]) -> Union[NhKey, GroupKey]:
        """The content key of the ECMP set of ``paths`` on a ``family`` route: an NhKey (3
        items) for a set of one nexthop, else a GroupKey (2 items).  Raises ValueError for a
        set that cannot be (an IPv4 nexthop on an IPv6 route, no nexthop)."""
        members: Dict[NhKey, int] = {}
        resilient = None
        for path in paths:
            resilient = resilient or path.resilient
            for spec in path.nexthops:
                key = (spec.nh_family(family), spec.gateway, spec.dev)
                if family == AF_INET6 and key[0] != AF_INET6:
                    raise ValueError("an IPv6 route cannot use the IPv4 nexthop %s" % spec.describe())
                members.setdefault(key, spec.weight)
        if not members:
            raise ValueError("a path has no nexthop")
        if len(members) == 1:
            ((key, _),) = members.items()
            return key
        return (tuple(sorted(members.items(), key=_sort_member)), resilient)

    def _nexthop(self, key: NhKey) -> NhEntry:
        nh = self.nexthops.get(key)
        if nh is None:
            link = self.links.by_name.get(key[2])
            nh_id = None
            if link is not None:
                nh_id = self._take_adopted(self._adopt_plain, (key[0], key[1], link.index))
            nh = NhEntry(key, nh_id if nh_id is not None else self._alloc())
            self.nexthops[key] = nh
            self.by_id[nh.id] = nh
            self.by_dev.setdefault(key[2], set()).add(nh)
        return nh

    def _group(self, gkey: GroupKey) -> GroupEntry:
        group = self.groups.get(gkey)
        if group is None:
            fresh = [k for k, _ in gkey[0] if k not in self.nexthops]
            try:
                members = [(self._nexthop(k), w) for k, w in gkey[0]]
                gid = self._take_adopted_group(gkey, members)
                if gid is None:
                    gid = self._alloc()
            except IdRangeExhausted:
                self._drop_fresh(fresh)  # no member left behind without a user
                raise
            group = GroupEntry(gkey, gid, members)
            for m, _ in members:
                m.groups.add(group)
            self.groups[gkey] = group
            self.by_id[group.id] = group
        return group

    def _take_adopted_group(self, gkey: GroupKey, members: List[Tuple[NhEntry, int]]) -> Optional[int]:
        """The id of a kernel group of ours for the new entry ``gkey``: the one its routes point
        at (:meth:`vote`), else one with the same live content that no route claims."""
        gid = self._adopt_by_set.pop(gkey, None)
        if gid is not None and gid not in self.by_id and gid in self._adopt_ids:
            self._adopt_ids.discard(gid)
            return gid
        if not self._adopt_group:
            return None
        res = gkey[1]
        probe = GroupEntry(gkey, 0, members)
        adopt_key = (GRP_RES if res else GRP_MPATH, _res_tuple(res), self.active_members(probe))
        if self._adopt_group.get(adopt_key) in self.routed_ids:
            return None  # routes point at it: it waits for their set's vote (its twin's, maybe)
        return self._take_adopted(self._adopt_group, adopt_key)

    def adopt_twin(self, entry: Entry, gid: int) -> Optional[GroupEntry]:
        """Restart after :meth:`shrink_in_place`: a route whose set is ``entry`` points at
        ``gid``, another group of ours awaiting adoption (a group of one member where ``entry``
        is a plain nexthop; a twin where the set's own group took another id).  Returns a group
        with ``entry``'s members at ``gid`` for that route (shared by every route pointing at
        ``gid``), so the route is not rewritten; the kernel group is replaced in place if its
        live members differ.  None when ``gid`` is not ours to adopt or its type differs."""
        group = self.by_id.get(gid)
        if group is not None:
            return group if group.is_group and self._twin_of.get(gid) is entry else None
        obj = self._adopt_groups.get(gid)
        if obj is None or gid not in self._adopt_ids or gid in self._adopt_by_set.values():
            return None  # not ours to adopt, or voted to a set (whose group takes it when made)
        res = entry.resilient if entry.is_group else None
        if obj.grp_type != (GRP_RES if res else GRP_MPATH) or (res is not None and (obj.res is None or obj.res[0] != res.buckets)):
            return None
        if entry.is_group:
            members = list(entry.members)
            gkey = entry.key
        else:
            members = [(entry, obj.group[0][1] if len(obj.group) == 1 else 1)]
            gkey = ((entry.key, members[0][1]),), None
        if gkey in self.groups:
            gkey = TwinKey(gkey, self._next_twin())
        group = GroupEntry(gkey, gid, members)
        for m, _w in members:
            m.groups.add(group)
        self.groups[gkey] = group
        self.by_id[gid] = group
        self._adopt_ids.discard(gid)
        for ckey, cid in list(self._adopt_group.items()):
            if cid == gid:
                del self._adopt_group[ckey]
        self._twin_of[gid] = entry
        return group

    def _drop_fresh(self, keys: List[NhKey]) -> None:
        """Forget the nexthop entries just created for ``keys`` that nothing uses (their group
        could not get an id)."""
        dropped = False
        for key in keys:
            nh = self.nexthops.get(key)
            if nh is not None and not nh.users and not nh.groups:
                del self.nexthops[key]
                del self.by_id[nh.id]
                self.by_dev[key[2]].discard(nh)
                self._set_cache.clear()
                dropped = True
        if dropped:
            self.released()  # their ids are free again: the range is no longer known full

    def shrink_in_place(self, old: GroupEntry, new: Entry, movers: Set[Prefix], now: float) -> Optional[GroupEntry]:
        """Prefix-independent convergence: every user of the group ``old`` left it, and
        ``movers`` (former users of it) all moved to ``new``, whose set is a subset of
        ``old``'s (a BGP peer went down, a next hop stopped resolving) or, in one batch, a
        superset (a next hop resolves again: the members come back).  An entry with
        ``new``'s content takes ``old``'s id, so the kernel group is replaced in place (one
        write) and no route moves; ``old`` is freed.

        That entry is ``new`` itself when ``movers`` are its only users; otherwise (a plain
        nexthop, or a group other prefixes use too) a group of its members made for
        ``movers`` (a group of one member for a nexthop; a *twin*, :class:`TwinKey`, when a
        group with that content exists): ``movers`` are moved from ``new`` to it, the caller
        updates their candidates.  Returns the entry now at ``old.id``, or None when it
        cannot be done: ``new``'s set is neither a subset nor a superset of ``old``'s (the best
        path changed: the routes move), or the group type
        (multipath, resilient buckets) differs (the kernel cannot change it in place), or
        adoption is under way."""
        if old.users or new is old or self.adopting_groups:
            return None
        weights = {m.key: w for m, w in old.members}
        if new.is_group:
            keys = {k for k, _w in new.key[0]}
            if not (keys <= weights.keys() or keys >= weights.keys()):
                return None
            res_old, res_new = old.resilient, new.resilient
            if (res_old is None) != (res_new is None) or (res_old is not None and res_old.buckets != res_new.buckets):
                return None
            if len(new.users) == len(movers):
                group = new
                if self.by_id.get(group.id) is group:
                    del self.by_id[group.id]
                    self.dormant.discard(group.id)
            else:
                gkey = TwinKey(new.key, self._next_twin())
                group = self._wrap(gkey, old.id, list(new.members), new, movers, now)
        else:
            if new.key not in weights or not movers <= new.users:
                return None
            gkey = (((new.key, weights[new.key]),), old.resilient)
            if gkey in self.groups:
                gkey = TwinKey(gkey, self._next_twin())
            group = self._wrap(gkey, old.id, [(new, weights[new.key])], new, movers, now)
        del self.groups[old.key]  # free the old group; its id goes to ``group``
        for m, _w in old.members:
            m.groups.discard(old)
            if not m.users and not m.groups and m.unused_since is None:
                m.unused_since = now  # freed at its hold end (a member A of a peer that went)
        self.dormant.discard(old.id)
        group.id = old.id
        self.by_id[old.id] = group
        self._set_cache.clear()
        self.released()
        return group

    def grow_in_place(self, group: GroupEntry, gkey: GroupKey) -> bool:
        """Prefix-independent convergence when members come back (a BGP peer re-announcing
        its paths: :meth:`kernelsync.core.fib.FibBuilder._defer`): every user of ``group``
        now has the set ``gkey``, ``group``'s members and more (same weights, same group type).
        ``group`` itself takes that content: its id, its users and the routes on it stay, the
        kernel group is replaced in place (one write), nothing is done per prefix.  New members
        are made (or reused); when a group with ``gkey``'s content exists (other prefixes'),
        ``group`` becomes its twin (:class:`TwinKey`).  Returns False, changing nothing, when
        the routes' scope would change (they must be rewritten) or a new member finds no id."""
        scopes = {nexthop_scope(k) for k, _w in gkey[0]}
        if (scopes.pop() if len(scopes) == 1 else RT_SCOPE_UNIVERSE) != group.scope:
            return False
        fresh = [k for k, _ in gkey[0] if k not in self.nexthops]
        try:
            members = [(self._nexthop(k), w) for k, w in gkey[0]]
        except IdRangeExhausted:
            self._drop_fresh(fresh)
            return False
        del self.groups[group.key]
        if gkey in self.groups:
            gkey = TwinKey(gkey, self._next_twin())
        for m, _w in group.members:
            m.groups.discard(group)
        for m, _w in members:
            m.groups.add(group)
            m.unused_since = None
        group.key = gkey
        group.members = members
        self.groups[gkey] = group
        self._set_cache.clear()
        return True

    def _next_twin(self) -> int:
        self._twins += 1
        return self._twins

    def _wrap(self, gkey: GroupKey, gid: int, members: List[Tuple[NhEntry, int]], new: Entry,
              movers: Set[Prefix], now: float) -> GroupEntry:
        """A group ``gkey`` of ``members`` at ``gid`` for ``movers``, who leave ``new``."""
        group = GroupEntry(gkey, gid, members)
        for m, _w in members:
            m.groups.add(group)
        self.groups[gkey] = group
        new.users -= movers
        if not new.users and new.unused_since is None:
            new.unused_since = now
        group.users |= movers
        return group

    def unuse(self, entry: Entry, prefix: Prefix, now: float) -> None:
        entry.users.discard(prefix)
        if not entry.users and entry.unused_since is None:
            entry.unused_since = now

    def collect(self, now: float) -> Optional[float]:
        """Free entries unused for ``hold_time``; returns when the next one is due (or None)."""
        due: Optional[float] = None
        freed = False
        for group in list(self.groups.values()):
            if group.users or group.unused_since is None:
                continue
            expiry = group.unused_since + self.hold_time
            if expiry <= now:
                freed = True
                del self.groups[group.key]
                del self.by_id[group.id]
                self.dormant.discard(group.id)
                for m, _ in group.members:
                    m.groups.discard(group)
                    if not m.users and not m.groups and m.unused_since is None:
                        m.unused_since = group.unused_since
            else:
                due = expiry if due is None else min(due, expiry)
        for nh in list(self.nexthops.values()):
            if nh.users or nh.groups or nh.unused_since is None:
                continue
            expiry = nh.unused_since + self.hold_time
            if expiry <= now:
                freed = True
                del self.nexthops[nh.key]
                del self.by_id[nh.id]
                self.by_dev[nh.key[2]].discard(nh)
                self.dormant.discard(nh.id)
            else:
                due = expiry if due is None else min(due, expiry)
        if freed:
            self.released()
        if freed or len(self._set_cache) > 65536:
            self._set_cache.clear()
        return due

    @staticmethod
    def unused(entry: Entry) -> bool:
        """No route uses ``entry``, directly or through a group (it waits for its hold end)."""
        if entry.users:
            return False
        return entry.is_group or not any(g.users for g in entry.groups)

    def park(self, nh_id: int) -> bool:
        """The kernel refused the write of ``nh_id``: if no route uses that entry, it is not
        retried (left out of :meth:`desired` until a route uses it again, freed at its hold end).
        Returns whether it was parked."""
        entry = self.by_id.get(nh_id)
        if entry is None or not self.unused(entry):
            return False
        self.dormant.add(nh_id)
        return True

    # desired kernel objects ----------------------------------------------------------------
    def scopes(self) -> Dict[int, int]:
        """id -> rtm_scope of the routes on that entry, for the entries whose routes are not
        RT_SCOPE_UNIVERSE (device-only IPv4 nexthops and groups of them)."""
        return {i: e.scope for i, e in self.by_id.items() if e.scope}

    def desired(self) -> Dict[int, KNexthop]:
        """id -> kernel object for every entry that is kept and can be in the kernel now.

        Nexthops: on a usable link (a failed one is included, so its write is retried).
        Groups: at least one active member."""
        out: Dict[int, KNexthop] = {}
        by_name = self.links.by_name
        dormant = self.dormant
        for nh in self.nexthops.values():
            if dormant and nh.id in dormant and self.unused(nh):
                continue
            link = by_name.get(nh.key[2])
            if link is not None and link.usable:
                family, gateway, _ = nh.key
                out[nh.id] = KNexthop(id=nh.id, family=family, protocol=self.protocol,
                                      oif=link.index, gateway=gateway)
        for group in self.groups.values():
            if dormant and group.id in dormant and not group.users:
                continue
            active = self.active_members(group)
            if active:
                res = group.resilient
                out[group.id] = KNexthop(id=group.id, family=0, protocol=self.protocol,
                                         group=active, grp_type=GRP_RES if res else GRP_MPATH,
                                         res=_res_tuple(res))
        return out


def _sort_member(item: Tuple[NhKey, int]):
    (family, gateway, dev), weight = item
    return (family, gateway or b"", dev, weight)


def _res_tuple(res: Optional[ResilientSpec]) -> Optional[Tuple[int, int, int]]:
    if res is None:
        return None
    return (res.buckets, int(round(res.idle_timer * 100)), int(round(res.unbalanced_timer * 100)))


__all__ = ["NexthopManager", "NhEntry", "GroupEntry", "TwinKey", "IdRangeExhausted", "nexthop_scope"]
