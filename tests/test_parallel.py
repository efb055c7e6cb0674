"""geo_lead.parallel: a result computed in a forked child equals the one computed here; an error
raised in the child is raised here with the child's traceback; a child that cannot answer (dead,
unpicklable answer, hung past `settings.CHILD_TIMEOUT_S`) is replaced by the same computation
here, with a warning.

In a full test run earlier tests leave threads behind (dask's pools), so this process cannot fork
(`parallel.fork_blocker`): every test that must see a real child runs its case in a fresh
interpreter (`_in_fresh_process`) and checks `parallel.forks()` there, so the fork path is
tested in the full suite too, not only the fallback."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import numpy as np
import pytest

from geo_lead import parallel
from geo_lead.errors import GeoLeadError
from geo_lead.parallel import Deferred

pytestmark = pytest.mark.skipif(not parallel.fork_available(), reason="no fork on this platform")


def _imported(name: str) -> tuple[int, bool]:
    """(this process's id, whether module `name` is imported here)."""
    import sys

    return os.getpid(), name in sys.modules


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
from test_parallel import _imported
assert "colorsys" not in sys.modules
worker = Worker(("json",))
worker.prefetch(("colorsys", "no_such_module_for_geo_lead"))  # imported before the job runs
pid, imported = worker.submit(_imported, ("colorsys",)).result()
assert pid != os.getpid() and imported and "colorsys" not in sys.modules, (pid, imported)
import time
job = Deferred(time.sleep, 0.3)  # answered() looks without waiting, then turns true
assert not job.answered()
deadline = time.monotonic() + 60
while not job.answered() and time.monotonic() < deadline:
    time.sleep(0.02)
assert job.answered() and job.result() is None
assert Deferred.here(lambda: 1).answered()
from geo_lead import parallel
assert parallel.forks() == 4, parallel.forks()
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
    # A child that dies without answering: the fallback is computed here. (Until issue 18 a
    # child's *error* also meant the fallback; now the error is raised here: `_case_worker`.)
    job = worker.submit(_dies_here_raises, (), fallback=lambda: "computed here")
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
        _out, err = driver.communicate(timeout=120)  # generous: a loaded CI machine, not a speed check
    finally:
        with __import__("contextlib").suppress(ProcessLookupError):
            os.killpg(driver.pid, signal.SIGKILL)
    # The parent's own KeyboardInterrupt is its business; no child may add a traceback.
    assert err.count("Traceback") <= 1, err
    assert "Process ForkProcess" not in err, err


# --- the fork path, in a fresh interpreter (issue 18) ----------------------------------------
def _in_fresh_process(case: str, timeout_s: float = 180, **env: str) -> str:
    """Run ``test_parallel.<case>()`` in a new interpreter (no threads but its own); its stdout."""
    import subprocess
    import sys
    from pathlib import Path

    code = (f"import sys; sys.path.insert(0, {str(Path(__file__).parent)!r})\n"
            f"import test_parallel\ntest_parallel.{case}()\nprint('case ok')")
    full_env = {k: v for k, v in os.environ.items() if k != parallel.NO_FORK_ENV}
    full_env.update(PYTHONPATH=str(Path(__file__).parent.parent), **env)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=timeout_s,
                         env=full_env)
    assert out.returncode == 0 and "case ok" in out.stdout, out.stdout[-2000:] + out.stderr[-4000:]
    return out.stdout + out.stderr


def _forked(job: Deferred[object]) -> bool:
    return job._proc is not None


def _case_error_comes_back_with_the_childs_traceback() -> None:
    before = parallel.forks()
    job = Deferred(_fails, "no points")
    assert _forked(job) and parallel.forks() == before + 1
    try:
        job.result()
    except GeoLeadError as exc:
        cause = exc.__cause__
        assert isinstance(cause, parallel.ChildTraceback), cause
        assert "in _fails" in cause.text and "GeoLeadError: no points" in cause.text, cause.text
        assert str(exc) == "no points"
    else:
        raise AssertionError("the child's error was not raised")


def test_an_error_in_a_child_is_raised_here_with_its_traceback() -> None:
    _in_fresh_process("_case_error_comes_back_with_the_childs_traceback")


