"""The kernel port: what the engine needs from a kernel, declared here so the core depends on
nothing outside itself.  Implemented by :class:`kernelsync.kernel.netlink.RtNetlink` (the real
kernel over rtnetlink) and :class:`kernelsync.kernel.fake.FakeKernel` (an in-memory model for
fast tests).
"""
from __future__ import annotations

from collections import Counter
from typing import Callable, Dict, List, NamedTuple, Optional, Protocol, Sequence, Tuple

from .model import KNexthop, Link, RouteKey
from .ops import LABELS, Op


class ResyncNeeded(Exception):
    """Replies or notifications were lost (ENOBUFS, an interrupted dump): whoever follows the
    kernel must read it again by dump."""


class Refusal(NamedTuple):
    """The kernel refused operation ``ops[index]`` with ``errno``; ``message`` is the kernel's
    extended-ack text (NLMSGERR_ATTR_MSG) or ``os.strerror(errno)``."""

    index: int
    errno: int
    message: str


#: ``on_chunk(start, end, refusals)``: ``ops[start:end]`` were answered, these were refused.
ChunkCallback = Callable[[int, int, List[Refusal]], None]


class WriteStats:
    """What a kernel port wrote: messages by operation kind (``writes``), refusals
    (``failures``), ``send()`` calls and dump requests."""

    def __init__(self) -> None:
        self.writes: Dict[str, int] = {label: 0 for label in LABELS.values()}
        self.failures = 0
        self.sends = 0
        self.dumps = 0

    def count(self, ops: Sequence[Op]) -> None:
        """Add ``ops`` to :attr:`writes` (counted by type, in C: this runs on every batch)."""
        for cls, n in Counter(map(type, ops)).items():
            self.writes[LABELS[cls.kind]] += n


class RouteDump(Protocol):
    """A route dump read in slices, on a socket of its own (the request socket stays free for
    repairs and writes while it is open).  It follows the kernel as it walks its tables: a
    route changed behind the walk's position is not seen again (the caller learns of it by its
    own writes and by notifications), one changed ahead of it is seen as it is when passed.

    * ``read(max_messages)``: up to about ``max_messages`` more routes (whole ``recv()``
      buffers: it may go a buffer over), ``(routes, scopes, done)`` with ``routes`` and
      ``scopes`` as :meth:`Kernel.dump_routes` fills them, for this slice only; ``done``: the
      dump is over (IPv4 then IPv6);
    * ``interrupted``: the kernel flagged the dump NLM_F_DUMP_INTR (its tables changed while
      it was walked: the caller merges what it saw meanwhile; the dump is not restarted);
    * ``close()``: stop reading; a dump not over is read to its end and discarded (a new dump
      cannot start on the socket before).

    Raises :class:`ResyncNeeded` if replies were lost."""

    interrupted: bool

    def read(self, max_messages: int) -> Tuple[Dict[RouteKey, int], Dict[RouteKey, int], bool]: ...
    def close(self) -> None: ...


class Kernel(Protocol):
    """What the engine needs from a kernel.

    * ``dump_links``: ifindex -> :class:`Link` (RTM_GETLINK);
    * ``dump_nexthops``: every nexthop object in the namespace, ours and others': id ->
      :class:`KNexthop` (RTM_GETNEXTHOP);
    * ``dump_routes(table, protocol, scopes=None)``: the routes of that table and protocol,
      ``RouteKey -> nexthop id`` (0: a route without RTA_NH_ID); ``scopes``, if given, gets
      ``RouteKey -> rtm_scope`` of those whose scope is not RT_SCOPE_UNIVERSE;
    * ``open_route_dump(table, protocol)``: the same routes as ``dump_routes``, read in slices
      (:class:`RouteDump`); optional: an engine whose kernel lacks it reads in one go;
    * ``apply(ops, on_chunk)``: write ``ops`` in order; returns every :class:`Refusal`;
      ``on_chunk`` is called in the caller's thread for each answered chunk, in order.

    ``portid``: the netlink port our writes come from (the nlmsg_pid of the notifications they
    cause: how an echo of our own write is told from another program's write).  Reads and
    writes raise :class:`ResyncNeeded` when replies were lost."""

    stats: WriteStats
    portid: int

    def dump_links(self) -> Dict[int, Link]: ...
    def dump_nexthops(self) -> Dict[int, KNexthop]: ...
    def dump_routes(self, table: int, protocol: int,
                    scopes: Optional[Dict[RouteKey, int]] = None) -> Dict[RouteKey, int]: ...
    def open_route_dump(self, table: int, protocol: int) -> RouteDump: ...
    def apply(self, ops: Sequence[Op], on_chunk: Optional[ChunkCallback] = None) -> List[Refusal]: ...


__all__ = ["Kernel", "RouteDump", "Refusal", "ResyncNeeded", "WriteStats", "ChunkCallback"]
