"""Live reconfiguration: what differs between the running configuration and a new one, and
whether it can be applied without a restart.  Pure (no I/O): :func:`plan` compares two
validated :class:`~kernelsync.config.Config` objects; the daemon applies the plan
(:meth:`kernelsync.daemon.Daemon.reload`), or refuses it whole.

**Live** (applied at once, only the difference):

* ``[[static.route]]`` added, removed or changed, ``static.distance``;
* ``[[export.anycast]]`` groups (their routes and their export), ``[[export.kernel]]`` filters,
  their BGP attributes, ``[export.damping]``; turning export off (and on, in a daemon without
  ExaBGP, where only the groups' routes are installed);
* ``[kernel]`` ``group_hold_time``, ``resync_interval``, ``verify_delay``, ``retry_initial``,
  ``retry_max``, ``flush_on_exit``;
* ``[bgp]`` timers: ``graceful_restart``, ``restart_hold_time``, ``startup_wait``,
  ``restart_wait``, ``eor_timeout``, ``eor_max_wait``; ``[exabgp] route_refresh_on_start``;
* the times of a ``[[feed.table]]`` (``hold_time``, ``settle``, ``restart_quiet``) and of
  ``[feed.fpm]`` (``hold_time``, ``settle``, ``replay_quiet``, ``resync_after_link`` while it
  stays above 0).

**Restart** (:data:`RESTART_KEYS`; the reload is refused whole, nothing applied): ``[kernel]``
``table``, ``protocol``, ``metric``, ``nexthop_id_range``; ``[control] socket``; ``[exabgp]``
``listen`` and ``relay``; ``[bgp]`` ``ebgp_distance``, ``ibgp_distance``, ``local_asns``,
``families``, ``resolve_table``, ``resolve_via_default``; ``[export] state_file``; export
turned on in a daemon with ExaBGP and no export feed (it is built at start, beside the
streams); a feed added or removed (by
name), or any of its settings other than the times above (``distance``, ``table``,
``protocol``, ``protocols``, ``address``, ``port``, ``users``; ``resync_after_link`` to or
from 0).  Everything not named here or above is unchanged by construction (``where``, the
position of a route in the file).

A new configuration with skipped routes (``route_errors``) is refused too: at start a bad
route is skipped, on a reload skipping it would delete the route that is installed.
"""
from __future__ import annotations

from typing import Any, Dict, List, Optional, Tuple

import attrs

from .config import Config
from .core.model import Path, Prefix, format_prefix
from .feeds.bgp import BgpSettings

#: The settings that need a restart, as the README and the refusal name them.
RESTART_KEYS = ("kernel.table", "kernel.protocol", "kernel.metric", "kernel.nexthop_id_range", "control.socket",
                "exabgp.listen", "exabgp.relay", "bgp.ebgp_distance", "bgp.ibgp_distance", "bgp.local_asns",
                "bgp.families", "bgp.resolve_table", "bgp.resolve_via_default", "export.state_file",
                "export (turned on)", "feed.table (added, removed, or other than its times)",
                "feed.fpm (added, removed, or other than its times)")
KERNEL_LIVE = ("group_hold_time", "resync_interval", "verify_delay", "retry_initial", "retry_max", "flush_on_exit")
BGP_LIVE = ("graceful_restart", "restart_hold_time", "startup_wait", "restart_wait", "eor_timeout", "eor_max_wait")
TABLE_FEED_TIMES = ("hold_time", "settle", "restart_quiet")
FPM_TIMES = ("hold_time", "settle", "replay_quiet", "resync_after_link")

#: Areas of the live changes (:attr:`Change.area`), in the order the daemon applies them.
AREAS = ("kernel", "static", "anycast", "export", "bgp", "exabgp", "feed")


@attrs.frozen
class Change:
    """One difference: ``key`` (the config key, with the prefix for a route:
    ``static.route[2] 203.0.113.10/32``), ``old`` and ``new`` as text (``-``: absent),
    ``area`` (one of :data:`AREAS`, or ``restart``)."""

    area: str
    key: str
    old: str
    new: str

    def describe(self) -> str:
        if self.old == "-":
            return "%s: added (%s)" % (self.key, self.new)
        if self.new == "-":
            return "%s: removed (was %s)" % (self.key, self.old)
        return "%s: %s -> %s" % (self.key, self.old, self.new)


