"""The in-memory kernel (kernelsync.kernel.fake): the measured link-down semantics and the
refusals the engine must handle, so the core's unit tests run against a faithful model."""
import errno
import socket

import pytest

from kernelsync.core.model import AF_INET, AF_INET6, KNexthop
from kernelsync.core.ops import NexthopSet, RouteDel, RouteSet
from kernelsync.core.port import ResyncNeeded
from kernelsync.kernel.fake import FakeKernel

KEY4 = (100, AF_INET, socket.inet_aton("203.0.113.1"), 32, 20)
KEY6 = (100, AF_INET6, socket.inet_pton(AF_INET6, "2001:db8::"), 64, 20)


def kernel_with_group():
    k = FakeKernel(200)
    a, b = k.add_link("a"), k.add_link("b")
    ops = [NexthopSet(KNexthop(id=1, family=AF_INET, protocol=200, oif=a), False),
           NexthopSet(KNexthop(id=2, family=AF_INET, protocol=200, oif=b), False),
           NexthopSet(KNexthop(id=3, family=0, protocol=200, group=((1, 1), (2, 1))), False),
           RouteSet(KEY4, 3, False)]
    assert k.apply(ops) == []
    return k


def test_link_down_deletes_its_nexthops_shrinks_groups_and_drops_emptied_routes_silently():
    k = kernel_with_group()
    k.set_link("a", up=False)
    assert 1 not in k.nexthops and k.nexthops[3].group == ((2, 1),) and KEY4 in k.routes
    k.set_link("b", carrier=False)  # the last member: the group and its route go
    assert k.nexthops == {} and k.routes == {}
    assert k.stats.writes["route-set"] == 1  # nothing was written by the model itself


def test_refusals():
    k = kernel_with_group()
    b = k.index("b")
    k.set_link("b", up=False)
    refused = k.apply([NexthopSet(KNexthop(id=4, family=AF_INET, protocol=200, oif=b), False),  # link down
                       NexthopSet(KNexthop(id=1, family=AF_INET, protocol=200, oif=k.index("a")), False),  # EXCL
                       NexthopSet(KNexthop(id=5, family=0, protocol=200, group=((3, 1),)), False),  # nested
                       NexthopSet(KNexthop(id=3, family=AF_INET, protocol=200, oif=k.index("a")), True),  # retype
                       RouteSet(KEY6, 3, False),  # IPv6 route on an IPv4 group
                       RouteSet(KEY4, 3, False),  # EXCL: the key is held
                       RouteDel((100, AF_INET, socket.inet_aton("203.0.113.9"), 32, 20))])
    assert [(r.index, r.errno) for r in refused] == [(0, errno.ENETDOWN), (1, errno.EEXIST), (2, errno.EINVAL),
                                                     (3, errno.EINVAL), (4, errno.EINVAL), (5, errno.EEXIST),
                                                     (6, errno.ESRCH)]
    assert k.stats.failures == 7


def test_injected_fault_then_success():
    k = kernel_with_group()
    k.fail_next(lambda op: op.kind is RouteDel.kind, errno.ENOMEM)
    assert [(r.index, r.errno, r.message) for r in k.apply([RouteDel(KEY4)])] == [(0, errno.ENOMEM, "injected fault")]
    assert k.apply([RouteDel(KEY4)]) == [] and KEY4 not in k.routes


def test_chunks_are_answered_one_by_one_and_a_raising_callback_stops_the_batch():
    kernel = FakeKernel(200)
    a = kernel.add_link("a")
    kernel.chunk = 2
    ops = [NexthopSet(KNexthop(id=i, family=AF_INET, protocol=200, oif=a), False) for i in range(1, 6)]
    seen = []
    kernel.apply(ops, on_chunk=lambda s, e, r: seen.append((s, e)))
    assert seen == [(0, 2), (2, 4), (4, 5)] and len(kernel.nexthops) == 5

    def boom(s, e, r):
        raise KeyError(s)

    more = [NexthopSet(KNexthop(id=i, family=AF_INET, protocol=200, oif=a), False) for i in range(6, 10)]
    with pytest.raises(KeyError):
        kernel.apply(more, on_chunk=boom)
    assert sorted(kernel.nexthops) == [1, 2, 3, 4, 5, 6, 7]  # as RtNetlink: later chunks not sent


def test_dump_faults_raise_from_that_dump_only():
    kernel = FakeKernel(200)
    kernel.dump_faults["routes"] = ResyncNeeded("interrupted")
    assert kernel.dump_nexthops() == {}
    with pytest.raises(ResyncNeeded):
        kernel.dump_routes(254, 200)