class _Unpicklable(GeoLeadError):
    """An error whose constructor takes other arguments than its message: does not unpickle."""

    def __init__(self, path: str, column: str) -> None:
        super().__init__(f"{path}: no column {column}")


def _fails_unpicklably() -> None:
    if os.environ.get("_GEO_LEAD_TEST_PARENT") == str(os.getpid()):
        raise _Unpicklable("here.csv", "X")
    raise _Unpicklable("child.csv", "X")


def _case_failures_that_cannot_cross_are_computed_here_with_a_warning() -> None:
    import logging

    logging.basicConfig(level=logging.WARNING)
    os.environ["_GEO_LEAD_TEST_PARENT"] = str(os.getpid())
    job = Deferred(_unpicklable)
    assert _forked(job)
    assert hasattr(job.result(), "acquire")  # computed here
    job = Deferred(_dies_here_raises)
    assert _forked(job)
    try:
        job.result()
    except SystemExit as exc:
        assert str(exc) == "computed in the parent"
    else:
        raise AssertionError("the dead child's job was not computed here")
    job = Deferred(_fails_unpicklably)
    assert _forked(job)
    try:
        job.result()
    except _Unpicklable as exc:
        assert str(exc) == "here.csv: no column X"  # computed (and raised) here
    assert parallel.forks() == 3


def test_unpicklable_answers_and_dead_children_are_computed_here_with_a_warning() -> None:
    err = _in_fresh_process("_case_failures_that_cannot_cross_are_computed_here_with_a_warning")
    assert "its result does not pickle" in err
    assert "ended without answering (exit code 3)" in err
    assert "raised an error that does not pickle" in err and "child.csv: no column X" in err


def _hangs() -> str:
    import time

    if os.environ.get("_GEO_LEAD_TEST_PARENT") == str(os.getpid()):
        return "computed here"
    time.sleep(600)  # uses no CPU: as a deadlocked child
    return "never"


def _spins() -> str:
    import time

    if os.environ.get("_GEO_LEAD_TEST_PARENT") == str(os.getpid()):
        return "computed here"
    end = time.monotonic() + 600
    while time.monotonic() < end:  # busy, never answers
        pass
    return "never"


def _case_hung_children_are_killed() -> None:
    import logging
    import time

    from geo_lead import settings

    logging.basicConfig(level=logging.WARNING)
    os.environ["_GEO_LEAD_TEST_PARENT"] = str(os.getpid())
    assert settings.CHILD_IDLE_S == 1.5 and settings.CHILD_TIMEOUT_S == 6  # from the environment
    for fn in (_hangs, _spins):
        job = Deferred(fn)
        assert _forked(job)
        pid = job._proc.pid  # type: ignore[union-attr]
        started = time.monotonic()
        assert job.result() == "computed here"
        assert time.monotonic() - started < 60
        assert not _alive(pid)


def test_hung_children_are_killed_after_the_settings_timeouts() -> None:
    err = _in_fresh_process("_case_hung_children_are_killed", GEO_LEAD_CHILD_IDLE_S="1.5",
                            GEO_LEAD_CHILD_TIMEOUT_S="6")
    assert "computing _hangs gave no result (it used no CPU time for 1.5 s: hung (settings.CHILD_IDLE_S" in err
    assert "computing _spins gave no result (no answer within 6 s (settings.CHILD_TIMEOUT_S" in err
    assert "GEO_LEAD_CHILD_TIMEOUT_S" in err and "GEO_LEAD_CHILD_IDLE_S" in err


@pytest.mark.skipif(not os.path.isdir("/proc/self"), reason="needs /proc")
def test_cpu_seconds_of_a_process() -> None:
    import time

    before = parallel.cpu_seconds(os.getpid())
    end = time.process_time() + 0.3
    while time.process_time() < end:
        pass
    after = parallel.cpu_seconds(os.getpid())
    assert before is not None and after is not None and after - before >= 0.2
    assert parallel.cpu_seconds(2**22 + 12345) is None  # no such process


