"""The link table (kernelsync.core.links): one copy, updated in place, and what each update
changed."""
from kernelsync.core.links import LinkTable
from kernelsync.core.model import Link


def links(**state):
    """links(a=(1, True, True)) -> {1: Link(1, "a", up=True, carrier=True)}."""
    return {index: Link(index=index, name=name, up=up, carrier=carrier) for name, (index, up, carrier) in state.items()}


def test_change_names_usability_and_index_moves():
    table = LinkTable(links(a=(1, True, True), b=(2, True, True)))
    names, by_name = table.names, table.by_name  # readers may keep references
    version = table.names_version
    change = table.update(links(a=(1, True, False), b=(2, True, True), c=(3, False, False)))
    assert change.changed == {"a", "c"} and change.names_changed  # a lost carrier; c came (unusable)
    assert change.lost(table) == ["a"] and change.was_usable("a") and not change.was_usable("c")
    assert names == {1: "a", 2: "b", 3: "c"} and by_name["c"].index == 3  # the same dicts, updated
    assert table.names_version == version + 1
    change = table.update(links(a=(4, True, False), b=(2, True, True)))  # a re-created; c removed
    assert change.changed == {"a", "c"} and change.names_changed and change.lost(table) == []
    change = table.update(links(a=(4, True, False), b=(2, True, True)))
    assert not change.changed and not change.names_changed and table.names_version == version + 2


def test_changes_merge_for_a_late_dispatch():
    table = LinkTable(links(a=(1, True, True), b=(2, True, True)))
    first = table.update(links(a=(1, False, True), b=(2, True, True)))
    second = table.update(links(a=(1, False, True), b=(2, True, False)))
    both = second.merged_after(first)
    assert both.changed == {"a", "b"} and both.lost(table) == ["a", "b"]
    assert second.merged_after(None) is second
