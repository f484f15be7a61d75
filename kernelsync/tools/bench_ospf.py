"""``kernelsync bench-ospf``: kernelsync's ADDED convergence behind real OSPF daemons.

The OSPF lab (:mod:`kernelsync.tools.ospflab`: r1-r2-r3 triangle, r1 reaches the LAN
192.0.2.0/24 by ECMP over r2 and r3) runs real BIRD 2 or FRR 8.4; kernelsync runs in r1 and
installs the daemon's routes into its own table (:data:`OUR_TABLE`, protocol
:data:`OUR_PROTOCOL`, ids :data:`ID_RANGE`, the range FRR 8.4's zebra ignores):

* ``bird``: ``[[feed.table]]`` reading BIRD's kernel table 100, protocol bird (12);
* ``frr``: ``[feed.fpm]``, zebra's FPM stream (``fpm use-next-hop-groups``).

Then ``--flaps`` flaps of each kind (``--kinds``), each a DOWN event and an UP event; the order
of the kinds in each round and the side (r2 or r3) of each flap come from ``--seed``:

* ``local``: r1's link to that side (e12 or e13) administratively down / up;
* ``carrier``: the peer's end of that link down / up (r1's end loses carrier: still a change of
  r1's own link);
* ``remote``: that side's router loses its LAN address (192.0.2.x/24 on lan2/lan3) and its stub
  link (st2/st3 down) in one ``ip -batch``, and gets them back; r1's links are untouched.  r1's
  ECMP for the LAN shrinks to the other side and the side's stub prefix is withdrawn: a replace
  and a deletion in one SPF run.

After a DOWN event r1 reaches the LAN over the other side only and the side's stub prefix
(198.51.100.0/24 or 203.0.113.0/24) is gone; after an UP event both are back.  Each event waits,
with deadlines, until the daemon's table and kernelsync's table show that, every daemon write of
the event is matched by kernelsync, and both tables have been quiet for :data:`QUIET` s.

How it is measured: one netlink socket in r1 (RTNLGRP_LINK, RTNLGRP_IPV4_ROUTE and
RTNLGRP_NEXTHOP: one socket, so the order is the kernel's) timestamps every notification with
``time.monotonic()`` on receipt and replays it into a :class:`Tracker`, which keeps two views of
r1's kernel: the DAEMON's (BIRD: table 100 proto bird; FRR: main table proto ospf (188), zebra's
own kernel write, not its FPM message) and KERNELSYNC's (its table and protocol).  A view gives
per prefix the set of next hops its route forwards to (gateways, ``dev N`` for a device-only
leg), through nexthop objects and groups; the kernel's silent deletions when a link goes down
(nexthop objects on it, groups shrinking, routes on them, old-style routes on an admin-down
device; no notification for any of it) are applied as well.

* A daemon write (:class:`Measurement`): a daemon-view message (a route, or a nexthop object one
  of its routes uses) that CHANGES the set of prefix P, to S (None: P deleted), at t0.
* kernelsync converged at t1: the first change of kernelsync's view after t0 that makes P give
  S (its route write, or a write of the group its route uses).  If kernelsync's view already
  gives S when the daemon writes (the kernel shrank kernelsync's group as it shrank the
  daemon's, or kernelsync wrote first), t1 = t0 and the write counts as ``already``.
* ADDED convergence = t1 - t0.  A daemon write followed by another one for P before kernelsync
  reached S is ``superseded`` (left out of the figures); one never reached is ``unmatched``;
  ``stranded``: one kernelsync cannot follow, every next hop on an r1 link without carrier
  (:class:`Measurement`).
* Changes (additions and replaces) and deletions are reported apart: kernelsync lets deletions
  settle (``settle``, 0.2 s by default) on purpose.

FRR: zebra's FPM connection goes through a relay in r1 (:class:`FpmTap`) that timestamps each
frame (it forwards first, then records: a few tens of microseconds more on kernelsync's path);
each change also gets ``fpm_ms``, the time from zebra's kernel write to the first FPM frame of
the event giving P the same set (negative: the frame came first).  And when zebra's kernel write
does not give what zebra selected (FRR 8.4 leaves its kernel group with one member after a link
of r1 comes back, :mod:`kernelsync.tools.ospflab`), the change zebra streamed over FPM is
measured from its FPM frame instead (``ref`` "fpm"; an event waits for zebra's kernel table or
its FPM stream to show the target).

Output: per daemon x kind x direction, the count, median and max of the added convergence in ms
(changes; deletions likewise) and the kernel writes kernelsync made over the flaps (``show
stats``); ``--json`` prints everything as one JSON document instead.
"""
from __future__ import annotations

import argparse
import errno
import json
import os
import random
import select
import shutil
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass
from typing import Callable, Dict, FrozenSet, Iterable, List, Optional, Sequence, Tuple

from ..control import query
from ..core.model import KNexthop, KRoute, Link, format_address, format_prefix
from ..kernel.codec import (NETLINK_ADD_MEMBERSHIP, NETLINK_ROUTE, NLMSGHDR, RTM_DELNEXTHOP, RTM_DELROUTE,
                            RTM_NEWLINK, RTM_NEWNEXTHOP, RTM_NEWROUTE, RTNLGRP_IPV4_ROUTE, RTNLGRP_LINK,
                            RTNLGRP_NEXTHOP, SO_RCVBUFFORCE, SOL_NETLINK, parse_link, parse_nexthop, parse_route)
from .netns import NetNS, wait_for

OUR_TABLE = 200
OUR_PROTOCOL = 200
#: ids FRR 8.4's zebra ignores (as tests/netns/test_frr.py); used for both daemons
ID_RANGE = (469762048, 470762047)
FPM_PORT = 2620          # zebra dials this one (ospflab's default)
FPM_TAP_PORT = 2621      # kernelsync listens here, behind the FPM tap
KINDS = ("local", "carrier", "remote")
DEFAULT_KINDS = ("local", "remote")
DIRECTIONS = ("down", "up")
QUIET = 0.5              # seconds without a write in either table before an event counts as over
#: FRR: seconds after an event's start from which zebra may be found stuck (Event.zebra_stuck)
STUCK_AFTER = 3.0
#: seconds an event may take (BIRD: 1-8 s, its MinLSInterval; FRR: 0.5-1.5 s)
EVENT_TIMEOUT = {"bird": 45.0, "frr": 20.0}
#: a view: (table, protocol)
DAEMON_VIEWS = {"bird": (100, 12), "frr": (254, 188)}

