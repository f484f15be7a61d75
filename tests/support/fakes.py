"""An engine on the in-memory kernel (:class:`kernelsync.kernel.fake.FakeKernel`), and the
helpers the core's unit tests share."""
import socket

from kernelsync.core.engine import Engine, KernelConfig
from kernelsync.core.model import AF_INET, AF_INET6, NexthopSpec, Path, parse_prefix
from kernelsync.core.ops import NEXTHOP_SET
from kernelsync.kernel.fake import FakeKernel

PROTO = 200


RANGE = (1000, 1999)


def dev(name, weight=1):
    return NexthopSpec(gateway=None, gw_family=None, dev=name, weight=weight)


def via(addr, name, weight=1):
    family = AF_INET6 if ":" in addr else AF_INET
    return NexthopSpec(gateway=socket.inet_pton(family, addr), gw_family=family, dev=name, weight=weight)


def make(kernel=None, **kw):
    kernel = kernel or FakeKernel(PROTO)
    if not kernel.links:
        for name in ("a", "b", "c"):
            kernel.add_link(name)
    cfg = KernelConfig(table=100, protocol=PROTO, metric=20, nexthop_id_range=kw.pop("id_range", RANGE),
                       group_hold_time=kw.pop("hold", 10.0), verify_delay=0, resync_interval=1e9, **kw)
    engine = Engine(cfg, kernel)
    engine.rib.add_source("static", 1)
    engine.start(0.0)
    return engine, kernel


def route(engine, prefix, *nexthops, source="static", resilient=None):
    engine.rib.update(source, parse_prefix(prefix), (Path(tuple(nexthops), resilient),))


def kroute(kernel, prefix, table=100, metric=20):
    family, dst, plen = parse_prefix(prefix)
    return kernel.routes.get((table, family, dst, plen, metric), (None, None))[1]


def nexthop_on(kernel, name):
    """A fault predicate: the write of the plain nexthop on device ``name``."""
    return lambda op: op.kind is NEXTHOP_SET and not op.nexthop.group and op.nexthop.oif == kernel.index(name)


def ready_run(engine, now=0.0):
    for s in engine.rib.ready:
        engine.rib.set_ready(s)
    return engine.run(now)


def flap(engine, kernel, name, now, **state):
    kernel.set_link(name, **state)
    engine.on_link_event(now)
    return engine.run(now)

