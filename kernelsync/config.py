"""Configuration: a TOML file (parsed with the standard library's ``tomllib``), validated here.

Every error names the file and the key (``static.route[2].nexthops[0].via``) and says what is
wrong; TOML syntax errors carry tomllib's line and column.  Global settings must be valid or
nothing starts; a bad static route is an error of its own (:attr:`Config.route_errors`) and
does not stop the other routes.  See ``configs/kernelsync.toml`` for an annotated example.
"""
from __future__ import annotations

import ipaddress
import math
import tomllib
from typing import Any, Dict, List, Optional, Tuple

import attrs

from .core.engine import KernelConfig
from .core.model import (AF_INET, AF_INET6, RT_PROTOCOLS, NexthopSpec, Path, Prefix, ResilientSpec, format_prefix,
                         parse_address, parse_prefix)
from .export.exporter import AnycastGroup, DampingSettings, ExportAttrs, ExportConfig, KernelFilter
from .feeds.bgp import BgpSettings
from .feeds.exabgp import FAMILIES
from .feeds.fpm import FpmFeedConfig, zebra_ignores
from .feeds.static import StaticRoute
from .feeds.tablefeed import TableFeedConfig


class ConfigError(ValueError):
    """One or more problems in the configuration; ``problems`` lists ``"key: what"``."""

    def __init__(self, filename: str, problems: List[str]) -> None:
        self.filename = filename
        self.problems = problems
        super().__init__("\n".join("%s: %s" % (filename, p) for p in problems))


@attrs.frozen
class ExabgpConfig:
    """``[exabgp]``: ``listen``: the Unix socket where ``kernelsync run`` accepts relays (None:
    none); ``relay``: where ``kernelsync exabgp`` relays ExaBGP's stream to instead of owning the
    FIB itself (None: it owns the FIB); ``route_refresh_on_start``: ask ExaBGP for a
    route-refresh whenever a stream opens (a respawned process rebuilds its RIB)."""

    listen: Optional[str] = None
    relay: Optional[str] = None
    route_refresh_on_start: bool = True


@attrs.frozen
class MetricsConfig:
    """``[metrics]``: ``listen``: (address, port) where the Prometheus endpoint (``/metrics``,
    :mod:`kernelsync.metrics`) is served over HTTP; None (the default): no endpoint."""

    listen: Optional[Tuple[str, int]] = None


@attrs.frozen
class Config:
    """A validated configuration.  ``route_errors``: ``"key: problem"`` of each static route
    skipped; ``warnings``: settings that are valid but known to misbehave (said by ``kernelsync
    check`` and logged at start)."""

    filename: str
    kernel: KernelConfig
    control_socket: Optional[str]
    static_distance: int
    static_routes: Tuple[StaticRoute, ...]
    route_errors: Tuple[str, ...]  # "key: problem" for each route that was skipped
    bgp: BgpSettings = BgpSettings()
    exabgp: ExabgpConfig = ExabgpConfig()
    export: ExportConfig = ExportConfig()
    table_feeds: Tuple[TableFeedConfig, ...] = ()
    fpm_feed: Optional[FpmFeedConfig] = None
    warnings: Tuple[str, ...] = ()
    metrics: MetricsConfig = MetricsConfig()


#: ``[control] socket`` when not set.
DEFAULT_CONTROL_SOCKET = "/run/kernelsync/kernelsync.sock"
#: Upper bound of every time setting, in seconds (one year): a larger value is a typo, and
#: ``select()``/``time.monotonic() + t`` must stay finite.
MAX_SECONDS = 31_536_000.0
#: Lower bounds of the times for which 0 (or next to it) makes no sense: a resync or retry every
#: loop pass is a busy loop; a quiet window of 0 ends a replay at its first frame and sweeps the rest.
_MIN_SECONDS = {"resync_interval": 0.1, "retry_initial": 0.01, "retry_max": 0.01, "replay_quiet": 0.01,
                "restart_quiet": 0.01, "half_life": 0.1, "max_suppress": 0.1}
#: zebra's route priority (RTA_PRIORITY) for every route it installs (FRR's kernel dataplane).
ZEBRA_METRIC = 20
#: Bounds of the flap damping penalties (1 per loss): ``suppress`` is a number of losses.
MAX_PENALTY = 1000.0
#: ``max_suppress / half_life`` at most this: the penalty ceiling ``reuse * 2 ** ratio`` stays finite.
MAX_DAMPING_RATIO = 64.0


def seconds(value: Any, where: str, minimum: float = 0.0, maximum: float = MAX_SECONDS) -> float:
    """The one validator of every time setting: ``value`` (TOML int or float) as seconds.
    Raises ``ValueError`` naming ``where`` for a non-number, nan, inf, a negative value, a value
    below ``minimum`` (0 where 0 is a busy loop) or above ``maximum`` (default one year)."""
    if not _is_finite(value) or value < minimum or value > maximum:
        low = ">= 0" if minimum == 0 else ">= %g" % minimum
        raise ValueError("%s: must be a number of seconds %s and <= %d, not %r" % (where, low, maximum, value))
    return float(value)