NexthopSet = Optional[FrozenSet[str]]


# ---------------------------------------------------------------------------------------------
# The tracker: r1's kernel as the notifications (and the kernel's silent deletions) make it

@dataclass(frozen=True)
class Write:
    """A change of one prefix in one view: ``seq`` (the message's order on the socket), ``t``
    (monotonic seconds at receipt), ``view``, ``prefix`` ("192.0.2.0/24"), ``nexthops`` (the
    sorted set of next hops after it; None: no route), ``cause``: "route" (a route message),
    "nexthop" (a message about a nexthop object the route uses) or "kernel" (the kernel's
    silent deletions after a link went down); ``stranded``: every next hop is on a link that is
    down or without carrier (the kernel keeps such an old-style route, but refuses a nexthop
    object there).  Route messages always make a Write (even when the set stays); nexthop
    messages and the kernel only when the set changes."""

    seq: int
    t: float
    view: str
    prefix: str
    nexthops: NexthopSet
    cause: str
    stranded: bool = False


class Tracker:
    """Views of one namespace's IPv4 routes, built from RTM_NEWROUTE/DELROUTE,
    RTM_NEWNEXTHOP/DELNEXTHOP and RTM_NEWLINK in the order received.

    ``views``: name -> (table, protocol): the routes of that table and protocol.  After each
    message :attr:`writes` gets a :class:`Write` per affected prefix.  When a link stops being
    usable (admin down or no carrier) the kernel deletes, without a notification, every nexthop
    object on it, shrinks the groups holding them, deletes emptied groups and the routes on any
    of those; on admin down also every old-style route whose legs are all on that device (a
    multipath route keeps its dead leg): the tracker does the same (cause "kernel")."""

    def __init__(self, views: Dict[str, Tuple[int, int]]) -> None:
        self.views = dict(views)
        self.routes: Dict[Tuple[str, str], KRoute] = {}
        self.nexthops: Dict[int, KNexthop] = {}
        self.links: Dict[int, Link] = {}
        self.writes: List[Write] = []
        self.seq = 0
        self.last_write: Dict[str, float] = {}

    # queries ---------------------------------------------------------------------------------
    def state(self, view: str, prefix: str) -> NexthopSet:
        """The set of next hops of ``prefix`` in ``view`` now (None: no route)."""
        route = self.routes.get((view, prefix))
        return None if route is None else self._set(route)

    def prefixes(self, view: str) -> Dict[str, NexthopSet]:
        return {p: self._set(r) for (v, p), r in self.routes.items() if v == view}

    def _set(self, route: KRoute) -> FrozenSet[str]:
        if route.nh_id:
            nh = self.nexthops.get(route.nh_id)
            if nh is None:
                return frozenset(["nhid %d?" % route.nh_id])
            members = [self.nexthops.get(m) for m, _w in nh.group] if nh.group else [nh]
            return frozenset(_hop(m.family, m.gateway, m.oif) if m is not None else "member?" for m in members)
        return frozenset(_hop(leg.gw_family, leg.gateway, leg.ifindex) for leg in route.legs)

    # messages --------------------------------------------------------------------------------
    def feed(self, t: float, kind: int, obj) -> None:
        """One decoded message received at ``t``: ``kind`` RTM_NEWROUTE/RTM_DELROUTE with a
        :class:`KRoute`, RTM_NEWNEXTHOP/RTM_DELNEXTHOP with a :class:`KNexthop`, RTM_NEWLINK
        with a :class:`Link`; anything else is ignored."""
        self.seq += 1
        if kind in (RTM_NEWROUTE, RTM_DELROUTE):
            self._route(t, kind, obj)
        elif kind in (RTM_NEWNEXTHOP, RTM_DELNEXTHOP):
            self._nexthop(t, kind, obj)
        elif kind == RTM_NEWLINK:
            self._link(t, obj)

    def _view_of(self, route: KRoute) -> Optional[str]:
        for name, (table, protocol) in self.views.items():
            if route.table == table and route.protocol == protocol:
                return name
        return None

    def _record(self, t: float, view: str, prefix: str, nexthops: NexthopSet, cause: str) -> None:
        route = self.routes.get((view, prefix))
        stranded = route is not None and self._stranded(route)
        self.writes.append(Write(self.seq, t, view, prefix, nexthops, cause, stranded))
        self.last_write[view] = t

    def _stranded(self, route: KRoute) -> bool:
        if route.nh_id:
            nh = self.nexthops.get(route.nh_id)
            members = [] if nh is None else [self.nexthops.get(m) for m, _w in nh.group] if nh.group else [nh]
            oifs = [m.oif for m in members if m is not None]
        else:
            oifs = [leg.ifindex for leg in route.legs]
        return bool(oifs) and all(i in self.links and not self.links[i].usable for i in oifs)

    def _route(self, t: float, kind: int, route: KRoute) -> None:
        view = self._view_of(route)
        if view is None or not route.is_unicast:
            return
        prefix = format_prefix(route.prefix)
        if kind == RTM_DELROUTE:
            if self.routes.pop((view, prefix), None) is not None:
                self._record(t, view, prefix, None, "route")
            return
        self.routes[(view, prefix)] = route
        self._record(t, view, prefix, self._set(route), "route")

    def _users(self, ids: Iterable[int]) -> Dict[Tuple[str, str], NexthopSet]:
        """The (view, prefix) of every route on one of ``ids`` or on a group holding one, with
        its set now."""
        ids = set(ids)
        holders = {nh.id for nh in self.nexthops.values() if any(m in ids for m, _w in nh.group)}
        return {key: self._set(r) for key, r in self.routes.items() if r.nh_id and r.nh_id in ids | holders}

    def _changed(self, t: float, before: Dict[Tuple[str, str], NexthopSet], cause: str) -> None:
        for key, old in before.items():
            route = self.routes.get(key)
            new = None if route is None else self._set(route)
            if new != old:
                self._record(t, key[0], key[1], new, cause)

    def _nexthop(self, t: float, kind: int, nh: KNexthop) -> None:
        before = self._users([nh.id])
        if kind == RTM_NEWNEXTHOP:
            self.nexthops[nh.id] = nh
        else:
            self._delete_nexthops({nh.id})
        self._changed(t, before, "nexthop")

    def _delete_nexthops(self, ids: set) -> None:
        """Delete objects ``ids`` as the kernel does: out of every group, emptied groups go
        too, and every route on a deleted object."""
        while ids:
            for i in ids:
                self.nexthops.pop(i, None)
            emptied = set()
            for gid, group in list(self.nexthops.items()):
                if group.group and any(m in ids for m, _w in group.group):
                    left = tuple(m for m in group.group if m[0] not in ids)
                    if left:
                        self.nexthops[gid] = KNexthop(id=group.id, family=group.family, protocol=group.protocol,
                                                      group=left, grp_type=group.grp_type, res=group.res)
                    else:
                        emptied.add(gid)
            for key, route in list(self.routes.items()):
                if route.nh_id in ids:
                    del self.routes[key]
            ids = emptied

    def _link(self, t: float, link: Link) -> None:
        self.links[link.index] = link
        if link.usable:
            return
        dead = {i for i, nh in self.nexthops.items() if not nh.group and nh.oif == link.index}
        before = self._users(dead)
        if not link.up:
            for key, route in self.routes.items():
                if not route.nh_id and route.legs and all(leg.ifindex == link.index for leg in route.legs):
                    before[key] = self._set(route)
        self._delete_nexthops(dead)
        if not link.up:
            for key in [k for k, r in self.routes.items() if not r.nh_id and r.legs
                        and all(leg.ifindex == link.index for leg in r.legs)]:
                del self.routes[key]
        self._changed(t, before, "kernel")


