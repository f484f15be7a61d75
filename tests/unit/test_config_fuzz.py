"""Fuzzing the configuration loader with hypothesis (issue 12: defect 7 and build item 3).

Structure-aware: documents made of the real sections and keys with values of random types
(nan, inf, huge integers, dates, strings, lists, tables), mutations of ``configs/kernelsync.toml``
(as data and as text).  Properties: nothing but :class:`config.ConfigError` escapes, and a
configuration that is accepted holds only finite, in-range values (times, damping, FPM safety).

The number of examples follows the hypothesis profile of tests/conftest.py, a fifth of its
``max_examples`` (a document costs more than a feed line): CI's ``ci`` profile, bounded and
derandomized, gives 40 per test (about a second each); the long random run is a command::

    python3 -m pytest tests/unit/test_config_fuzz.py -q --hypothesis-profile=long
"""
import datetime
import ipaddress
import math
import pathlib
import tempfile
import tomllib

import attrs
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kernelsync import config
from kernelsync.export.exporter import Damping

EXAMPLE_PATH = pathlib.Path(__file__).parents[2] / "configs" / "kernelsync.toml"
EXAMPLE_TEXT = EXAMPLE_PATH.read_text()
EXAMPLE = tomllib.loads(EXAMPLE_TEXT)
FUZZ = settings(max_examples=max(1, settings.default.max_examples // 5), deadline=None, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

#: every time setting (seconds) of every section, by its key
TIME_KEYS = {"group_hold_time", "resync_interval", "verify_delay", "retry_initial", "retry_max", "graceful_restart",
             "restart_hold_time", "startup_wait", "restart_wait", "eor_timeout", "hold_time", "settle",
             "restart_quiet", "replay_quiet", "resync_after_link", "idle_timer", "unbalanced_timer", "half_life",
             "max_suppress"}

SECTIONS = {
    "kernel": sorted(config._KERNEL_KEYS),
    "control": ["socket"],
    "static": ["distance"],
    "bgp": sorted(config._BGP_KEYS),
    "exabgp": ["listen", "relay", "route_refresh_on_start"],
    "export": ["state_file"],
}
ARRAYS = {("static", "route"): ["prefix", "nexthops", "resilient"],
          ("feed", "table"): list(config._TABLE_FEED_KEYS),
          ("export", "anycast"): ["prefix", "devices", "resilient"] + list(config._ATTR_KEYS),
          ("export", "kernel"): ["name", "table", "protocols", "devices", "prefix_lengths", "prefixes", "gateways"]
          + list(config._ATTR_KEYS)}
TABLES = {("feed", "fpm"): list(config._FPM_KEYS), ("export", "damping"): list(config._DAMPING_KEYS)}
ALL_KEYS = sorted({k for keys in list(SECTIONS.values()) + list(ARRAYS.values()) + list(TABLES.values())
                   for k in keys} | {"via", "dev", "weight", "buckets"})

WORDS = ["127.0.0.1", "0.0.0.0", "::", "::1", "192.0.2.1", "fe80::1", "2001:db8::/32", "203.0.113.10/32",
         "198.51.100.0/24", "10.0.0.300/8", "ospf", "bird", "kernel", "zebra", "frr", "root", "self", "tap*", "eth0",
         "/run/x.sock", "relative", "65010:53", "65010:1:2", "", "\x00\x1b[31m", "１２", "1_0", " 24", "nan"]
NUMBERS = st.one_of(
    st.integers(min_value=-2, max_value=300), st.integers(min_value=-2 ** 70, max_value=2 ** 70),
    st.sampled_from([0, 1, 20, 254, 255, 65535, 0xFFFFFFFF, 0x100000000, 42_949_672, 31_536_000, 10 ** 400]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([float("nan"), float("inf"), float("-inf"), 0.0, -0.0, 1e-300, 0.05, 1e308, 3.5e7]))
SCALARS = st.one_of(NUMBERS, st.booleans(), st.sampled_from(WORDS), st.text(max_size=12),
                    st.sampled_from([datetime.datetime(1979, 5, 27, 7, 32), datetime.date(1979, 5, 27),
                                     datetime.time(7, 32)]))
# flat on purpose (hypothesis' recursive collections cost about 0.1 s per document)
VALUES = st.one_of(SCALARS, st.lists(SCALARS, max_size=3),
                   st.dictionaries(st.sampled_from(ALL_KEYS), SCALARS, max_size=3),
                   st.lists(st.dictionaries(st.sampled_from(ALL_KEYS), SCALARS, max_size=3), max_size=2))


def _table_of(keys):
    return st.dictionaries(st.sampled_from(keys), VALUES, max_size=len(keys))


@st.composite
def documents(draw):
    """A TOML document's data: known sections with known keys (mostly) and random values."""
    doc = {}
    for section, keys in SECTIONS.items():
        if draw(st.booleans()):
            doc[section] = draw(_table_of(keys))
    for (section, key), keys in list(ARRAYS.items()) + list(TABLES.items()):
        if draw(st.integers(0, 3)) == 0:
            value = (draw(st.lists(_table_of(keys), max_size=3)) if (section, key) in ARRAYS
                     else draw(_table_of(keys)))
            doc.setdefault(section, {})[key] = value
    if draw(st.integers(0, 9)) == 0:
        doc[draw(st.sampled_from(list(SECTIONS) + ["feed", "bogus"]))] = draw(VALUES)
    return doc


def _paths(node, prefix=()):
    """Every (path) in a nested dict/list document."""
    out = []
    if isinstance(node, dict):
        items = node.items()
    elif isinstance(node, list):
        items = enumerate(node)
    else:
        return out
    for key, value in items:
        out.append(prefix + (key,))
        out.extend(_paths(value, prefix + (key,)))
    return out


@st.composite
def mutated_example(draw):
    """The example configuration with a few keys replaced, deleted or added."""
    doc = tomllib.loads(EXAMPLE_TEXT)
    for _ in range(draw(st.integers(1, 4))):
        path = draw(st.sampled_from(_paths(doc)))
        parent = doc
        for key in path[:-1]:
            parent = parent[key]
        action = draw(st.integers(0, 5))
        if action == 0 and isinstance(parent, dict):
            del parent[path[-1]]
        elif action == 1 and isinstance(parent, dict):
            parent[draw(st.sampled_from(ALL_KEYS))] = draw(VALUES)
        else:
            parent[path[-1]] = draw(VALUES)
    return doc


TOKENS = ["nan", "+nan", "inf", "-inf", "-1", "0", "0.0", "1e400", "-1e400", "99999999999999999999999999", '"x"',
          "[]", "{}", "true", "1979-05-27T07:32:00Z", "07:32:00", "[1, 2]", "{ a = 1 }", '"0.0.0.0"', "[[]]",
          '"\\u0000"', "0x10", "1_000", '["ospf", "kernel"]', "[ { dev = \"x\" } ]", "=", ""]


@st.composite
def mutated_example_text(draw):
    """The example file's text with the values of a few ``key = value`` lines replaced."""
    lines = EXAMPLE_TEXT.splitlines()
    settable = [n for n, line in enumerate(lines) if "=" in line and not line.lstrip().startswith("#")]
    for _ in range(draw(st.integers(1, 4))):
        n = draw(st.sampled_from(settable))
        key = lines[n].split("=", 1)[0]
        lines[n] = key + "= " + draw(st.one_of(st.sampled_from(TOKENS), st.text(max_size=8)))
    return "\n".join(lines) + "\n"


def check_accepted(cfg):
    """What an accepted configuration must hold."""
    def walk(node, where):
        if isinstance(node, float):
            assert math.isfinite(node), where
        if attrs.has(type(node)):
            for field in attrs.fields(type(node)):
                value = getattr(node, field.name)
                if field.name in TIME_KEYS:
                    assert isinstance(value, float) and 0 <= value <= config.MAX_SECONDS, (where, field.name, value)
                walk(value, "%s.%s" % (where, field.name))
        elif isinstance(node, (tuple, list)):
            for n, item in enumerate(node):
                walk(item, "%s[%d]" % (where, n))
    walk(cfg, "config")
    kernel = cfg.kernel
    assert kernel.resync_interval > 0 and 0 < kernel.retry_initial <= kernel.retry_max
    damping = Damping(cfg.export.damping)  # no OverflowError at start
    assert math.isfinite(damping.ceiling)
    assert not cfg.export.damping.enabled or damping.ceiling >= cfg.export.damping.suppress
    for n in range(5):  # losses in a row: finite penalty, a finite reuse time
        damping.lost("x", float(n))
    assert math.isfinite(damping.value("x", 5.0))
    reuse = damping.next_reuse(5.0)
    assert reuse is None or math.isfinite(reuse)
    fpm = cfg.fpm_feed
    if fpm is not None:
        assert fpm.users or ipaddress.ip_address(fpm.address).is_loopback
        assert not (fpm.table == kernel.table and kernel.metric == config.ZEBRA_METRIC)


def parse_checked(doc):
    try:
        cfg = config.parse(doc, "fuzz.toml")
    except config.ConfigError as exc:
        assert exc.problems and all(isinstance(p, str) and p for p in exc.problems)
        return None
    check_accepted(cfg)
    return cfg


@FUZZ
@given(documents())
def test_fuzz_generated_documents(doc):
    parse_checked(doc)


@FUZZ
@given(mutated_example())
def test_fuzz_mutated_example(doc):
    parse_checked(doc)


@FUZZ
@given(mutated_example_text())
def test_fuzz_mutated_example_text(text):
    with tempfile.NamedTemporaryFile("w", suffix=".toml", encoding="utf-8", errors="surrogatepass") as fh:
        fh.write(text)
        fh.flush()
        try:
            cfg = config.load(fh.name)
        except config.ConfigError as exc:
            assert exc.problems
        else:
            check_accepted(cfg)


def test_the_example_itself_passes_the_properties():
    check_accepted(config.load(str(EXAMPLE_PATH)))


@pytest.mark.parametrize("value", [float("nan"), float("inf"), 10 ** 400, datetime.date(2020, 1, 1)])
def test_fuzz_found_values_are_refused_with_the_key(value):
    for section, key in (("kernel", "resync_interval"), ("bgp", "eor_timeout")):
        with pytest.raises(config.ConfigError, match="%s.%s: must be" % (section, key)):
            config.parse({section: {key: value}})
