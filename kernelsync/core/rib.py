"""The RIB: every feed's routes, merged by admin distance.  Pure: no I/O, no clock.

Shape: ``prefix -> {source name -> tuple[Path, ...]}``.  Each source has an admin distance
(lower wins, FRR's defaults: connected 0, static 1, eBGP 20, OSPF 110, iBGP 200).  The paths a
source gives for a prefix are that source's equal-best paths; their nexthops form its ECMP set.
Which source actually wins also depends on which nexthops are usable (links up): that choice is
made by :class:`kernelsync.core.fib.FibBuilder`, which reads :meth:`Rib.candidates`.
"""
from __future__ import annotations

from typing import Dict, Iterable, Iterator, List, Tuple

from .model import Path, Prefix

DEFAULT_DISTANCE = {"connected": 0, "static": 1, "ebgp": 20, "ospf": 110, "ibgp": 200}


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
        self.entries: Dict[Prefix, Dict[str, Tuple[Path, ...]]] = {}
        self.dirty: Dict[Prefix, None] = {}
        self.became_ready = False  # every source ready now: held-back deletions are due
        self.growth_holds: Dict[str, float] = {}  # source -> end of its growth hold (s); see hold_growth

    # sources -------------------------------------------------------------------------------
    def add_source(self, name: str, distance: int) -> None:
        """Register a feed.  ``distance`` 0..255.  A new source is not ready (initial state not
        delivered): nothing is deleted from the kernel until every source is ready."""
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
    def update(self, source: str, prefix: Prefix, paths: Tuple[Path, ...]) -> None:
        """Set the paths of ``source`` for ``prefix`` (replacing earlier ones); empty = withdraw."""
        if source not in self.distance:
            raise UnknownSource(source)
        if not paths:
            self.withdraw(source, prefix)
            return
        entry = self.entries.get(prefix)
        if entry is None:
            self.entries[prefix] = {source: paths}
        elif entry.get(source) == paths:
            return
        else:
            entry[source] = paths
        self.dirty[prefix] = None

    def withdraw(self, source: str, prefix: Prefix) -> None:
        entry = self.entries.get(prefix)
        if entry is None or source not in entry:
            return
        del entry[source]
        if not entry:
            del self.entries[prefix]
        self.dirty[prefix] = None

    def prefixes_of(self, source: str) -> Iterator[Prefix]:
        return (p for p, e in self.entries.items() if source in e)

    def replace_source(self, source: str, routes: Dict[Prefix, Tuple[Path, ...]]) -> None:
        """Make ``routes`` the complete state of ``source``: withdraw its other prefixes."""
        for prefix in [p for p in self.prefixes_of(source) if p not in routes]:
            self.withdraw(source, prefix)
        for prefix, paths in routes.items():
            self.update(source, prefix, paths)

    # reading -------------------------------------------------------------------------------
    def candidates(self, prefix: Prefix) -> List[Tuple[int, str, Tuple[Path, ...]]]:
        """``[(distance, source, paths), ...]`` best first (ties broken by source name)."""
        entry = self.entries.get(prefix)
        if not entry:
            return []
        if len(entry) == 1:
            ((source, paths),) = entry.items()
            return [(self.distance[source], source, paths)]
        return sorted((self.distance[s], s, p) for s, p in entry.items())

    def take_dirty(self) -> Dict[Prefix, None]:
        """The prefixes changed since the last call, in the order they changed (keys)."""
        dirty, self.dirty = self.dirty, {}
        return dirty

    def __len__(self) -> int:
        return len(self.entries)

    def __iter__(self) -> Iterable[Prefix]:
        return iter(self.entries)