def _hop(family: Optional[int], gateway: Optional[bytes], oif: int) -> str:
    if gateway is None:
        return "dev %d" % oif
    return format_address(family, gateway)


def decode(data: bytes, length: int) -> List[Tuple[int, object]]:
    """The (message type, decoded object) of each route, nexthop and link message in
    ``data[:length]`` (one netlink datagram); others, and families the codec leaves out, are
    skipped."""
    out: List[Tuple[int, object]] = []
    off = 0
    while off + NLMSGHDR.size <= length:
        size, kind, _flags, _seq, _pid = NLMSGHDR.unpack_from(data, off)
        if size < NLMSGHDR.size or off + size > length:
            break
        body, end = off + NLMSGHDR.size, off + size
        obj: object = None
        try:
            if kind in (RTM_NEWROUTE, RTM_DELROUTE):
                obj = parse_route(data, body, end)
            elif kind in (RTM_NEWNEXTHOP, RTM_DELNEXTHOP):
                obj = parse_nexthop(data, body, end)
            elif kind == RTM_NEWLINK:
                obj = parse_link(data, body, end)
        except struct.error:
            obj = None
        if obj is not None:
            out.append((kind, obj))
        off += (size + 3) & ~3
    return out


# ---------------------------------------------------------------------------------------------
# Matching (pure)

@dataclass
class Event:
    """One flap event: ``kind`` (local/carrier/remote), ``direction`` (down/up), ``side``
    (r2/r3), ``seq`` (the tracker's message count when the action started: later messages
    belong to it), ``t`` (monotonic), and once over ``took`` (s until both tables showed the
    target and were quiet) and ``problem`` (why it did not get there, else None);
    ``zebra_stuck`` (FRR): zebra selected the target (``show ip route``) but neither its kernel
    table nor its FPM stream carried it: FRR 8.4's dataplane keeps the group the kernel shrank
    when a link of r1 went down (also without kernelsync); the event ended with kernelsync
    holding what zebra streamed."""

    index: int
    kind: str
    direction: str
    side: str
    seq: int
    t: float
    took: Optional[float] = None
    problem: Optional[str] = None
    zebra_stuck: bool = False


@dataclass
class Measurement:
    """A daemon write and kernelsync's answer.  ``event``: index into the events;
    ``prefix``; ``nexthops``: S, the sorted list of next hops (None: a deletion); ``t0``: the
    daemon's write (monotonic s), ``seq0`` its message's order; ``ref``: "kernel" (t0 is the
    daemon's kernel write) or "fpm" (zebra's FPM frame: its kernel write did not give S);
    ``status``: "matched", "already" (kernelsync's table gave S when the daemon wrote it),
    "superseded", "unmatched", "stranded" (not matched, and every next hop of S is on a link
    of r1 that is down or without carrier when the daemon writes it: the kernel refuses
    nexthop objects there, kernelsync cannot follow; BIRD adds r1's own /32 on e12 as it
    loses carrier), "stale" (FRR: not matched, and zebra never streamed S over FPM in that
    event: its kernel write put the route on a kernel group it had left stale, not what it
    selected; kernelsync follows the selection); ``t1``, ``added_ms`` (t1 - t0) when matched or already; ``by``:
    the cause of kernelsync's change (route, nexthop, kernel, already); ``write_ms``:
    kernelsync's own first write giving S after t0 (a route or nexthop message, not the
    kernel's silent shrinking), relative to t0, if there was one before the daemon's next
    write of P; ``fpm_ms`` (FRR): zebra's FPM frame giving S relative to t0."""

    event: int
    prefix: str
    nexthops: Optional[List[str]]
    t0: float
    seq0: int
    stranded: bool = False
    ref: str = "kernel"
    status: str = "unmatched"
    t1: Optional[float] = None
    added_ms: Optional[float] = None
    by: Optional[str] = None
    write_ms: Optional[float] = None
    fpm_ms: Optional[float] = None

    @property
    def deletion(self) -> bool:
        return self.nexthops is None


def _event_at(events: Sequence[Event], seq: int) -> Optional[int]:
    """The event a message ``seq`` belongs to (the last one started before it), or None."""
    found = None
    for ev in events:
        if ev.seq < seq:
            found = ev.index
        else:
            break
    return found


