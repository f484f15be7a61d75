"""The RIB (kernelsync.core.rib): sources by admin distance, readiness, changes in order."""
import pytest

from kernelsync.core.model import NexthopSpec, Path, parse_prefix
from kernelsync.core.rib import Rib, UnknownSource

P1, P2 = parse_prefix("203.0.113.1/32"), parse_prefix("198.51.100.0/24")
A = (Path((NexthopSpec(None, None, "a"),)),)
B = (Path((NexthopSpec(None, None, "b"),)),)


def test_candidates_best_distance_first_and_changes_in_order():
    rib = Rib()
    rib.add_source("ospf", 110)
    rib.add_source("static", 1)
    rib.update("ospf", P2, A)
    rib.update("static", P1, B)
    rib.update("static", P2, B)
    assert [s for _d, s, _p in rib.candidates(P2)] == ["static", "ospf"]
    assert list(rib.take_dirty()) == [P2, P1] and not rib.dirty
    rib.update("static", P2, B)  # unchanged: not dirty
    assert not rib.dirty
    rib.update("static", P2, ())  # empty = withdraw
    assert [s for _d, s, _p in rib.candidates(P2)] == ["ospf"] and list(rib.take_dirty()) == [P2]
    rib.replace_source("static", {P2: A})
    assert rib.candidates(P1) == [] and len(rib) == 1 and set(rib.take_dirty()) == {P1, P2}
    with pytest.raises(UnknownSource):
        rib.update("bgp", P1, A)
    with pytest.raises(ValueError):
        rib.add_source("x", 256)


def test_ready_once_every_source_is():
    rib = Rib()
    rib.add_source("static", 1)
    rib.add_source("ospf", 110)
    rib.set_ready("static")
    assert not rib.all_ready and not rib.became_ready
    rib.set_ready("ospf")
    assert rib.all_ready and rib.became_ready


def test_single_source_entries_are_shared_and_multi_source_ones_best_first():
    rib = Rib()
    rib.add_source("ospf", 110)
    rib.add_source("static", 1)
    rib.update("ospf", P1, A)
    rib.update("ospf", P2, A)
    assert rib.entries[P1] is rib.entries[P2] == (("ospf", A),)  # one object for both prefixes
    rib.update("static", P2, B)
    assert rib.entries[P2] == (("static", B), ("ospf", A)) and rib.sources(P2) == {"static": B, "ospf": A}
    rib.update("static", P2, A)  # a source's paths replaced in a multi-source entry
    assert rib.entries[P2] == (("static", A), ("ospf", A))
    rib.withdraw("static", P2)
    assert rib.entries[P2] is rib.entries[P1]  # one source left: the shared entry again
    assert rib.paths("ospf", P2) is A and rib.paths("static", P2) == () and P2 in rib
    rib.withdraw("ospf", P2)
    assert P2 not in rib and rib.sources(P2) == {} and rib.candidates(P2) == []


def test_a_changed_admin_distance_reorders_the_entries_it_is_in():
    rib = Rib()
    rib.add_source("ospf", 110)
    rib.add_source("static", 1)
    rib.update("ospf", P2, A)
    rib.update("static", P2, B)
    rib.take_dirty()
    rib.add_source("static", 200)
    assert [s for _d, s, _p in rib.candidates(P2)] == ["ospf", "static"] and list(rib.take_dirty()) == [P2]


def test_set_distance_redecides_the_sources_prefixes_only():
    rib = Rib()
    rib.add_source("static", 1)
    rib.add_source("ospf", 110)
    rib.update("static", P2, A)
    rib.update("ospf", P1, B)
    rib.take_dirty()
    rib.set_distance("static", 1)
    assert rib.take_dirty() == {}  # the same distance: nothing to decide again
    rib.set_distance("static", 120)
    assert list(rib.take_dirty()) == [P2] and rib.distance["static"] == 120
    with pytest.raises(ValueError):
        rib.set_distance("static", 256)
