"""The Prometheus metrics (kernelsync.metrics): the gauges and counters are the daemon's own
``show`` views (checked against ``show stats`` of a daemon on the in-memory kernel, scraped over
HTTP), a scrape never reads the loop's state from its own thread (the loop publishes a snapshot;
a busy loop gets the last one served, with its age), and the histograms are observed in the
loop (feed-to-kernel latency per batch, repair time)."""
import selectors
import threading
import urllib.request

from prometheus_client.parser import text_string_to_metric_families

from kernelsync import config
from kernelsync.core.engine import Engine
from kernelsync.core.model import parse_prefix
from kernelsync.daemon import Daemon
from kernelsync.feeds.base import BaseFeed
from kernelsync.kernel.fake import FakeKernel
from kernelsync.metrics import Metrics, families

ROUTES = [{"prefix": "203.0.113.10/32", "nexthops": [{"dev": "a"}, {"dev": "b"}]},
          {"prefix": "203.0.113.11/32", "nexthops": [{"dev": "a"}, {"dev": "b"}]},
          {"prefix": "198.51.100.0/24", "nexthops": [{"dev": "a", "via": "192.0.2.1"}]}]


class Events:
    overflows = 2


def make_daemon(routes=ROUTES):
    d = Daemon.__new__(Daemon)  # the loop's state without its sockets
    d.cfg = config.parse({"kernel": {"table": 100}, "static": {"route": routes}})
    kernel = FakeKernel(200)
    kernel.add_link("a")
    kernel.add_link("b")
    d.kernel = kernel
    d.engine = Engine(d.cfg.kernel, kernel)
    d.engine.start(0.0)
    d.events, d.route_events = Events(), None
    d.counters = dict.fromkeys(("notify_overflows", "route_notify_overflows", "feed_rereads_after_overflow",
                                "route_events_ours"), 0)
    d.bgp = d.export = d.metrics = None
    d.hold_bgp, d.exabgp_stdin = None, False
    d.services = []
    d._writes_seen = 0
    static = d._static_feed()
    static.start(None, 0.0)
    d.feeds = [static]
    d.engine.run(0.0)
    return d


def samples(text):
    """Scraped text -> {(name, sorted labels): value}."""
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def scrape(metrics, sel, timeout=10.0):
    """GET /metrics from another thread while this one runs the loop's selector, as the daemon does."""
    result = {}

    def get():
        url = "http://127.0.0.1:%d/metrics" % metrics.server.server_port
        result["text"] = urllib.request.urlopen(url, timeout=timeout).read().decode()

    thread = threading.Thread(target=get)
    thread.start()
    while thread.is_alive():
        for key, _ in sel.select(0.05):
            key.data(0.0)
    thread.join()
    return samples(result["text"])


def test_a_scrape_gives_the_values_of_show_stats():
    d = make_daemon()
    stats = d.answer("show stats")
    assert stats["state"] == "SYNCED" and stats["installed_routes"] == 3  # the daemon did its work
    sel = selectors.DefaultSelector()
    metrics = Metrics(d.metrics_view)
    metrics.start(sel, ("127.0.0.1", 0))
    try:
        got = scrape(metrics, sel)
    finally:
        metrics.close()
    assert got[("kernelsync_routes", ())] == stats["installed_routes"] == 3
    assert got[("kernelsync_desired_routes", ())] == stats["fib_routes"]
    assert got[("kernelsync_rib_prefixes", ())] == stats["rib_prefixes"] == 3
    assert got[("kernelsync_nexthop_objects", ())] == stats["nexthop_objects"] > 0
    assert got[("kernelsync_sync_state", (("state", "SYNCED"),))] == 1
    assert got[("kernelsync_sync_state", (("state", "AWAITING"),))] == 0
    assert stats["writes"] and sum(stats["writes"].values()) > 0
    for kind, n in stats["writes"].items():
        assert got[("kernelsync_kernel_writes_total", (("kind", kind),))] == n
    assert got[("kernelsync_kernel_failures_total", ())] == stats["kernel_failures"]
    assert got[("kernelsync_repairs_total", ())] == stats["repairs"]
    assert got[("kernelsync_full_syncs_total", ())] == stats["full_syncs"] == 1
    assert got[("kernelsync_notification_overflows_total", (("socket", "links"),))] == 2
    assert got[("kernelsync_repair_duration_seconds_count", ())] == 0
    assert ("kernelsync_bgp_peers", (("state", "up"),)) not in got  # no BGP feed, no BGP metrics
    assert got[("kernelsync_metrics_snapshot_age_seconds", ())] < 5


