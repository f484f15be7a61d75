"""Prometheus metrics (``[metrics] listen = "127.0.0.1:9342"``), with ``prometheus_client``.

One source of truth: the gauges and counters are read from the daemon's own ``show`` views
(``show stats``, the BGP peers of ``show bgp``, ``show export``, ``show feeds``) at scrape
time, never counted twice.  The histograms are observed where their events happen, in the
daemon's loop: the repair time of a link event (the ``link event handled in N ms`` of the log)
and the feed-to-kernel latency of a batch (its first input's arrival to its last write ACKed;
measured for the BGP, kernel-table and FPM feeds).

Threads: prometheus_client serves HTTP from a thread of its own, and the daemon's state
belongs to its loop.  A scrape therefore never reads that state: it wakes the loop (a pipe in
the loop's selector) and waits up to SNAPSHOT_WAIT seconds; the loop builds the metric families
from its views (:func:`families`: plain numbers and strings, fresh objects) and publishes them
under a lock.  A loop busy longer than that (a full-table load in one run) gets the last
snapshot served, its age in ``kernelsync_metrics_snapshot_age_seconds``; the loop never waits
for a scrape.  The histograms are prometheus_client's own, which are thread-safe.

Metrics (``show stats`` key in brackets):

* ``kernelsync_sync_state{state}`` 1 for the current state (``SYNCED``, ``AWAITING``) [state]
* ``kernelsync_routes`` our routes in the kernel [installed_routes]; ``kernelsync_desired_routes``
  [fib_routes]; ``kernelsync_rib_prefixes`` [rib_prefixes]; ``kernelsync_nexthop_objects``
  [nexthop_objects]
* ``kernelsync_kernel_writes_total{kind}`` netlink writes by kind [writes];
  ``kernelsync_kernel_failures_total`` refusals [kernel_failures];
  ``kernelsync_pending_failures`` writes waiting for a retry [pending_failures]
* ``kernelsync_repairs_total``, ``kernelsync_full_syncs_total``, ``kernelsync_retries_total``,
  ``kernelsync_outside_writes_total``, ``kernelsync_fights_total`` (engine counters)
* ``kernelsync_notification_overflows_total{socket}`` (``links``, ``routes``) [notifications]
* BGP (``show bgp``): ``kernelsync_bgp_peers{state}``, ``kernelsync_bgp_paths{peer}``,
  ``kernelsync_bgp_stale_paths{peer}``, ``kernelsync_bgp_lines_total``,
  ``kernelsync_bgp_bad_lines_total``, ``kernelsync_bgp_bad_nlri_total``,
  ``kernelsync_bgp_lines_dropped_total``, ``kernelsync_bgp_lines_too_long_total``,
  ``kernelsync_bgp_commands_dropped_total``
* export (``show export``): ``kernelsync_exported_prefixes``
* route feeds (``show feeds``): ``kernelsync_feed_routes{feed}``, ``kernelsync_feed_stale_routes{feed}``
* histograms: ``kernelsync_repair_duration_seconds``, ``kernelsync_feed_to_kernel_seconds``
* prometheus_client's ``process_*`` (CPU seconds, resident memory, open file descriptors)
"""
from __future__ import annotations

import logging
import os
import selectors
import threading
import time
from typing import Callable, Dict, Iterable, List, Optional, Tuple

from prometheus_client import CollectorRegistry, Histogram, ProcessCollector, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

log = logging.getLogger("kernelsync.metrics")
SNAPSHOT_WAIT = 2.0  # seconds a scrape waits for the loop's fresh snapshot before serving the last one
STATES = ("SYNCED", "AWAITING")
PEER_STATES = ("up", "down", "idle")
#: engine counters of ``show stats`` exported as ``kernelsync_<name>_total``
ENGINE_COUNTERS = {"repairs": "link-event repairs (nexthop re-reads and the writes they caused)",
                   "full_syncs": "full reads of the kernel and the reconciliations that followed",
                   "retries": "refused writes tried again",
                   "outside_writes": "changes of our routes or nexthops by another program",
                   "fights": "objects another program keeps rewriting (writes to them held back)"}
#: BGP counters of ``show stats`` -> ``bgp`` exported as ``kernelsync_bgp_<name>_total``
BGP_COUNTERS = {"lines": "lines read from ExaBGP (or relays)",
                "bad_lines": "lines skipped as malformed (logged with their text)",
                "bad_nlri": "NLRIs refused and treated as withdrawn (RFC 7606)",
                "lines_dropped": "lines dropped on a full queue (recovered by route-refresh)",
                "lines_too_long": "lines over the length limit, skipped",
                "commands_dropped": "commands to ExaBGP dropped on a full queue",
                "updates": "UPDATE messages applied"}
#: the histograms' buckets, in seconds: a repair is milliseconds; a batch up to seconds at a full table
REPAIR_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


def _family(cls, name: str, doc: str, value, labels: Tuple[str, ...], samples: Iterable):
    """One metric family of ``cls`` (GaugeMetricFamily, CounterMetricFamily): a single
    ``value``, or with ``labels`` one sample per ``(label values, value)`` of ``samples``."""
    if labels:
        metric = cls(name, doc, labels=list(labels))
        for label_values, v in samples:
            metric.add_metric(list(label_values), float(v))
        return metric
    return cls(name, doc, value=float(value))


