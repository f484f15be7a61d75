"""The daemon applying a reload (kernelsync.daemon.Daemon.reload) on the in-memory kernel: only
the difference is written (kernel write counts), a bad or restart-needing file is refused whole
with the running configuration and routes untouched, SIGHUP reloads from the loop."""
import os
import signal
import time

from kernelsync import config
from kernelsync.core.engine import Engine
from kernelsync.daemon import Daemon
from kernelsync.kernel.fake import FakeKernel

HEAD = """[kernel]
table = 100
group_hold_time = 5
resync_interval = 60
[control]
socket = "/nonexistent/ks.sock"
"""


def route(prefix, *devs):
    return '[[static.route]]\nprefix = "%s"\nnexthops = [ %s ]\n' % (prefix, ", ".join('{ dev = "%s" }' % d
                                                                                      for d in devs))


ROUTES = route("198.51.100.0/24", "v0") + route("198.51.100.1/32", "v0", "v1") + route("198.51.100.2/32", "v1")


def running(tmp_path, text=HEAD + ROUTES):
    """A daemon's state (without its sockets) on the fake kernel, synced with ``text``."""
    path = tmp_path / "k.toml"
    path.write_text(text)
    d = Daemon.__new__(Daemon)
    d.cfg = config.load(str(path))
    d.dry_run = False
    d.held = d.bgp = d.export = d.streams = None
    d.reload_requested = False
    d.services = []  # no systemd notifier, no metrics
    kernel = FakeKernel(200)
    for dev in ("v0", "v1", "v2"):
        kernel.add_link(dev)
    d.kernel = kernel
    d.engine = Engine(d.cfg.kernel, kernel)
    d.engine.start(0.0)
    d.feeds = [d._static_feed()]
    d.feeds[0].start(None, 0.0)
    d.engine.run(0.0)
    return d, kernel, path


def writes(kernel):
    return {k: v for k, v in kernel.stats.writes.items() if v}


def run_and_count(d, kernel, now):
    before = dict(kernel.stats.writes)
    while d.engine.deadline() is not None and d.engine.deadline() <= now:
        d.engine.run(now)
    return {k: v - before[k] for k, v in kernel.stats.writes.items() if v != before[k]}


def prefixes(kernel):
    return sorted("%s/%d" % (".".join(map(str, key[2])), key[3]) for key in kernel.routes)


def test_a_reload_of_the_same_file_writes_nothing(tmp_path):
    d, kernel, _path = running(tmp_path)
    assert len(kernel.routes) == 3
    answer = d.reload(1.0)
    assert answer == {"ok": True, "applied": []}
    assert d.engine.deadline() != 0.0  # nothing to do
    assert run_and_count(d, kernel, 1.0) == {}


def test_one_route_changed_one_added_one_removed_only_their_writes(tmp_path):
    d, kernel, path = running(tmp_path)
    path.write_text(HEAD + route("198.51.100.1/32", "v0") + route("198.51.100.2/32", "v1")  # .1 changed, .0 gone
                    + route("198.51.100.3/32", "v1"))  # added, on an existing nexthop
    answer = d.reload(1.0)
    assert answer["ok"] and sorted(answer["applied"]) == [
        "static.route[0] 198.51.100.0/24: removed (was dev v0)",
        "static.route[0] 198.51.100.1/32: dev v0, dev v1 -> dev v0",
        "static.route[2] 198.51.100.3/32: added (dev v1)"]
    # .1's group shrinks in place (one nexthop write, its route stays on it), .3 is added on the
    # existing v1 object, .0 is deleted; .2 and the objects are untouched
    group = kernel.routes[(100, 2, bytes([198, 51, 100, 1]), 32, 20)][1]
    v0 = kernel.routes[(100, 2, bytes([198, 51, 100, 0]), 24, 20)][1]
    assert run_and_count(d, kernel, 1.0) == {"nexthop-set": 1, "route-set": 1, "route-del": 1}
    assert prefixes(kernel) == ["198.51.100.1/32", "198.51.100.2/32", "198.51.100.3/32"]
    assert kernel.nexthops[group].group == ((v0, 1),)
    assert d.cfg.static_routes[2].where == "static.route[2]"  # the new configuration is the running one
    assert run_and_count(d, kernel, 7.0) == {}  # nothing left unused
    assert d.reload(8.0) == {"ok": True, "applied": []} and run_and_count(d, kernel, 8.0) == {}


def test_a_route_on_a_new_device_writes_its_nexthop_and_route(tmp_path):
    d, kernel, path = running(tmp_path)
    path.write_text(HEAD + ROUTES.replace('"198.51.100.2/32"\nnexthops = [ { dev = "v1" }',
                                          '"198.51.100.2/32"\nnexthops = [ { dev = "v2" }'))
    assert d.reload(1.0)["applied"] == ["static.route[2] 198.51.100.2/32: dev v1 -> dev v2"]
    assert run_and_count(d, kernel, 1.0) == {"nexthop-set": 1, "route-set": 1}