def test_bgp_export_and_feed_metrics_come_from_their_show_views():
    d = make_daemon()
    stats = d.answer("show stats")
    stats["bgp"] = {"lines": 120, "bad_lines": 3, "bad_nlri": 1, "lines_dropped": 0, "updates": 100}
    peers = [{"peer": "192.0.2.1", "state": "up", "paths": 40, "stale": 0},
             {"peer": "192.0.2.5", "state": "down", "paths": 7, "stale": 7},
             {"peer": "2001:db8::1", "state": "up", "paths": 2, "stale": 1}]
    view = {"stats": stats, "peers": peers, "export": {"announced": {"203.0.113.53/32": {}, "2001:db8:53::/128": {}}},
            "feeds": {"ospf": {"routes": 12, "stale": 4}, "zebra": {"routes": 3, "stale": 0}}}
    got = {}
    for family in families(view):
        for s in family.samples:
            got[(s.name, tuple(sorted(s.labels.items())))] = s.value
    assert got[("kernelsync_bgp_peers", (("state", "up"),))] == 2
    assert got[("kernelsync_bgp_peers", (("state", "down"),))] == 1
    assert got[("kernelsync_bgp_peers", (("state", "idle"),))] == 0
    assert got[("kernelsync_bgp_paths", (("peer", "192.0.2.1"),))] == 40
    assert got[("kernelsync_bgp_stale_paths", (("peer", "192.0.2.5"),))] == 7
    assert got[("kernelsync_bgp_lines_total", ())] == 120
    assert got[("kernelsync_bgp_bad_lines_total", ())] == 3
    assert got[("kernelsync_bgp_bad_nlri_total", ())] == 1
    assert got[("kernelsync_exported_prefixes", ())] == 2
    assert got[("kernelsync_feed_routes", (("feed", "ospf"),))] == 12
    assert got[("kernelsync_feed_stale_routes", (("feed", "ospf"),))] == 4
    assert got[("kernelsync_feed_stale_routes", (("feed", "zebra"),))] == 0


def test_a_busy_loop_gets_the_last_snapshot_served_never_its_live_state():
    d = make_daemon()
    sel = selectors.DefaultSelector()
    metrics = Metrics(d.metrics_view, wait=0.2)
    metrics.start(sel, ("127.0.0.1", 0))  # publishes the first snapshot
    try:
        for prefix in ("203.0.113.11/32", "198.51.100.0/24"):  # the loop changes its state (one route now) ...
            d.engine.rib.withdraw("static", parse_prefix(prefix))
        d.engine.run(1.0)
        assert d.answer("show stats")["installed_routes"] == 1
        url = "http://127.0.0.1:%d/metrics" % metrics.server.server_port
        stale = samples(urllib.request.urlopen(url, timeout=10).read().decode())  # ... and is busy: no select
        assert stale[("kernelsync_routes", ())] == 3  # what the loop published, not read from this thread
        assert stale[("kernelsync_metrics_snapshot_age_seconds", ())] >= 0.2
        fresh = scrape(metrics, sel)  # the loop answers: fresh values
        assert fresh[("kernelsync_routes", ())] == 1
        assert fresh[("kernelsync_metrics_snapshot_age_seconds", ())] < 0.2
    finally:
        metrics.close()


class Marked(BaseFeed):
    name = "marked"


def test_feed_to_kernel_latency_is_observed_per_batch_when_the_run_wrote():
    d = make_daemon()
    d.metrics = Metrics(d.metrics_view)
    feed = Marked()
    d.feeds.append(feed)
    count = "kernelsync_feed_to_kernel_seconds_count"
    d._observe_run()  # the writes of the first run (no batch marked): nothing observed
    assert d.metrics.registry.get_sample_value(count) == 0
    feed.input_at = 0.0  # a batch arrived; the run wrote nothing (nothing changed): not observed, cleared
    d._observe_run()
    assert d.metrics.registry.get_sample_value(count) == 0 and feed.input_at is None
    d.kernel.stats.writes["route"] = d.kernel.stats.writes.get("route", 0) + 1  # the next run wrote
    feed.input_at = 0.0
    d._observe_run()
    assert d.metrics.registry.get_sample_value(count) == 1 and feed.input_at is None
    assert d.metrics.registry.get_sample_value("kernelsync_feed_to_kernel_seconds_sum") > 0


def test_an_address_in_use_refuses_the_start_with_the_key():
    import socket

    import pytest

    from kernelsync.feeds.channels import SocketInUse
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen(1)
    port = taken.getsockname()[1]
    d = make_daemon()
    d.cfg = config.parse({"kernel": {"table": 100}, "metrics": {"listen": "127.0.0.1:%d" % port}})
    try:
        with pytest.raises(SocketInUse, match="metrics.listen 127.0.0.1 port %d: Address already in use" % port):
            d._start_services(selectors.DefaultSelector(), 0.0)
        assert d.metrics is None and d.services == []
    finally:
        taken.close()