def _seconds_key(key: str, value: Any, where: str) -> float:
    return seconds(value, where, _MIN_SECONDS.get(key, 0.0))


_KERNEL_KEYS = {f.name for f in attrs.fields(KernelConfig)}
_BGP_KEYS = {f.name for f in attrs.fields(BgpSettings)}
_TOP_KEYS = {"kernel", "control", "static", "bgp", "exabgp", "export", "feed", "metrics"}


def load(filename: str) -> Config:
    """Read and validate ``filename``.  Raises :class:`ConfigError` for a missing or
    unparsable file or a bad global setting; bad routes go to ``route_errors``."""
    try:
        with open(filename, "rb") as fh:
            data = tomllib.load(fh)
    except OSError as exc:
        raise ConfigError(filename, ["cannot read: %s" % exc.strerror]) from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(filename, ["TOML syntax: %s" % exc]) from exc
    return parse(data, filename)


def parse(data: Dict[str, Any], filename: str = "<config>") -> Config:
    problems: List[str] = []
    for key in data:
        if key not in _TOP_KEYS:
            problems.append("%s: unknown section (known: %s)" % (key, ", ".join(sorted(_TOP_KEYS))))
    kernel = _kernel(_table(data, "kernel", problems), problems)
    control = _table(data, "control", problems)
    sock = control.get("socket", DEFAULT_CONTROL_SOCKET)
    if sock is not None and not isinstance(sock, str):
        problems.append("control.socket: must be a path string, not %r" % (sock,))
    for key in control:
        if key != "socket":
            problems.append("control.%s: unknown key" % key)
    static = _table(data, "static", problems)
    distance = static.get("distance", 1)
    if not _is_int(distance) or not 0 <= distance <= 255:
        problems.append("static.distance: admin distance must be an integer 0..255, not %r" % (distance,))
    for key in static:
        if key not in ("distance", "route"):
            problems.append("static.%s: unknown key (known: distance, route)" % key)
    bgp = _bgp(_table(data, "bgp", problems), problems)
    exabgp = _exabgp(_table(data, "exabgp", problems), problems)
    export = _export(_table(data, "export", problems), problems)
    table_feeds, fpm_feed = _feeds(_table(data, "feed", problems), kernel, problems)
    metrics = _metrics(_table(data, "metrics", problems), problems)
    if problems:
        raise ConfigError(filename, problems)
    routes, route_errors = _routes(static.get("route", []))
    static_prefixes = {r.prefix: r.where for r in routes}
    for group in export.anycast:
        if group.prefix in static_prefixes:
            problems.append("%s.prefix: %s is also the static route %s" % (
                group.where, format_prefix(group.prefix), static_prefixes[group.prefix]))
    if problems:
        raise ConfigError(filename, problems)
    warnings = []
    if fpm_feed is not None and not zebra_ignores(kernel.nexthop_id_range):
        warnings.append("kernel.nexthop_id_range: %d..%d with [feed.fpm]: a zebra on this host learns kernelsync's "
                        "nexthop objects and writes its own view of them back after link flaps (FRR 8.4); use ids it "
                        "ignores, e.g. nexthop_id_range = [469762048, 470762047], or set 'no zebra nexthop kernel "
                        "enable' and 'no fpm use-next-hop-groups' in zebra (see the README, FRR through FPM)"
                        % kernel.nexthop_id_range)
    if fpm_feed is not None and fpm_feed.resync_after_link <= 0:
        warnings.append("%s.resync_after_link = 0: FRR 8.4's FPM stream misses updates after link flaps (an ECMP "
                        "route left on one leg until its next change); without the re-read kernelsync keeps what "
                        "zebra streamed (see the README, FRR through FPM)" % fpm_feed.where)
    return Config(filename=filename, kernel=kernel, control_socket=sock, static_distance=distance,
                  static_routes=tuple(routes), route_errors=tuple(route_errors), bgp=bgp, exabgp=exabgp,
                  export=export, table_feeds=table_feeds, fpm_feed=fpm_feed, warnings=tuple(warnings),
                  metrics=metrics)


