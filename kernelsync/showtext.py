"""``kernelsync show`` as text: tables in the style of ``birdc show route`` and ``vtysh show ip
route``, each ending with a summary line.  Input: the JSON documents of the control socket
(:mod:`kernelsync.control`; ``--json`` prints those unchanged), or, without a daemon, what
:func:`kernelsync.daemon.show_from_kernel` read from the kernel.  Each function returns the
lines to print; none raises on a missing optional field.
"""
from __future__ import annotations

import json
from typing import Dict, Iterable, List, Optional, Sequence

RIB_CODES = "Codes: > selected source (its nexthops are the FIB's), [n] admin distance"


def _table(header: Sequence[str], rows: Iterable[Sequence[str]]) -> List[str]:
    """Columns padded to their widest cell; the last column is not padded."""
    rows = [list(map(str, r)) for r in rows]
    widths = [max([len(header[i])] + [len(r[i]) for r in rows if i < len(r)]) for i in range(len(header) - 1)]

    def line(cells: Sequence[str]) -> str:
        return "  ".join([c.ljust(w) for c, w in zip(cells, widths)] + list(cells[len(widths):])).rstrip()

    return [line(header)] + [line(r) for r in rows]


def _plural(n: int, word: str, plural: str = "") -> str:
    return "%d %s" % (n, word if n == 1 else plural or word + "s")


def rib(items: List[dict], total: Optional[int] = None) -> List[str]:
    """``show rib``: one line per (prefix, source) and one per further nexthop; ``>`` marks the
    source whose nexthops the route uses.  ``total``: prefixes in the whole RIB (for a filtered
    view's summary)."""
    rows = []
    selected = 0
    for item in items:
        first = True
        if item.get("selected"):
            selected += 1
        for src in item.get("sources", []):
            mark = ">" if src.get("source") == item.get("selected") else ""
            legs = [leg for path in src.get("paths", []) for leg in path] or ["-"]
            for i, leg in enumerate(legs):
                if i == 0:
                    rows.append([item["prefix"] if first else "", mark, "%s[%s]" % (src.get("source"), src.get("distance")), leg])
                    first = False
                else:
                    rows.append(["", "", "", leg])
    lines = [RIB_CODES] + _table(["PREFIX", "", "SOURCE", "NEXTHOPS"], rows)
    summary = "%s, %d with a selected source" % (_plural(len(items), "prefix", "prefixes"), selected)
    if total is not None and total != len(items):
        summary += " (of %d in the RIB)" % total
    return lines + [summary]


def _legs(nh_id: int, nexthops: Dict[int, dict]) -> str:
    """``via 10.0.0.2 dev ra, via 10.0.1.2 dev rb`` for a route on ``nh_id`` (a group's active
    members; ``(down)`` after an inactive one), or the id alone when it is unknown."""
    obj = nexthops.get(nh_id)
    if obj is None:
        return "nhid %s" % nh_id
    if "object" in obj:  # read from the kernel without a daemon
        return obj["object"]
    members = obj.get("members")
    if members is None:
        return _nexthop_text(obj)
    out = []
    for m in members:
        leg = nexthops.get(m["id"])
        text = _nexthop_text(leg) if leg is not None and "members" not in leg else "nhid %d" % m["id"]
        if m.get("weight", 1) != 1:
            text += " weight %d" % m["weight"]
        if not m.get("active", True):
            text += " (down)"
        out.append(text)
    return ", ".join(out)


def _nexthop_text(obj: dict) -> str:
    gateway = obj.get("gateway")
    return ("via %s dev %s" % (gateway, obj.get("dev"))) if gateway else "dev %s" % obj.get("dev")


def fib(items: List[dict], nexthops: Sequence[dict] = (), total: Optional[int] = None,
        from_kernel: bool = False) -> List[str]:
    """``show fib``: per route its prefix, nexthop id, scope, whether the kernel has it as
    desired (``ok``/``pending``; ``-`` when ``from_kernel``: read from the kernel without a
    daemon) and the nexthops it reaches (from ``show nexthops``)."""
    by_id = {n["id"]: n for n in nexthops}
    rows = []
    pending = 0
    for item in items:
        installed = item.get("installed")
        if installed is False:
            pending += 1
        rows.append([item["prefix"], item.get("nhid", "-"), item.get("scope", "-"),
                     "-" if installed is None else ("ok" if installed else "pending"),
                     _legs(item.get("nhid"), by_id)])
    summary = "%s" % _plural(len(items), "route")
    if not from_kernel:
        summary += ", %d installed, %d pending" % (len(items) - pending, pending)
    if total is not None and total != len(items):
        summary += " (of %d in the FIB)" % total
    return _table(["PREFIX", "NHID", "SCOPE", "KERNEL", "NEXTHOPS"], rows) + [summary]


