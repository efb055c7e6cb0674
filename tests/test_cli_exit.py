"""`geo-lead` leaves without the interpreter's teardown (`geo_lead.cli.leave`), yet its exit
handlers run, its output is complete through a pipe and its exit status is kept; another
non-daemon thread still gets the ordinary exit that waits for it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _python(code: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                          cwd=tmp_path, timeout=120)


def test_module_entry_keeps_status_and_output() -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    helped = subprocess.run([sys.executable, "-m", "geo_lead", "zone", "--help"], capture_output=True,
                            text=True, env=env, timeout=120)
    assert helped.returncode == 0
    assert "check" in helped.stdout and helped.stdout.endswith("\n")
    bad = subprocess.run([sys.executable, "-m", "geo_lead", "zone", "check", "--lat", "38.25"],
                         capture_output=True, text=True, env=env, timeout=120)
    assert bad.returncode == 2 and "geo-lead" in bad.stderr


def test_exit_handlers_run_and_buffered_output_is_flushed(tmp_path: Path) -> None:
    marker = tmp_path / "ran.txt"
    done = _python(
        "import atexit, sys\n"
        "from geo_lead import cli\n"
        f"atexit.register(lambda: open({str(marker)!r}, 'w').write('ran'))\n"
        "sys.stdout.write('x' * 100000)\n"  # more than a pipe's buffer, unflushed
        "cli.leave(3)\n", tmp_path)
    assert done.returncode == 3
    assert done.stdout == "x" * 100000
    assert marker.read_text() == "ran"


def test_a_non_daemon_thread_is_waited_for(tmp_path: Path) -> None:
    marker = tmp_path / "thread.txt"
    done = _python(
        "import threading, time\n"
        "from geo_lead import cli\n"
        "def work():\n"
        "    time.sleep(0.5)\n"
        f"    open({str(marker)!r}, 'w').write('finished')\n"
        "threading.Thread(target=work).start()\n"
        "cli.leave(0)\n", tmp_path)
    assert done.returncode == 0
    assert marker.read_text() == "finished"
