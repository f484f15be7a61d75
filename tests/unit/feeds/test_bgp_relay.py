"""The relay (kernelsync.feeds.relay) notices a daemon that went away on a quiet stream."""
import os
import socket
import subprocess
import sys
import time


def test_relay_reconnects_at_once_when_the_daemon_closes_a_quiet_connection(tmp_path):
    # kernelsync run killed and restarted while ExaBGP sends nothing: the relay must come back
    # without waiting for ExaBGP's next line (that could be minutes; meanwhile the restarted
    # daemon has no stream and holds BGP back)
    path = str(tmp_path / "relay.sock")
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(path)
    server.listen(4)
    server.settimeout(10)
    conf = tmp_path / "ks.toml"
    conf.write_text("")
    relay = subprocess.Popen([sys.executable, "-m", "kernelsync", "exabgp", "-c", str(conf), "--relay", path],
                             stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                             env=dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path)))
    try:
        first, _ = server.accept()
        first.close()  # the daemon dies
        t0 = time.monotonic()
        server.settimeout(5)
        second, _ = server.accept()  # no line was written to the relay's stdin meanwhile
        assert time.monotonic() - t0 < 5
        relay.stdin.write(b'{"type": "x"}\n')
        relay.stdin.flush()
        second.settimeout(5)
        assert second.recv(100) == b'{"type": "x"}\n'
        second.close()
    finally:
        relay.kill()
        relay.wait()
        server.close()
