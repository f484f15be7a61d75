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
    assert "1 entry ignored (not withdrawn): withdraw['not a prefix']: not a withdrawal kernelsync writes" \
        in caplog.text
    path.write_text('{"withdraw": ')
    assert StateFile(str(path)).load() == {}
    assert "cannot read the state file" in caplog.text


# --- prefixes, not command text; no symlink followed; fsynced (issue 12, defect 9c) ---------------
import json  # noqa: E402

import pytest  # noqa: E402

from kernelsync.export.exporter import ExportAttrs  # noqa: E402

P6 = parse_prefix("2001:db8:53::1/128")
W = ExportAttrs().withdraw(P)
W6 = ExportAttrs(next_hop_ipv6="2001:db8:a::2", neighbors=("192.0.2.1", "2001:db8:b::1")).withdraw(P6)


def test_the_file_holds_prefixes_and_next_hops_not_commands(tmp_path):
    path = tmp_path / "exported.json"
    state = StateFile(str(path))
    state.save({P: W, P6: W6})
    data = json.loads(path.read_text())
    assert data == {"version": 2, "withdraw": [
        {"prefix": "203.0.113.10/32", "next_hop": "self"},
        {"prefix": "2001:db8:53::1/128", "next_hop": "2001:db8:a::2", "neighbors": ["192.0.2.1", "2001:db8:b::1"]}]}
    assert "withdraw route" not in path.read_text()
    assert state.load() == {P: W, P6: W6}  # the commands, rebuilt from the fields
    assert oct(os.stat(path).st_mode & 0o777) == "0o600"


@pytest.mark.parametrize("entry, why", [
    ({"prefix": "0.0.0.0/0", "next_hop": "self\nannounce route 0.0.0.0/0 next-hop self"}, "next_hop"),
    ({"prefix": "203.0.113.10/32 next-hop self\nannounce route 0.0.0.0/0", "next_hop": "self"}, "prefix"),
    ({"prefix": " 203.0.113.11/32", "next_hop": "self"}, "prefix"),
    ({"prefix": "203.0.113.12/32", "next_hop": "2001:db8::1"}, "next_hop"),
    ({"prefix": "203.0.113.13/32", "next_hop": "self", "neighbors": ["192.0.2.1 announce"]}, "neighbors"),
    ({"prefix": "203.0.113.14/32"}, "next_hop"),
    (["x"], "withdraw[0]"),
])
def test_a_planted_entry_is_skipped_and_the_others_are_used(tmp_path, caplog, entry, why):
    caplog.set_level(logging.WARNING)
    path = tmp_path / "exported.json"
    path.write_text(json.dumps({"version": 2, "withdraw": [entry, {"prefix": "203.0.113.10/32",
                                                                     "next_hop": "self"}]}))
    assert StateFile(str(path)).load() == {P: W}
    assert "1 entry ignored" in caplog.text and why in caplog.text


def test_the_first_format_is_migrated_and_commands_it_did_not_write_are_ignored(tmp_path, caplog):
    caplog.set_level(logging.INFO)
    path = tmp_path / "exported.json"
    path.write_text(json.dumps({"withdraw": {
        "203.0.113.10/32": W, "2001:db8:53::1/128": W6,
        "198.51.100.0/24": "announce route 0.0.0.0/0 next-hop self",  # not a withdrawal: never sent
        "198.51.100.1/32": "withdraw route 198.51.100.1/32 next-hop self\nannounce route 0.0.0.0/0 next-hop self",
        "198.51.100.2/32": "withdraw route 198.51.100.9/32 next-hop self"}}))  # another prefix's
    state = StateFile(str(path))
    assert state.load() == {P: W, P6: W6}
    assert "first format" in caplog.text and "3 entries ignored" in caplog.text
    state.save(state.load())
    assert json.loads(path.read_text())["version"] == 2 and state.load() == {P: W, P6: W6}


def test_a_symlink_is_not_followed(tmp_path, caplog):
    caplog.set_level(logging.WARNING)
    target = tmp_path / "elsewhere.json"
    target.write_text(json.dumps({"version": 2, "withdraw": [{"prefix": "203.0.113.10/32", "next_hop": "self"}]}))
    path = tmp_path / "exported.json"
    path.symlink_to(target)
    state = StateFile(str(path))
    assert state.load() == {} and "symbolic link" in caplog.text
    state.save({P6: W6})  # the link is replaced, its target untouched
    assert not path.is_symlink() and state.load() == {P6: W6}
    assert json.loads(target.read_text())["withdraw"][0]["prefix"] == "203.0.113.10/32"
    fifo = tmp_path / "fifo.json"
    os.mkfifo(fifo)
    assert StateFile(str(fifo)).load() == {}  # not a regular file: not read (and no hang)


def test_written_to_a_temporary_file_fsynced_renamed_and_the_directory_fsynced(tmp_path, monkeypatch):
    calls = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd):
        calls.append(("fsync", os.readlink("/proc/self/fd/%d" % fd)))
        real_fsync(fd)

    def replace(src, dst):
        calls.append(("replace", src, dst))
        real_replace(src, dst)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    path = tmp_path / "exported.json"
    StateFile(str(path)).save({P: W})
    assert [c[0] for c in calls] == ["fsync", "replace", "fsync"]
    tmp = calls[1][1]
    assert calls[0][1] == tmp and os.path.dirname(tmp) == str(tmp_path) and calls[1][2] == str(path)
    assert calls[2][1] == str(tmp_path)  # the directory, after the rename
    assert os.listdir(tmp_path) == ["exported.json"]