def _case_worker() -> None:
    from geo_lead.parallel import Worker

    worker = Worker(("json",))
    assert worker._proc is not None and parallel.forks() == 1
    job = worker.submit(_fails, ("in the worker",), fallback=lambda: "not used")
    try:
        job.result()
    except GeoLeadError as exc:
        assert str(exc) == "in the worker" and isinstance(exc.__cause__, parallel.ChildTraceback)
    else:
        raise AssertionError("the worker's error was not raised")
    pid, total = Worker().submit(_pid_and_sum, (np.arange(3.0),)).result()
    assert pid != os.getpid() and total == 3.0 and parallel.forks() == 2


def test_a_workers_error_is_raised_here() -> None:
    _in_fresh_process("_case_worker")


def _waits_then_adds(start: float) -> tuple[int, float, float]:
    """A worker's job: reads its first part, then waits for the parent's value."""
    first = start * 2
    given = parallel.from_parent()
    return os.getpid(), first, first + float(given)  # type: ignore[arg-type]


def _case_worker_waits_for_the_parent() -> None:
    from geo_lead.parallel import Worker

    job = Worker().submit(_waits_then_adds, (1.5,), fallback=lambda: (os.getpid(), 3.0, 3.0 + 4.0))
    time_given = 0.3
    import time

    time.sleep(time_given)  # the child is waiting: not answered yet
    assert not job.answered()
    job.send(4.0)
    pid, first, total = job.result()
    assert pid != os.getpid() and (first, total) == (3.0, 7.0)


def _case_a_dropped_job_ends_its_child() -> None:
    """A parent that fails before it sends the value drops the job: the child, waiting in
    `from_parent`, sees the pipe closed and ends (no child left waiting)."""
    import gc
    import time

    from geo_lead.parallel import Worker

    job = Worker().submit(_waits_then_adds, (1.5,))
    proc = job._proc
    assert proc is not None and proc.is_alive()
    del job
    gc.collect()
    deadline = time.monotonic() + 30
    while proc.is_alive() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not proc.is_alive()


def test_a_workers_job_waits_for_a_value_from_its_parent() -> None:
    _in_fresh_process("_case_worker_waits_for_the_parent")
    _in_fresh_process("_case_a_dropped_job_ends_its_child")


def test_without_a_child_send_is_a_no_op_and_from_parent_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    from geo_lead.parallel import Worker

    monkeypatch.setenv(parallel.NO_FORK_ENV, "1")
    job = Worker().submit(_waits_then_adds, (1.5,), fallback=lambda: (os.getpid(), 3.0, 7.0))
    job.send(4.0)  # computed here by the fallback, which has the value itself
    assert job.result() == (os.getpid(), 3.0, 7.0)
    with pytest.raises(RuntimeError, match="for a Worker's job"):
        parallel.from_parent()


def test_a_store_is_never_handed_to_a_child(store_path: Path) -> None:
    from geo_lead.parallel import Worker
    from geo_lead.store import opened

    with opened(store_path) as store:
        with pytest.raises(TypeError, match="pass the store's path"):
            Deferred(_pid_and_sum, store)
        with pytest.raises(TypeError, match="open database connection"):
            Deferred(_pid_and_sum, values=store.conn)
        with pytest.raises(TypeError, match="pass the store's path"):
            Worker().submit(_pid_and_sum, (store,))


@pytest.mark.skipif(not os.path.isdir("/proc/self/task"), reason="needs /proc to count OS threads")
def test_native_threads_count_not_only_python_threads(monkeypatch: pytest.MonkeyPatch) -> None:
    """numpy's OpenBLAS workers are OS threads no `threading` call sees: known fork-safe, they
    are allowed; counted as unknown (no threadpoolctl answer), they stop the fork."""
    monkeypatch.delenv(parallel.NO_FORK_ENV, raising=False)
    import threading

    python_threads = threading.active_count() - 1
    os_threads = len(os.listdir("/proc/self/task")) - 1
    if os_threads <= python_threads:
        pytest.skip("no native thread in this process (OpenBLAS single-threaded)")
    monkeypatch.setattr(parallel, "_openblas_workers", lambda: 0)
    monkeypatch.setattr(parallel, "_FORK_SAFE_THREAD_NAMES", frozenset())
    assert parallel.other_threads() >= 1
    assert parallel.fork_blocker() is not None and not parallel.fork_available()
    pid, _ = Deferred(_pid_and_sum, np.ones(2)).result()
    assert pid == os.getpid()  # computed here
