"""An in-memory model of the kernel's nexthop and route tables, for fast unit tests.

It implements the kernel port (:class:`kernelsync.core.port.Kernel`) and the behaviour
measured on kernel 6.18 (shared/reference/kernel-nexthops.md):

* a nexthop is refused on a device that is not up (ENETDOWN) or has no carrier;
* a device going down or losing carrier deletes its nexthops, removes them from their groups,
  deletes groups left empty and every route on a deleted nexthop or group, all *silently*;
* a group needs existing, non-group members (nested groups: EINVAL) and cannot change type;
* an IPv6 route on a group holding an IPv4 nexthop is EINVAL; a route on a missing id is EINVAL;
* a route on a nexthop object keeps the rtm_scope written (RT_SCOPE_LINK is accepted whatever
  the nexthop, gateway or not; a replace changes it), except an IPv6 route: always
  RT_SCOPE_UNIVERSE (kernel 6.18, measured in a namespace).

It is a model, not the proof: the tests that matter run on the real kernel in a namespace.
Failures can be injected with :meth:`FakeKernel.fail_next` (writes) and
:attr:`FakeKernel.dump_faults` (dumps); :attr:`FakeKernel.chunk` splits a batch into chunks
answered one by one, as :class:`~kernelsync.kernel.netlink.RtNetlink` does.
"""
from __future__ import annotations

import errno
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import attrs

from ..core.model import AF_INET, AF_INET6, KNexthop, Link, RouteKey
from ..core.ops import NEXTHOP_DEL, NEXTHOP_SET, ROUTE_DEL, ROUTE_SET, Op
from ..core.port import ChunkCallback, Refusal, WriteStats


