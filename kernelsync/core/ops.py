"""Kernel write operations: what the planner emits and the kernel port applies.  Pure values.

A closed set of four kinds (as FRR's dataplane context operations, or Open/R's route update),
each a small immutable named tuple: a tuple because a full sync makes 200,000 of them, named
so that nobody reads a field by position.  ``kind`` is a class attribute, not a field.

* :class:`NexthopSet` ``(nexthop, replace)``: RTM_NEWNEXTHOP, a plain nexthop or a group
  (``struct nhmsg`` + NHA_*, include/uapi/linux/nexthop.h);
* :class:`RouteSet` ``(key, nh_id, replace, scope)``: RTM_NEWROUTE with RTA_NH_ID and rtm_scope;
* :class:`RouteDel` ``(key)``: RTM_DELROUTE, with our protocol (the kernel only deletes a route
  of that protocol);
* :class:`NexthopDel` ``(nexthop)``: RTM_DELNEXTHOP.

``replace`` is True only where the observed kernel holds *our* object at that key or id: it is
written with NLM_F_REPLACE.  Anywhere else it is created with NLM_F_EXCL, so an object of
another program that holds the key (the kernel's replace matches a route on table, prefix and
metric, whatever its protocol) is refused with EEXIST instead of overwritten.

:attr:`target` names what an operation writes (a :class:`Target`: a route key or a nexthop
id): failures and retries are kept per target.

``describe()`` never raises, whatever the values (an address of the wrong length for its
family, an unknown family, a field that is not a number): it is what the failure log prints
when the kernel refuses a write, and a refusal must never break the engine's loop.
"""
from __future__ import annotations

import enum
from typing import Dict, NamedTuple, Union

from .model import RT_SCOPE_UNIVERSE, SCOPE_NAME, KNexthop, RouteKey, format_prefix



class Target(NamedTuple):
    """What an operation writes: ``what`` "route" with ``key`` a RouteKey, or "nh" with
    ``key`` a nexthop id."""

    what: str
    key: object


class OpKind(enum.IntEnum):
    NEXTHOP_SET = 1
    ROUTE_SET = 2
    ROUTE_DEL = 3
    NEXTHOP_DEL = 4

    @property
    def label(self) -> str:
        """``nexthop-set``, ``route-set``, ``route-del``, ``nexthop-del`` (logs, counters)."""
        return LABELS[self]


LABELS: Dict[OpKind, str] = {OpKind.NEXTHOP_SET: "nexthop-set", OpKind.ROUTE_SET: "route-set",
                             OpKind.ROUTE_DEL: "route-del", OpKind.NEXTHOP_DEL: "nexthop-del"}
# module constants: compared with ``is`` on the hot paths (an attribute lookup on the enum
# class costs more)
NEXTHOP_SET = OpKind.NEXTHOP_SET
ROUTE_SET = OpKind.ROUTE_SET
ROUTE_DEL = OpKind.ROUTE_DEL
NEXTHOP_DEL = OpKind.NEXTHOP_DEL


def _route_text(key: RouteKey) -> str:
    table, family, dst, plen, metric = key
    return "%s table %d metric %d" % (format_prefix((family, dst, plen)), table, metric)


def _described(label: str, text, op) -> str:
    """``label`` + ``text()``; if the values cannot be described (``text`` raises), their repr."""
    try:
        return "%s %s" % (label, text())
    except Exception:
        try:
            return "%s %r" % (label, tuple(op))
        except Exception:  # pragma: no cover - a repr that fails: say so, do not raise
            return "%s (values that cannot be printed)" % label


class NexthopSet(NamedTuple):
    """Create (``replace`` False: NLM_F_EXCL) or replace our nexthop object or group."""

    nexthop: KNexthop
    replace: bool
    kind = NEXTHOP_SET

    @property
    def target(self) -> Target:
        return Target("nh", self.nexthop.id)

    def describe(self) -> str:
        return _described("nexthop-set", self.nexthop.describe, self)


class RouteSet(NamedTuple):
    """Create or replace our route ``key`` = ``(table, family, dst, plen, metric)`` on
    nexthop object ``nh_id``, with rtm_scope ``scope`` (RT_SCOPE_UNIVERSE 0, or RT_SCOPE_LINK
    253 for a route on device-only nexthops)."""

    key: RouteKey
    nh_id: int
    replace: bool
    scope: int = RT_SCOPE_UNIVERSE
    kind = ROUTE_SET

    @property
    def target(self) -> Target:
        return Target("route", self.key)

    def describe(self) -> str:
        return _described("route-set", lambda: "%s nhid %d%s" % (
            _route_text(self.key), self.nh_id, " scope %s" % SCOPE_NAME.get(self.scope, self.scope) if self.scope else ""),
            self)


class RouteDel(NamedTuple):
    """Delete our route ``key``."""

    key: RouteKey
    kind = ROUTE_DEL

    @property
    def target(self) -> Target:
        return Target("route", self.key)

    def describe(self) -> str:
        return _described("route-del", lambda: _route_text(self.key), self)


class NexthopDel(NamedTuple):
    """Delete our nexthop object or group (the kernel drops the routes on it)."""

    nexthop: KNexthop
    kind = NEXTHOP_DEL

    @property
    def target(self) -> Target:
        return Target("nh", self.nexthop.id)

    def describe(self) -> str:
        return _described("nexthop-del", self.nexthop.describe, self)


Op = Union[NexthopSet, RouteSet, RouteDel, NexthopDel]

__all__ = ["OpKind", "Op", "Target", "NexthopSet", "RouteSet", "RouteDel", "NexthopDel", "LABELS",
           "NEXTHOP_SET", "ROUTE_SET", "ROUTE_DEL", "NEXTHOP_DEL"]