@attrs.frozen
class ReloadPlan:
    """The difference between the running configuration and ``new``: ``live`` changes (applied
    without a restart) and ``restart`` changes (any one refuses the reload)."""

    new: Config = attrs.field(repr=False)
    live: Tuple[Change, ...] = ()
    restart: Tuple[Change, ...] = ()

    @property
    def empty(self) -> bool:
        return not self.live and not self.restart

    @property
    def needs_restart(self) -> bool:
        return bool(self.restart)

    def touches(self, area: str) -> bool:
        """Whether a live change is in ``area`` (:data:`AREAS`)."""
        return any(c.area == area for c in self.live)

    def changed_feeds(self) -> Tuple[str, ...]:
        """Names of the route feeds whose times changed."""
        return tuple(dict.fromkeys(c.key.split(" ", 1)[1] for c in self.live if c.area == "feed"))


def plan(old: Config, new: Config, export_live: bool = False) -> ReloadPlan:
    """Compare the running configuration ``old`` with ``new`` (both validated by
    :func:`kernelsync.config.parse`).  Static routes and anycast groups are compared by prefix
    (their position in the file does not matter), feeds by name.  ``export_live``: the running
    daemon can turn export on without a restart: it has its export feed already (export was
    turned off by a reload), or no ExaBGP streams at all (then only the anycast groups' routes
    are installed, as at start); otherwise export turned on needs a restart (the export feed
    is built at start, beside the streams)."""
    live: List[Change] = []
    restart: List[Change] = []
    _kernel(old, new, live, restart)
    if old.control_socket != new.control_socket:
        restart.append(Change("restart", "control.socket", _text(old.control_socket), _text(new.control_socket)))
    if old.static_distance != new.static_distance:
        live.append(Change("static", "static.distance", str(old.static_distance), str(new.static_distance)))
    _routes("static", "static.route",
            {r.prefix: (r.where, r.paths) for r in old.static_routes},
            {r.prefix: (r.where, r.paths) for r in new.static_routes}, live)
    _routes("anycast", "export.anycast",
            {g.prefix: (g.where, (g.path(),)) for g in old.export.anycast},
            {g.prefix: (g.where, (g.path(),)) for g in new.export.anycast}, live)
    _export(old, new, live, restart, export_live)
    _bgp(old.bgp, new.bgp, live, restart)
    for key in ("listen", "relay"):
        a, b = getattr(old.exabgp, key), getattr(new.exabgp, key)
        if a != b:
            restart.append(Change("restart", "exabgp.%s" % key, _text(a), _text(b)))
    if old.exabgp.route_refresh_on_start != new.exabgp.route_refresh_on_start:
        live.append(Change("exabgp", "exabgp.route_refresh_on_start", _text(old.exabgp.route_refresh_on_start),
                           _text(new.exabgp.route_refresh_on_start)))
    _feeds(old, new, live, restart)
    return ReloadPlan(new=new, live=tuple(live), restart=tuple(restart))


def _kernel(old: Config, new: Config, live: List[Change], restart: List[Change]) -> None:
    for field in attrs.fields(type(old.kernel)):
        a, b = getattr(old.kernel, field.name), getattr(new.kernel, field.name)
        if a != b:
            area = "kernel" if field.name in KERNEL_LIVE else "restart"
            (live if area == "kernel" else restart).append(Change(area, "kernel.%s" % field.name, _text(a), _text(b)))


def _routes(area: str, section: str, old: Dict[Prefix, Tuple[str, Tuple[Path, ...]]],
            new: Dict[Prefix, Tuple[str, Tuple[Path, ...]]], live: List[Change]) -> None:
    for prefix, (where, paths) in old.items():
        if prefix not in new:
            live.append(Change(area, "%s %s" % (where, format_prefix(prefix)), _paths(paths), "-"))
    for prefix, (where, paths) in new.items():
        before = old.get(prefix)
        if before is None or before[1] != paths:
            live.append(Change(area, "%s %s" % (where, format_prefix(prefix)),
                               "-" if before is None else _paths(before[1]), _paths(paths)))