def listen_address(value: Any, where: str) -> Tuple[str, int]:
    """``"ADDRESS:PORT"`` (``"127.0.0.1:9342"``, ``"[::1]:9342"``, ``"0.0.0.0:9342"``) -> (address,
    port): an IP address literal (no host name: what is listened on must not depend on DNS)
    and a TCP port 1..65535.  Raises ``ValueError`` naming ``where``."""
    problem = "%s: must be \"ADDRESS:PORT\" with an IP address and a port 1..65535, like \"127.0.0.1:9342\" or " \
              "\"[::1]:9342\", not %r" % (where, value)
    if not isinstance(value, str) or ":" not in value:
        raise ValueError(problem)
    host, _, port = value.rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
        family = 6
    else:
        family = 4
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        raise ValueError(problem) from None
    if address.version != family or not port.isdigit() or not 1 <= int(port) <= 65535:
        raise ValueError(problem)
    return str(address), int(port)


def _metrics(section: Dict[str, Any], problems: List[str]) -> MetricsConfig:
    """``[metrics]``: ``listen = "127.0.0.1:9342"`` (absent: no endpoint)."""
    for key in section:
        if key != "listen":
            problems.append("metrics.%s: unknown key (known: listen)" % key)
    if "listen" not in section:
        return MetricsConfig()
    try:
        return MetricsConfig(listen=listen_address(section["listen"], "metrics.listen"))
    except ValueError as exc:
        problems.append(str(exc))
        return MetricsConfig()


def _bgp(section: Dict[str, Any], problems: List[str]) -> BgpSettings:
    values: Dict[str, Any] = {}
    before = len(problems)
    for key, value in section.items():
        where = "bgp.%s" % key
        if key not in _BGP_KEYS:
            problems.append("%s: unknown key (known: %s)" % (where, ", ".join(sorted(_BGP_KEYS))))
        elif key in ("ebgp_distance", "ibgp_distance"):
            if not _is_int(value) or not 0 <= value <= 255:
                problems.append("%s: admin distance must be an integer 0..255, not %r" % (where, value))
            values[key] = value
        elif key == "resolve_table":
            if not _is_int(value) or not 1 <= value <= 0xFFFFFFFF:
                problems.append("%s: must be a table number 1..4294967295, not %r" % (where, value))
            values[key] = value
        elif key == "resolve_via_default":
            if not isinstance(value, bool):
                problems.append("%s: must be true or false, not %r" % (where, value))
            values[key] = value
        elif key == "local_asns":
            if not isinstance(value, list) or not all(_is_int(a) and 0 < a <= 0xFFFFFFFF for a in value):
                problems.append("%s: must be a list of AS numbers 1..4294967295, not %r" % (where, value))
            else:
                values[key] = tuple(value)
        elif key == "families":
            if not isinstance(value, list) or not value or not all(isinstance(f, str) and f in FAMILIES for f in value):
                problems.append("%s: must be a non-empty list of %s, not %r"
                                % (where, " / ".join(repr(f) for f in FAMILIES), value))
            else:
                values[key] = tuple(value)
        else:
            try:
                values[key] = _seconds_key(key, value, where)
            except ValueError as exc:
                problems.append(str(exc))
    return BgpSettings() if len(problems) > before else BgpSettings(**values)


def _exabgp(section: Dict[str, Any], problems: List[str]) -> ExabgpConfig:
    values: Dict[str, Any] = {}
    before = len(problems)
    known = [f.name for f in attrs.fields(ExabgpConfig)]
    for key, value in section.items():
        where = "exabgp.%s" % key
        if key not in known:
            problems.append("%s: unknown key (known: %s)" % (where, ", ".join(known)))
        elif key == "route_refresh_on_start":
            if not isinstance(value, bool):
                problems.append("%s: must be true or false, not %r" % (where, value))
            values[key] = value
        elif not isinstance(value, str) or not value.startswith("/"):
            problems.append("%s: must be an absolute path of a Unix socket, not %r" % (where, value))
        else:
            values[key] = value
    return ExabgpConfig() if len(problems) > before else ExabgpConfig(**values)


_TABLE_FEED_KEYS = ("table", "protocol", "name", "distance", "hold_time", "settle", "restart_quiet")
_FPM_KEYS = ("address", "port", "name", "distance", "table", "protocols", "hold_time", "settle", "replay_quiet",
             "resync_after_link", "users")
_RESERVED_SOURCES = ("static", "anycast", "ebgp", "ibgp")


def _feeds(section: Dict[str, Any], kernel: KernelConfig,
           problems: List[str]) -> Tuple[Tuple[TableFeedConfig, ...], Optional[FpmFeedConfig]]:
    """``[feed]``: ``[[feed.table]]`` (kernel tables of routing daemons) and ``[feed.fpm]``
    (FRR zebra's FPM stream); every feed is a RIB source of its own name."""
    out: List[TableFeedConfig] = []
    for key in section:
        if key not in ("table", "fpm"):
            problems.append("feed.%s: unknown key (known: table, fpm)" % key)
    names: Dict[str, str] = {}
    fpm = None
    if "fpm" in section:
        try:
            fpm = _fpm_feed(section["fpm"], "feed.fpm", kernel)
            names[fpm.name] = "feed.fpm"
        except ValueError as exc:
            problems.append(str(exc))
    items = section.get("table", [])
    if not isinstance(items, list):
        problems.append("feed.table: must be an array of tables ([[feed.table]]), not %r" % (items,))
        return (), fpm
    for n, item in enumerate(items):
        where = "feed.table[%d]" % n
        try:
            cfg = _table_feed(item, where, kernel)
        except ValueError as exc:
            problems.append(str(exc))
            continue
        if cfg.name in names:
            problems.append("%s.name: %r is already the name of %s" % (where, cfg.name, names[cfg.name]))
            continue
        names[cfg.name] = where
        out.append(cfg)
    return tuple(out), fpm


