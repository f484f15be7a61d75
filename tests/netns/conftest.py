"""Fixtures of the real-kernel tests: a fresh network namespace per test, foreign objects that
must survive every test, and the kernelsync daemon as a real process inside the namespace."""
import pytest

from kernelsync.tools.netns import NetNS, unique_name
from tests.support.netns import DaemonProc, add_foreign, foreign_state, need_root


@pytest.fixture
def ns():
    need_root()
    with NetNS(unique_name("kst"), compat_mode=0) as namespace:
        yield namespace


@pytest.fixture
def lab(ns):
    """Namespace with veths v0..v2 (peers p0..p2) addressed 10.0.N.1/24 and 2001:db8:N::1/64,
    plus the foreign routes and nexthops of :func:`add_foreign`."""
    for n in range(3):
        ns.veth("v%d" % n, "p%d" % n)
        ns.ip("addr", "add", "10.0.%d.1/24" % n, "dev", "v%d" % n)
        ns.ip("-6", "addr", "add", "2001:db8:%d::1/64" % n, "dev", "v%d" % n, "nodad")
    before = add_foreign(ns)
    yield ns
    # while the links are up again, the foreign state must be exactly as it was
    for n in range(3):
        ns.ip("link", "set", "v%d" % n, "up")
        ns.ip("link", "set", "p%d" % n, "up")
    assert foreign_state(ns, ns.foreign_ids) == before, "a foreign route or nexthop was changed"


@pytest.fixture
def daemon_factory(tmp_path):
    started = []

    def make(namespace, config, name="ks"):
        d = DaemonProc(namespace, config, tmp_path, name)
        started.append(d)
        return d

    yield make
    for d in started:
        d.stop()