def _export(old: Config, new: Config, live: List[Change], restart: List[Change], export_live: bool) -> None:
    a, b = old.export, new.export
    if a.state_file != b.state_file:
        restart.append(Change("restart", "export.state_file", _text(a.state_file), _text(b.state_file)))
    if not export_live and not a.enabled and b.enabled:
        restart.append(Change("restart", "export", "off (no [[export.anycast]] or [[export.kernel]])",
                              "on (the export feed is built at start)"))
        return
    old_attrs = {g.prefix: g.attrs for g in a.anycast}
    for group in b.anycast:  # the routes are "anycast" changes; the attributes only the export's
        if group.prefix in old_attrs and old_attrs[group.prefix] != group.attrs:
            live.append(Change("export", "%s %s attributes" % (group.where, format_prefix(group.prefix)),
                               _text(old_attrs[group.prefix]), _text(group.attrs)))
    if a.kernel != b.kernel:
        live.append(Change("export", "export.kernel", _filters(a.kernel), _filters(b.kernel)))
    if a.damping != b.damping:
        live.append(Change("export", "export.damping", _text(a.damping), _text(b.damping)))


def _bgp(a: BgpSettings, b: BgpSettings, live: List[Change], restart: List[Change]) -> None:
    for field in attrs.fields(BgpSettings):
        x, y = getattr(a, field.name), getattr(b, field.name)
        if x != y:
            area = "bgp" if field.name in BGP_LIVE else "restart"
            (live if area == "bgp" else restart).append(Change(area, "bgp.%s" % field.name, _text(x), _text(y)))


def _feeds(old: Config, new: Config, live: List[Change], restart: List[Change]) -> None:
    before = {f.name: f for f in old.table_feeds}
    after = {f.name: f for f in new.table_feeds}
    for name in before.keys() - after.keys():
        restart.append(Change("restart", "%s (%s)" % (before[name].where, name), "present", "-"))
    for name in after.keys() - before.keys():
        restart.append(Change("restart", "%s (%s)" % (after[name].where, name), "-", "present"))
    for name in sorted(before.keys() & after.keys()):
        _feed(before[name], after[name], TABLE_FEED_TIMES, live, restart)
    fa, fb = old.fpm_feed, new.fpm_feed
    if (fa is None) != (fb is None):
        restart.append(Change("restart", "feed.fpm", "-" if fa is None else fa.name, "-" if fb is None else fb.name))
    elif fa is not None and fb is not None:
        if (fa.resync_after_link > 0) != (fb.resync_after_link > 0):  # whether it follows zebra's kernel writes
            restart.append(Change("restart", "feed.fpm.resync_after_link", _text(fa.resync_after_link),
                                  _text(fb.resync_after_link)))
        else:
            _feed(fa, fb, FPM_TIMES, live, restart)


def _feed(a: Any, b: Any, times: Tuple[str, ...], live: List[Change], restart: List[Change]) -> None:
    for field in attrs.fields(type(a)):
        if field.name == "where":
            continue
        x, y = getattr(a, field.name), getattr(b, field.name)
        if x != y:
            key = "%s.%s %s" % (b.where, field.name, b.name)
            if field.name in times:
                live.append(Change("feed", "feed %s" % b.name, "%s %s" % (field.name, _text(x)),
                                   "%s %s" % (field.name, _text(y))))
            else:
                restart.append(Change("restart", key, _text(x), _text(y)))


def _paths(paths: Tuple[Path, ...]) -> str:
    out = []
    for path in paths:
        text = ", ".join(nh.describe() for nh in path.nexthops)
        if path.resilient is not None:
            text += " (resilient, %d buckets)" % path.resilient.buckets
        out.append(text)
    return "; ".join(out)


def _filters(filters: tuple) -> str:
    return "[%s]" % ", ".join(f.name for f in filters) if filters else "none"


def _text(value: Any) -> str:
    if value is None:
        return "none"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return "%g" % value
    if attrs.has(type(value)):
        return " ".join("%s=%s" % (k, _text(v)) for k, v in attrs.asdict(value, recurse=False).items())
    if isinstance(value, tuple):
        return "[%s]" % ", ".join(_text(v) for v in value)
    return str(value)


def refusal(plan_: Optional[ReloadPlan], errors: Tuple[str, ...] = ()) -> str:
    """The one-paragraph reason a reload is refused (for the log and the reply)."""
    if errors:
        return "the new configuration is invalid; the running one is kept: " + "; ".join(errors)
    assert plan_ is not None
    return ("these changes need a restart (kernelsync run again); nothing was applied: "
            + "; ".join(c.describe() for c in plan_.restart))


__all__ = ["AREAS", "Change", "RESTART_KEYS", "ReloadPlan", "plan", "refusal"]