def _protocol(value: Any, where: str, kernel: KernelConfig) -> int:
    number = RT_PROTOCOLS.get(value) if isinstance(value, str) else value
    if not _is_int(number) or not 1 <= number <= 255:
        raise ValueError("%s: a route protocol number 1..255 or a name (bird, zebra, ospf, bgp, ...), not %r"
                         % (where, value))
    if number == kernel.protocol:
        raise ValueError("%s: %d is kernelsync's own protocol (kernel.protocol)" % (where, number))
    return number


def _source_settings(item: Dict[str, Any], where: str, default_name: str,
                     times: Tuple[Tuple[str, float], ...]) -> Dict[str, Any]:
    """The keys every route feed has: ``name`` (its RIB source), ``distance`` and times."""
    name = item.get("name", default_name)
    if not isinstance(name, str) or not name or name in _RESERVED_SOURCES:
        raise ValueError("%s.name: must be a source name other than %s, not %r"
                         % (where, ", ".join(_RESERVED_SOURCES), name))
    distance = item.get("distance", 110)
    if not _is_int(distance) or not 0 <= distance <= 255:
        raise ValueError("%s.distance: admin distance must be an integer 0..255, not %r" % (where, distance))
    out: Dict[str, Any] = {"name": name, "distance": distance, "where": where}
    for key, default in times:
        out[key] = _seconds_key(key, item.get(key, default), "%s.%s" % (where, key))
    return out


def _table_feed(item: Any, where: str, kernel: KernelConfig) -> TableFeedConfig:
    if not isinstance(item, dict):
        raise ValueError("%s: must be a table, not %r" % (where, item))
    _only_keys(item, where, _TABLE_FEED_KEYS)
    table = item.get("table")
    if not _is_int(table) or not 1 <= table <= 0xFFFFFFFF:
        raise ValueError("%s.table: required, the source's table number 1..4294967295, not %r" % (where, table))
    if "protocol" not in item:
        raise ValueError("%s.protocol: required, the source daemon's protocol number or name" % where)
    number = _protocol(item["protocol"], where + ".protocol", kernel)
    if table == kernel.table:
        raise ValueError("%s.table: %d is kernelsync's own table (kernel.table): the source's routes and ours "
                         "would compete for the same keys; let the daemon export into a table of its own"
                         % (where, table))
    return TableFeedConfig(table=table, protocol=number, **_source_settings(
        item, where, "table%d" % table, (("hold_time", 60.0), ("settle", 0.2), ("restart_quiet", 1.0))))


def _fpm_feed(item: Any, where: str, kernel: KernelConfig) -> FpmFeedConfig:
    if not isinstance(item, dict):
        raise ValueError("%s: must be a table ([feed.fpm]), not %r" % (where, item))
    _only_keys(item, where, _FPM_KEYS)
    out: Dict[str, Any] = _source_settings(item, where, "fpm", (("hold_time", 60.0), ("settle", 0.2),
                                                                    ("replay_quiet", 1.0), ("resync_after_link", 2.0)))
    address = item.get("address", "127.0.0.1")
    try:
        parse_address(address)
    except (ValueError, AttributeError):  # not an address; not a string
        raise ValueError("%s.address: must be an IPv4 or IPv6 address to listen on, not %r"
                         % (where, address)) from None
    port = item.get("port", 2620)
    if not _is_int(port) or not 1 <= port <= 65535:
        raise ValueError("%s.port: must be a TCP port 1..65535, not %r" % (where, port))
    table = item.get("table", 254)
    if not _is_int(table) or not 1 <= table <= 0xFFFFFFFF:
        raise ValueError("%s.table: zebra's table (254 = main, a VRF's table), 1..4294967295, not %r"
                         % (where, table))
    protocols = item.get("protocols", ["ospf"])
    if not isinstance(protocols, list) or not protocols:
        raise ValueError("%s.protocols: must be a non-empty list of route protocols (names or numbers), not %r"
                         % (where, protocols))
    numbers = tuple(_protocol(p, "%s.protocols[%d]" % (where, n), kernel) for n, p in enumerate(protocols))
    if 2 in numbers:
        raise ValueError("%s.protocols: 2 (kernel) is zebra's copy of routes other programs wrote, kernelsync's "
                         "own among them: taking them back would loop" % where)
    users = item.get("users", ["frr", "root"])
    if not isinstance(users, list) or not all(isinstance(u, str) and u or _is_int(u) and u >= 0 for u in users):
        raise ValueError("%s.users: must be a list of user names or uids allowed to connect ([] = anyone), not %r"
                         % (where, users))
    try:
        loopback = ipaddress.ip_address(address).is_loopback
    except ValueError:  # an address parse_address takes and ipaddress does not: be safe
        loopback = False
    if not users and not loopback:
        raise ValueError("%s.users: [] (anyone) with address %s, which is not a loopback address: anyone who "
                         "reaches it on the network could write the FIB; listen on 127.0.0.1 or ::1, or name the "
                         "users" % (where, address))
    if table == kernel.table and kernel.metric == ZEBRA_METRIC:
        raise ValueError("%s.table: zebra writes its own routes to table %d with metric %d, which are kernelsync's "
                         "kernel.table and kernel.metric: each would replace the other's routes; use another "
                         "kernel.table or kernel.metric (see the README, FRR through FPM)"
                         % (where, table, ZEBRA_METRIC))
    return FpmFeedConfig(address=address, port=port, table=table, protocols=numbers,
                         users=tuple(str(u) for u in users), **out)


