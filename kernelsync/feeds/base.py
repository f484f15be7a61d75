"""The feed interface: what the daemon's event loop drives, for every feed alike.

A feed brings routes into the RIB (static routes, BGP through ExaBGP, a routing daemon's kernel
table, zebra's FPM stream) or, for export and the ExaBGP streams, talks to the outside on the
loop's behalf.  The daemon:

1. constructs each feed with what it needs (the RIB, the kernel port for dumps, the link
   table, its settings) and calls :meth:`Feed.start` once, in order, with the loop's selector
   (a feed registers its own file descriptors with a callable as ``data``: the loop calls it
   with ``now`` when the descriptor is ready);
2. on every turn calls :meth:`Feed.commit` (do what is due at ``now``: write the RIB) and asks
   :meth:`Feed.deadline` when it is due next; then runs the engine if the RIB changed;
3. after draining the kernel's notifications, tells every feed at once
   (:meth:`Feed.on_kernel_change` with one :class:`KernelChange`; :meth:`Feed.on_nexthop_event`
   per nexthop notification): the kernel deletes routes on a downed link without a word, so a
   link event means "read again what you follow";
4. answers ``show`` requests from :meth:`Feed.show`, and stops when a feed has :attr:`ended`
   (ExaBGP closed our stdin); :meth:`Feed.close` at exit.

Time is the loop's monotonic clock, in seconds, passed in; no feed sleeps.
"""
from __future__ import annotations

import selectors
from typing import NamedTuple, Optional, Protocol, Tuple

import attrs

from ..core.links import LinkChange
from ..core.model import KNexthop, KRoute


class RouteEvent(NamedTuple):
    """An RTM_NEWROUTE (``deleted`` False) or RTM_DELROUTE notification, not of our protocol."""

    deleted: bool
    route: KRoute


class NexthopEvent(NamedTuple):
    """An RTM_NEWNEXTHOP or RTM_DELNEXTHOP notification (``nexthop`` None: undecodable);
    ``by_us``: the echo of our own write (its nlmsg_pid is our request socket's port)."""

    deleted: bool
    nexthop: Optional[KNexthop]
    by_us: bool = False


@attrs.frozen
class KernelChange:
    """What the kernel notified since the last dispatch.

    ``links``: the link table's change when a link notification came (RTM_NEWLINK/DELLINK;
    its ``changed`` may be empty: a link that went down and up again between two reads still
    means routes may have been deleted), else None; ``addresses``: an address came or went;
    ``routes``: route notifications of other protocols, in order (only to feeds that
    :attr:`~Feed.follows_routes`); ``lost``: notifications were lost (ENOBUFS): read again
    everything you follow."""

    links: Optional[LinkChange] = None
    addresses: bool = False
    routes: Tuple[RouteEvent, ...] = ()
    lost: bool = False

    @property
    def link_event(self) -> bool:
        return self.links is not None or self.lost


class Feed(Protocol):
    """The interface every feed implements (see the module docstring).

    ``name``: for logs and ``show``; ``follows_routes``: the daemon opens one route
    notification socket for every feed that sets it; ``ended``: the feed's source is gone for
    good and the process should stop (ExaBGP closed our stdin); ``input_at``: when the oldest
    input this feed committed to the RIB and the engine has not applied yet reached the loop
    (monotonic seconds; None: nothing pending, or not measured): the daemon reads and clears it
    after each engine run, for the feed-to-kernel latency (:mod:`kernelsync.metrics`)."""

    name: str
    follows_routes: bool
    ended: bool
    input_at: Optional[float]

    def start(self, sel: selectors.BaseSelector, now: float) -> None: ...
    def commit(self, now: float) -> None: ...
    def deadline(self) -> Optional[float]: ...
    def on_kernel_change(self, change: KernelChange, now: float) -> None: ...
    def on_nexthop_event(self, event: NexthopEvent, now: float) -> None: ...
    def show(self) -> dict: ...
    def close(self) -> None: ...


class BaseFeed:
    """Defaults for the :class:`Feed` hooks a feed does not need: no descriptors, nothing due,
    kernel changes ignored."""

    name = "feed"
    follows_routes = False
    ended = False
    input_at: Optional[float] = None

    def mark_input(self, since: float) -> None:
        """A batch whose first input reached the loop at ``since`` (monotonic seconds) went to
        the RIB: :attr:`input_at` is the oldest such the engine has not applied yet."""
        if self.input_at is None or since < self.input_at:
            self.input_at = since

    def start(self, sel: selectors.BaseSelector, now: float) -> None:
        pass

    def commit(self, now: float) -> None:
        pass

    def deadline(self) -> Optional[float]:
        return None

    def on_kernel_change(self, change: KernelChange, now: float) -> None:
        pass

    def on_nexthop_event(self, event: NexthopEvent, now: float) -> None:
        pass

    def show(self) -> dict:
        return {}

    def close(self) -> None:
        pass


def escape_text(text: str) -> str:
    """``text`` with every character that is not printable (NUL, ESC, CR, LF, DEL, other C0/C1
    controls, unicode separators) and the backslash written as in a Python string literal
    (``\\x00``, ``\\x1b``, ``\\r``, ``\\\\``): what a feed sent, safe for one log line.  The
    one helper every feed uses for text that came from outside."""
    if text.isprintable() and "\\" not in text:
        return text
    return "".join("\\\\" if c == "\\" else c if c.isprintable() else repr(c)[1:-1] for c in text)


#: A burst of deletions is applied ``settle`` seconds after its last deletion, but never later
#: than SETTLE_CAP times ``settle`` after its first: a daemon stopping with a large table deletes
#: for longer than ``settle`` (its routes must all be seen gone at once), and a steady trickle of
#: deletions cannot hold the others back forever.
SETTLE_CAP = 10


def settle_due(first: float, last: float, settle: float) -> float:
    """When a burst of deletions that began at ``first`` and last grew at ``last`` is applied
    (seconds on the loop's clock; see SETTLE_CAP)."""
    return min(last + settle, first + SETTLE_CAP * settle)


def earliest(*times: Optional[float]) -> Optional[float]:
    """The earliest of ``times`` that is not None (None if all are)."""
    due = None
    for t in times:
        if t is not None and (due is None or t < due):
            due = t
    return due


__all__ = ["Feed", "BaseFeed", "KernelChange", "RouteEvent", "NexthopEvent", "earliest", "escape_text", "settle_due",
           "SETTLE_CAP"]