def _event_at_time(events: Sequence[Event], t: float) -> Optional[int]:
    found = None
    for ev in events:
        if ev.t <= t:
            found = ev.index
        else:
            break
    return found


def _end(events: Sequence[Event], index: int) -> Optional[float]:
    return events[index + 1].t if index + 1 < len(events) else None


def _converge(m: Measurement, theirs: Sequence[Write], before: Callable[[Write], bool],
              after: Callable[[Write], bool], until: Callable[[Write], bool], has_next: bool,
              end: Optional[float]) -> None:
    """Set m's status, t1, by and write_ms from kernelsync's writes ``theirs`` (in order):
    ``before``/``after`` tell a write before/after the daemon's, ``until`` one past the next
    daemon write of the prefix (``has_next``: there is one); ``end``: when the next event
    started (a write from then on answers nothing of this event)."""
    target = None if m.nexthops is None else frozenset(m.nexthops)
    earlier = [w for w in theirs if before(w)]
    if (earlier[-1].nexthops if earlier else None) == target:
        m.status, m.t1, m.by = "already", m.t0, "already"
    for w in theirs:
        if not after(w):
            continue
        if until(w) or (end is not None and w.t >= end):
            break
        if w.nexthops == target:
            if m.t1 is None:
                m.status, m.t1, m.by = "matched", w.t, w.cause
            if w.cause != "kernel":
                m.write_ms = round((w.t - m.t0) * 1000.0, 3)
                break
        elif m.status == "already":
            break  # kernelsync's table moved away again: the write after that is not an answer to this one
    if m.t1 is None:
        m.status = "superseded" if has_next else "stranded" if m.stranded else "unmatched"
    else:
        m.added_ms = round((m.t1 - m.t0) * 1000.0, 3)


def measure(writes: Sequence[Write], events: Sequence[Event], daemon: str, ours: str,
            intended: Sequence[Write] = ()) -> List[Measurement]:
    """Match each daemon write of the events with kernelsync's convergence (module docstring).

    ``writes``: the tracker's, in ``seq`` order; a daemon write is a change of a prefix's set
    in view ``daemon`` made by a route or nexthop message after the first event started (the
    kernel's silent shrinking of a group is no daemon write and does not count as the
    daemon's state either; its silent deletion of a route does).  kernelsync's side is view
    ``ours``.  ``intended`` (FRR): what the daemon selected, in time order (zebra's FPM stream,
    from the FPM tap's tracker): a change of it that no daemon write of the same event gives
    (zebra's kernel write carried something else: FRR 8.4 keeps a stale kernel group after a
    link flap) is measured from the FPM frame instead (``ref`` "fpm")."""
    by_prefix: Dict[str, Dict[str, List[Write]]] = {}
    for w in writes:
        if w.view in (daemon, ours):
            by_prefix.setdefault(w.prefix, {daemon: [], ours: []})[w.view].append(w)
    out: List[Measurement] = []
    for prefix, views in by_prefix.items():
        found: List[Measurement] = []
        state: NexthopSet = None
        for w in views[daemon]:
            if w.cause == "kernel":
                if w.nexthops is None:
                    state = None
                continue
            previous, state = state, w.nexthops
            if w.nexthops == previous:
                continue
            event = _event_at(events, w.seq)
            if event is not None:
                found.append(Measurement(event, prefix, None if w.nexthops is None else sorted(w.nexthops),
                                         w.t, w.seq, stranded=w.stranded))
        for n, m in enumerate(found):
            later = found[n + 1].seq0 if n + 1 < len(found) else None
            _converge(m, views[ours], lambda w, m=m: w.seq < m.seq0, lambda w, m=m: w.seq > m.seq0,
                      lambda w, later=later: later is not None and w.seq > later, later is not None,
                      _end(events, m.event))
        out.extend(found)
    covered = {(m.event, m.prefix, None if m.nexthops is None else tuple(m.nexthops)) for m in out}
    if intended:
        streamed = {(_event_at_time(events, w.t), w.prefix, None if w.nexthops is None else tuple(sorted(w.nexthops)))
                    for w in intended}
        for m in out:
            if m.status in ("unmatched", "superseded") and \
                    (m.event, m.prefix, None if m.nexthops is None else tuple(m.nexthops)) not in streamed:
                m.status = "stale"  # zebra's kernel write is not what it selected (nor streamed)
    fpm_state: Dict[str, NexthopSet] = {}
    extra: Dict[str, List[Measurement]] = {}
    for w in intended:
        previous, fpm_state[w.prefix] = fpm_state.get(w.prefix), w.nexthops
        event = _event_at_time(events, w.t)
        if w.nexthops == previous or event is None:
            continue
        key = (event, w.prefix, None if w.nexthops is None else tuple(sorted(w.nexthops)))
        if key not in covered:
            covered.add(key)
            extra.setdefault(w.prefix, []).append(Measurement(event, w.prefix, list(key[2]) if key[2] else None,
                                                              w.t, 0, ref="fpm"))
    for prefix, found in extra.items():
        theirs = by_prefix.get(prefix, {}).get(ours, [])
        # the next change of the prefix from either reference ends the wait for this one
        nexts = sorted([m.t0 for m in found] + [m.t0 for m in out if m.prefix == prefix])
        for m in found:
            later = next((t for t in nexts if t > m.t0), None)
            _converge(m, theirs, lambda w, m=m: w.t <= m.t0, lambda w, m=m: w.t > m.t0,
                      lambda w, later=later: later is not None and w.t > later, later is not None,
                      _end(events, m.event))
        out.extend(found)
    out.sort(key=lambda m: (m.t0, m.seq0))
    return out


def fpm_offsets(measurements: Sequence[Measurement], fpm_writes: Sequence[Write], events: Sequence[Event]) -> None:
    """Set ``fpm_ms`` of each measurement: the first FPM write (times from the FPM tap's own
    tracker) of the measurement's event that gives its prefix the same set, minus t0."""
    starts = {ev.index: ev.t for ev in events}
    ends = {ev.index: events[i + 1].t if i + 1 < len(events) else float("inf") for i, ev in enumerate(events)}
    for m in measurements:
        if m.ref != "kernel":
            continue
        target = None if m.nexthops is None else frozenset(m.nexthops)
        hit = next((w for w in fpm_writes if w.prefix == m.prefix and w.nexthops == target
                    and starts[m.event] <= w.t < ends[m.event]), None)
        if hit is not None:
            m.fpm_ms = round((hit.t - m.t0) * 1000.0, 3)