_ATTR_KEYS = ("next_hop_ipv4", "next_hop_ipv6", "communities", "large_communities", "med", "local_pref",
              "neighbors")
_DAMPING_KEYS = tuple(f.name for f in attrs.fields(DampingSettings))


def _export(section: Dict[str, Any], problems: List[str]) -> ExportConfig:
    values: Dict[str, Any] = {}
    for key, value in section.items():
        where = "export.%s" % key
        try:
            if key == "state_file":
                if value is not False and (not isinstance(value, str) or not value.startswith("/")):
                    raise ValueError("%s: must be an absolute path, or false (not kept), not %r" % (where, value))
                values[key] = value or None
            elif key == "damping":
                values[key] = _damping(value, where)
            elif key in ("anycast", "kernel"):
                if not isinstance(value, list):
                    raise ValueError("%s: must be an array of tables ([[export.%s]]), not %r" % (where, key, value))
                parse_one = _anycast if key == "anycast" else _kernel_filter
                items = []
                for n, item in enumerate(value):
                    try:
                        items.append(parse_one(item, "%s[%d]" % (where, n)))
                    except ValueError as exc:
                        problems.append(str(exc))
                values[key] = tuple(items)
            else:
                raise ValueError("%s: unknown key (known: anycast, kernel, damping, state_file)" % where)
        except ValueError as exc:
            problems.append(str(exc))
    seen: Dict[Prefix, str] = {}
    for group in values.get("anycast", ()):
        if group.prefix in seen:
            problems.append("%s.prefix: %s is already exported by %s" % (group.where, format_prefix(group.prefix),
                                                                         seen[group.prefix]))
        seen[group.prefix] = group.where
    return ExportConfig(**values)


def _damping(value: Any, where: str) -> DampingSettings:
    """``[export.damping]``: times (``half_life``, ``max_suppress``) through :func:`seconds`;
    penalties (``suppress``, ``reuse``) in (0, :data:`MAX_PENALTY`], ``reuse < suppress``;
    ``max_suppress / half_life`` at most :data:`MAX_DAMPING_RATIO` (the ceiling
    ``reuse * 2 ** (max_suppress / half_life)`` of :class:`Damping` stays finite) and that ceiling
    must reach ``suppress`` (otherwise nothing is ever suppressed)."""
    if not isinstance(value, dict):
        raise ValueError("%s: must be a table { half_life = 15, suppress = 3, reuse = 1.5 }, not %r" % (where, value))
    _only_keys(value, where, _DAMPING_KEYS)
    out: Dict[str, Any] = {}
    for key, item in value.items():
        if key == "enabled":
            if not isinstance(item, bool):
                raise ValueError("%s.enabled: must be true or false, not %r" % (where, item))
            out[key] = item
        elif key in ("half_life", "max_suppress"):
            out[key] = _seconds_key(key, item, "%s.%s" % (where, key))
        elif not _is_finite(item) or not 0 < item <= MAX_PENALTY:
            raise ValueError("%s.%s: must be a penalty > 0 and <= %g (1 per loss), not %r"
                             % (where, key, MAX_PENALTY, item))
        else:
            out[key] = float(item)
    settings = DampingSettings(**out)
    if not settings.reuse < settings.suppress:
        raise ValueError("%s.reuse: %g must be below suppress (%g)" % (where, settings.reuse, settings.suppress))
    ratio = settings.max_suppress / settings.half_life
    if ratio > MAX_DAMPING_RATIO:
        raise ValueError("%s.max_suppress: %g is more than %g half-lives (half_life %g): the penalty ceiling "
                         "reuse * 2 ** (max_suppress / half_life) would overflow"
                         % (where, settings.max_suppress, MAX_DAMPING_RATIO, settings.half_life))
    ceiling = settings.reuse * 2 ** ratio
    if settings.enabled and ceiling < settings.suppress:
        raise ValueError("%s.max_suppress: %g caps the penalty at %g (reuse * 2 ** (max_suppress / half_life)), "
                         "below suppress (%g): nothing would ever be suppressed"
                         % (where, settings.max_suppress, ceiling, settings.suppress))
    return settings