def _gauge(name: str, doc: str, value, labels: Tuple[str, ...] = (), samples: Iterable = ()) -> GaugeMetricFamily:
    return _family(GaugeMetricFamily, name, doc, value, labels, samples)


def _counter(name: str, doc: str, value, labels: Tuple[str, ...] = (), samples: Iterable = ()) -> CounterMetricFamily:
    """``name`` without ``_total`` (prometheus_client adds it)."""
    return _family(CounterMetricFamily, name, doc, value, labels, samples)


def families(view: dict) -> List[Metric]:
    """The gauges and counters of one snapshot of the daemon's views.

    ``view``: ``{"stats": <show stats>, "peers": <show bgp "peers"> or None, "export": <show
    export> or None, "feeds": <show feeds> or None}`` (the control socket's answers, same keys).
    Returns fresh metric families holding only numbers and strings (safe to hand to another
    thread)."""
    stats = view["stats"]
    out: List[Metric] = [
        _gauge("kernelsync_sync_state", "1 for the daemon's state: SYNCED (the kernel matches every feed's "
               "initial state) or AWAITING", None, ("state",),
               (((s,), 1 if stats["state"] == s else 0) for s in STATES)),
        _gauge("kernelsync_routes", "our routes in the kernel (show stats: installed_routes)",
               stats["installed_routes"]),
        _gauge("kernelsync_desired_routes", "routes the RIB wants in the kernel (show stats: fib_routes)",
               stats["fib_routes"]),
        _gauge("kernelsync_rib_prefixes", "prefixes in the RIB, every source (show stats: rib_prefixes)",
               stats["rib_prefixes"]),
        _gauge("kernelsync_nexthop_objects", "our nexthop objects and groups in the kernel (show stats: "
               "nexthop_objects)", stats["nexthop_objects"]),
        _counter("kernelsync_kernel_writes", "netlink writes by kind (show stats: writes)", None, ("kind",),
                 (((kind,), n) for kind, n in sorted(stats["writes"].items()))),
        _counter("kernelsync_kernel_failures", "writes the kernel refused (show stats: kernel_failures)",
                 stats["kernel_failures"]),
        _gauge("kernelsync_pending_failures", "refused writes waiting for their retry (show stats: pending_failures)",
               len(stats["pending_failures"])),
    ]
    for key, doc in ENGINE_COUNTERS.items():
        if key in stats:
            out.append(_counter("kernelsync_%s" % key, "%s (show stats: %s)" % (doc, key), stats[key]))
    sockets = stats.get("notifications", {}).get("sockets")
    if sockets is not None:
        out.append(_counter("kernelsync_notification_overflows", "netlink notifications lost (ENOBUFS), each "
                            "followed by a full read (show stats: notifications.sockets)", None, ("socket",),
                            (((name,), n) for name, n in sorted(sockets.items()))))
    bgp = stats.get("bgp")
    if bgp is not None:
        for key, doc in BGP_COUNTERS.items():
            if key in bgp:
                out.append(_counter("kernelsync_bgp_%s" % key, "%s (show stats: bgp.%s)" % (doc, key), bgp[key]))
    peers = view.get("peers")
    if peers is not None:
        states: Dict[str, int] = dict.fromkeys(PEER_STATES, 0)
        for peer in peers:
            states[peer["state"]] = states.get(peer["state"], 0) + 1
        out.append(_gauge("kernelsync_bgp_peers", "BGP peers by session state (show bgp: peers)", None, ("state",),
                          (((s,), n) for s, n in sorted(states.items()))))
        out.append(_gauge("kernelsync_bgp_paths", "paths in the Adj-RIB-In by peer (show bgp: peers[].paths)", None,
                          ("peer",), (((p["peer"],), p["paths"]) for p in peers)))
        out.append(_gauge("kernelsync_bgp_stale_paths", "stale paths (graceful restart, route-refresh window) by "
                          "peer (show bgp: peers[].stale)", None, ("peer",),
                          (((p["peer"],), p["stale"]) for p in peers)))
    export = view.get("export")
    if export is not None and "announced" in export:
        out.append(_gauge("kernelsync_exported_prefixes", "prefixes announced to BGP (show export: announced)",
                          len(export["announced"])))
    feeds = view.get("feeds")
    if feeds is not None:
        out.append(_gauge("kernelsync_feed_routes", "routes of each route feed (show feeds: routes)", None, ("feed",),
                          (((name, ), f["routes"]) for name, f in sorted(feeds.items()))))
        out.append(_gauge("kernelsync_feed_stale_routes", "stale routes of each route feed, kept until the feed "
                          "is back or its hold time ends (show feeds: stale)", None, ("feed",),
                          (((name, ), f["stale"]) for name, f in sorted(feeds.items()))))
    return out


