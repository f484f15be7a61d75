"""Kernel-format routes into RIB paths and one RIB source with stale handling
(kernelsync.feeds.routesource), pure; shared by the kernel-table and FPM feeds."""
from kernelsync.core.model import AF_INET, GRP_RES, KNexthop, KRoute, Leg, NexthopSpec, Path, parse_address, parse_prefix
from kernelsync.core.rib import Rib
from kernelsync.feeds.routesource import RouteSource, paths_of, route_paths

IFNAMES = {1: "e12", 2: "e13", 3: "tap1"}


P = parse_prefix("10.99.0.0/16")



def kroute(prefix, legs, proto=12, table=101, nh_id=0, metric=20, rtype=1):
    """legs: (gateway text or None, ifindex[, weight])."""
    family, dst, plen = parse_prefix(prefix)
    out = tuple(Leg(family if leg[0] else None, parse_address(leg[0])[1] if leg[0] else None, leg[1],
                    leg[2] if len(leg) > 2 else 1) for leg in legs)
    return KRoute(family, dst, plen, table, proto, rtype, metric, out, nh_id)


def spec(gw, dev, weight=1):
    return NexthopSpec(gateway=parse_address(gw)[1] if gw else None, gw_family=AF_INET if gw else None, dev=dev,
                       weight=weight)


def test_multipath_legs_become_one_path_device_only_included():
    paths = route_paths(kroute("10.99.0.0/16", [("10.0.13.2", 2), ("10.0.12.2", 1), (None, 3)]), {}, IFNAMES)
    assert paths == (Path((spec("10.0.12.2", "e12"), spec("10.0.13.2", "e13"), spec(None, "tap1"))),)
    assert route_paths(kroute("10.99.0.0/16", [("10.0.12.2", 9)]), {}, IFNAMES) is None  # unknown device
    assert route_paths(kroute("10.99.0.0/16", [], rtype=6), {}, IFNAMES) is None  # prohibit


def test_multipath_legs_keep_their_weights():
    paths = route_paths(kroute("10.99.0.0/16", [("10.0.12.2", 1, 1), ("10.0.13.2", 2, 3)]), {}, IFNAMES)
    assert paths == (Path((spec("10.0.12.2", "e12"), spec("10.0.13.2", "e13", 3))),)


def test_route_on_a_nexthop_group_keeps_weights_and_resilience():
    nhs = {1: KNexthop(id=1, family=AF_INET, protocol=11, oif=1, gateway=parse_address("10.0.12.2")[1]),
           2: KNexthop(id=2, family=AF_INET, protocol=11, oif=3),
           9: KNexthop(id=9, family=AF_INET, protocol=11, group=((1, 3), (2, 1)), grp_type=GRP_RES,
                       res=(64, 12000, 0))}
    (path,) = route_paths(kroute("10.99.0.0/16", [], nh_id=9), nhs, IFNAMES)
    assert path.nexthops == (spec("10.0.12.2", "e12", 3), spec(None, "tap1"))
    assert path.resilient.buckets == 64 and path.resilient.idle_timer == 120.0
    assert route_paths(kroute("10.99.0.0/16", [], nh_id=77), nhs, IFNAMES) is None  # not known (yet)


def test_lowest_metric_wins_per_prefix():
    routes = [kroute("10.99.0.0/16", [("10.0.12.2", 1)], metric=30), kroute("10.99.0.0/16", [("10.0.13.2", 2)])]
    assert paths_of(routes, {}, IFNAMES)[P] == (Path((spec("10.0.13.2", "e13"),)),)


def test_stale_state_is_kept_for_the_hold_time_then_swept():
    rib = Rib()
    src = RouteSource(rib, "ospf", 110, hold_time=10.0)
    a, b = parse_prefix("10.99.0.0/16"), parse_prefix("198.51.100.0/24")
    path = (Path((spec("10.0.12.2", "e12"),)),)
    src.replace_all({a: path, b: path})
    rib.take_dirty()
    src.lost(100.0)  # the daemon went away
    assert rib.candidates(a) and rib.candidates(b) and not rib.dirty  # kept, untouched
    src.update(a, path)  # a comes back unchanged: nothing for the FIB to do
    assert not rib.dirty
    assert src.deadline() == 110.0
    assert src.tick(109.0) == 0
    assert src.tick(110.0) == 1  # b never came back
    assert rib.candidates(a) and not rib.candidates(b)
    assert src.deadline() is None

