"""OSPF through FRR 8.4 for real: zebra + ospfd on three routers in namespaces
(``kernelsync.tools.ospflab``); r1's zebra streams its FIB over FPM to kernelsync (``[feed.fpm]``),
which installs the OSPF routes in its own table as shared groups.  With and without
``fpm use-next-hop-groups``; repeated link flaps (FRR's own kernel group has been seen to stay
stale there); zebra and ospfd stopped and restarted within the hold time."""
import os
import subprocess
import sys
import time

import pytest

from kernelsync.control import query
from kernelsync.core.engine import KernelConfig
from kernelsync.feeds.fpm import zebra_ignores
from kernelsync.tools.netns import wait_for
from kernelsync.tools.ospflab import LAN, NH_R2, NH_R3, STUB_R2, STUB_R3, OspfLab, install_requirements
from tests.support.netns import PROTO, need_root, route_gateways, table_routes

pytestmark = [pytest.mark.netns, pytest.mark.slow]
OUR_TABLE = 200
# ids FRR 8.4's zebra ignores (bit 28 set: its EVPN layer-2 id space), as the README and
# `kernelsync check` advise with [feed.fpm].  With the default range (100,000,000 and up) zebra
# learns our objects and writes its view of our group back after every link-up (measured: 225 to
# 1,042 writes each way per 10 flaps, the FPM replay window kept open by zebra's frames);
# kernelsync now backs off instead of fighting (tests/unit/core/test_engine.py), but the group
# carries zebra's view meanwhile.  (With ids just above zebra's, as 1000-1999, zebra allocates
# inside our range and takes our objects over.)
ID_RANGE = (469762048, 470762047)
assert zebra_ignores(ID_RANGE) and not zebra_ignores(KernelConfig().nexthop_id_range)
BOTH = sorted([NH_R2, NH_R3])
OSPF_PREFIXES = {LAN, STUB_R2, STUB_R3}


@pytest.fixture(scope="module")
def frr():
    need_root()
    install_requirements(frr=True)


def group(ns, prefix=LAN):
    """Sorted gateways of kernelsync's route for ``prefix`` (its nexthop object or group)."""
    return route_gateways(ns, prefix, OUR_TABLE)


def ours(ns):
    return {r["dst"] for r in table_routes(ns, "table", str(OUR_TABLE), "proto", str(PROTO))}


class Lab:
    """FRR's OSPF lab with kernelsync on r1 as zebra's FPM server."""

    def __init__(self, tmp_path, nexthop_groups=True, resync_after_link=1.0):
        self.tmp = tmp_path
        self.resync_after_link = resync_after_link
        self.lab = OspfLab("frr", workdir=str(tmp_path / "lab"), fpm_nexthop_groups=nexthop_groups)
        self.sock = str(tmp_path / "ks.sock")
        self.ks = None

    def __enter__(self):
        self.lab.start(daemons=False)  # kernelsync first: zebra dials it
        try:
            conf = self.tmp / "ks.toml"
            conf.write_text("\n".join([
                "[kernel]", "table = %d" % OUR_TABLE, "protocol = %d" % PROTO,
                "nexthop_id_range = [%d, %d]" % ID_RANGE, "verify_delay = 0.3",
                "[control]", 'socket = "%s"' % self.sock,
                "[feed.fpm]", 'name = "ospf"', "hold_time = 30", "replay_quiet = 0.3",
                "resync_after_link = %s" % self.resync_after_link]) + "\n")
            self.ks = subprocess.Popen(["ip", "netns", "exec", self.lab.r1.name, sys.executable, "-m", "kernelsync",
                                        "--log-level", "debug", "--log-file", str(self.tmp / "ks.log"), "run", "-c",
                                        str(conf)])
            wait_for(lambda: self.ks.poll() is not None or self.feed(), timeout=10, what="kernelsync up")
            assert self.ks.poll() is None, self.log()
            self.lab.start_daemons()
            wait_for(lambda: group(self.r1) == BOTH, timeout=30, what="one group over r2 and r3")
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def __exit__(self, *exc):
        if self.ks is not None:
            self.ks.terminate()
            self.ks.wait(10)
        self.lab.close()

    @property
    def r1(self):
        return self.lab.r1

    def feed(self):
        try:
            return query(self.sock, "show feeds")["ospf"]
        except OSError:
            return None

    def writes(self):
        return query(self.sock, "show stats")["writes"]

    def stats(self):
        return query(self.sock, "show stats")

    def holds(self, predicate, what, seconds):
        """``predicate`` stays true for ``seconds`` (polled): a state that holds over time, not
        at one sampled instant."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if not predicate():
                raise AssertionError("%s: stopped holding\n%s" % (what, self.state()))
            time.sleep(0.1)

    def log(self):
        try:
            return (self.tmp / "ks.log").read_text()[-4000:]
        except OSError:
            return ""

    def state(self):
        """What kernelsync and zebra have, for failure messages."""
        return {"ours": {p: group(self.r1, p) for p in sorted(OSPF_PREFIXES)},
                "zebra": {p: self.lab.daemon_routes(p) for p in sorted(OSPF_PREFIXES)},
                "feed": self.feed(), "nexthops": self.r1.json("nexthop", "show"),
                "log": self.log()[-2500:]}

    def wait(self, predicate, what, timeout=15):
        try:
            return wait_for(predicate, timeout=timeout, what=what)
        except TimeoutError as exc:
            raise AssertionError("%s\n%s" % (exc, self.state())) from None

    def matches_zebra(self):
        """kernelsync's group for every OSPF prefix is what zebra has selected now."""
        for prefix in OSPF_PREFIXES:
            live = sorted(self.lab.daemon_routes(prefix)) or None  # None: zebra has no route, nor may we
            if group(self.r1, prefix) != live:
                return False
        return True


