"""Command line: ``kernelsync run|exabgp|hold|check|show|reload|bench|bench-bgp|bench-ospf|chaos|chaos-bgp|demo``."""
from __future__ import annotations

import argparse
import json
import logging
import sys
import threading
import time
from typing import List, Optional

from . import config as config_mod

DEFAULT_CONFIG = "/etc/kernelsync.toml"


TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
log = logging.getLogger("kernelsync")


class JsonFormatter(logging.Formatter):
    """``--log-format json``: one JSON object per line, for log shippers: ``time`` (UTC, ISO
    8601 with milliseconds), ``level``, ``logger``, ``message`` (the formatted message), and
    ``exception`` (the traceback as one string) when there is one; ``stack`` likewise."""

    name = "json"  # what the daemon passes on to the process it starts (kernelsync hold)

    def format(self, record: logging.LogRecord) -> str:
        out = {"time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
                       + ".%03dZ" % (record.msecs if record.msecs < 1000 else 999),
               "level": record.levelname, "logger": record.name, "message": record.getMessage()}
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:
            out["exception"] = record.exc_text
        if record.stack_info:
            out["stack"] = self.formatStack(record.stack_info)
        return json.dumps(out, ensure_ascii=False)


def _setup_logging(level: str, path: Optional[str] = None, fmt: str = "text") -> None:
    handler = logging.FileHandler(path) if path else logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else logging.Formatter(TEXT_FORMAT))
    logging.basicConfig(level=getattr(logging, level.upper()), handlers=[handler], force=True)


def _load(path: str):
    try:
        return config_mod.load(path)
    except config_mod.ConfigError as exc:
        print("configuration error:\n" + str(exc), file=sys.stderr)
        return None


def cmd_run(args) -> int:
    cfg = _load(args.config)
    if cfg is None:
        return 2
    from .daemon import Daemon
    daemon = Daemon(cfg, dry_run=args.dry_run)
    return daemon.dry_run_plan() if args.dry_run else daemon.run()


def cmd_exabgp(args) -> int:
    """ExaBGP's process: own the FIB (default), or relay to ``kernelsync run``."""
    cfg = _load(args.config)
    if cfg is None:
        return 2
    relay = args.relay or cfg.exabgp.relay
    if relay:
        from .feeds.relay import main as relay_main
        return relay_main(relay)
    from .daemon import Daemon
    return Daemon(cfg, exabgp_stdin=True).run()


def cmd_hold(args) -> int:
    """Started by a stopping ``kernelsync exabgp`` (or ``run`` with BGP): hold its BGP routes."""
    cfg = _load(args.config)
    if cfg is None:
        return 2
    import time
    from .daemon import Daemon
    return Daemon(cfg, hold_bgp=max(0.0, args.until - time.time())).run()


def cmd_check(args) -> int:
    cfg = _load(args.config)
    if cfg is None:
        return 2
    if cfg.route_errors:
        print("configuration error:", file=sys.stderr)
        for problem in cfg.route_errors:
            print("%s: %s" % (cfg.filename, problem), file=sys.stderr)
        print("%d route(s) valid, %d skipped" % (len(cfg.static_routes), len(cfg.route_errors)), file=sys.stderr)
        return 1
    for warning in cfg.warnings:
        print("%s: warning: %s" % (cfg.filename, warning), file=sys.stderr)
    fpm = cfg.fpm_feed
    listen = cfg.metrics.listen
    print("%s: OK (%d static routes, table %d, protocol %d; feeds: %d kernel tables, FPM %s; export: %d anycast "
          "groups, %d kernel filters; metrics %s)" % (
              cfg.filename, len(cfg.static_routes), cfg.kernel.table, cfg.kernel.protocol, len(cfg.table_feeds),
              "on %s port %d" % (fpm.address, fpm.port) if fpm else "off", len(cfg.export.anycast),
              len(cfg.export.kernel), "on %s port %d" % listen if listen else "off"))
    return 0


