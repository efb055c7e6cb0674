"""geo_lead.parallel.Deferred: a result computed in a forked child equals the one computed here,
and any failure of the child falls back to computing here (same value, same error)."""

from __future__ import annotations

import os
import threading

import numpy as np
import pytest

from geo_lead import parallel
from geo_lead.errors import GeoLeadError
from geo_lead.parallel import Deferred

pytestmark = pytest.mark.skipif(not parallel.fork_available(), reason="no fork on this platform")


def _pid_and_sum(values: np.ndarray) -> tuple[int, float]:
    return os.getpid(), float(values.sum())


def _fails(message: str) -> None:
    raise GeoLeadError(message)


def _unpicklable() -> object:
    return threading.Lock()  # locks do not pickle


# Forking needs a process with no other Python thread (`fork_available`); earlier tests of a
# full suite leave dask's pool threads behind, so the fork itself is checked in a fresh process.
_IN_FRESH_PROCESS = """
import os, sys
import numpy as np
sys.path.insert(0, {tests!r})
from test_parallel import _pid_and_sum
from geo_lead.parallel import Deferred, Worker
values = np.arange(1_000, dtype=float)
pid, total = Deferred(_pid_and_sum, values).result()
assert pid != os.getpid() and total == _pid_and_sum(values)[1] == 499_500.0, (pid, total)
worker = Worker(("json", "no_such_module_for_geo_lead"))  # a missing module is no error
pid, total = worker.submit(_pid_and_sum, (np.arange(4.0),)).result()
assert pid != os.getpid() and total == 6.0, (pid, total)
worker.close()
print("forked ok")
"""


def test_results_come_from_children_and_equal_the_local_ones() -> None:
    import subprocess
    import sys
    from pathlib import Path

    code = _IN_FRESH_PROCESS.format(tests=str(Path(__file__).parent))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                         env={**os.environ, "PYTHONPATH": str(Path(__file__).parent.parent)})
    assert out.returncode == 0 and "forked ok" in out.stdout, out.stderr[-2000:]


def test_an_error_in_the_child_is_raised_here() -> None:
    with pytest.raises(GeoLeadError, match="no points"):
        Deferred(_fails, "no points").result()


def test_unpicklable_result_or_dead_child_is_computed_here() -> None:
    lock = Deferred(_unpicklable).result()
    assert hasattr(lock, "acquire")
    with pytest.raises(SystemExit):  # computed here after the child died: os._exit -> here too
        Deferred(_dies_here_raises).result()


def _dies_here_raises() -> int:
    if os.environ.get("_GEO_LEAD_TEST_PARENT") == str(os.getpid()):
        raise SystemExit("computed in the parent")
    os._exit(3)  # the child dies without answering


@pytest.fixture(autouse=True)
def _mark_parent(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("_GEO_LEAD_TEST_PARENT", str(os.getpid()))


def test_switched_off_computes_here(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(parallel.NO_FORK_ENV, "1")
    assert not parallel.fork_available()
    pid, _ = Deferred(_pid_and_sum, np.ones(3)).result()
    assert pid == os.getpid()


def test_worker_failure_uses_the_fallback_and_close_ends_an_idle_worker() -> None:
    from geo_lead.parallel import Worker

    worker = Worker()
    job = worker.submit(_fails, ("child",), fallback=lambda: "computed here")
    assert job.result() == "computed here"
    idle = Worker(("json",))
    proc = idle._proc
    idle.close()
    assert proc is None or not proc.is_alive()


def test_no_fork_while_other_threads_run() -> None:
    stop = threading.Event()
    other = threading.Thread(target=stop.wait, daemon=True)
    other.start()
    try:
        assert not parallel.fork_available()
        pid, _ = Deferred(_pid_and_sum, np.ones(2)).result()
        assert pid == os.getpid()  # computed here, same value
    finally:
        stop.set()
        other.join()


# --- children die with their parent (issue 17, defect 2) ------------------------------------
_DRIVER = """
import os, sys, time
sys.path.insert(0, {tests!r})
from geo_lead.parallel import Deferred, Worker
worker = Worker(("json",))          # an idle worker, blocked waiting for its job
job = Deferred(time.sleep, 120)     # a child busy computing
print(worker._proc.pid, job._proc.pid, flush=True)
time.sleep(120)
"""


def _alive(pid: int) -> bool:
    """True while `pid` runs (a zombie waiting to be reaped counts as ended)."""
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as fh:
            state = next(line for line in fh if line.startswith("State:"))
    except (FileNotFoundError, ProcessLookupError, StopIteration):
        return False
    return "Z" not in state.split()[1]


@pytest.mark.skipif(not os.path.isdir("/proc/self"), reason="needs /proc to see processes")
def test_sigkill_of_the_parent_leaves_no_child() -> None:
    import signal
    import subprocess
    import sys
    import time
    from pathlib import Path

    code = _DRIVER.format(tests=str(Path(__file__).parent))
    env = {**os.environ}
    env.pop(parallel.NO_FORK_ENV, None)
    driver = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, env=env)
    try:
        line = driver.stdout.readline()  # type: ignore[union-attr]
        children = [int(p) for p in line.split()]
        assert len(children) == 2 and all(_alive(p) for p in children), line
        os.kill(driver.pid, signal.SIGKILL)
        driver.wait(timeout=10)
        deadline = time.monotonic() + 5
        while any(_alive(p) for p in children) and time.monotonic() < deadline:
            time.sleep(0.05)
        left = [p for p in children if _alive(p)]
    finally:
        driver.kill()
        for pid in children if "children" in locals() else []:
            with __import__("contextlib").suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
    assert not left, f"children still running after their parent was killed: {left}"


def test_ctrl_c_prints_no_child_traceback() -> None:
    import signal
    import subprocess
    import sys
    import time
    from pathlib import Path

    code = _DRIVER.format(tests=str(Path(__file__).parent))
    env = {**os.environ}
    env.pop(parallel.NO_FORK_ENV, None)
    driver = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, env=env, start_new_session=True)
    try:
        driver.stdout.readline()  # type: ignore[union-attr]
        time.sleep(0.3)
        os.killpg(driver.pid, signal.SIGINT)  # what the terminal does on Ctrl-C
        _out, err = driver.communicate(timeout=10)
    finally:
        with __import__("contextlib").suppress(ProcessLookupError):
            os.killpg(driver.pid, signal.SIGKILL)
    # The parent's own KeyboardInterrupt is its business; no child may add a traceback.
    assert err.count("Traceback") <= 1, err
    assert "Process ForkProcess" not in err, err
