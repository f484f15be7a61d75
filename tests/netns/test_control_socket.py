"""A second instance configured with the control socket of a running one (in another table,
another protocol, another ID range) refuses to start, naming the socket, and leaves the first
one's socket alone; a stale socket left by a killed instance is replaced (issue 12, defect 9b)."""
import subprocess
import sys

import pytest

from tests.support.netns import ID_RANGE, PROTO, static_routes, write_config

pytestmark = pytest.mark.netns


def test_a_second_instance_on_the_same_control_socket_is_refused(lab, daemon_factory, tmp_path):
    first = daemon_factory(lab, write_config(tmp_path, static_routes([("203.0.113.10/32", [{"dev": "v0"}], None)])))
    first.start()
    first.wait_synced(routes=1)
    other = tmp_path / "other"
    other.mkdir()
    config = write_config(other, "", table=101, protocol=PROTO + 1,
                          nexthop_id_range=[ID_RANGE[1] + 1, ID_RANGE[1] + 1000])
    config.write_text(config.read_text().replace(str(other / "ks.sock"), first.sock))
    second = subprocess.run(["ip", "netns", "exec", lab.name, sys.executable, "-m", "kernelsync", "run", "-c",
                             str(config)], capture_output=True, text=True, timeout=30)
    assert second.returncode == 1, second
    assert "cannot start: %s: another process is listening on it" % first.sock in second.stderr
    assert first.query("show stats")["state"] == "SYNCED"  # still there, still answering
    first.proc.kill()  # kill -9: the socket file stays, stale
    first.proc.wait()
    again = daemon_factory(lab, first.config, name="again").start()
    again.wait_synced(routes=1)
