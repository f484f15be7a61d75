"""kernelsync.ownership: one owner per (network namespace, table, protocol) and per overlapping
nexthop ID range of a protocol, claimed with abstract Unix sockets; the second is refused
with the first named; a lingering owner hands over.  Real sockets in this namespace, with a
random table so that parallel runs never meet."""
import random
import selectors
import threading

import pytest

from kernelsync.ownership import Claim, OwnershipConflict, ask, owners


class Served:
    """A claim answering requests from a loop in a thread, as the daemon's loop does."""

    def __init__(self, claim):
        self.claim = claim
        self.sel = selectors.DefaultSelector()
        claim.register(self.sel)
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._loop, daemon=True)
        self.thread.start()

    def _loop(self):
        while not self.stop.is_set():
            for key, _ in self.sel.select(0.02):
                key.data(0.0)

    def close(self):
        self.stop.set()
        self.thread.join()
        self.claim.close()


@pytest.fixture
def table():
    return random.randint(1_000_000, 2_000_000_000)


def claim(table, protocol=200, ids=(1000, 1999), config="/etc/a.toml"):
    return Claim(table, protocol, ids, {"config": config, "control_socket": "/run/a.sock", "mode": "run"})


def test_a_second_owner_is_refused_with_the_first_named(table):
    first = claim(table)
    first.acquire()
    served = Served(first)
    try:
        assert any(o.name == first.name for o in owners(first.netns))
        assert ask(first.name, "who")["state"] == "running"
        with pytest.raises(OwnershipConflict) as exc:
            claim(table, config="/etc/b.toml").acquire(handover_wait=0.2)
        text = str(exc.value)
        assert "table %d, protocol 200" % table in text and "/etc/a.toml" in text and "/run/a.sock" in text
        assert "pid %d" % first.info["pid"] in text
        # a running owner does not hand over
        assert ask(first.name, "handover") == {"ok": False, "error": "running: not handing over"}
    finally:
        served.close()
    second = claim(table, config="/etc/b.toml")  # gone (as with kill -9): free
    second.acquire()
    second.close()


def test_overlapping_nexthop_ids_of_one_protocol_conflict_across_tables(table):
    first = claim(table, ids=(1000, 1999))
    first.acquire()
    served = Served(first)
    try:
        with pytest.raises(OwnershipConflict, match="nexthop ids 1500..1999 of protocol 200"):
            claim(table + 1, ids=(1500, 2500)).acquire(handover_wait=0.1)
        for other in (claim(table + 1, ids=(2000, 2999)),  # another table, disjoint ids
                      claim(table, protocol=201)):  # another protocol
            other.acquire()
            other.close()
    finally:
        served.close()


def test_a_lingering_owner_hands_over_and_the_new_one_takes_the_key(table):
    first = claim(table)
    first.acquire()
    first.state = "lingering"
    served = Served(first)
    handed = []

    def hand_over():
        handed.append(True)
        first.close()  # the holder exits without deleting anything

    first.on_handover = hand_over
    try:
        second = claim(table, config="/etc/b.toml")
        second.acquire(handover_wait=3.0)
        assert handed == [True] and second.handed_over == 1
        assert [o.name for o in owners(second.netns) if o.table == table] == [second.name]
        second.close()
    finally:
        served.close()


def test_an_owner_on_its_way_out_is_waited_for(table):
    first = claim(table)
    first.acquire()  # not served: its loop is over, it does not answer
    timer = threading.Timer(0.3, first.close)  # and exits a moment later
    timer.start()
    try:
        second = claim(table, config="/etc/b.toml")
        second.acquire(handover_wait=3.0)
        second.close()
    finally:
        timer.join()
        first.close()
    with pytest.raises(OwnershipConflict):  # one that never goes: refused once the wait is over
        first = claim(table)
        first.acquire()
        try:
            claim(table).acquire(handover_wait=0.3)
        finally:
            first.close()
