"""The reload plan (kernelsync.reload.plan): two validated configurations -> what changes live
and what needs a restart; routes compared by prefix, feeds by name, nothing else reported."""
import pytest

from kernelsync import config
from kernelsync.reload import RESTART_KEYS, plan, refusal

BASE = {
    "kernel": {"table": 100, "resync_interval": 60},
    "control": {"socket": "/run/ks/ks.sock"},
    "static": {"route": [{"prefix": "198.51.100.0/24", "nexthops": [{"dev": "v0"}]},
                         {"prefix": "198.51.100.1/32", "nexthops": [{"dev": "v0"}, {"dev": "v1"}]}]},
    "export": {"anycast": [{"prefix": "203.0.113.10/32", "devices": ["tapA", "tapB"]}],
               "kernel": [{"name": "guests", "devices": ["tap*"]}]},
    "exabgp": {"listen": "/run/ks/relay.sock"},
    "feed": {"table": [{"table": 200, "protocol": "bird", "name": "ospf"}],
             "fpm": {"name": "zebra", "table": 300}},
}


def cfg(**changes):
    """BASE with its sections' keys updated by ``section={key: value}`` (``section_=``:
    the whole section replaced)."""
    data = {k: (dict(v) if isinstance(v, dict) else v) for k, v in BASE.items()}
    for section, value in changes.items():
        if section.endswith("_"):
            data[section[:-1]] = value
        elif isinstance(value, dict) and section in data:
            data[section].update(value)
        else:
            data[section] = value
    return config.parse(data, "k.toml")


def keys(changes):
    return [c.key for c in changes]


def test_the_same_configuration_is_an_empty_plan():
    p = plan(cfg(), cfg())
    assert p.empty and not p.needs_restart and p.live == () and p.restart == ()


def test_static_routes_compared_by_prefix_not_position():
    old = cfg()
    moved = cfg(static={"route": list(reversed(BASE["static"]["route"]))})
    assert plan(old, moved).empty
    new = cfg(static={"route": [{"prefix": "198.51.100.1/32", "nexthops": [{"dev": "v1"}]},  # changed
                                {"prefix": "198.51.100.2/32", "nexthops": [{"dev": "v0"}]}]})  # added; .0/24 removed
    p = plan(old, new)
    assert not p.needs_restart and p.touches("static") and not p.touches("export")
    assert sorted(c.describe() for c in p.live) == [
        "static.route[0] 198.51.100.0/24: removed (was dev v0)",
        "static.route[0] 198.51.100.1/32: dev v0, dev v1 -> dev v1",
        "static.route[1] 198.51.100.2/32: added (dev v0)"]


def test_static_distance_and_kernel_timers_are_live():
    p = plan(cfg(), cfg(static={"distance": 5}, kernel={"resync_interval": 10, "group_hold_time": 1,
                                                        "verify_delay": 0.5, "retry_max": 5, "flush_on_exit": True}))
    assert not p.needs_restart
    assert sorted(keys(p.live)) == ["kernel.flush_on_exit", "kernel.group_hold_time", "kernel.resync_interval",
                                    "kernel.retry_max", "kernel.verify_delay", "static.distance"]
    assert "kernel.resync_interval: 60 -> 10" in [c.describe() for c in p.live]