def nexthops(items: List[dict]) -> List[str]:
    """``show nexthops``: our nexthop objects and groups, their users (prefixes on them) and
    whether the kernel has them as desired."""
    by_id = {n["id"]: n for n in items}
    rows = []
    groups = 0
    for item in items:
        if "object" in item:  # read from the kernel without a daemon
            rows.append([item["id"], "group" if " group " in item["object"] else "nexthop", "-", "-", item["object"]])
            continue
        if "members" in item:
            groups += 1
            detail = _legs(item["id"], by_id)
            if item.get("resilient"):
                detail += "  resilient, %s buckets" % item["resilient"].get("buckets")
            kind = "group"
        else:
            detail = _nexthop_text(item) + (" (refused)" if item.get("failed") else "")
            kind = "nexthop"
        if item.get("unused_since") is not None:
            detail += "  unused (held)"
        if item.get("outside"):
            detail += "  written by another program %d times" % item["outside"].get("outside_writes", 0)
        rows.append([item["id"], kind, item.get("users", "-"),
                     "-" if "installed" not in item else ("ok" if item["installed"] else "pending"), detail])
    if any("object" in i for i in items):
        groups = sum(1 for r in rows if r[1] == "group")
    return _table(["ID", "TYPE", "USERS", "KERNEL", "DETAIL"], rows) + [
        "%s: %s, %s" % (_plural(len(items), "object"), _plural(len(items) - groups, "nexthop"), _plural(groups, "group"))]


def bgp(data: dict) -> List[str]:
    """``show bgp``: the peers (as ``birdc show protocols``), then the counters on one line."""
    peers = data.get("peers", [])
    rows = [[p.get("peer"), p.get("peer_as"), p.get("type"), p.get("state"), p.get("paths"), p.get("stale"),
             ",".join(p.get("waiting_for") or []) or "-"] for p in peers]
    lines = _table(["PEER", "AS", "TYPE", "STATE", "PATHS", "STALE", "WAITING FOR EOR"], rows)
    up = sum(1 for p in peers if p.get("state") == "up")
    lines.append("%s, %d up; initial state %s" % (_plural(len(peers), "peer"), up,
                                                   "complete" if data.get("ready") else "awaited"))
    counters = data.get("counters") or {}
    if counters:
        lines.append("counters: " + " ".join("%s=%s" % (k, v) for k, v in counters.items()
                                             if not isinstance(v, (dict, list))))
    return lines


def export(data: dict) -> List[str]:
    """``show export``: the prefixes announced to BGP, by whom, with the announce command."""
    announced = data.get("announced", {})
    rows = [[prefix, entry.get("source"), entry.get("command")] for prefix, entry in announced.items()]
    lines = _table(["PREFIX", "SOURCE", "ANNOUNCED AS"], rows)
    suppressed = [name for name, d in (data.get("damping") or {}).items() if d.get("suppressed")]
    summary = "%s announced, %s kernel candidates" % (_plural(len(announced), "prefix", "prefixes"),
                                                        data.get("kernel_candidates", "-"))
    if suppressed:
        summary += ", damped: %s" % ", ".join(suppressed)
    if data.get("unsent_withdraws"):
        summary += ", %d withdraws not sent yet" % data["unsent_withdraws"]
    return lines + [summary]


def stats(data: dict) -> List[str]:
    """``show stats``: one ``key value`` line each (nested values as JSON)."""
    return ["%-26s %s" % (k, json.dumps(v) if isinstance(v, (dict, list)) else v) for k, v in data.items()]


def feeds(data: dict) -> List[str]:
    """``show feeds`` as text: per feed its settings and counters on one line, its stale state as
    ``stale: 2 routes for 42 s (until 2026-12-01T17:40:03Z)``, then its routes (with --routes),
    one a line: ``  192.0.2.0/24 via 10.0.0.2 dev v0, dev v3 weight 2 [stale]``."""
    out = []
    for name, feed in data.items():
        out.append("# feed %s" % name)
        routes = feed.get("routes")
        skip = ("routes", "stale", "stale_until", "stale_for", "stale_until_utc")
        out.append("  ".join("%s=%s" % (k, json.dumps(v) if isinstance(v, (dict, list)) else v)
                             for k, v in feed.items() if k not in skip))
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
        out.append(line)
        for route in routes if isinstance(routes, list) else ():
            legs = []
            for path in route["paths"]:
                for nh in path["nexthops"]:
                    leg = ("via %s dev %s" % (nh["gateway"], nh["dev"])) if nh["gateway"] else "dev %s" % nh["dev"]
                    legs.append(leg + ("" if nh["weight"] == 1 else " weight %d" % nh["weight"]))
                if path.get("resilient"):
                    legs[-1] += " (resilient, %d buckets)" % path["resilient"]["buckets"]
            out.append("  %s %s%s" % (route["prefix"], ", ".join(legs), " [stale]" if route["stale"] else ""))
    return out


__all__ = ["rib", "fib", "nexthops", "bgp", "export", "stats", "feeds"]
