"""``kernelsync bench --dump-latency SIZES``: how long a link event waits when it arrives during
a full sync (a verify or a periodic resync), with the routes read and diffed in slices (issue
14, item 4) and, in the same run, in one go as before (``engine.sliced = False``).

For each size N: one namespace (``rig(nss, n, groups)``, :class:`kernelsync.tools.bench.FlapRig`
as ``kernelsync bench`` passes it (this module does not import the bench: no cycle): a real
:class:`~kernelsync.daemon.Daemon`'s sockets and engine, N IPv4 /32 routes over ``groups``
groups of two gateway members, one on each of two veths), then ``rounds`` rounds, each with
both modes in alternated order.  A round: a full sync is requested; the loop is driven as the
daemon's loop drives itself (``engine.run`` while it is due; between two runs the notification
socket is polled, and read when readable: ``Daemon.handle_notifications``); a second thread
takes the device of one member of every group down (RTM_NEWLINK on its own socket) DELAY
(20 ms) after the route dump began (``dump_routes`` in one go, ``open_route_dump`` sliced),
so it lands early in the dump in both modes.  The repair is the first ``engine.run`` ending after the
notification was read that made a repair (``counters["repairs"]`` grew): every group has lost
that member.  Figures per round and mode, medians and ranges over the rounds:

* ``from_issue_ms``: from the link change being issued (the other thread's time just before
  its ``send()``; the kernel's own work on it, about a millisecond, included) to the end of
  the repairing run: what the event waits, as a peer would see it; ``issue_to_read_ms``: the
  part of it until the notification was read;
* ``from_read_ms``: from the notification read to the end of that run (the repair itself);
* ``sync_s``: the full sync from its request to the end of its last run; ``sync_cpu_s``: the
  process's CPU time meanwhile (less sensitive to a loaded machine);
* ``max_run_ms``: the longest ``engine.run`` of the sync (the longest the loop is blocked);
  ``max_run_cpu_ms``: the largest CPU time of one run (what bounds it on an idle machine);
* ``runs``: ``engine.run`` calls of the sync; ``repaired_during_sync``: the repair ended
  before the full sync (the point of the slicing).

Afterwards the groups are checked (one member each, every route on one of them), the link is
brought up again and the rig settles before the next round.  Alone: ``kernelsync bench -n
1000 --repeat 3 --flap-sizes '' --dump-latency 200000,1000000``.
"""
from __future__ import annotations

import gc
import select
import statistics
import sys
import threading
import time
from typing import Callable, Dict, List, Optional

MODES = ("sliced", "one_go")
DELAY = 0.02  # seconds from the route dump's start to the link change
FIGURES = ("from_issue_ms", "issue_to_read_ms", "from_read_ms", "sync_s", "sync_cpu_s", "max_run_ms", "max_run_cpu_ms", "runs")


DEV = "ksa0"  # the device of one member of every group (kernelsync.tools.bench.DEV_A)


def _mr(s: Dict[str, float], fmt: str, unit: str = "") -> str:
    """``median [min-max]``."""
    return (fmt + unit + " [" + fmt + "-" + fmt + unit + "]") % (s["median"], s["min"], s["max"])


def _one(rig, sliced: bool, delay: float) -> dict:
    """One full sync with a link going down ``delay`` seconds after its route dump began (see
    the module)."""
    engine, daemon, kernel = rig.engine, rig.daemon, rig.kernel
    engine.sliced = sliced
    rig.drain()
    ack: Dict[str, float] = {}
    go = threading.Event()
    # the route dump's start (in one go or sliced) lets the link thread go
    kernel.dump_routes = _signalling(kernel.dump_routes, go)
    kernel.open_route_dump = _signalling(kernel.open_route_dump, go)

    def take_down() -> None:
        go.wait()
        time.sleep(delay)
        ack["issue"] = time.perf_counter()  # this thread holds the GIL here: the time is right
        rig.links.set(rig.index[DEV], False)
        ack["t"] = time.perf_counter()  # late when the main thread keeps the GIL: not a figure

    thread = threading.Thread(target=take_down, name="bench-link", daemon=True)
    thread.start()
    syncs = engine.counters["full_syncs"]
    engine.request_full_sync()
    read_at: Optional[float] = None
    repaired_at: Optional[float] = None
    repairs = engine.counters["repairs"]
    runs = 0
    max_run = max_cpu = 0.0
    long_runs: List[tuple] = []  # (ms, CPU ms, run index, repairs so far, sync still in progress)
    sync_end: Optional[float] = None
    t0 = time.perf_counter()
    cpu0 = time.process_time()
    deadline = time.monotonic() + 600
    while (sync_end is None or repaired_at is None) and time.monotonic() < deadline:
        due = engine.deadline()
        if due is not None and due <= time.monotonic():
            t, c = time.perf_counter(), time.process_time()
            engine.run(time.monotonic())
            end, c = time.perf_counter(), time.process_time() - c
            if sync_end is None:
                runs += 1
                max_run = max(max_run, end - t)
                max_cpu = max(max_cpu, c)
                long_runs.append((round((end - t) * 1e3, 1), round(c * 1e3, 1), runs,
                                  engine.counters["repairs"] - repairs, engine.syncing))
                if engine.counters["full_syncs"] > syncs:
                    sync_end = end
                    cpu = time.process_time() - cpu0
            if read_at is not None and repaired_at is None and engine.counters["repairs"] > repairs:
                repaired_at = end
            timeout = 0.0
        else:
            timeout = 0.05 if due is None else max(0.0, min(0.05, due - time.monotonic()))
        ready, _, _ = select.select([rig.events.sock], [], [], timeout)
        if ready:
            t = time.perf_counter()
            if daemon.handle_notifications(time.monotonic()) and read_at is None:
                read_at = t
    thread.join(5)
    del kernel.dump_routes, kernel.open_route_dump  # the class's methods again
    if sync_end is None or repaired_at is None or "issue" not in ack:
        raise RuntimeError("dump latency: no %s within 600 s" % ("repair" if sync_end else "end of the full sync"))
    ok, detail = rig.verify(1)
    result = {"mode": "sliced" if sliced else "one_go", "from_issue_ms": (repaired_at - ack["issue"]) * 1e3,
              "issue_to_read_ms": (read_at - ack["issue"]) * 1e3, "sync_cpu_s": cpu, "max_run_cpu_ms": max_cpu * 1e3,
              "longest_runs": sorted(long_runs, reverse=True)[:5],
              "from_read_ms": (repaired_at - read_at) * 1e3, "sync_s": sync_end - t0, "max_run_ms": max_run * 1e3,
              "runs": runs, "repaired_during_sync": repaired_at < sync_end, "ok": ok, "verify": detail}
    rig.links.set(rig.index[DEV], True)
    rig.settle()
    ok_up, detail_up = rig.verify(2)
    if not ok_up:
        result["ok"], result["verify"] = False, detail + "; after up: " + detail_up
    return result


