"""The RIB: every feed's routes, merged by admin distance.  Pure: no I/O, no clock.

Shape: ``prefix -> ((source name, tuple[Path, ...]), ...)``, the sources best admin distance
first (ties broken by name): an immutable :data:`RibEntry`.  Each source has an admin distance
(lower wins, FRR's defaults: connected 0, static 1, eBGP 20, OSPF 110, iBGP 200).  The paths a
source gives for a prefix are that source's equal-best paths; their nexthops form its ECMP set.
Which source actually wins also depends on which nexthops are usable (links up): that choice is
made by :class:`kernelsync.core.fib.FibBuilder`, which reads :attr:`Rib.entries`.

Memory: nearly every prefix of a large table has one source, and the prefixes of one feed
burst share one paths tuple (the feeds intern them), so a single-source entry is interned by
(source, paths): a million prefixes on a few dozen path sets hold a few dozen entries, not a
million dicts (a per-prefix ``{source: paths}`` dict cost 192 bytes a route).
"""
from __future__ import annotations

from typing import Dict, Iterable, Iterator, List, Tuple

from .model import Path, Prefix

DEFAULT_DISTANCE = {"connected": 0, "static": 1, "ebgp": 20, "ospf": 110, "ibgp": 200}

Paths = Tuple[Path, ...]
RibEntry = Tuple[Tuple[str, Paths], ...]  # ((source, paths), ...) best admin distance first
INTERN_MAX = 1 << 16  # single-source entries kept for sharing; the cache starts again beyond


class UnknownSource(KeyError):
    pass