class FakeKernel:
    """The kernel's links, nexthop objects and routes in dicts; see the module docstring.
    ``protocol``: written on routes, as :class:`~kernelsync.kernel.netlink.RtNetlink` does."""

    def __init__(self, protocol: int = 200, portid: int = 4001) -> None:
        self.protocol = protocol
        self.portid = portid  # the sender port its writes' notifications would carry
        self.links: Dict[int, Link] = {}
        self.nexthops: Dict[int, KNexthop] = {}
        self.routes: Dict[RouteKey, Tuple[int, int]] = {}  # key -> (protocol, nh id)
        self.scopes: Dict[RouteKey, int] = {}  # key -> rtm_scope of a route not RT_SCOPE_UNIVERSE
        self.stats = WriteStats()
        self._next_index = 2
        self._faults: List[Tuple[Callable[[Op], bool], int, int]] = []
        self.chunk: Optional[int] = None  # ops per chunk of apply() (None: the whole batch in one)
        self.dump_faults: Dict[str, Exception] = {}  # "links"/"nexthops"/"routes" -> raised by that dump
        self.route_dumps: List["FakeRouteDump"] = []  # every sliced dump opened (open_route_dump)

    # links ---------------------------------------------------------------------------------
    def add_link(self, name: str, up: bool = True, carrier: bool = True) -> int:
        index = self._next_index
        self._next_index += 1
        self.links[index] = Link(index=index, name=name, up=up, carrier=carrier)
        return index

    def index(self, name: str) -> int:
        return next(l.index for l in self.links.values() if l.name == name)

    def set_link(self, name: str, up: Optional[bool] = None, carrier: Optional[bool] = None) -> None:
        link = self.links[self.index(name)]
        link = attrs.evolve(link, up=link.up if up is None else up, carrier=link.carrier if carrier is None else carrier)
        self.links[link.index] = link
        if not link.usable:
            self._flush_dev(link.index)

    def del_link(self, name: str) -> None:
        index = self.index(name)
        self._flush_dev(index)
        del self.links[index]

    def _flush_dev(self, index: int) -> None:
        dead = [i for i, o in self.nexthops.items() if not o.group and o.oif == index]
        for nh_id in dead:
            self._delete_nh(nh_id)

    def _delete_nh(self, nh_id: int) -> None:
        self.nexthops.pop(nh_id, None)
        gone = {nh_id}
        for gid, grp in list(self.nexthops.items()):
            if grp.group and any(m == nh_id for m, _ in grp.group):
                members = tuple((m, w) for m, w in grp.group if m != nh_id)
                if members:
                    self.nexthops[gid] = attrs.evolve(grp, group=members)
                else:
                    del self.nexthops[gid]
                    gone.add(gid)
        for key in [k for k, (_, n) in self.routes.items() if n in gone]:
            del self.routes[key]
            self.scopes.pop(key, None)

    # faults --------------------------------------------------------------------------------
    def fail_next(self, predicate: Callable[[Op], bool], err: int = errno.EINVAL, times: int = 1) -> None:
        """Refuse the next ``times`` operations matching ``predicate`` with ``err``."""
        self._faults.append((predicate, err, times))

    def _injected(self, op: Op) -> Optional[int]:
        for n, (pred, err, times) in enumerate(self._faults):
            if pred(op):
                if times <= 1:
                    del self._faults[n]
                else:
                    self._faults[n] = (pred, err, times - 1)
                return err
        return None

    def _dump_fault(self, what: str) -> None:
        exc = self.dump_faults.get(what)
        if exc is not None:
            raise exc

    # Kernel interface ----------------------------------------------------------------------
    def dump_links(self) -> Dict[int, Link]:
        self.stats.dumps += 1
        self._dump_fault("links")
        return dict(self.links)

    def dump_nexthops(self) -> Dict[int, KNexthop]:
        self.stats.dumps += 1
        self._dump_fault("nexthops")
        return dict(self.nexthops)

    def dump_routes(self, table: int, protocol: int,
                    scopes: Optional[Dict[RouteKey, int]] = None) -> Dict[RouteKey, int]:
        self.stats.dumps += 1
        self._dump_fault("routes")
        out = {k: n for k, (p, n) in self.routes.items() if k[0] == table and p == protocol}
        if scopes is not None:
            scopes.update((k, s) for k, s in self.scopes.items() if k in out)
        return out

    def open_route_dump(self, table: int, protocol: int) -> "FakeRouteDump":
        """A route dump read in slices (:class:`FakeRouteDump`)."""
        self.stats.dumps += 1
        dump = FakeRouteDump(self, table, protocol)
        self.route_dumps.append(dump)
        return dump

    def apply(self, ops: Sequence[Op], on_chunk: Optional[ChunkCallback] = None) -> List[Refusal]:
        """Same contract as :meth:`kernelsync.kernel.netlink.RtNetlink.apply` (one chunk)."""
        refusals: List[Refusal] = []
        self.stats.count(ops)
        size = self.chunk or len(ops) or 1
        for start in range(0, len(ops), size):
            end = min(start + size, len(ops))
            chunk = []
            for i in range(start, end):
                op = ops[i]
                err = self._injected(op)
                msg = "injected fault"
                if err is None:
                    err, msg = self._apply_one(op)
                if err:
                    chunk.append(Refusal(i, err, msg))
            self.stats.failures += len(chunk)
            refusals += chunk
            if on_chunk is not None:
                on_chunk(start, end, chunk)  # an exception here stops the batch, as in RtNetlink
        return refusals

    def _apply_one(self, op: Op) -> Tuple[int, str]:
        kind = op.kind
        if kind is NEXTHOP_SET:
            obj: KNexthop = op.nexthop
            old = self.nexthops.get(obj.id)
            if old is not None and not op.replace:
                return errno.EEXIST, "File exists"  # NLM_F_EXCL
            if old is not None and old.is_group != obj.is_group:
                return errno.EINVAL, "Can not replace a nexthop with a nexthop group (or back)"
            if obj.group:
                for m, _ in obj.group:
                    member = self.nexthops.get(m)
                    if member is None:
                        return errno.EINVAL, "Invalid nexthop id"
                    if member.group:
                        return errno.EINVAL, "Nested groups are not supported"
                if old is not None and old.grp_type != obj.grp_type:
                    return errno.EINVAL, "Can not replace a nexthop group with one of a different type"
            else:
                link = self.links.get(obj.oif)
                if link is None:
                    return errno.ENODEV, "Invalid device index"
                if not link.up:
                    return errno.ENETDOWN, "Nexthop device is not up"
                if not link.carrier:
                    return errno.ENETDOWN, "Carrier for nexthop device is down"
            self.nexthops[obj.id] = obj
            return 0, ""
        if kind is NEXTHOP_DEL:
            if op.nexthop.id not in self.nexthops:
                return errno.ENOENT, "Nexthop id does not exist"
            self._delete_nh(op.nexthop.id)
            return 0, ""
        if kind is ROUTE_SET:
            key = op.key
            if not op.replace and key in self.routes:
                return errno.EEXIST, "File exists"  # NLM_F_EXCL: whoever's route it is
            nh = self.nexthops.get(op.nh_id)
            if nh is None:
                return errno.EINVAL, "Nexthop id does not exist"
            if key[1] == AF_INET6:
                members = [self.nexthops[m] for m, _ in nh.group] if nh.group else [nh]
                if any(m.family == AF_INET for m in members):
                    return errno.EINVAL, "IPv6 routes can not use an IPv4 nexthop"
            self.routes[key] = (self.protocol, op.nh_id)
            if op.scope and key[1] == AF_INET:
                self.scopes[key] = op.scope
            else:
                self.scopes.pop(key, None)
            return 0, ""
        if kind is ROUTE_DEL:
            if op.key not in self.routes:
                return errno.ESRCH, "No such process"
            del self.routes[op.key]
            self.scopes.pop(op.key, None)
            return 0, ""
        return errno.EOPNOTSUPP, "unknown operation"

    # helpers for tests ---------------------------------------------------------------------
    def add_foreign_route(self, key: RouteKey, protocol: int, nh_id: int, scope: int = 0) -> None:
        """A route written by another program (or by us before a restart, with our protocol)."""
        self.routes[key] = (protocol, nh_id)
        if scope and key[1] == AF_INET:
            self.scopes[key] = scope
        else:
            self.scopes.pop(key, None)


