"""Issue 14, item 4: a full sync (verify, periodic resync) after the first reads our routes in
slices, one per ``engine.run``, and diffs them in slices; events between the slices are handled
at once, and the end state is the one a full sync in one go reaches.  The races of merging the
dump's view with what happened while it was read: a route written before or after the dump
passed it, a route the kernel deleted with its nexthop, a link down and up during one dump, an
interrupted dump (NLM_F_DUMP_INTR) under a steady flap."""
import pytest

from kernelsync.core.model import parse_prefix
from tests.support.fakes import PROTO, dev, make, nexthop_on, ready_run, route

TABLE = 100


def prefixes(n, second=1):
    return ["10.%d.%d.%d/32" % (second, i // 250, i % 250 + 1) for i in range(n)]


def key(prefix):
    return (TABLE,) + parse_prefix(prefix) + (20,)


def ours(kernel):
    return {k: n for k, (p, n) in kernel.routes.items() if p == PROTO and k[0] == TABLE}


def setup(n_plain=200, n_group=200, slice_=50):
    """``n_plain`` routes on dev a with a backup on dev c (another source, distance 50),
    ``n_group`` routes on the group (a, b); dumps and diffs of ``slice_`` routes per run."""
    engine, kernel = make()
    engine.rib.add_source("backup", 50)
    plain, grouped = prefixes(n_plain, 1), prefixes(n_group, 2)
    for p in plain:
        route(engine, p, dev("a"))
        route(engine, p, dev("c"), source="backup")
    for p in grouped:
        route(engine, p, dev("a"), dev("b"))
    ready_run(engine)
    assert len(ours(kernel)) == n_plain + n_group
    engine.dump_slice = engine.diff_slice = slice_
    return engine, kernel, plain, grouped


def nh_on(kernel, name):
    return next(i for i, o in kernel.nexthops.items() if not o.group and o.oif == kernel.index(name))


def finish(engine, now, limit=1000):
    runs = 0
    while engine.syncing:
        engine.run(now)
        runs += 1
        assert runs < limit, "the sliced full sync does not end"
    return runs


def assert_synced(engine, kernel):
    """The observed view is the kernel, and the kernel is the desired FIB."""
    assert engine.observed_routes == ours(kernel)
    assert ours(kernel) == engine.fib.routes
    desired = engine.fib.desired_nexthops()
    assert {i: o for i, o in kernel.nexthops.items() if i in desired} == desired


def test_a_link_event_between_slices_is_repaired_before_the_dump_ends():
    engine, kernel, plain, grouped = setup()
    syncs = engine.counters["full_syncs"]
    engine.request_full_sync()
    engine.run(1.0)
    assert engine.syncing and not kernel.route_dumps[-1].done  # one slice read, the dump goes on
    gid = kernel.routes[key(grouped[0])][1]
    # link a goes down: the kernel drops its nexthop (and the plain routes on it), shrinks the group
    kernel.set_link("a", up=False)
    engine.on_link_event(1.1)
    engine.run(1.1)
    dump = kernel.route_dumps[-1]
    assert not dump.done and engine.syncing  # still in the middle of the dump...
    c = nh_on(kernel, "c")
    assert all(kernel.routes[key(p)][1] == c for p in plain)  # ...and the routes of a fell back to c
    assert len(kernel.nexthops[gid].group) == 1 and all(kernel.routes[key(p)][1] == gid for p in grouped)
    assert engine.counters["repairs"] == 1 and engine.counters["full_syncs"] == syncs
    runs = finish(engine, 1.2)
    assert runs > 2 and engine.counters["full_syncs"] == syncs + 1 and engine.counters["sliced_syncs"] == 1
    assert_synced(engine, kernel)
    assert kernel.stats.failures == 0


def test_routes_written_before_and_after_the_dump_passed_them():
    engine, kernel, plain, grouped = setup()
    engine.request_full_sync()
    for _ in range(3):  # the first 150 routes (10.1.0.*) are passed
        engine.run(1.0)
    assert engine.syncing and not kernel.route_dumps[-1].done
    behind, ahead = plain[0], grouped[-1]  # 10.1.* is passed, 10.2.* not yet
    # both move to dev c only (their static path changes): written now, between slices
    for p in (behind, ahead):
        route(engine, p, dev("c"))
    engine.rib.withdraw("static", parse_prefix(plain[1]))  # falls back to its backup on c
    new = "10.1.200.1/32"  # a new route behind the dump's position: never seen by it
    route(engine, new, dev("b"))
    engine.run(1.1)
    c, b = nh_on(kernel, "c"), nh_on(kernel, "b")
    assert kernel.routes[key(behind)][1] == c and kernel.routes[key(ahead)][1] == c
    assert kernel.routes[key(new)][1] == b and not kernel.route_dumps[-1].done
    finish(engine, 1.2)
    assert engine.observed_routes[key(new)] == b and engine.observed_routes[key(behind)] == c
    assert_synced(engine, kernel)
    assert kernel.stats.failures == 0


def test_a_route_the_kernel_deletes_with_its_nexthop_during_the_dump_is_not_kept():
    """A stale route of ours that the engine did not know of (written by an instance before a
    crash) on the nexthop of dev a: the dump shows it, then link a goes down and the kernel
    deletes it with the nexthop, silently.  The merged view must not keep it (a deletion of
    it would be refused: ESRCH)."""
    engine, kernel, plain, grouped = setup()
    a = nh_on(kernel, "a")
    stale = key("10.0.0.1/32")  # sorts before everything of ours: passed by the first slice
    kernel.add_foreign_route(stale, PROTO, a)
    engine.request_full_sync()
    engine.run(1.0)
    assert engine.syncing and stale not in engine.observed_routes
    kernel.set_link("a", up=False)
    assert stale not in kernel.routes
    engine.on_link_event(1.1)
    finish(engine, 1.1)
    assert stale not in engine.observed_routes
    assert_synced(engine, kernel)
    assert kernel.stats.failures == 0 and not engine.failures


def test_a_link_down_and_up_during_one_dump():
    engine, kernel, plain, grouped = setup()
    a = nh_on(kernel, "a")
    gid = kernel.routes[key(grouped[0])][1]
    engine.request_full_sync()
    engine.run(1.0)
    engine.run(1.0)
    kernel.set_link("a", up=False)  # plain routes on a deleted; the group shrinks
    engine.on_link_event(1.1)
    engine.run(1.1)
    kernel.set_link("a", up=True)
    engine.on_link_event(1.2)
    engine.run(1.2)
    assert not kernel.route_dumps[-1].done
    a2 = nh_on(kernel, "a")
    assert all(kernel.routes[key(p)][1] == a2 for p in plain)  # back on a (the same id or a new one)
    assert len(kernel.nexthops[gid].group) == 2
    finish(engine, 1.3)
    assert_synced(engine, kernel)
    assert kernel.stats.failures == 0 and a in (a2, a)


def test_an_interrupted_dump_under_a_steady_flap_still_ends():
    """Every slice a link flap (NLM_F_DUMP_INTR on every read): the dump is merged, not
    restarted, and ends; each flap is repaired at once."""
    engine, kernel, plain, grouped = setup()
    engine.request_full_sync()
    engine.run(1.0)
    c = nh_on(kernel, "c")
    now, up = 1.0, False
    while engine.syncing:
        now += 0.1
        kernel.set_link("a", up=up)
        engine.on_link_event(now)
        engine.run(now)
        a = nh_on(kernel, "a") if up else None
        assert all(kernel.routes[key(p)][1] == (a if up else c) for p in plain)  # repaired in the same run
        up = not up
        assert now < 100, "the sliced full sync does not end under a steady flap"
    assert kernel.route_dumps[-1].interrupted and engine.counters["dumps_interrupted"] == 1
    assert engine.counters["sync_restarts"] == 0 and len(kernel.route_dumps) == 1
    assert_synced(engine, kernel)


def _perturbed(sliced):
    engine, kernel, plain, grouped = setup()
    engine.sliced = sliced
    b = nh_on(kernel, "b")
    del kernel.routes[key(plain[3])]  # `ip route del`, its notification lost
    kernel.routes[key(grouped[5])] = (PROTO, b)  # rewritten by someone else
    kernel.add_foreign_route(key("10.3.0.1/32"), PROTO, b)  # a stale route of ours
    kernel.add_foreign_route(key("10.3.0.2/32"), 12, b)  # another protocol's: never touched
    return engine, kernel


def test_the_end_state_equals_a_full_sync_in_one_go():
    one, k1 = _perturbed(sliced=False)
    sliced, k2 = _perturbed(sliced=True)
    for engine in (one, sliced):
        engine.request_full_sync()
        engine.run(1.0)
    assert not one.syncing and sliced.syncing
    finish(sliced, 1.0)
    assert k1.routes == k2.routes and k1.nexthops == k2.nexthops
    assert one.observed_routes == sliced.observed_routes and one.observed_nh == sliced.observed_nh
    assert one.counters["full_syncs"] == sliced.counters["full_syncs"]
    assert_synced(sliced, k2)
    assert k2.routes[key("10.3.0.2/32")] == (12, nh_on(k2, "b"))


def test_an_explicit_full_sync_request_restarts_the_one_in_progress():
    """Notifications lost (or SIGHUP): what the sync in progress learnt meanwhile may be
    incomplete, so it starts again at once; a verify (or periodic) sync due meanwhile waits
    for the end of the one in progress, then runs."""
    engine, kernel, plain, grouped = setup()
    engine.request_full_sync()
    engine.run(1.0)
    engine.verify_at = 1.05
    engine.run(1.1)
    assert len(kernel.route_dumps) == 1 and engine.counters["sync_restarts"] == 0 and engine.need_full
    finish(engine, 1.2)
    assert engine.need_full  # the verify due meanwhile comes next
    engine.run(1.3)
    assert len(kernel.route_dumps) == 2 and engine.syncing
    engine.request_full_sync()
    engine.run(1.4)
    assert len(kernel.route_dumps) == 3 and engine.counters["sync_restarts"] == 1
    assert kernel.route_dumps[1].closed and not engine.need_full
    finish(engine, 1.5)
    assert_synced(engine, kernel)


def test_a_failed_dump_is_started_again():
    from kernelsync.core.port import ResyncNeeded
    engine, kernel, plain, grouped = setup()
    kernel.dump_faults["routes"] = ResyncNeeded("dump replies lost")
    engine.request_full_sync()
    engine.run(1.0)
    del kernel.dump_faults["routes"]
    engine.run(1.1)
    assert engine.syncing and len(kernel.route_dumps) == 2
    finish(engine, 1.2)
    assert_synced(engine, kernel)