def test_an_invalid_file_is_refused_and_the_running_configuration_stays(tmp_path, caplog):
    d, kernel, path = running(tmp_path)
    old = d.cfg
    path.write_text(HEAD.replace("table = 100", "table = 'main'") + route("198.51.100.9/32", "v0"))
    answer = d.reload(1.0)
    assert not answer["ok"] and answer["errors"] == [
        "%s: kernel.table: table must be an integer 1..4294967295 other than 253 (default) and 255 (local), "
        "not 'main'" % path]
    assert answer["error"].startswith("the new configuration is invalid; the running one is kept: ")
    assert "reload refused: the new configuration is invalid" in caplog.text
    assert d.cfg is old and run_and_count(d, kernel, 1.0) == {} and len(kernel.routes) == 3
    path.write_text("[kernel\n")  # not even TOML
    assert not d.reload(2.0)["ok"] and d.cfg is old
    path.unlink()
    assert "cannot read" in d.reload(3.0)["errors"][0] and d.cfg is old


def test_a_file_with_a_bad_route_is_refused_rather_than_the_route_deleted(tmp_path):
    d, kernel, path = running(tmp_path)
    path.write_text(HEAD + ROUTES.replace('dev = "v1" }', 'dev = "v1", via = "10.0.0.300" }', 1))
    answer = d.reload(1.0)
    assert not answer["ok"] and answer["errors"] == [
        "%s: static.route[1].nexthops[1].via: '10.0.0.300' is not an IP address" % path]
    assert run_and_count(d, kernel, 1.0) == {} and len(kernel.routes) == 3


def test_a_change_that_needs_a_restart_refuses_the_whole_file(tmp_path):
    d, kernel, path = running(tmp_path)
    old = d.cfg
    path.write_text(HEAD.replace("table = 100", "table = 101") + route("198.51.100.0/24", "v0"))
    answer = d.reload(1.0)
    assert not answer["ok"] and answer["restart"] == ["kernel.table: 100 -> 101"]
    assert answer["error"] == ("these changes need a restart (kernelsync run again); nothing was applied: "
                               "kernel.table: 100 -> 101")
    assert d.cfg is old and run_and_count(d, kernel, 1.0) == {} and len(kernel.routes) == 3


def test_kernel_timers_are_applied_to_the_engine(tmp_path):
    d, kernel, path = running(tmp_path)
    path.write_text((HEAD + ROUTES).replace("resync_interval = 60", "resync_interval = 10"))
    assert d.reload(2.0)["applied"] == ["kernel.resync_interval: 60 -> 10"]
    assert d.engine.kcfg.resync_interval == 10.0 and d.engine.deadline() == 12.0
    assert run_and_count(d, kernel, 12.0) == {}  # the resync finds nothing to write


def test_static_distance_is_live(tmp_path):
    d, _kernel, path = running(tmp_path)
    path.write_text(HEAD + "[static]\ndistance = 7\n" + ROUTES)
    assert d.reload(1.0)["applied"] == ["static.distance: 1 -> 7"]
    assert d.engine.rib.distance["static"] == 7


def test_anycast_groups_added_and_removed_without_export(tmp_path):
    """No ExaBGP: the groups' routes still come and go (the ``anycast`` RIB source appears)."""
    d, kernel, path = running(tmp_path)
    group = '[[export.anycast]]\nprefix = "203.0.113.10/32"\ndevices = ["v1", "v2"]\n'
    path.write_text(HEAD + ROUTES + group)
    assert d.reload(1.0)["applied"] == ["export.anycast[0] 203.0.113.10/32: added (dev v1, dev v2)"]
    assert run_and_count(d, kernel, 1.0) == {"nexthop-set": 2, "route-set": 1}  # v2's object, the group
    assert "203.0.113.10/32" in prefixes(kernel)
    path.write_text(HEAD + ROUTES)
    assert d.reload(2.0)["ok"]
    assert run_and_count(d, kernel, 2.0) == {"route-del": 1}
    assert "203.0.113.10/32" not in prefixes(kernel)


def test_sighup_reloads_from_the_loop_not_the_handler(tmp_path):
    d, kernel, path = running(tmp_path)
    old = d.cfg
    path.write_text(HEAD + ROUTES + route("198.51.100.4/32", "v0"))
    d._on_signal(signal.SIGHUP, None)
    assert d.cfg is old and d.reload_requested and not d.engine.need_full  # no full resync any more
    rfd, wfd = os.pipe2(os.O_NONBLOCK)
    try:
        os.write(wfd, b"\x01")  # what signal.set_wakeup_fd writes
        d._after_wakeup(rfd)
    finally:
        os.close(rfd)
        os.close(wfd)
    assert d.cfg is not old and not d.reload_requested
    assert run_and_count(d, kernel, time.monotonic()) == {"route-set": 1}


def test_reload_over_the_control_request(tmp_path):
    d, _kernel, path = running(tmp_path)
    path.write_text(HEAD + ROUTES + route("198.51.100.4/32", "v0"))
    assert d.answer("reload") == {"ok": True, "applied": ["static.route[3] 198.51.100.4/32: added (dev v0)"]}