def _stats(values: List[float]) -> Dict[str, Optional[float]]:
    return {"count": len(values),
            "median_ms": round(statistics.median(values), 3) if values else None,
            "max_ms": round(max(values), 3) if values else None}


def summarize(measurements: Sequence[Measurement], events: Sequence[Event]) -> Dict[str, Dict[str, object]]:
    """Per "kind/direction" (in event order): ``events``, ``changes`` and ``deletions`` each
    {count, median_ms, max_ms} over the matched and already-converged writes, ``already``,
    ``superseded``, ``unmatched`` (counts over both), ``fpm_reference`` (of those measured from
    zebra's FPM frame), ``kernelsync_write`` {count, median_ms, max_ms} of ``write_ms`` over the
    changes, and ``fpm`` {count, median_ms, max_ms} of the FPM offsets when there are any."""
    out: Dict[str, Dict[str, object]] = {}
    for ev in events:
        row = out.setdefault("%s/%s" % (ev.kind, ev.direction), {"events": 0})
        row["events"] += 1
    for key, row in out.items():
        mine = [m for m in measurements if "%s/%s" % (events[m.event].kind, events[m.event].direction) == key]
        done = [m for m in mine if m.status in ("matched", "already")]
        row["changes"] = _stats([m.added_ms for m in done if not m.deletion])
        row["deletions"] = _stats([m.added_ms for m in done if m.deletion])
        for status in ("already", "superseded", "unmatched", "stranded", "stale"):
            row[status] = sum(1 for m in mine if m.status == status)
        row["fpm_reference"] = sum(1 for m in done if m.ref == "fpm")
        row["kernelsync_write"] = _stats([m.write_ms for m in done if m.write_ms is not None and not m.deletion])
        fpm = [m.fpm_ms for m in mine if m.fpm_ms is not None and not m.deletion]
        if fpm:
            row["fpm"] = _stats(fpm)
    return out


# ---------------------------------------------------------------------------------------------
# The listener

class Listener:
    """A netlink socket in ``ns`` on links, IPv4 routes and nexthop objects; a thread reads it,
    timestamps each datagram on receipt and feeds the messages into ``tracker`` under
    :attr:`lock`.  ``overflows``: ENOBUFS seen (notifications lost: the run is not valid)."""

    def __init__(self, ns: NetNS, tracker: Tracker) -> None:
        self.tracker = tracker
        self.lock = threading.Lock()
        self.overflows = 0
        self._stop = threading.Event()
        with ns.entered():
            sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC, NETLINK_ROUTE)
        sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, 32 << 20)
        sock.bind((0, (1 << (RTNLGRP_LINK - 1)) | (1 << (RTNLGRP_IPV4_ROUTE - 1))))
        sock.setsockopt(SOL_NETLINK, NETLINK_ADD_MEMBERSHIP, RTNLGRP_NEXTHOP)
        sock.settimeout(0.1)
        self.sock = sock
        self._thread = threading.Thread(target=self._run, name="bench-ospf-listener", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        buf = bytearray(1 << 20)
        while not self._stop.is_set():
            try:
                n = self.sock.recv_into(buf)
            except socket.timeout:
                continue
            except OSError as exc:
                if exc.errno == errno.ENOBUFS:
                    self.overflows += 1
                    continue
                return
            t = time.monotonic()
            messages = decode(buf, n)
            with self.lock:
                for kind, obj in messages:
                    self.tracker.feed(t, kind, obj)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2.0)
        self.sock.close()


class FpmTap:
    """A relay in ``ns``: listens on 127.0.0.1:``port`` (where zebra dials), connects each
    connection to kernelsync on 127.0.0.1:``to``, forwards both ways, and feeds every netlink
    message of zebra's frames (4-byte header: version, type, length) into ``tracker`` with the
    time the frame's last byte arrived (after forwarding it)."""

    def __init__(self, ns: NetNS, port: int, to: int, tracker: Tracker) -> None:
        self.ns = ns
        self.to = to
        self.tracker = tracker
        self.lock = threading.Lock()
        self.connections = 0
        self.frames = 0
        self._stop = threading.Event()
        with ns.entered():
            self.listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(("127.0.0.1", port))
        self.listener.listen(4)
        self.listener.settimeout(0.1)
        self._thread = threading.Thread(target=self._run, name="bench-ospf-fpm-tap", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                zebra, _ = self.listener.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            with self.ns.entered():
                upstream = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            try:
                upstream.connect(("127.0.0.1", self.to))
            except OSError:
                upstream.close()
                zebra.close()
                continue
            self.connections += 1
            try:
                self._relay(zebra, upstream)
            finally:
                zebra.close()
                upstream.close()

    def _relay(self, zebra: socket.socket, upstream: socket.socket) -> None:
        zebra.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        upstream.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        buf = b""
        while not self._stop.is_set():
            ready, _, _ = select.select([zebra, upstream], [], [], 0.1)
            for sock in ready:
                data = sock.recv(65536)
                if not data:
                    return
                if sock is upstream:
                    zebra.sendall(data)
                    continue
                upstream.sendall(data)
                t = time.monotonic()
                buf += data
                while len(buf) >= 4:
                    _version, kind, length = struct.unpack_from("!BBH", buf, 0)
                    if length < 4:
                        return
                    if len(buf) < length:
                        break
                    frame, buf = buf[4:length], buf[length:]
                    if kind == 1:
                        self.frames += 1
                        with self.lock:
                            for mtype, obj in decode(frame, len(frame)):
                                self.tracker.feed(t, mtype, obj)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2.0)
        self.listener.close()


# ---------------------------------------------------------------------------------------------
# One daemon's run

class BenchError(RuntimeError):
    pass


