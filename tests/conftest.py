"""The test tree mirrors the source and is sorted by what a test needs:

* ``unit/``: pure tests, no root, no network namespace (``pytest -m "not netns"`` runs them);
* ``golden/``: captured bytes and lines (ExaBGP's JSON, the kernel's netlink messages, zebra's
  FPM frames) decoded by the project's decoders; no root;
* ``netns/``: the real kernel in a fresh network namespace and real daemons (BIRD 2, FRR,
  ExaBGP); root.  Every test there carries the ``netns`` marker (added here if a module forgot
  it), and no test outside it may.
"""
import pathlib

import pytest
from hypothesis import settings

# hypothesis (the fuzz tests): CI's default is bounded and derandomized (the same examples every
# run); ``--hypothesis-profile=long`` is the long, random run (see tests/unit/feeds/test_fuzz_*.py)
settings.register_profile("ci", max_examples=200, deadline=None, derandomize=True, print_blob=True)
settings.register_profile("long", max_examples=50_000, deadline=None, print_blob=True)
settings.load_profile("ci")

NETNS_DIR = pathlib.Path(__file__).parent / "netns"


def pytest_collection_modifyitems(config, items):
    misplaced = []
    for item in items:
        in_netns = NETNS_DIR in pathlib.Path(item.path).parents
        if in_netns and item.get_closest_marker("netns") is None:
            item.add_marker(pytest.mark.netns)
        elif not in_netns and item.get_closest_marker("netns") is not None:
            misplaced.append(item.nodeid)
    if misplaced:
        raise pytest.UsageError("tests marked netns outside tests/netns/: %s" % ", ".join(misplaced))
