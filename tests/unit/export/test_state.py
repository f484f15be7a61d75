"""The announced set kept across restarts (kernelsync.export.state)."""
import logging
import os

from kernelsync.core.model import parse_prefix
from kernelsync.export.state import StateFile

P = parse_prefix("203.0.113.10/32")


def test_round_trip_atomic_and_nothing_without_a_path(tmp_path):
    state = StateFile(str(tmp_path / "sub" / "exported.json"))
    assert state.load() == {}  # no file yet
    state.save({P: "withdraw route 203.0.113.10/32 next-hop self"})
    assert state.load() == {P: "withdraw route 203.0.113.10/32 next-hop self"}
    assert os.listdir(tmp_path / "sub") == ["exported.json"]  # the temporary file was renamed
    nowhere = StateFile(None)
    nowhere.save({P: "x"})
    assert nowhere.load() == {}


def test_unreadable_file_is_reported_and_taken_as_empty(tmp_path, caplog):
    caplog.set_level(logging.WARNING)
    path = tmp_path / "exported.json"
    path.write_text('{"withdraw": {"not a prefix": "x"}}')
    assert StateFile(str(path)).load() == {}
    assert "cannot read the state file" in caplog.text