def _signalling(method: Callable, event: threading.Event) -> Callable:
    def call(*args, **kw):
        event.set()
        return method(*args, **kw)
    return call


def run_dump_latency(rig_factory: Callable, nss, n: int, groups: int = 4, rounds: int = 3,
                     dump_slice: Optional[int] = None, diff_slice: Optional[int] = None) -> dict:
    """The figures of one size (see the module docstring) on ``rig_factory(nss, n, groups)``
    (:class:`kernelsync.tools.bench.FlapRig`); ``dump_slice``/``diff_slice`` override the
    engine's slices (the smoke test's small sizes need several slices)."""
    rig = rig_factory(nss, n, groups)
    try:
        engine = rig.engine
        if dump_slice:
            engine.dump_slice = dump_slice
        if diff_slice:
            engine.diff_slice = diff_slice
        # calibration: one full sync in one go, unmeasured (the delay is fixed: DELAY)
        engine.sliced = False
        engine.request_full_sync()
        t = time.perf_counter()
        engine.run(time.monotonic())
        calib = time.perf_counter() - t
        delay = DELAY
        out: List[dict] = []
        for r in range(max(1, rounds)):
            order = (True, False) if r % 2 == 0 else (False, True)
            for sliced in order:
                out.append(_one(rig, sliced, delay))
        figures = {}
        for mode in MODES:
            mine = [x for x in out if x["mode"] == mode]
            figures[mode] = {k: {"median": statistics.median(x[k] for x in mine), "min": min(x[k] for x in mine),
                                 "max": max(x[k] for x in mine)} for k in FIGURES}
            figures[mode]["repaired_during_sync"] = sum(x["repaired_during_sync"] for x in mine)
        return {"routes": n, "groups": groups, "delay_s": delay, "calibration_sync_s": calib, "rounds": out,
                "dump_slice": engine.dump_slice, "diff_slice": engine.diff_slice, **figures,
                "ok": all(x["ok"] for x in out)}
    finally:
        rig.close()
        gc.unfreeze()  # what the rig's engine held (frozen by engine.run)
        gc.collect()


def print_dump_latency(res: dict) -> None:
    n = res["routes"]
    for mode, label in (("sliced", "sliced (now)"), ("one_go", "in one go (before)")):
        f = res[mode]
        print("  dump latency %d routes, %s: link event repaired %s after the link change was issued (%s after its "
              "notification was read); full sync %s (CPU %s), longest run %s (CPU %s), %s runs; repaired during the sync in %d "
              "of %d rounds" % (
                  n, label, _mr(f["from_issue_ms"], "%.1f", " ms"), _mr(f["from_read_ms"], "%.1f", " ms"),
                  _mr(f["sync_s"], "%.2f", " s"), _mr(f["sync_cpu_s"], "%.2f", " s"), _mr(f["max_run_ms"], "%.1f", " ms"), _mr(f["max_run_cpu_ms"], "%.1f", " ms"),
                  _mr(f["runs"], "%.0f"), f["repaired_during_sync"],
                  len([x for x in res["rounds"] if x["mode"] == mode])))
    bad = [x["verify"] for x in res["rounds"] if not x["ok"]]
    if bad:
        print("  dump latency %d routes: CHECK FAILED: %s" % (n, "; ".join(bad)))
    sys.stdout.flush()


def run_sizes(rig_factory: Callable, nss, sizes: List[int], groups: int, rounds: int) -> List[dict]:
    """:func:`run_dump_latency` for every size, printed: what ``kernelsync bench`` calls."""
    out = []
    for n in sizes:
        res = run_dump_latency(rig_factory, nss, n, groups, rounds)
        print_dump_latency(res)
        out.append(res)
    return out
