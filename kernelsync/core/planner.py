"""Planner: desired FIB versus observed kernel -> ordered operations.  Pure function.

Order (Open/R ``calculateUpdate``, FRR dplane): nexthops before groups before routes; deletes
in reverse (routes, then groups, then nexthops).  A changed route or object is *replaced*
(NLM_F_REPLACE), never deleted and added, so forwarding never has a gap.  Deletions are held
back (``allow_delete=False``) until every feed has delivered its initial state and the first
kernel dump has been read.

The operations are the named values of :mod:`kernelsync.core.ops`.
"""
from __future__ import annotations

from typing import Dict, Iterable, List, Optional

import attrs

from .model import KNexthop, RouteKey
from .ops import LABELS, NexthopDel, NexthopSet, Op, RouteDel, RouteSet

_MISSING = object()
_new = tuple.__new__  # RouteSet without its Python-level __new__: 200,000 per full sync


@attrs.define
class Plan:
    """``ops`` in the order they must be applied; ``deferred``: deletions held back by the gate."""

    ops: List[Op] = attrs.Factory(list)
    deferred: int = 0

    def counts(self) -> Dict[str, int]:
        """``{"route-set": 3, ...}``: operations by kind."""
        out: Dict[str, int] = {}
        for op in self.ops:
            name = LABELS[op.kind]
            out[name] = out.get(name, 0) + 1
        return out

    def __len__(self) -> int:
        return len(self.ops)


def plan(desired_nh: Dict[int, KNexthop], observed_nh: Dict[int, KNexthop],
         desired_routes: Dict[RouteKey, int], observed_routes: Dict[RouteKey, int],
         route_keys: Optional[Iterable[RouteKey]] = None, allow_delete: bool = True,
         scopes: Optional[Dict[int, int]] = None, observed_scopes: Optional[Dict[RouteKey, int]] = None) -> Plan:
    """Ordered operations that turn ``observed`` into ``desired``.

    ``observed_*`` hold only what is ours (our protocol, table(s) and ID range): whatever is
    not in them is never touched.  ``route_keys`` limits the route diff to those keys (an
    incremental pass); ``None`` diffs every route (full sync).  Observed routes map to their
    nexthop id, or 0 for a route of ours that has no RTA_NH_ID (it gets replaced).

    Scopes (rtm_scope) are sparse, absent meaning RT_SCOPE_UNIVERSE: ``scopes`` maps a desired
    nexthop id to the scope of the routes on it (RT_SCOPE_LINK for device-only nexthops),
    ``observed_scopes`` an observed route key to its scope.  A route on the right nexthop with
    the wrong scope is rewritten (NLM_F_REPLACE changes the scope in place).
    """
    result = Plan()
    ops = result.ops
    retype: List[Op] = []
    plain: List[Op] = []
    groups: List[Op] = []
    for nh_id in sorted(desired_nh):
        want = desired_nh[nh_id]
        have = observed_nh.get(nh_id)
        if have == want:
            continue
        replace = have is not None
        if replace and have.is_group != want.is_group:
            # a kernel id cannot turn from nexthop into group or back: delete first
            retype.append(NexthopDel(have))
            replace = False
        (groups if want.is_group else plain).append(NexthopSet(want, replace))
    ops.extend(retype)
    ops.extend(plain)
    ops.extend(groups)

    route_deletes: List[Op] = []
    scopes = scopes or {}
    observed_scopes = observed_scopes or {}
    if route_keys is None:
        get = observed_routes.get
        append = ops.append
        if not scopes and not observed_scopes:  # every route universe, wanted and seen
            for key, nh_id in desired_routes.items():
                have = get(key)
                if have != nh_id:
                    append(_new(RouteSet, (key, nh_id, have is not None, 0)))
        else:
            scope_of = scopes.get
            seen_scope = observed_scopes.get
            for key, nh_id in desired_routes.items():
                have = get(key)
                scope = scope_of(nh_id, 0)
                if have != nh_id or seen_scope(key, 0) != scope:
                    append(_new(RouteSet, (key, nh_id, have is not None, scope)))
        for key in observed_routes:
            if key not in desired_routes:
                route_deletes.append(RouteDel(key))
    else:
        for key in route_keys:
            want = desired_routes.get(key)
            have = observed_routes.get(key, _MISSING)
            if want is not None:
                scope = scopes.get(want, 0)
                if have != want or observed_scopes.get(key, 0) != scope:
                    ops.append(_new(RouteSet, (key, want, have is not _MISSING, scope)))
            elif have is not _MISSING:
                route_deletes.append(RouteDel(key))

    # deletes in reverse: routes, then groups (before their members), then nexthops
    group_deletes: List[Op] = []
    nexthop_deletes: List[Op] = []
    for nh_id in sorted(observed_nh, reverse=True):
        if nh_id not in desired_nh:
            have = observed_nh[nh_id]
            (group_deletes if have.is_group else nexthop_deletes).append(NexthopDel(have))
    deletes = route_deletes + group_deletes + nexthop_deletes
    if allow_delete:
        ops.extend(deletes)
    else:
        result.deferred = len(deletes)
    return result
