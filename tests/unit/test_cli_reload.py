"""``kernelsync reload`` (kernelsync.cli.cmd_reload): finds the daemon's control socket even
when the file no longer validates, prints what was applied or why it was refused, exit 0/1."""
import json
import socket
import threading

from kernelsync import cli, config


def serve_once(path, answer):
    if path.exists():
        path.unlink()
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(str(path))
    server.listen(1)
    requests = []

    def run():
        conn, _ = server.accept()
        with conn:
            requests.append(conn.recv(4096))
            conn.sendall(json.dumps(answer).encode())
        server.close()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, requests


def test_the_socket_is_found_in_a_file_that_no_longer_validates(tmp_path):
    path = tmp_path / "k.toml"
    path.write_text('[kernel]\ntable = "main"\n[control]\nsocket = "/run/x.sock"\n')
    assert cli._control_socket(str(path)) == "/run/x.sock"
    path.write_text('[kernel\n')
    assert cli._control_socket(str(path)) == config.DEFAULT_CONTROL_SOCKET
    assert cli._control_socket(str(tmp_path / "missing.toml")) == config.DEFAULT_CONTROL_SOCKET


def test_applied_and_refused_are_printed_exit_status(tmp_path, capsys):
    sock = tmp_path / "ks.sock"
    path = tmp_path / "k.toml"
    path.write_text('[control]\nsocket = "%s"\n' % sock)
    thread, requests = serve_once(sock, {"ok": True, "applied": ["static.route[0] 192.0.2.0/24: added (dev v0)"]})
    assert cli.main(["reload", "-c", str(path)]) == 0
    thread.join(5)
    assert requests == [b"reload\n"]
    assert capsys.readouterr().out == "reloaded: 1 change(s) applied\n  static.route[0] 192.0.2.0/24: added (dev v0)\n"
    thread, _ = serve_once(sock, {"ok": False, "error": "these changes need a restart ...",
                                  "restart": ["kernel.table: 100 -> 101"]})
    assert cli.main(["reload", "--socket", str(sock)]) == 1
    thread.join(5)
    assert capsys.readouterr().err == "reload refused: these changes need a restart ...\n  kernel.table: 100 -> 101\n"
    assert cli.main(["reload", "--socket", str(tmp_path / "none.sock")]) == 1
    assert "kernelsync is not running" in capsys.readouterr().err