@pytest.mark.parametrize("changes, key", [
    ({"kernel": {"table": 101}}, "kernel.table"),
    ({"kernel": {"protocol": 201}}, "kernel.protocol"),
    ({"kernel": {"metric": 30}}, "kernel.metric"),
    ({"kernel": {"nexthop_id_range": [1, 1000]}}, "kernel.nexthop_id_range"),
    ({"control": {"socket": "/run/other.sock"}}, "control.socket"),
    ({"exabgp": {"listen": "/run/ks/other.sock"}}, "exabgp.listen"),
    ({"exabgp": {"relay": "/run/ks/other.sock"}}, "exabgp.relay"),
    ({"bgp": {"local_asns": [65000]}}, "bgp.local_asns"),
    ({"bgp": {"ebgp_distance": 30}}, "bgp.ebgp_distance"),
    ({"bgp": {"families": ["ipv4 unicast"]}}, "bgp.families"),
    ({"bgp": {"resolve_table": 101}}, "bgp.resolve_table"),
    ({"export": {"state_file": "/run/ks/other.json"}}, "export.state_file"),
    ({"feed": {"table": [], "fpm": BASE["feed"]["fpm"]}}, "feed.table[0] (ospf)"),  # removed
    ({"feed": {"table": BASE["feed"]["table"] + [{"table": 201, "protocol": "bird", "name": "b"}],
               "fpm": BASE["feed"]["fpm"]}}, "feed.table[1] (b)"),  # added
    ({"feed": {"table": [{"table": 201, "protocol": "bird", "name": "ospf"}], "fpm": BASE["feed"]["fpm"]}},
     "feed.table[0].table ospf"),
    ({"feed": {"table": [{"table": 200, "protocol": "bird", "name": "ospf", "distance": 100}],
               "fpm": BASE["feed"]["fpm"]}}, "feed.table[0].distance ospf"),
    ({"feed_": {"table": BASE["feed"]["table"]}}, "feed.fpm"),  # removed
    ({"feed": {"table": BASE["feed"]["table"], "fpm": {"name": "zebra", "table": 300, "port": 2621}}},
     "feed.fpm.port zebra"),
    ({"feed": {"table": BASE["feed"]["table"], "fpm": {"name": "zebra", "table": 300, "resync_after_link": 0}}},
     "feed.fpm.resync_after_link"),  # no longer follows zebra's kernel writes
])
def test_what_needs_a_restart_is_refused_whole_and_named(changes, key):
    p = plan(cfg(), cfg(**changes))
    assert p.needs_restart and keys(p.restart) == [key]
    named = ".".join(key.split(" ")[0].split("[")[0].split(".")[:2])  # kernel.table, feed.fpm, ...
    assert any(k.split(" ")[0] == named for k in RESTART_KEYS)  # the README's list names it
    assert refusal(p).startswith("these changes need a restart (kernelsync run again); nothing was applied: " + key)


def test_a_restart_change_beside_live_ones_still_refuses():
    p = plan(cfg(), cfg(kernel={"table": 101, "resync_interval": 5}, static={"distance": 3}))
    assert p.needs_restart and keys(p.restart) == ["kernel.table"]
    assert keys(p.live) == ["kernel.resync_interval", "static.distance"]


def test_feed_times_are_live_bgp_timers_too():
    p = plan(cfg(), cfg(feed={"table": [{"table": 200, "protocol": "bird", "name": "ospf", "hold_time": 5,
                                         "settle": 1}],
                              "fpm": {"name": "zebra", "table": 300, "replay_quiet": 3, "resync_after_link": 4}},
                        bgp={"graceful_restart": 120, "eor_timeout": 3}))
    assert not p.needs_restart
    assert p.changed_feeds() == ("ospf", "zebra")
    assert sorted(c.describe() for c in p.live if c.area == "feed") == [
        "feed ospf: hold_time 60 -> hold_time 5", "feed ospf: settle 0.2 -> settle 1",
        "feed zebra: replay_quiet 1 -> replay_quiet 3", "feed zebra: resync_after_link 2 -> resync_after_link 4"]
    assert sorted(keys(c for c in p.live if c.area == "bgp")) == ["bgp.eor_timeout", "bgp.graceful_restart"]


def test_export_groups_filters_attributes_damping_are_live():
    old = cfg()
    group = {"prefix": "203.0.113.10/32", "devices": ["tapA", "tapB"]}
    p = plan(old, cfg(export={"anycast": [dict(group, communities=["65010:53"])]}))
    assert [(c.area, c.key) for c in p.live] == [("export", "export.anycast[0] 203.0.113.10/32 attributes")]
    p = plan(old, cfg(export={"anycast": [dict(group, devices=["tapA"]),
                                          {"prefix": "203.0.113.11/32", "devices": ["tapC"]}]}))
    assert [(c.area, c.describe()) for c in p.live] == [
        ("anycast", "export.anycast[0] 203.0.113.10/32: dev tapA, dev tapB -> dev tapA"),
        ("anycast", "export.anycast[1] 203.0.113.11/32: added (dev tapC)")]
    p = plan(old, cfg(export={"kernel": [{"name": "guests", "devices": ["vm*"]}], "damping": {"half_life": 5}}))
    assert keys(p.live) == ["export.kernel", "export.damping"] and not p.needs_restart
    off = cfg(export={"anycast": [], "kernel": []})
    assert not plan(old, off).needs_restart  # turning it off: everything withdrawn
    assert keys(plan(off, old).restart) == ["export"]  # turning it on: the feed is built at start
    assert not plan(off, old, export_live=True).needs_restart  # the feed is there, or no ExaBGP at all


def test_refusal_of_an_invalid_configuration_lists_its_errors():
    assert refusal(None, ("k.toml: kernel.table: bad", "k.toml: x: y")) == (
        "the new configuration is invalid; the running one is kept: k.toml: kernel.table: bad; k.toml: x: y")
