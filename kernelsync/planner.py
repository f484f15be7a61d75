"""Planner: desired FIB versus observed kernel -> ordered operations.  Pure function.

Order (Open/R ``calculateUpdate``, FRR dplane): nexthops before groups before routes; deletes
in reverse (routes, then groups, then nexthops).  A changed route or object is *replaced*
(NLM_F_REPLACE), never deleted and added, so forwarding never has a gap.  Deletions are held
back (``allow_delete=False``) until every feed has delivered its initial state and the first
kernel dump has been read.

Operations are tuples, first item the kind:

* ``(NH_SET, KNexthop, replace)``        RTM_NEWNEXTHOP (plain nexthop or group)
* ``(ROUTE_SET, key, nh_id, replace)``   RTM_NEWROUTE with RTA_NH_ID
* ``(ROUTE_DEL, key)``                   RTM_DELROUTE (carries our protocol: the kernel only
  deletes a route of that protocol)
* ``(NH_DEL, KNexthop)``                 RTM_DELNEXTHOP

``replace`` is True only where the observed kernel holds *our* object at that key or id: it is
then written with NLM_F_REPLACE.  Anywhere else it is created with NLM_F_EXCL, so an object of
another program that holds the key (the kernel's replace matches a route on table, prefix and
metric, whatever its protocol) is refused with EEXIST instead of overwritten.
"""
from __future__ import annotations

from typing import Dict, Iterable, List, Optional

import attrs

from .model import KNexthop, RouteKey

NH_SET = 1
ROUTE_SET = 2
ROUTE_DEL = 3
NH_DEL = 4
OP_NAMES = {NH_SET: "nexthop-set", ROUTE_SET: "route-set", ROUTE_DEL: "route-del", NH_DEL: "nexthop-del"}

_MISSING = object()


@attrs.define
class Plan:
    """``ops`` in the order they must be applied; ``deferred``: deletions held back by the gate."""

    ops: List[tuple] = attrs.Factory(list)
    deferred: int = 0

    def counts(self) -> Dict[str, int]:
        out: Dict[str, int] = {}
        for op in self.ops:
            name = OP_NAMES[op[0]]
            out[name] = out.get(name, 0) + 1
        return out

    def __len__(self) -> int:
        return len(self.ops)


def plan(desired_nh: Dict[int, KNexthop], observed_nh: Dict[int, KNexthop],
         desired_routes: Dict[RouteKey, int], observed_routes: Dict[RouteKey, int],
         route_keys: Optional[Iterable[RouteKey]] = None, allow_delete: bool = True) -> Plan:
    """Ordered operations that turn ``observed`` into ``desired``.

    ``observed_*`` hold only what is ours (our protocol, table(s) and ID range): whatever is
    not in them is never touched.  ``route_keys`` limits the route diff to those keys (an
    incremental pass); ``None`` diffs every route (full sync).  Observed routes map to their
    nexthop id, or 0 for a route of ours that has no RTA_NH_ID (it gets replaced).
    """
    result = Plan()
    ops = result.ops
    retype: List[tuple] = []
    plain: List[tuple] = []
    groups: List[tuple] = []
    for nh_id in sorted(desired_nh):
        want = desired_nh[nh_id]
        have = observed_nh.get(nh_id)
        if have == want:
            continue
        replace = have is not None
        if replace and have.is_group != want.is_group:
            # a kernel id cannot turn from nexthop into group or back: delete first
            retype.append((NH_DEL, have))
            replace = False
        (groups if want.is_group else plain).append((NH_SET, want, replace))
    ops.extend(retype)
    ops.extend(plain)
    ops.extend(groups)

    deletes: List[tuple] = []
    if route_keys is None:
        get = observed_routes.get
        for key, nh_id in desired_routes.items():
            have = get(key)
            if have != nh_id:
                ops.append((ROUTE_SET, key, nh_id, have is not None))
        for key in observed_routes:
            if key not in desired_routes:
                deletes.append((ROUTE_DEL, key))
    else:
        for key in route_keys:
            want = desired_routes.get(key)
            have = observed_routes.get(key, _MISSING)
            if want is not None:
                if have != want:
                    ops.append((ROUTE_SET, key, want, have is not _MISSING))
            elif have is not _MISSING:
                deletes.append((ROUTE_DEL, key))

    for nh_id in sorted(observed_nh, reverse=True):
        if nh_id not in desired_nh:
            have = observed_nh[nh_id]
            deletes.append((NH_DEL, have))
    # groups go before their members
    deletes.sort(key=lambda op: 0 if op[0] == ROUTE_DEL else (1 if op[1].is_group else 2))
    if allow_delete:
        ops.extend(deletes)
    else:
        result.deferred = len(deletes)
    return result