class FakeRouteDump:
    """A route dump walked as the kernel walks its tables (:class:`kernelsync.core.port.RouteDump`):
    in key order (IPv4 before IPv6, then by destination), each :meth:`read` resuming after the
    last key it returned and reading the routes as they are *now*; a route changed behind that
    position is not seen again, one changed ahead of it is seen as it is when passed.
    ``interrupted`` is set when a route of the table changed while the dump was open (the
    real kernel flags NLM_F_DUMP_INTR for less; tests may set it).  ``dump_faults["routes"]``
    is raised by the first read."""

    def __init__(self, kernel: FakeKernel, table: int, protocol: int) -> None:
        self.kernel = kernel
        self.table = table
        self.protocol = protocol
        self.after: Optional[RouteKey] = None
        self.done = False
        self.interrupted = False
        self.reads = 0
        self.closed = False
        self._version = dict(kernel.routes)

    def read(self, max_messages: int) -> Tuple[Dict[RouteKey, int], Dict[RouteKey, int], bool]:
        if self.reads == 0:
            self.kernel._dump_fault("routes")
        self.reads += 1
        kernel = self.kernel
        if kernel.routes != self._version:
            self.interrupted = True
        after = self.after
        keys = sorted(k for k, (p, _n) in kernel.routes.items()
                      if k[0] == self.table and p == self.protocol and (after is None or k > after))
        taken = keys[:max(1, max_messages)]
        routes = {k: kernel.routes[k][1] for k in taken}
        scopes = {k: kernel.scopes[k] for k in taken if k in kernel.scopes}
        if taken:
            self.after = taken[-1]
        self.done = len(taken) == len(keys)
        self._version = dict(kernel.routes)
        return routes, scopes, self.done

    def close(self) -> None:
        self.closed = True


__all__ = ["FakeKernel", "FakeRouteDump"]