def test_feed_times_go_to_their_feed_the_others_untouched(tmp_path):
    from kernelsync.feeds.fpm import FpmFeed
    from kernelsync.feeds.tablefeed import TableFeed
    feeds = ('[[feed.table]]\ntable = 200\nprotocol = "bird"\nname = "a"\n'
             '[[feed.table]]\ntable = 201\nprotocol = "bird"\nname = "b"\n[feed.fpm]\ntable = 300\n')
    d, _kernel, path = running(tmp_path, HEAD + ROUTES + feeds)
    d.feeds += [TableFeed(d.engine.rib, cfg, None, d.engine.links) for cfg in d.cfg.table_feeds]
    d.feeds.append(FpmFeed(d.engine.rib, d.cfg.fpm_feed, d.engine.links))
    _static, a, b, fpm = d.feeds
    old_b = b.cfg
    path.write_text(HEAD + ROUTES + feeds.replace('name = "a"\n', 'name = "a"\nhold_time = 5\nsettle = 1\n')
                    + "replay_quiet = 3\n")
    assert d.reload(1.0)["applied"] == ["feed a: hold_time 60 -> hold_time 5", "feed a: settle 0.2 -> settle 1",
                                        "feed fpm: replay_quiet 1 -> replay_quiet 3"]
    assert a.cfg.hold_time == a.source.hold_time == 5.0 and a.cfg.settle == 1.0
    assert b.cfg is old_b
    assert fpm.cfg.replay_quiet == 3.0 and fpm.source.hold_time == 60.0


def test_bgp_timers_go_to_the_bgp_feed_and_its_rib(tmp_path):
    from kernelsync.feeds.bgpfeed import BgpFeed
    from kernelsync.feeds.channels import ExabgpStreams
    d, kernel, path = running(tmp_path)
    d.streams = ExabgpStreams()
    d.bgp = BgpFeed(d.engine.rib, d.cfg.bgp, kernel, 200, d.engine.links, d.streams, 0.0)
    path.write_text(HEAD + ROUTES + "[bgp]\ngraceful_restart = 120\n[exabgp]\nroute_refresh_on_start = false\n")
    assert d.reload(1.0)["applied"] == ["bgp.graceful_restart: 0 -> 120",
                                        "exabgp.route_refresh_on_start: true -> false"]
    assert d.bgp.settings.graceful_restart == d.bgp.bgp.settings.graceful_restart == 120.0
    assert not d.bgp.refresh_on_start
    path.write_text(HEAD + ROUTES + "[bgp]\ngraceful_restart = 120\nlocal_asns = [65001]\n")
    assert d.reload(2.0)["restart"] == ["bgp.local_asns: [] -> [65001]"]
    assert d.bgp.refresh_on_start is False  # nothing applied


def test_export_turned_on_needs_a_restart_only_without_an_export_feed(tmp_path):
    from kernelsync.feeds.channels import ExabgpStreams
    d, _kernel, path = running(tmp_path)
    d.streams = ExabgpStreams()  # ExaBGP's streams, no export feed (no [export] at start)
    path.write_text(HEAD + ROUTES + '[[export.anycast]]\nprefix = "203.0.113.10/32"\ndevices = ["v1"]\n')
    assert d.reload(1.0)["restart"] == [
        "export: off (no [[export.anycast]] or [[export.kernel]]) -> on (the export feed is built at start)"]


def test_a_fixed_route_is_added_and_no_longer_counted_as_skipped(tmp_path):
    d, kernel, path = running(tmp_path, HEAD + ROUTES + route("198.51.100.5/32", "v0").replace('"v0"', '"v0/x"'))
    static = d.feeds[0]
    assert static.show()["skipped"] == 1 and len(kernel.routes) == 3
    path.write_text(HEAD + ROUTES + route("198.51.100.5/32", "v0"))
    assert d.reload(1.0)["applied"] == ["static.route[3] 198.51.100.5/32: added (dev v0)"]
    assert static.show()["skipped"] == 0 and run_and_count(d, kernel, 1.0) == {"route-set": 1}


def test_a_shorter_group_hold_time_frees_unused_objects_from_the_reload_on(tmp_path):
    d, kernel, path = running(tmp_path)
    path.write_text(HEAD + route("198.51.100.0/24", "v0") + route("198.51.100.1/32", "v0", "v1"))
    d.reload(1.0)
    assert run_and_count(d, kernel, 1.0) == {"route-del": 1}  # .2 gone; its v1 object is still in .1's group
    path.write_text(HEAD + route("198.51.100.0/24", "v0"))
    d.reload(2.0)
    assert run_and_count(d, kernel, 2.0) == {"route-del": 1}  # the group and v1's object unused from now
    assert d.engine.deadline() == 7.0  # group_hold_time 5
    path.write_text(HEAD.replace("group_hold_time = 5", "group_hold_time = 1") + route("198.51.100.0/24", "v0"))
    assert d.reload(2.5)["applied"] == ["kernel.group_hold_time: 5 -> 1"]
    assert run_and_count(d, kernel, 2.5) == {}
    assert d.engine.deadline() == 3.0
    assert run_and_count(d, kernel, 3.0) == {"nexthop-del": 2}