#: seconds kernelsync's groups must stay equal to zebra's selection after each flap (the issue's
#: 10 s in a long run: KS_FRR_STABLE=10)
STABLE = float(os.environ.get("KS_FRR_STABLE", "0.5"))
FLAPS = [("link", "e12", [NH_R3]), ("link", "e13", [NH_R2]), ("peer_link", "e12", [NH_R3]),
         ("peer_link", "e13", [NH_R2])] * 2 + [("link", "e12", [NH_R3]), ("peer_link", "e13", [NH_R2])]


@pytest.mark.parametrize("nexthop_groups", [True, False], ids=["nexthop-groups", "multipath"])
def test_frr_fpm_group_follows_repeated_link_flaps(frr, tmp_path, nexthop_groups):
    """10 flaps (admin down and carrier loss, on both links): after each, kernelsync's groups are
    zebra's selection and stay so (polled for STABLE seconds); zebra never writes to our objects
    and kernelsync's writes are a few per flap, not a fight; no re-read of zebra's FIB needed."""
    with Lab(tmp_path, nexthop_groups) as lab:
        assert ours(lab.r1) >= OSPF_PREFIXES
        assert group(lab.r1, STUB_R2) == [NH_R2] and group(lab.r1, STUB_R3) == [NH_R3]
        feed = lab.feed()
        assert feed["connections"] == 1 and feed["malformed"] == 0 and feed["stream"]["frames"] > 0
        if nexthop_groups:
            assert feed["zebra_nexthops"] >= 3  # zebra's objects arrived over FPM, ours are our own
        before = lab.stats()
        for how, name, left in FLAPS:
            for state, want in (("down", left), ("up", BOTH)):
                getattr(lab.lab, how)(name, state)
                what = "%s %s %s: group %s = zebra's selection" % (how, name, state, want)
                lab.wait(lambda: group(lab.r1) == want and lab.matches_zebra(), what)
                lab.holds(lambda: group(lab.r1) == want and lab.matches_zebra(), what, STABLE)
        after = lab.stats()
        feed = lab.feed()
        # every connection after the first is a re-read after link events (resync_after_link)
        lab.wait(lambda: not lab.feed()["resync_pending"], "the re-read after the last flap over")
        feed = lab.feed()
        assert feed["stale"] == 0 and feed["malformed"] == 0 and feed["disconnects"] == feed["resyncs"] >= 1, feed
        assert feed["connections"] == feed["replays"] == 1 + feed["resyncs"] and feed["stops"] == 0, feed
        assert lab.matches_zebra(), lab.state()
        # no fight: nobody else wrote to our objects, and our writes are O(flaps)
        assert after["outside_writes"] == before["outside_writes"] == 0 and after["fights"] == 0, after
        writes = sum(after["writes"].values()) - sum(before["writes"].values())
        assert writes <= 12 * len(FLAPS), (writes, before["writes"], after["writes"])
        print("%d flaps: %d kernel writes (%s)" % (len(FLAPS), writes, after["writes"]))


@pytest.mark.parametrize("usual_order", [True, False], ids=["ospfd-then-zebra", "at-once"])
def test_frr_stop_and_start_keeps_routes_and_writes_nothing(frr, tmp_path, usual_order):
    """FRR stops the usual way: ospfd first (zebra withdraws every OSPF route over FPM), zebra
    seconds later (it closes the connection); or both at once.  Either way the routes stay,
    stale; zebra's replay after the restart brings the same state back and not one kernel write
    happens."""
    with Lab(tmp_path) as lab:
        lab.wait(lambda: lab.matches_zebra() and ours(lab.r1) >= OSPF_PREFIXES, "all OSPF prefixes installed")
        installed = ours(lab.r1)
        writes = lab.writes()
        if usual_order:
            lab.lab.stop_daemon("r1", ["ospfd"])
            lab.wait(lambda: lab.feed()["stops"] == 1, "zebra's withdrawal of every OSPF route taken for a stop")
            assert lab.feed()["stale"] == len(installed) and lab.feed()["connected"]
            assert ours(lab.r1) == installed and lab.writes() == writes
            stopped = time.monotonic()
            lab.wait(lambda: time.monotonic() > stopped + 2.0 and lab.feed()["stale"] == len(installed),
                     "ospfd stopped for 2 s, routes still stale")  # as a service manager spaces them
        lab.lab.stop_daemon("r1")
        lab.wait(lambda: lab.feed()["connected"] is None, "FPM connection closed", timeout=10)
        assert lab.feed()["stale"] == len(installed)
        assert ours(lab.r1) == installed and group(lab.r1) == BOTH
        lab.lab.start_daemon("r1")
        lab.wait(lambda: lab.feed()["replays"] == 2 and lab.feed()["stale"] == 0, "zebra reconnected and replayed",
                 timeout=30)
        assert ours(lab.r1) == installed and group(lab.r1) == BOTH
        assert lab.writes() == writes, "an FRR restart that ends where it began wrote to the kernel"