def _targets(direction: str, side: str) -> Dict[str, NexthopSet]:
    from .ospflab import LAN, NH_R2, NH_R3, STUB_R2, STUB_R3
    other = NH_R3 if side == "r2" else NH_R2
    stub, hop = (STUB_R2, NH_R2) if side == "r2" else (STUB_R3, NH_R3)
    if direction == "down":
        return {LAN: frozenset([other]), stub: None}
    return {LAN: frozenset([NH_R2, NH_R3]), stub: frozenset([hop])}


def _steady() -> Dict[str, NexthopSet]:
    from .ospflab import LAN, NH_R2, NH_R3, STUB_R2, STUB_R3
    return {LAN: frozenset([NH_R2, NH_R3]), STUB_R2: frozenset([NH_R2]), STUB_R3: frozenset([NH_R3])}


def _flap(lab, kind: str, direction: str, side: str) -> None:
    """Do one event (module docstring)."""
    link = "e12" if side == "r2" else "e13"
    if kind == "local":
        lab.link(link, direction)
    elif kind == "carrier":
        lab.peer_link(link, direction)
    else:
        n = side[1]
        addr = "192.0.2.%s/24" % n
        cmds = (["address del %s dev lan%s" % (addr, n), "link set st%s down" % n] if direction == "down" else
                ["address add %s dev lan%s" % (addr, n), "link set st%s up" % n])
        proc = subprocess.run(["ip", "-n", lab.ns(side).name, "-batch", "-"], input="\n".join(cmds) + "\n",
                              capture_output=True, text=True)
        if proc.returncode != 0:
            raise BenchError("%s: ip -batch %s: %s" % (side, cmds, proc.stderr.strip()))


def schedule(kinds: Sequence[str], flaps: int, seed: int) -> List[Tuple[str, str]]:
    """The (kind, side) of each flap: ``flaps`` rounds, each every kind once in a seeded order,
    each on a seeded side (r2 or r3)."""
    rng = random.Random(seed)
    out = []
    for _ in range(flaps):
        order = list(kinds)
        rng.shuffle(order)
        out.extend((kind, rng.choice(("r2", "r3"))) for kind in order)
    return out


def _config(daemon: str, workdir: str, settle: float, fpm_port: int) -> str:
    from .ospflab import BIRD_PROTO, BIRD_TABLE
    lines = ["# written by kernelsync.tools.bench_ospf", "[kernel]", "table = %d" % OUR_TABLE,
             "protocol = %d" % OUR_PROTOCOL, "nexthop_id_range = [%d, %d]" % ID_RANGE, "verify_delay = 0.3",
             "[control]", "socket = %s" % json.dumps(os.path.join(workdir, "ks.sock"))]
    if daemon == "bird":
        lines += ["[[feed.table]]", 'name = "ospf"', "table = %d" % BIRD_TABLE, "protocol = %d" % BIRD_PROTO,
                  "hold_time = 30", "settle = %s" % settle]
    else:
        lines += ["[feed.fpm]", 'name = "ospf"', 'address = "127.0.0.1"', "port = %d" % fpm_port,
                  "hold_time = 30", "replay_quiet = 0.3", "settle = %s" % settle]
    path = os.path.join(workdir, "ks.toml")
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")
    return path