def cmd_show(args) -> int:
    cfg = _load(args.config)
    if cfg is None:
        return 2
    from .control import query
    request = "show %s" % args.what
    if args.routes and args.what != "feeds":
        print("--routes goes with 'show feeds' only", file=sys.stderr)
        return 2
    if args.family and args.what not in ("rib", "fib"):
        print("--family goes with 'show rib' and 'show fib' only", file=sys.stderr)
        return 2
    if args.prefix and args.what not in ("rib", "fib", "feeds"):
        print("PREFIX goes with 'show rib', 'show fib' and 'show feeds' only", file=sys.stderr)
        return 2
    if args.what == "feeds" and (args.routes or args.prefix):
        request += " routes" + (" %s" % args.prefix if args.prefix else "")
    elif args.prefix or args.family:
        request += "".join((" %s" % args.prefix if args.prefix else "", " family %s" % args.family if args.family else ""))
    try:
        data = query(cfg.control_socket, request)
        source = "daemon"
    except OSError as exc:
        if args.what in ("rib", "stats", "bgp", "export", "feeds"):
            print("kernelsync is not running (control socket %s: %s); 'show %s' needs the daemon"
                  % (cfg.control_socket, exc.strerror or exc, args.what), file=sys.stderr)
            return 1
        from .daemon import show_from_kernel
        data = show_from_kernel(cfg, args.what, request[len("show %s" % args.what):].split())
        source = "kernel"
    failed = isinstance(data, dict) and "error" in data
    if args.json:
        print(json.dumps(data, indent=1))
    elif failed:
        print("kernelsync: %s" % data["error"], file=sys.stderr)
    else:
        if source == "daemon":
            ask = lambda request: query(cfg.control_socket, request)  # noqa: E731
        else:
            from .daemon import show_from_kernel
            ask = lambda request: show_from_kernel(cfg, "nexthops") if request == "show nexthops" else {}  # noqa: E731
        for line in _show_text(args.what, data, ask, from_kernel=source == "kernel"):
            print(line)
    return 1 if failed else 0


def _show_text(what: str, data, ask, from_kernel: bool = False) -> List[str]:
    """The text of ``show WHAT`` (:mod:`kernelsync.showtext`); ``ask(request)`` gets what a table
    joins in: ``show nexthops`` (the legs of ``fib``), ``show stats`` (a filtered view's totals;
    ``{}`` when unknown); ``from_kernel``: ``data`` was read from the kernel (no daemon)."""
    from . import showtext
    if what == "feeds":
        return showtext.feeds(data)
    if what in ("rib", "fib"):
        total = ask("show stats").get("rib_prefixes" if what == "rib" else "fib_routes")
        if what == "rib":
            return showtext.rib(data, total)
        return showtext.fib(data, ask("show nexthops"), total, from_kernel)
    if what == "nexthops":
        return showtext.nexthops(data)
    if what == "bgp":
        return showtext.bgp(data)
    if what == "export":
        return showtext.export(data)
    return showtext.stats(data)


def _control_socket(path: str) -> str:
    """The control socket named by the config file ``path``: even when the file no longer
    validates (``reload`` is how the daemon says what is wrong with it), from its TOML if it
    parses, else the default."""
    try:
        return config_mod.load(path).control_socket
    except config_mod.ConfigError:
        pass
    import tomllib
    try:
        with open(path, "rb") as fh:
            sock = tomllib.load(fh).get("control", {}).get("socket")
    except (OSError, tomllib.TOMLDecodeError, AttributeError):
        sock = None
    return sock if isinstance(sock, str) else config_mod.DEFAULT_CONTROL_SOCKET


def cmd_reload(args) -> int:
    """Ask the running daemon to re-read its configuration file and apply the difference."""
    from .control import query
    sock = args.socket or _control_socket(args.config)
    try:
        data = query(sock, "reload", timeout=30.0)
    except OSError as exc:
        print("kernelsync is not running (control socket %s: %s)" % (sock, exc.strerror or exc), file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(data, indent=1))
    elif data.get("ok"):
        applied = data.get("applied", [])
        print("reloaded: %s" % ("%d change(s) applied" % len(applied) if applied else "no change"))
        for line in applied:
            print("  " + line)
    else:
        print("reload refused: %s" % data.get("error", data), file=sys.stderr)
        for line in data.get("errors", []) or data.get("restart", []):
            print("  " + line, file=sys.stderr)
    return 0 if data.get("ok") else 1


