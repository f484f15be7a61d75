"""Defect 13: two instances owning the same routes.  The second ``kernelsync run`` (or a
stdin-mode ``kernelsync exabgp``) in the namespace with the same table and protocol, or the
same protocol and an overlapping nexthop ID range, exits non-zero naming the first; the
first's routes are untouched; ``--dry-run`` reads only and is not refused."""
import subprocess
import sys

import pytest

from tests.support.netns import ID_RANGE, our_nexthops, our_routes, static_routes, write_config

pytestmark = pytest.mark.netns


def kernelsync(ns, *args, stdin=None, timeout=20):
    return subprocess.run(["ip", "netns", "exec", ns.name, sys.executable, "-m", "kernelsync", *args],
                          input=stdin, capture_output=True, text=True, timeout=timeout)


def test_a_second_owner_is_refused_naming_the_first_and_the_first_is_untouched(lab, tmp_path, daemon_factory):
    ns = lab
    conf = write_config(tmp_path, static_routes([("198.51.100.0/24", [{"via": "10.0.0.2", "dev": "v0"}], None)]))
    first = daemon_factory(ns, conf).start()
    first.wait_synced(routes=1)
    before = (our_routes(ns), our_nexthops(ns))
    writes = first.stats()["writes"]
    other = tmp_path / "second"
    other.mkdir()
    for kernel in ({}, {"table": 101, "nexthop_id_range": [ID_RANGE[1] - 10, ID_RANGE[1] + 1000]}):
        second_conf = write_config(other, "", **kernel)  # no routes: it would delete the first's
        result = kernelsync(ns, "run", "-c", str(second_conf))
        assert result.returncode != 0
        text = result.stderr
        assert "another kernelsync owns" in text and "pid %d," % first.proc.pid in text, text
        assert str(conf) in text and str(tmp_path / "ks.sock") in text, text
        assert "table 100, protocol 200" in text if not kernel else "nexthop ids" in text
    # stdin mode (ExaBGP's process) likewise
    result = kernelsync(ns, "exabgp", "-c", str(write_config(other, "")), stdin="")
    assert result.returncode != 0 and "another kernelsync owns" in result.stderr, result.stderr
    # a dry run reads only: not refused
    result = kernelsync(ns, "run", "--dry-run", "-c", str(write_config(other, "")))
    assert result.returncode == 0, result.stderr
    assert (our_routes(ns), our_nexthops(ns)) == before
    assert first.stats()["writes"] == writes and first.stats()["outside_writes"] == 0
    assert first.proc.poll() is None
    print(text)
    # the first one gone (kill -9: the claim goes with the process), a new one may own the key
    first.proc.kill()
    first.proc.wait()
    third = daemon_factory(ns, conf, name="third").start()
    third.wait_synced(routes=1)
    assert (our_routes(ns), our_nexthops(ns)) == before  # adopted