def _export_attrs(item: Dict[str, Any], where: str) -> ExportAttrs:
    out: Dict[str, Any] = {}
    for key, family, bits in (("next_hop_ipv4", AF_INET, 4), ("next_hop_ipv6", AF_INET6, 6)):
        if key in item:
            value = item[key]
            try:
                ok = isinstance(value, str) and (value == "self" or parse_address(value)[0] == family)
            except ValueError:
                ok = False
            if not ok:
                raise ValueError("%s.%s: must be \"self\" or an IPv%d address, not %r" % (where, key, bits, value))
            out[key] = value
    for key, parts, example in (("communities", 2, "65010:53"), ("large_communities", 3, "65010:1:2")):
        if key in item:
            value = item[key]
            if not isinstance(value, list) or not all(_is_community(c, parts) for c in value):
                raise ValueError("%s.%s: must be a list of strings like \"%s\" (numbers, %s), not %r" % (
                    where, key, example, "0..65535" if parts == 2 else "0..4294967295", value))
            out[key] = tuple(value)
    for key in ("med", "local_pref"):
        if key in item:
            if not _is_int(item[key]) or not 0 <= item[key] <= 0xFFFFFFFF:
                raise ValueError("%s.%s: must be an integer 0..4294967295, not %r" % (where, key, item[key]))
            out[key] = item[key]
    if "neighbors" in item:
        value = item["neighbors"]
        try:
            ok = isinstance(value, list) and all(isinstance(n, str) and parse_address(n) for n in value)
        except ValueError:
            ok = False
        if not ok:
            raise ValueError("%s.neighbors: must be a list of peer addresses, not %r" % (where, value))
        out["neighbors"] = tuple(value)
    return ExportAttrs(**out)


def _is_community(text: Any, parts: int) -> bool:
    if not isinstance(text, str):
        return False
    fields = text.split(":")
    limit = 0xFFFF if parts == 2 else 0xFFFFFFFF
    return len(fields) == parts and all(f.isdigit() and int(f) <= limit for f in fields)


def _prefix_field(text: Any, where: str) -> Prefix:
    if not isinstance(text, str):
        raise ValueError("%s: required, a string like \"203.0.113.10/32\", not %r" % (where, text))
    try:
        return parse_prefix(text)
    except ValueError as exc:
        raise ValueError("%s: %r is not a valid prefix (%s)" % (where, text, exc)) from None


def _device_names(value: Any, where: str, patterns: bool) -> Tuple[str, ...]:
    if (not isinstance(value, list) or not value
            or not all(isinstance(d, str) and 1 <= len(d) <= 15 and "/" not in d and d.strip() == d
                       for d in value)):
        raise ValueError("%s: must be a non-empty list of interface %s (1..15 characters), not %r"
                         % (where, "name patterns like \"tap*\"" if patterns else "names", value))
    if len(set(value)) != len(value):
        raise ValueError("%s: %r lists a device twice" % (where, value))
    return tuple(value)


def _anycast(item: Any, where: str) -> AnycastGroup:
    if not isinstance(item, dict):
        raise ValueError("%s: must be a table, not %r" % (where, item))
    _only_keys(item, where, ("prefix", "devices", "resilient") + _ATTR_KEYS)
    prefix = _prefix_field(item.get("prefix"), where + ".prefix")
    devices = _device_names(item.get("devices"), where + ".devices", patterns=False)
    resilient = _resilient(item["resilient"], where + ".resilient") if "resilient" in item else None
    return AnycastGroup(prefix=prefix, devices=devices, attrs=_export_attrs(item, where), resilient=resilient,
                        where=where)