class DaemonRun:
    """The lab, the listener, kernelsync and the events of one daemon (``run()``)."""

    def __init__(self, daemon: str, schedule_: List[Tuple[str, str]], settle: float,
                 say: Callable[[str], None], workdir: str) -> None:
        self.daemon = daemon
        self.schedule = schedule_
        self.settle = settle
        self.fpm_tap = daemon == "frr"
        self.say = say
        self.workdir = workdir
        self.tracker = Tracker({"daemon": DAEMON_VIEWS[daemon], "ours": (OUR_TABLE, OUR_PROTOCOL)})
        self.fpm_tracker = Tracker({"fpm": DAEMON_VIEWS["frr"]})
        self.events: List[Event] = []
        self.sock = os.path.join(workdir, "ks.sock")
        self.ks_log = os.path.join(workdir, "ks.log")

    # probes ----------------------------------------------------------------------------------
    def _ask(self, what: str):
        try:
            return query(self.sock, what, timeout=5.0)
        except (OSError, ValueError):
            return None

    def _states(self, view: str, prefixes: Iterable[str]) -> Dict[str, NexthopSet]:
        with self.listener.lock:
            return {p: self.tracker.state(view, p) for p in prefixes}

    def _measure(self) -> List[Measurement]:
        with self.listener.lock:
            writes = list(self.tracker.writes)
        intended: List[Write] = []
        if self.tap is not None:
            with self.tap.lock:
                intended = list(self.fpm_tracker.writes)
        return measure(writes, self.events, "daemon", "ours", intended)

    def _pending(self, event: Event) -> List[Measurement]:
        return [m for m in self._measure() if m.event == event.index and m.status == "unmatched"]

    def _daemon_at(self, want: Dict[str, NexthopSet]) -> bool:
        """The daemon's kernel table gives ``want``, or (FRR) zebra's FPM stream does."""
        if self._states("daemon", want) == want:
            return True
        if self.tap is None:
            return False
        with self.tap.lock:
            return {p: self.fpm_tracker.state("fpm", p) for p in want} == want

    def _quiet_for(self) -> float:
        with self.listener.lock:
            last = max(self.tracker.last_write.values(), default=0.0)
        return time.monotonic() - last

    def _describe(self, want: Dict[str, NexthopSet]) -> str:
        def fmt(states):
            return {p: sorted(s) if s is not None else None for p, s in states.items()}
        text = "want %s; daemon %s; kernelsync %s" % (
            fmt(want), fmt(self._states("daemon", want)), fmt(self._states("ours", want)))
        if self.tap is not None:
            with self.tap.lock:
                text += "; zebra's FPM stream %s" % fmt({p: self.fpm_tracker.state("fpm", p) for p in want})
        try:
            text += "; the daemon itself %s" % {p: self.lab.daemon_routes(p) for p in want}
        except Exception as exc:  # noqa: BLE001 - diagnostics only
            text += "; the daemon itself: %s" % exc
        return text

    def _wait(self, want: Dict[str, NexthopSet], event: Optional[Event], timeout: float) -> Optional[str]:
        """Until both views give ``want``, nothing of ``event`` is unmatched and both have
        been quiet for QUIET s.  Returns None, or what was still missing at the deadline."""
        asked = [0.0]

        def zebra_stuck() -> bool:
            """FRR: zebra selected ``want`` but neither its kernel table nor its FPM stream
            carries it (FRR 8.4 after a few link flaps), and kernelsync has what zebra streamed."""
            now = time.monotonic()
            if self.tap is None or event is None or now - event.t < STUCK_AFTER or now - asked[0] < 1.0 \
                    or self._quiet_for() < STUCK_AFTER / 2:
                return False
            asked[0] = now
            with self.tap.lock:
                streamed = {p: self.fpm_tracker.state("fpm", p) for p in want}
            if self._states("ours", want) != streamed:
                return False
            selected = {p: frozenset(self.lab.daemon_routes(p)) or None for p in want}
            return selected == want

        def done() -> bool:
            if not self._daemon_at(want) or self._states("ours", want) != want:
                if not zebra_stuck():
                    return False
                event.zebra_stuck = True
            if event is not None and self._pending(event):
                return False
            return self._quiet_for() >= QUIET
        try:
            wait_for(done, timeout=timeout, interval=0.02, what="the event's end")
            return None
        except TimeoutError:
            pending = self._pending(event) if event is not None else []
            return "%s; unmatched %s; quiet %.2f s" % (
                self._describe(want), [(m.prefix, m.nexthops) for m in pending], self._quiet_for())

    # the run ---------------------------------------------------------------------------------
    def run(self) -> Dict[str, object]:
        from .ospflab import OspfLab
        lab = OspfLab(self.daemon, fpm_port=FPM_PORT, workdir=os.path.join(self.workdir, "lab"))
        lab.start(daemons=False)
        self.lab = lab
        ks = None
        self.listener: Listener = None  # type: ignore[assignment]
        self.tap: Optional[FpmTap] = None
        try:
            self.listener = Listener(lab.r1, self.tracker)
            ks_port = FPM_TAP_PORT if self.fpm_tap else FPM_PORT
            if self.fpm_tap:
                self.tap = FpmTap(lab.r1, FPM_PORT, FPM_TAP_PORT, self.fpm_tracker)
            conf = _config(self.daemon, self.workdir, self.settle, ks_port)
            ks = subprocess.Popen(["ip", "netns", "exec", lab.r1.name, sys.executable, "-m", "kernelsync",
                                   "--log-level", "info", "--log-file", self.ks_log, "run", "-c", conf],
                                  stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
            wait_for(lambda: ks.poll() is not None or self._ask("show stats") is not None, timeout=15,
                     what="kernelsync's control socket")
            if ks.poll() is not None:
                raise BenchError("kernelsync exited (%s): %s" % (ks.returncode, _tail(self.ks_log)))
            t_start = time.monotonic()
            lab.start_daemons()
            problem = self._wait(_steady(), None, 60.0)
            if problem:
                raise BenchError("%s: never converged after start: %s\n%s" % (self.daemon, problem, lab.diagnostics()))
            self.say("%s: converged %.1f s after the daemons started" % (self.daemon, time.monotonic() - t_start))
            writes_before = (self._ask("show stats") or {}).get("writes", {})
            for n, (kind, side) in enumerate(self.schedule):
                for direction in DIRECTIONS:
                    with self.listener.lock:
                        seq = self.tracker.seq
                    event = Event(len(self.events), kind, direction, side, seq, time.monotonic())
                    self.events.append(event)
                    _flap(lab, kind, direction, side)
                    event.problem = self._wait(_targets(direction, side), event, EVENT_TIMEOUT[self.daemon])
                    event.took = round(time.monotonic() - event.t, 3)
                    self.say("%s: flap %d/%d %-7s %-4s %s: %s in %.1f s" % (
                        self.daemon, n + 1, len(self.schedule), kind, direction, side,
                        "PROBLEM " + event.problem if event.problem else
                        "zebra stuck (selected, not installed nor streamed)" if event.zebra_stuck else "done",
                        event.took))
            stats = self._ask("show stats") or {}
            writes_after = stats.get("writes", {})
            writes = {k: writes_after.get(k, 0) - writes_before.get(k, 0)
                      for k in sorted(set(writes_after) | set(writes_before))}
        finally:
            if ks is not None and ks.poll() is None:
                ks.terminate()
                try:
                    ks.wait(10)
                except subprocess.TimeoutExpired:
                    ks.kill()
                    ks.wait()
            if self.tap is not None:
                self.tap.close()
            if self.listener is not None:
                self.listener.close()
            lab.close()
        measurements = self._measure()
        tap = self.tap
        if tap is not None:
            fpm_offsets(measurements, list(self.fpm_tracker.writes), self.events)
        return {
            "daemon": self.daemon,
            "settle": self.settle,
            "feed": "[[feed.table]] table 100 proto bird" if self.daemon == "bird" else "[feed.fpm] (zebra, nexthop groups)",
            "events": [asdict(ev) for ev in self.events],
            "measurements": [asdict(m) for m in measurements],
            "summary": summarize(measurements, self.events),
            "kernelsync_writes": writes,
            "kernelsync_writes_total": sum(writes.values()),
            "kernelsync_kernel_failures": stats.get("kernel_failures"),
            "listener_overflows": self.listener.overflows,
            "fpm_tap": {"connections": tap.connections, "frames": tap.frames} if tap is not None else None,
        }


def _tail(path: str, n: int = 2000) -> str:
    try:
        with open(path, errors="replace") as f:
            return f.read()[-n:]
    except OSError:
        return ""


# ---------------------------------------------------------------------------------------------
# Command line

def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``kernelsync bench-ospf``."""
    parser.add_argument("--daemon", choices=("bird", "frr", "both"), default="both",
                        help="the OSPF daemon in the lab (default %(default)s)")
    parser.add_argument("--flaps", type=int, default=5,
                        help="flaps of each kind, each a down and an up event (default %(default)s)")
    parser.add_argument("--kinds", default=",".join(DEFAULT_KINDS),
                        help="comma-separated kinds of flap among %s (default %%(default)s)" % ", ".join(KINDS))
    parser.add_argument("--seed", type=int, default=1,
                        help="chooses the order of the kinds in each round and the side of each flap "
                             "(default %(default)s)")
    parser.add_argument("--settle", type=float, default=0.2,
                        help="the feed's settle (s) in kernelsync's configuration (default %(default)s)")
    parser.add_argument("--json", action="store_true", help="print the result as JSON instead of the table")
    parser.add_argument("--keep", action="store_true", help="keep the work directory (logs, configs)")


def print_table(results: Sequence[Dict[str, object]]) -> None:
    """Per daemon x kind x direction: count / median / max of the added convergence of changes
    (and of kernelsync's own writes for them) and of deletions, then kernelsync's writes."""
    head = ("%-6s %-7s %-4s %3s | %3s %9s %9s %4s %4s %9s %9s | %3s %9s %9s | %s"
            % ("daemon", "kind", "dir", "ev", "chg", "median", "max", "alrd", "fpm", "ks-write", "max",
               "del", "median", "max", "sup/unm/strd/stale"))
    print(head)
    print("-" * len(head))

    def ms(value):
        return "-" if value is None else "%.1f ms" % value

    for r in results:
        for key, row in r["summary"].items():
            kind, direction = key.split("/")
            ch, de, kw = row["changes"], row["deletions"], row["kernelsync_write"]
            print("%-6s %-7s %-4s %3d | %3d %9s %9s %4d %4d %9s %9s | %3d %9s %9s | %d/%d/%d/%d" % (
                r["daemon"], kind, direction, row["events"], ch["count"], ms(ch["median_ms"]), ms(ch["max_ms"]),
                row["already"], row["fpm_reference"], ms(kw["median_ms"]), ms(kw["max_ms"]), de["count"],
                ms(de["median_ms"]), ms(de["max_ms"]), row["superseded"], row["unmatched"], row["stranded"],
                row["stale"]))
        for key, row in r["summary"].items():
            if "fpm" in row:
                print("%-6s %-12s zebra's FPM frame against its kernel write: median %s, max %s (%d)" % (
                    r["daemon"], key, ms(row["fpm"]["median_ms"]), ms(row["fpm"]["max_ms"]), row["fpm"]["count"]))
        w = r["kernelsync_writes"]
        print("%-6s kernelsync's kernel writes over the flaps: %d (%s); settle %.3g s%s" % (
            r["daemon"], r["kernelsync_writes_total"], ", ".join("%s %d" % kv for kv in w.items() if kv[1]) or "none",
            r["settle"], "; %d events with problems" % r["problems"] if r.get("problems") else ""))
        if r.get("zebra_stuck"):
            print("%-6s %d events ended with zebra stuck: it selected both paths, but its kernel table and its FPM "
                  "stream kept one (FRR 8.4, also without kernelsync)" % (r["daemon"], r["zebra_stuck"]))


LEGEND = """\
ev: events; chg: daemon writes changing a prefix's next hops (additions, replaces), median/max of
kernelsync's ADDED convergence (its table giving the same next hops, minus the daemon's own kernel
write: BIRD table 100, zebra main table); alrd: of those, kernelsync's table already gave them
(0 ms; the kernel shrinks both groups when r1's link goes down); fpm: measured from zebra's FPM
frame (its kernel write did not give what it selected); ks-write: kernelsync's own first write
giving them (later than 0 when 'alrd'); del: deletions (they wait for 'settle' on purpose);
sup/unm/strd/stale: superseded by the daemon's next write / never matched / stranded: all its next
hops on an r1 link without carrier, where the kernel refuses nexthop objects / stale: zebra's kernel
write gave what it never selected nor streamed (its kernel group left stale); none in the figures."""


def main(args) -> int:
    daemons = ("bird", "frr") if args.daemon == "both" else (args.daemon,)
    kinds = tuple(k.strip() for k in str(args.kinds).split(",") if k.strip())
    bad = [k for k in kinds if k not in KINDS]
    if bad or not kinds:
        print("--kinds: choose among %s, not %s" % (", ".join(KINDS), ",".join(bad) or "nothing"), file=sys.stderr)
        return 2
    if args.flaps < 1:
        print("--flaps must be at least 1", file=sys.stderr)
        return 2
    if args.settle < 0:
        print("--settle must be >= 0", file=sys.stderr)
        return 2
    if os.geteuid() != 0:
        print("bench-ospf needs root (network namespaces)", file=sys.stderr)
        return 2
    from .ospflab import install_requirements
    install_requirements(frr="frr" in daemons)
    out = sys.stderr if args.json else sys.stdout

    def say(text: str) -> None:
        print(text, file=out, flush=True)

    plan = schedule(kinds, args.flaps, args.seed)
    say("bench-ospf: %s; %d flaps of each of %s (a down and an up event each), seed %d, settle %.3g s; "
        "kernelsync in r1, table %d" % (", ".join(daemons), args.flaps, ", ".join(kinds), args.seed, args.settle,
                                        OUR_TABLE))
    results = []
    for daemon in daemons:
        workdir = tempfile.mkdtemp(prefix="ksbo-", dir="/tmp")
        os.chmod(workdir, 0o755)
        try:
            result = DaemonRun(daemon, plan, args.settle, say, workdir).run()
        except BenchError as exc:
            print("bench-ospf: %s (work directory %s kept)" % (exc, workdir), file=sys.stderr)
            return 1
        result["problems"] = sum(1 for ev in result["events"] if ev["problem"])
        result["zebra_stuck"] = sum(1 for ev in result["events"] if ev["zebra_stuck"])
        result["workdir"] = workdir if args.keep else None
        results.append(result)
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
    report = {"seed": args.seed, "flaps": args.flaps, "kinds": list(kinds), "settle": args.settle,
              "results": results}
    if args.json:
        print(json.dumps(report, indent=1, sort_keys=True))
    else:
        print()
        print_table(results)
        print()
        print(LEGEND)
    failed = any(r["problems"] or r["listener_overflows"] for r in results)
    return 1 if failed else 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="python -m kernelsync.tools.bench_ospf", description=__doc__.split("\n")[0])
    add_arguments(parser)
    sys.exit(main(parser.parse_args()))