class Rib:
    """Routes by prefix and source.  Changes are collected in :attr:`dirty` for the FIB builder:
    a dict used as an insertion-ordered set (prefix -> None), so that a burst is visited in the
    order it came, its objects next to each other in memory (a set's hash order made every
    lookup a cache miss: several times slower on a large table)."""

    def __init__(self) -> None:
        self.distance: Dict[str, int] = {}
        self.ready: Dict[str, bool] = {}
        self.entries: Dict[Prefix, RibEntry] = {}
        self.dirty: Dict[Prefix, None] = {}
        self.became_ready = False  # every source ready now: held-back deletions are due
        # (source, id(paths)) -> the entry ((source, paths),): shared by every prefix of that
        # source on those paths (the entry holds the paths, so their id is not reused meanwhile)
        self._single: Dict[Tuple[str, int], RibEntry] = {}
        self.growth_holds: Dict[str, float] = {}  # source -> end of its growth hold (s); see hold_growth

    # sources -------------------------------------------------------------------------------
    def add_source(self, name: str, distance: int) -> None:
        """Register a feed (again: as :meth:`set_distance`).  ``distance`` 0..255.  A new source
        is not ready (initial state not delivered): nothing is deleted from the kernel until
        every source is ready."""
        if name in self.distance:
            self.set_distance(name, distance)
            return
        if not 0 <= distance <= 255:
            raise ValueError("admin distance %r of source %r is not in 0..255" % (distance, name))
        self.distance[name] = distance
        self.ready.setdefault(name, False)

    def set_ready(self, name: str) -> None:
        """The source has delivered its initial state (end-of-RIB)."""
        self._check(name)
        if not self.ready[name]:
            self.ready[name] = True
            self.became_ready = self.all_ready

    def set_distance(self, name: str, distance: int) -> None:
        """Change the admin distance (0..255) of a registered source (a configuration reload):
        every prefix of the source is re-decided, its entries with other sources sorted best
        first again."""
        self._check(name)
        if not 0 <= distance <= 255:
            raise ValueError("admin distance %r of source %r is not in 0..255" % (distance, name))
        if self.distance[name] == distance:
            return
        order = self.distance
        order[name] = distance
        for prefix, entry in self.entries.items():
            if any(s == name for s, _p in entry):
                if len(entry) > 1:
                    self.entries[prefix] = tuple(sorted(entry, key=lambda i: (order[i[0]], i[0])))
                self.dirty[prefix] = None

    @property
    def all_ready(self) -> bool:
        return all(self.ready.values())

    def _check(self, source: str) -> None:
        if source not in self.distance:
            raise UnknownSource(source)

    # growth hold (prefix-independent convergence when a peer comes back) ---------------------
    def hold_growth(self, source: str, until: float) -> None:
        """``source`` is re-converging (a BGP peer of it came up and has not sent its end-of-RIB
        yet): until :meth:`release_growth` or ``until`` (s, engine clock), a prefix of it whose
        ECMP set only grows may wait, on its smaller group, for the other prefixes of that group
        (:class:`kernelsync.core.fib.FibBuilder` defers it), so that the group grows in place."""
        self._check(source)
        self.growth_holds[source] = until

    def release_growth(self, source: str) -> None:
        """``source`` has re-converged (every peer's end-of-RIB, or the wait for it gave up):
        the growths it deferred are applied at the next FIB sync."""
        self.growth_holds.pop(source, None)

    # updates -------------------------------------------------------------------------------
    def _one(self, source: str, paths: Paths) -> RibEntry:
        """The shared single-source entry of ``source`` on ``paths``."""
        ref = (source, id(paths))
        entry = self._single.get(ref)
        if entry is None or entry[0][1] is not paths:
            if len(self._single) >= INTERN_MAX:
                self._single = {}
            entry = self._single[ref] = ((source, paths),)
        return entry

    def update(self, source: str, prefix: Prefix, paths: Paths) -> None:
        """Set the paths of ``source`` for ``prefix`` (replacing earlier ones); empty = withdraw.
        Raises UnknownSource for a source not added."""
        if source not in self.distance:
            raise UnknownSource(source)
        if not paths:
            self.withdraw(source, prefix)
            return
        entries = self.entries
        entry = entries.get(prefix)
        if entry is None or (len(entry) == 1 and entry[0][0] == source):
            if entry is not None and entry[0][1] == paths:
                return
            entries[prefix] = self._one(source, paths)
        else:
            found = False
            for s, p in entry:
                if s == source:
                    if p == paths:
                        return
                    found = True
            rest = [(s, p) for s, p in entry if s != source] if found else list(entry)
            rest.append((source, paths))
            distance = self.distance
            rest.sort(key=lambda i: (distance[i[0]], i[0]))
            entries[prefix] = tuple(rest)
        self.dirty[prefix] = None

    def withdraw(self, source: str, prefix: Prefix) -> None:
        entry = self.entries.get(prefix)
        if entry is None or all(s != source for s, _p in entry):
            return
        rest = [(s, p) for s, p in entry if s != source]
        if not rest:
            del self.entries[prefix]
        elif len(rest) == 1:
            self.entries[prefix] = self._one(*rest[0])
        else:
            self.entries[prefix] = tuple(rest)
        self.dirty[prefix] = None

    def prefixes_of(self, source: str) -> Iterator[Prefix]:
        return (p for p, e in self.entries.items() if any(s == source for s, _p in e))

    def replace_source(self, source: str, routes: Dict[Prefix, Paths]) -> None:
        """Make ``routes`` the complete state of ``source``: withdraw its other prefixes."""
        for prefix in [p for p in self.prefixes_of(source) if p not in routes]:
            self.withdraw(source, prefix)
        for prefix, paths in routes.items():
            self.update(source, prefix, paths)

    # reading -------------------------------------------------------------------------------
    def sources(self, prefix: Prefix) -> Dict[str, Paths]:
        """``{source: paths}`` of ``prefix``, best admin distance first (a new dict; empty when
        no source has it)."""
        return dict(self.entries.get(prefix, ()))

    def paths(self, source: str, prefix: Prefix) -> Paths:
        """The paths ``source`` gives for ``prefix`` (``()``: none)."""
        for s, p in self.entries.get(prefix, ()):
            if s == source:
                return p
        return ()

    def candidates(self, prefix: Prefix) -> List[Tuple[int, str, Paths]]:
        """``[(distance, source, paths), ...]`` best first (ties broken by source name)."""
        distance = self.distance
        return [(distance[s], s, p) for s, p in self.entries.get(prefix, ())]

    def take_dirty(self) -> Dict[Prefix, None]:
        """The prefixes changed since the last call, in the order they changed (keys)."""
        dirty, self.dirty = self.dirty, {}
        return dirty

    def __len__(self) -> int:
        return len(self.entries)

    def __contains__(self, prefix: object) -> bool:
        return prefix in self.entries

    def __iter__(self) -> Iterable[Prefix]:
        return iter(self.entries)