def cmd_bench(args) -> int:
    from .tools.bench import main as bench_main
    return bench_main(args)


def cmd_bench_bgp(args) -> int:
    from .tools.bench_bgp import main as bench_bgp_main
    return bench_bgp_main(args)


def cmd_bench_ospf(args) -> int:
    from .tools.bench_ospf import main as bench_ospf_main
    return bench_ospf_main(args)


def cmd_chaos(args) -> int:
    from .tools.chaos import main as chaos_main
    return chaos_main(args)


def cmd_chaos_bgp(args) -> int:
    from .tools.chaos_bgp import main as chaos_bgp_main
    return chaos_bgp_main(args)


def cmd_demo(args) -> int:
    if args.which == "hypervisor":
        from .tools.demo_hypervisor import main as demo_main
    else:
        from .tools.demo import main as demo_main
    return demo_main(args)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="kernelsync",
        description="Program routing-daemon routes into the Linux FIB as shared nexthop objects "
                    "and groups, and keep them right through link flaps.")
    parser.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    parser.add_argument("--log-format", default="text", choices=["text", "json"],
                        help="text lines (default), or one JSON object per line (time, level, logger, message, "
                             "exception) for log shippers")
    parser.add_argument("--log-file", help="append logs to this file (default: stderr; in 'exabgp' mode "
                                           "stdout is ExaBGP's command channel and never used for logs)")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("run", help="run the FIB manager (foreground)")
    p.add_argument("-c", "--config", default=DEFAULT_CONFIG, help="TOML file (default %(default)s)")
    p.add_argument("--dry-run", action="store_true",
                   help="read the kernel, print the planned operations, write nothing, exit")
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("exabgp", help="run as ExaBGP's process (encoder json): BGP routes into the FIB",
                       description="Reads ExaBGP's JSON on stdin, writes commands on stdout. Owns the FIB "
                                   "itself, or with --relay (or [exabgp] relay) passes the stream to a "
                                   "running 'kernelsync run' that has [exabgp] listen set.")
    p.add_argument("-c", "--config", default=DEFAULT_CONFIG, help="TOML file (default %(default)s)")
    p.add_argument("--relay", metavar="SOCKET", help="relay to the daemon listening on this Unix socket")
    p.set_defaults(func=cmd_exabgp)

    p = sub.add_parser("hold", help="hold a stopped instance's BGP routes until UNTIL, then sweep them "
                                    "(started by kernelsync itself when it stops; a new instance takes over)")
    p.add_argument("-c", "--config", default=DEFAULT_CONFIG)
    p.add_argument("--until", type=float, required=True, help="the end of the hold, seconds since the epoch")
    p.set_defaults(func=cmd_hold)

    p = sub.add_parser("check", help="validate a configuration file")
    p.add_argument("-c", "--config", default=DEFAULT_CONFIG)
    p.set_defaults(func=cmd_check)

    p = sub.add_parser("show", help="show the RIB, the FIB, the nexthop objects, BGP, the exported set or the route feeds (kernel tables, FPM)")
    p.add_argument("what", choices=["rib", "fib", "nexthops", "stats", "bgp", "export", "feeds"])
    p.add_argument("prefix", nargs="?", metavar="PREFIX",
                   help="rib, fib, feeds: only the routes within PREFIX (PREFIX itself and its more specifics; "
                        "a bare address is a host route); for feeds it implies --routes")
    p.add_argument("--family", choices=["4", "6"], help="rib, fib: IPv4 or IPv6 routes only")
    p.add_argument("--routes", action="store_true", help="feeds: list each feed's routes, with their nexthops and "
                                                         "whether they are stale")
    p.add_argument("-c", "--config", default=DEFAULT_CONFIG)
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=cmd_show)

    p = sub.add_parser("reload", help="make the running daemon re-read its configuration file and apply the "
                                      "difference (as SIGHUP); prints what was applied, or why it was refused")
    p.add_argument("-c", "--config", default=DEFAULT_CONFIG, help="where to find the control socket")
    p.add_argument("--socket", help="the control socket (default: [control] socket of the config)")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=cmd_reload)

    p = sub.add_parser("bench", help="benchmark against ip -batch in a scratch namespace")
    p.add_argument("-n", "--routes", type=int, default=200_000)
    p.add_argument("--groups", type=int, default=4, help="distinct nexthop groups the routes share")
    p.add_argument("--flap-sizes", default="1000,200000", help="route counts for the flap repair figure")
    p.add_argument("--repeat", type=int, default=3, help="alternated rounds (median and range are reported)")
    p.add_argument("--memory-profile", action="store_true",
                   help="also one install under tracemalloc: bytes per route by allocation site and by structure")
    p.add_argument("--pic", type=int, default=0, metavar="N",
                   help="also a BGP peer down and back with N prefixes (prefix-independent convergence)")
    p.add_argument("--dump-latency", default="", metavar="SIZES",
                   help="route counts (comma-separated) for the link event latency during a full sync, sliced and "
                        "in one go (kernelsync.tools.bench_dump)")
    p.add_argument("--mix", choices=("none", "full"), default="none",
                   help="full: the table case on a mixed table, -n IPv4 (/8-/24, mostly /24) + -n/5 IPv6 prefixes "
                        "(/16-/48, mostly /48) instead of the /32 install and flap case")
    p.add_argument("--mix-groups", type=int, default=40, help="distinct nexthop groups of the mixed table (2-250; "
                                                              "about 1/6 of them IPv6)")
    p.add_argument("--withdraw", action="store_true",
                   help="the table case, then each method deletes its whole table (kernelsync: every prefix "
                        "withdrawn from the RIB, as a peer flush, then engine.run)")
    p.set_defaults(func=cmd_bench)

    p = sub.add_parser("bench-bgp", help="kernelsync's CPU per UPDATE against ExaBGP's, BIRD announcing 50,000 prefixes")
    from .tools.bench_bgp import add_arguments
    add_arguments(p)
    p.set_defaults(func=cmd_bench_bgp)

    p = sub.add_parser("bench-ospf", help="kernelsync's added convergence behind real BIRD 2 and FRR 8.4 OSPF "
                                          "(local and remote link flaps in the OSPF lab)")
    from .tools.bench_ospf import add_arguments as bench_ospf_arguments
    bench_ospf_arguments(p)
    p.set_defaults(func=cmd_bench_ospf)

    p = sub.add_parser("chaos", help="a seeded storm of link flaps, outside deletions and kill -9s against "
                                     "a real kernelsync in scratch namespaces, checked by an independent oracle")
    from .tools.chaos import add_arguments as chaos_arguments
    chaos_arguments(p)
    p.set_defaults(func=cmd_chaos)

    p = sub.add_parser("chaos-bgp", help="kill -9 kernelsync N times under BGP feed load (BIRD churning, ExaBGP respawning it); checks the kernel against BIRD's exported routes")
    from .tools.chaos_bgp import add_arguments as chaos_bgp_arguments
    chaos_bgp_arguments(p)
    p.set_defaults(func=cmd_chaos_bgp)

    p = sub.add_parser("demo", help="a self-contained demo in network namespaces (touches nothing else)")
    p.add_argument("which", nargs="?", choices=("bgp", "hypervisor"), default="bgp",
                   help="bgp (the default, plain `kernelsync demo`): BGP from BIRD into shared nexthop groups, "
                        "a link repair; hypervisor: guests' anycast /32 exported to a BIRD core (ECMP, "
                        "device-only legs, withdraw time on a guest's death, resilient buckets)")
    p.add_argument("--keep", action="store_true", help="leave the namespaces up at the end")
    p.set_defaults(func=cmd_demo)
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    _setup_logging(args.log_level, args.log_file, args.log_format)
    threading.excepthook = _thread_failed
    try:
        return args.func(args)
    except Exception:  # logged once, through the configured format (a JSON line with --log-format json)
        log.critical("kernelsync %s failed", args.command, exc_info=True)
        return 1


def _thread_failed(args) -> None:
    """A thread's uncaught exception: logged once, through the configured format."""
    if args.exc_type is SystemExit:
        return
    log.critical("thread %s failed", args.thread.name if args.thread else "?",
                 exc_info=(args.exc_type, args.exc_value, args.exc_traceback))


if __name__ == "__main__":
    sys.exit(main())