class SnapshotCollector:
    """A prometheus_client collector serving the loop's last published snapshot (see the module
    docstring).  ``request``: called from the scraping thread to ask the loop for a fresh one."""

    def __init__(self, request: Callable[[], None], wait: float = SNAPSHOT_WAIT) -> None:
        self.request = request
        self.wait = wait
        self._cond = threading.Condition()
        self._generation = 0
        self._families: List[Metric] = []
        self._at: Optional[float] = None  # time.monotonic() of the snapshot

    def publish(self, metrics: List[Metric], now: float) -> None:
        """The loop's side: ``metrics`` (fresh objects, never touched again by the loop)."""
        with self._cond:
            self._families = metrics
            self._at = now
            self._generation += 1
            self._cond.notify_all()

    def collect(self) -> Iterable[Metric]:
        with self._cond:
            generation = self._generation
        self.request()
        with self._cond:
            self._cond.wait_for(lambda: self._generation != generation, self.wait)
            metrics, at = self._families, self._at
        yield from metrics
        if at is not None:
            yield _gauge("kernelsync_metrics_snapshot_age_seconds", "age of the daemon's state served by this scrape "
                         "(more than 0 when the loop was busy longer than %g s)" % self.wait,
                         max(0.0, time.monotonic() - at))


class Metrics:
    """The metrics of one daemon: the registry (its own, not prometheus_client's global one),
    the histograms and the snapshot collector; :meth:`start` opens the HTTP endpoint and
    registers the loop's side.  ``view``: called on the loop's thread, returns what
    :func:`families` takes."""

    name = "metrics"
    ended = False

    def __init__(self, view: Callable[[], dict], wait: float = SNAPSHOT_WAIT) -> None:
        self.view = view
        self.registry = CollectorRegistry(auto_describe=False)
        self.repair_seconds = Histogram(
            "kernelsync_repair_duration_seconds", "time from a link notification to the kernel repaired "
            "(nexthops re-read, every write ACKed)", buckets=REPAIR_BUCKETS, registry=self.registry)
        self.feed_to_kernel_seconds = Histogram(
            "kernelsync_feed_to_kernel_seconds", "time from a batch's first input reaching the loop (a BGP "
            "line, a kernel-table feed's route notification) to the kernel's ACK of the batch's last write",
            buckets=LATENCY_BUCKETS, registry=self.registry)
        self.collector = SnapshotCollector(self._request, wait)
        self.registry.register(self.collector)
        ProcessCollector(registry=self.registry)  # process_*: CPU, memory, file descriptors (from /proc/self)
        self._rfd: Optional[int] = None
        self._wfd: Optional[int] = None
        self._fd_lock = threading.Lock()  # the pipe is closed by the loop while a scrape may write to it
        self.sel: Optional[selectors.BaseSelector] = None
        self.server = None
        self.thread: Optional[threading.Thread] = None
        self.failures = 0

    # the HTTP thread -----------------------------------------------------------------------
    def _request(self) -> None:
        with self._fd_lock:
            if self._wfd is None:
                return
            try:
                os.write(self._wfd, b"x")
            except BlockingIOError:  # the pipe is full: a request is pending already
                pass

    # the loop ------------------------------------------------------------------------------
    def start(self, sel: selectors.BaseSelector, listen: Tuple[str, int]) -> None:
        """Serve ``http://ADDRESS:PORT/metrics`` from prometheus_client's thread; OSError if the
        address cannot be bound."""
        self._rfd, self._wfd = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self.sel = sel
        sel.register(self._rfd, selectors.EVENT_READ, self._on_request)
        address, port = listen
        self.server, self.thread = start_http_server(port, address, registry=self.registry)
        self.publish()
        log.info("metrics: serving http://%s/metrics", "[%s]:%d" % listen if ":" in address else "%s:%d" % listen)

    def _on_request(self, now: float) -> None:
        try:
            while os.read(self._rfd, 512):
                pass
        except BlockingIOError:
            pass
        self.publish()

    def publish(self) -> None:
        """Build the families from the views (on the loop's thread) and hand them over."""
        try:
            metrics = families(self.view())
        except Exception:  # a bug in a view must not stop the loop; the scrape gets the last snapshot
            self.failures += 1
            if self.failures <= 10 or self.failures % 1000 == 0:
                log.exception("metrics: building the snapshot failed (%d so far)", self.failures)
            return
        self.collector.publish(metrics, time.monotonic())

    def observe_repair(self, seconds: float) -> None:
        self.repair_seconds.observe(seconds)

    def observe_feed_to_kernel(self, seconds: float) -> None:
        self.feed_to_kernel_seconds.observe(seconds)

    def deadline(self) -> Optional[float]:
        return None

    def commit(self, now: float) -> None:
        pass

    def close(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.server = None
        with self._fd_lock:
            if self._rfd is not None:
                if self.sel is not None:
                    try:
                        self.sel.unregister(self._rfd)
                    except (KeyError, ValueError):
                        pass
                os.close(self._rfd)
                os.close(self._wfd)
            self._rfd = self._wfd = None


__all__ = ["Metrics", "SnapshotCollector", "families", "SNAPSHOT_WAIT", "REPAIR_BUCKETS", "LATENCY_BUCKETS"]
