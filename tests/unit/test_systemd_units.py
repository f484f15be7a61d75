"""The systemd units (configs/systemd): ``systemd-analyze verify`` finds nothing to say about
kernelsync.service and the exabgp.service drop-in (every key known, every command executable:
the units' binaries are pointed at stand-ins), and the unit asks for what the daemon does:
Type=notify (READY=1 once SYNCED), a watchdog, reload = SIGHUP, CAP_NET_ADMIN only."""
import pathlib
import shutil
import subprocess

import pytest

UNITS = pathlib.Path(__file__).parents[2] / "configs" / "systemd"
ANALYZE = shutil.which("systemd-analyze")


def settings(path):
    out = {}
    for line in path.read_text().splitlines():
        if "=" in line and not line.startswith("#"):
            key, _, value = line.partition("=")
            out.setdefault(key, []).append(value)
    return out


@pytest.mark.skipif(ANALYZE is None, reason="systemd-analyze is not installed (Debian package systemd; .ci/run "
                                            "installs it)")
def test_systemd_analyze_verify_is_silent(tmp_path):
    stand_in = tmp_path / "bin" / "kernelsync"
    stand_in.parent.mkdir()
    stand_in.write_text("#!/bin/sh\nexit 0\n")
    stand_in.chmod(0o755)
    unit = (UNITS / "kernelsync.service").read_text()
    assert "ExecStart=/usr/local/bin/kernelsync " in unit
    (tmp_path / "kernelsync.service").write_text(unit.replace("/usr/local/bin/kernelsync", str(stand_in)))
    # a minimal exabgp.service for the drop-in to apply to
    (tmp_path / "exabgp.service").write_text("[Unit]\nDescription=ExaBGP\n[Service]\nExecStart=%s\n" % stand_in)
    shutil.copytree(UNITS / "exabgp.service.d", tmp_path / "exabgp.service.d")
    out = subprocess.run([ANALYZE, "verify", "--man=no", str(tmp_path / "kernelsync.service"),
                          str(tmp_path / "exabgp.service")], capture_output=True, text=True, timeout=60,
                         env={"SYSTEMD_UNIT_PATH": "%s:" % tmp_path, "PATH": "/usr/bin:/bin"}, cwd=tmp_path)
    assert out.returncode == 0 and out.stderr == "", out.stderr
    # the check is real: an unknown key in the drop-in is reported
    drop_in = tmp_path / "exabgp.service.d" / "kernelsync-relay.conf"
    drop_in.write_text(drop_in.read_text() + "NoSuchKey=1\n")
    bad = subprocess.run([ANALYZE, "verify", "--man=no", str(tmp_path / "exabgp.service")], capture_output=True,
                         text=True, timeout=60, env={"SYSTEMD_UNIT_PATH": "%s:" % tmp_path, "PATH": "/usr/bin:/bin"},
                         cwd=tmp_path)
    assert "Unknown key 'NoSuchKey'" in bad.stderr


def test_the_unit_asks_for_what_the_daemon_does():
    unit = settings(UNITS / "kernelsync.service")
    assert unit["Type"] == ["notify"] and unit["NotifyAccess"] == ["main"]
    assert unit["WatchdogSec"] and int(unit["WatchdogSec"][0]) >= 10
    assert unit["ExecReload"] == ["/bin/kill -HUP $MAINPID"]
    assert unit["ExecStart"][0].split()[-3:] == ["run", "-c", "/etc/kernelsync.toml"]
    assert unit["AmbientCapabilities"] == unit["CapabilityBoundingSet"] == ["CAP_NET_ADMIN"]
    assert unit["NoNewPrivileges"] == ["yes"] and unit["ProtectSystem"] == ["strict"]
    assert unit["RestrictAddressFamilies"] == ["AF_NETLINK AF_UNIX AF_INET AF_INET6"]
    assert unit["RuntimeDirectory"] == ["kernelsync"]  # /run/kernelsync: sockets and state file (config defaults)
    drop_in = settings(UNITS / "exabgp.service.d" / "kernelsync-relay.conf")
    assert drop_in["Wants"] == ["kernelsync.service"]
    assert "BindsTo" not in drop_in and "PartOf" not in drop_in  # an ExaBGP restart leaves kernelsync running
    # not ordered after kernelsync: READY=1 (SYNCED) may wait for ExaBGP's stream after a restart
    assert "After" not in drop_in
