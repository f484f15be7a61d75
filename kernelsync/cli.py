"""Command line: ``kernelsync run|exabgp|hold|check|show|bench|bench-bgp|bench-ospf|chaos|chaos-bgp|demo``."""
from __future__ import annotations

import argparse
import json
import logging
import sys
from typing import List, Optional

from . import config as config_mod

DEFAULT_CONFIG = "/etc/kernelsync.toml"


def _setup_logging(level: str, path: Optional[str] = None) -> None:
    handler = logging.FileHandler(path) if path else logging.StreamHandler(sys.stderr)
    logging.basicConfig(level=getattr(logging, level.upper()), handlers=[handler],
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")


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
    print("%s: OK (%d static routes, table %d, protocol %d; feeds: %d kernel tables, FPM %s; export: %d anycast "
          "groups, %d kernel filters)" % (
              cfg.filename, len(cfg.static_routes), cfg.kernel.table, cfg.kernel.protocol, len(cfg.table_feeds),
              "on %s port %d" % (fpm.address, fpm.port) if fpm else "off", len(cfg.export.anycast),
              len(cfg.export.kernel)))
    return 0


def cmd_show(args) -> int:
    cfg = _load(args.config)
    if cfg is None:
        return 2
    from .control import query
    request = "show %s" % args.what
    if args.routes or args.prefix:
        if args.what != "feeds":
            print("--routes and PREFIX go with 'show feeds' only", file=sys.stderr)
            return 2
        request += " routes" + (" %s" % args.prefix if args.prefix else "")
    try:
        data = query(cfg.control_socket, request)
        source = "daemon"
    except OSError as exc:
        if args.what in ("rib", "stats", "bgp", "export", "feeds"):
            print("kernelsync is not running (control socket %s: %s); 'show %s' needs the daemon"
                  % (cfg.control_socket, exc.strerror or exc, args.what), file=sys.stderr)
            return 1
        from .daemon import show_from_kernel
        data = show_from_kernel(cfg, args.what)
        source = "kernel"
    if args.json:
        print(json.dumps(data, indent=1))
    elif args.what == "feeds" and "error" not in data:
        print_feeds(data)
    else:
        _print_table(data, "%s (from the %s)" % (args.what, source))
    return 0 if not (isinstance(data, dict) and "error" in data) else 1


def print_feeds(data: dict, out=None) -> None:
    """``show feeds`` as text: per feed its settings and counters on one line, its stale state as
    ``stale: 2 routes for 42 s (until 2026-12-01T17:40:03Z)``, then its routes (with --routes),
    one a line: ``  192.0.2.0/24 via 10.0.0.2 dev v0, dev v3 weight 2 [stale]``."""
    out = out or sys.stdout
    for name, feed in data.items():
        print("# feed %s" % name, file=out)
        routes = feed.get("routes")
        skip = ("routes", "stale", "stale_until", "stale_for", "stale_until_utc")
        print("  ".join("%s=%s" % (k, json.dumps(v) if isinstance(v, (dict, list)) else v)
                        for k, v in feed.items() if k not in skip), file=out)
        count = feed.get("routes") if not isinstance(routes, list) else sum(1 for r in routes if not r["stale"])
        line = "routes: %s" % (count if not isinstance(routes, list) else "%d listed" % len(routes))
        if feed.get("stale"):
            line += "; stale: %d routes" % feed["stale"]
            if feed.get("stale_for") is not None:
                line += " for %.0f s" % feed["stale_for"]
            if feed.get("stale_until_utc"):
                line += " (until %s)" % feed["stale_until_utc"]
        else:
            line += "; nothing stale"
        print(line, file=out)
        for route in routes if isinstance(routes, list) else ():
            legs = []
            for path in route["paths"]:
                for nh in path["nexthops"]:
                    leg = ("via %s dev %s" % (nh["gateway"], nh["dev"])) if nh["gateway"] else "dev %s" % nh["dev"]
                    legs.append(leg + ("" if nh["weight"] == 1 else " weight %d" % nh["weight"]))
                if path.get("resilient"):
                    legs[-1] += " (resilient, %d buckets)" % path["resilient"]["buckets"]
            print("  %s %s%s" % (route["prefix"], ", ".join(legs), " [stale]" if route["stale"] else ""), file=out)


def _print_table(data, title: str) -> None:
    print("# " + title)
    if isinstance(data, dict):
        for key, value in data.items():
            print("%-22s %s" % (key, json.dumps(value) if isinstance(value, (dict, list)) else value))
        return
    for item in data:
        print("  ".join("%s=%s" % (k, json.dumps(v) if isinstance(v, (dict, list)) else v) for k, v in item.items()))


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
    from .tools.demo import main as demo_main
    return demo_main(args)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="kernelsync",
        description="Program routing-daemon routes into the Linux FIB as shared nexthop objects "
                    "and groups, and keep them right through link flaps.")
    parser.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
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
                   help="feeds: list only the routes within PREFIX (PREFIX itself and its more specifics; "
                        "a bare address is a host route); implies --routes")
    p.add_argument("--routes", action="store_true", help="feeds: list each feed's routes, with their nexthops and "
                                                         "whether they are stale")
    p.add_argument("-c", "--config", default=DEFAULT_CONFIG)
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=cmd_show)

    p = sub.add_parser("bench", help="benchmark against ip -batch in a scratch namespace")
    p.add_argument("-n", "--routes", type=int, default=200_000)
    p.add_argument("--groups", type=int, default=4, help="distinct nexthop groups the routes share")
    p.add_argument("--flap-sizes", default="1000,200000", help="route counts for the flap repair figure")
    p.add_argument("--repeat", type=int, default=3, help="alternated rounds (median and range are reported)")
    p.add_argument("--memory-profile", action="store_true",
                   help="also one install under tracemalloc: bytes per route by allocation site and by structure")
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
    p.add_argument("--keep", action="store_true", help="leave the namespaces up at the end")
    p.set_defaults(func=cmd_demo)
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    _setup_logging(args.log_level, args.log_file)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