def _kernel_filter(item: Any, where: str) -> KernelFilter:
    if not isinstance(item, dict):
        raise ValueError("%s: must be a table, not %r" % (where, item))
    _only_keys(item, where, ("name", "table", "protocols", "devices", "prefix_lengths", "prefixes", "gateways")
               + _ATTR_KEYS)
    out: Dict[str, Any] = {"name": item.get("name", where)}
    if not isinstance(out["name"], str):
        raise ValueError("%s.name: must be a string, not %r" % (where, out["name"]))
    table = item.get("table", 254)
    if not _is_int(table) or not 1 <= table <= 0xFFFFFFFF:
        raise ValueError("%s.table: must be a table number 1..4294967295, not %r" % (where, table))
    out["table"] = table
    if "protocols" in item:
        protocols = []
        value = item["protocols"]
        for proto in value if isinstance(value, list) else [None]:
            number = RT_PROTOCOLS.get(proto) if isinstance(proto, str) else proto
            if not _is_int(number) or not 0 <= number <= 255:
                raise ValueError("%s.protocols: must be a list of protocol numbers 0..255 or names (%s), not %r"
                                 % (where, ", ".join(sorted(RT_PROTOCOLS)), value))
            protocols.append(number)
        out["protocols"] = tuple(protocols)
    if "devices" in item:
        out["devices"] = _device_names(item["devices"], where + ".devices", patterns=True)
    if "prefix_lengths" in item:
        value = item["prefix_lengths"]
        if not isinstance(value, list) or not value or not all(_is_int(v) and 0 <= v <= 128 for v in value):
            raise ValueError("%s.prefix_lengths: must be a non-empty list of lengths 0..128, not %r" % (where, value))
        out["prefix_lengths"] = tuple(value)
    if "prefixes" in item:
        value = item["prefixes"]
        if not isinstance(value, list) or not value:
            raise ValueError("%s.prefixes: must be a non-empty list of prefixes, not %r" % (where, value))
        out["prefixes"] = tuple(_prefix_field(p, "%s.prefixes[%d]" % (where, i)) for i, p in enumerate(value))
    if "gateways" in item:
        if not isinstance(item["gateways"], bool):
            raise ValueError("%s.gateways: must be true or false, not %r" % (where, item["gateways"]))
        out["gateways"] = item["gateways"]
    return KernelFilter(attrs=_export_attrs(item, where), **out)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_num(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _is_finite(value: Any) -> bool:
    """A TOML number other than nan and +-inf (TOML integers have no size limit here)."""
    return _is_int(value) or isinstance(value, float) and math.isfinite(value)


def _table(data: Dict[str, Any], key: str, problems: List[str]) -> Dict[str, Any]:
    value = data.get(key, {})
    if not isinstance(value, dict):
        problems.append("%s: must be a table ([%s]), not %r" % (key, key, value))
        return {}
    return value


def _kernel(section: Dict[str, Any], problems: List[str]) -> KernelConfig:
    values: Dict[str, Any] = {}
    for key, value in section.items():
        where = "kernel.%s" % key
        if key not in _KERNEL_KEYS:
            problems.append("%s: unknown key (known: %s)" % (where, ", ".join(sorted(_KERNEL_KEYS))))
        elif key == "table":
            if not _is_int(value) or not 1 <= value <= 0xFFFFFFFF or value in (253, 255):
                problems.append("%s: table must be an integer 1..4294967295 other than 253 (default) "
                                "and 255 (local), not %r" % (where, value))
            values[key] = value
        elif key == "protocol":
            # 0-4 are the kernel's own (unspec, redirect, kernel, boot, static)
            if not _is_int(value) or not 5 <= value <= 255:
                problems.append("%s: protocol number must be an integer 5..255, not %r" % (where, value))
            values[key] = value
        elif key == "metric":
            # 0 is refused: the kernel stores an IPv6 metric of 0 as 1024
            if not _is_int(value) or not 1 <= value <= 0xFFFFFFFF:
                problems.append("%s: metric must be an integer 1..4294967295, not %r" % (where, value))
            values[key] = value
        elif key == "nexthop_id_range":
            if (not isinstance(value, list) or len(value) != 2 or not all(_is_int(v) for v in value)
                    or not 1 <= value[0] <= value[1] <= 0xFFFFFFFF):
                problems.append("%s: must be [first, last] with 1 <= first <= last <= 4294967295, not %r"
                                % (where, value))
            else:
                values[key] = (value[0], value[1])
        elif key == "flush_on_exit":
            if not isinstance(value, bool):
                problems.append("%s: must be true or false, not %r" % (where, value))
            values[key] = value
        else:
            try:
                values[key] = _seconds_key(key, value, where)
            except ValueError as exc:
                problems.append(str(exc))
    if problems:
        return KernelConfig()
    kernel = KernelConfig(**values)
    if kernel.retry_max < kernel.retry_initial:
        problems.append("kernel.retry_max: %g is below retry_initial (%g): the backoff doubles from retry_initial "
                        "up to retry_max" % (kernel.retry_max, kernel.retry_initial))
        return KernelConfig()
    return kernel


def _routes(items: Any) -> Tuple[List[StaticRoute], List[str]]:
    routes: List[StaticRoute] = []
    errors: List[str] = []
    if not isinstance(items, list):
        return [], ["static.route: must be an array of tables ([[static.route]]), not %r" % (items,)]
    seen: Dict[Prefix, str] = {}
    for n, item in enumerate(items):
        where = "static.route[%d]" % n
        try:
            route = _route(item, where)
        except ValueError as exc:
            errors.append(str(exc))
            continue
        if route.prefix in seen:
            errors.append("%s.prefix: %s is already defined at %s" % (where, item["prefix"], seen[route.prefix]))
            continue
        seen[route.prefix] = where
        routes.append(route)
    return routes, errors


def _only_keys(table: Dict[str, Any], where: str, known: Tuple[str, ...]) -> None:
    """Raise ``ValueError`` naming the first key of ``table`` not in ``known``."""
    for key in table:
        if key not in known:
            raise ValueError("%s.%s: unknown key (known: %s)" % (where, key, ", ".join(known)))


def _route(item: Any, where: str) -> StaticRoute:
    if not isinstance(item, dict):
        raise ValueError("%s: must be a table, not %r" % (where, item))
    _only_keys(item, where, ("prefix", "nexthops", "resilient"))
    text = item.get("prefix")
    if not isinstance(text, str):
        raise ValueError("%s.prefix: required, a string like \"203.0.113.10/32\"" % where)
    try:
        prefix = parse_prefix(text)
    except ValueError as exc:
        raise ValueError("%s.prefix: %r is not a valid prefix (%s)" % (where, text, exc)) from None
    nexthops = item.get("nexthops")
    if not isinstance(nexthops, list) or not nexthops:
        raise ValueError("%s.nexthops: required, a non-empty array like [{ dev = \"tapA\" }]" % where)
    specs = []
    keys = set()
    for i, nh in enumerate(nexthops):
        spec = _nexthop(nh, prefix[0], "%s.nexthops[%d]" % (where, i))
        key = (spec.gateway, spec.dev)
        if key in keys:
            raise ValueError("%s.nexthops[%d]: duplicate nexthop %s" % (where, i, spec.describe()))
        keys.add(key)
        specs.append(spec)
    resilient = None
    if "resilient" in item:
        resilient = _resilient(item["resilient"], "%s.resilient" % where)
    return StaticRoute(prefix=prefix, paths=(Path(tuple(specs), resilient),), where=where)


def _nexthop(nh: Any, route_family: int, where: str) -> NexthopSpec:
    if not isinstance(nh, dict):
        raise ValueError("%s: must be a table like { via = \"192.0.2.1\", dev = \"eth0\" }, not %r" % (where, nh))
    _only_keys(nh, where, ("via", "dev", "weight"))
    dev = nh.get("dev")
    if not isinstance(dev, str) or not 1 <= len(dev) <= 15 or "/" in dev or dev.strip() != dev:
        raise ValueError("%s.dev: required, an interface name of 1..15 characters, not %r" % (where, dev))
    gateway = gw_family = None
    if "via" in nh:
        if not isinstance(nh["via"], str):
            raise ValueError("%s.via: must be an address string, not %r" % (where, nh["via"]))
        try:
            gw_family, gateway = parse_address(nh["via"])
        except ValueError:
            raise ValueError("%s.via: %r is not an IP address" % (where, nh["via"])) from None
        if route_family == AF_INET6 and gw_family == AF_INET:
            raise ValueError("%s.via: an IPv6 route cannot have the IPv4 next hop %s" % (where, nh["via"]))
    weight = nh.get("weight", 1)
    if not _is_int(weight) or not 1 <= weight <= 256:
        raise ValueError("%s.weight: must be an integer 1..256, not %r" % (where, weight))
    return NexthopSpec(gateway=gateway, gw_family=gw_family, dev=dev, weight=weight)


def _resilient(value: Any, where: str) -> ResilientSpec:
    if value is True:
        return ResilientSpec()
    if not isinstance(value, dict):
        raise ValueError("%s: must be true or a table { buckets = 64, idle_timer = 120 }, not %r" % (where, value))
    _only_keys(value, where, ("buckets", "idle_timer", "unbalanced_timer"))
    buckets = value.get("buckets", 128)
    if not _is_int(buckets) or not 1 <= buckets <= 65535:
        raise ValueError("%s.buckets: must be an integer 1..65535, not %r" % (where, buckets))
    timers = {}
    for key, default in (("idle_timer", 120.0), ("unbalanced_timer", 0.0)):
        # the kernel's limit: clock_t of 1/100 s in 32 bits
        timers[key] = seconds(value.get(key, default), "%s.%s" % (where, key), maximum=42_949_672)
    return ResilientSpec(buckets=buckets, **timers)


__all__ = ["Config", "ConfigError", "ExabgpConfig", "MetricsConfig", "listen_address", "load", "parse"]
