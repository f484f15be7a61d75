"""``--log-format json`` (kernelsync.cli): one JSON object per line with time, level, logger,
message and the traceback as one field; an unexpected error of a command is logged once,
through that format (no raw traceback on stderr besides it)."""
import json
import logging
import subprocess
import sys

from kernelsync import cli


def test_json_lines_carry_the_exception_as_one_field(tmp_path):
    path = tmp_path / "log"
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    try:
        cli._setup_logging("info", str(path), "json")
        log = logging.getLogger("kernelsync.test")
        log.info("peer %s up\nsecond line", "192.0.2.1")
        try:
            raise ValueError("boom")
        except ValueError:
            log.exception("handler failed; continuing")
        log.debug("not at info")
        for handler in root.handlers:
            handler.flush()
    finally:
        for handler in root.handlers:
            handler.close()
        root.handlers[:], root.level = saved
    lines = path.read_text().splitlines()
    assert len(lines) == 2  # one line per record, the multi-line message and traceback inside
    first, second = map(json.loads, lines)
    assert first["message"] == "peer 192.0.2.1 up\nsecond line" and first["level"] == "INFO"
    assert first["logger"] == "kernelsync.test" and first["time"].endswith("Z") and "exception" not in first
    assert second["level"] == "ERROR" and second["message"] == "handler failed; continuing"
    assert second["exception"].startswith("Traceback") and second["exception"].endswith("ValueError: boom")


def test_a_command_that_fails_unexpectedly_is_one_json_line(tmp_path):
    script = ("import sys; from kernelsync import cli\n"
              "def broken(args):\n    raise RuntimeError('unexpected')\n"
              "cli.cmd_check = broken\nsys.exit(cli.main(sys.argv[1:]))\n")
    out = subprocess.run([sys.executable, "-c", script, "--log-format", "json", "check", "-c", str(tmp_path / "x")],
                         capture_output=True, text=True, timeout=30)
    assert out.returncode == 1
    lines = out.stderr.splitlines()
    assert len(lines) == 1, out.stderr
    record = json.loads(lines[0])
    assert record["level"] == "CRITICAL" and record["message"] == "kernelsync check failed"
    assert "RuntimeError: unexpected" in record["exception"] and record["exception"].count("Traceback") == 1
