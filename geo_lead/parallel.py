"""Run a pure computation in a forked child process while this process does other work.

`geo-lead run` spends ~3 s of an incremental run on hotspots (KDE, Gi*) and ~1 s rendering the
report's figures; neither needs the store, so on a machine with two cores they run in a
forked child while the parent scores, sites and draws the maps. The child only computes and
sends its result back through a pipe: every store write stays in the parent, so crash
safety and the single-writer rule are unchanged, and a killed child writes nothing.

Nothing depends on the child: when ``fork`` is unavailable (Windows), `GEO_LEAD_NO_FORK` is
set, or the child fails in any way (an error, killed, a result that cannot be pickled), the
parent computes the same thing itself, so results and error messages are the same as a
sequential run's.
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import os
import sys
from collections.abc import Callable, Sequence
from typing import Any

log = logging.getLogger(__name__)

#: Set this environment variable (to anything) to compute everything in one process.
NO_FORK_ENV = "GEO_LEAD_NO_FORK"
#: A child still computing after this long is killed and the parent computes instead.
CHILD_TIMEOUT_S = 900


def fork_available() -> bool:
    """True where a child can be forked (POSIX, more than one core) and it is not switched off.

    Not while other Python threads run (a notebook's, a dask client's): a lock one of them
    holds at the fork would stay locked in the child forever, so then everything is
    computed in this process (slower, same results).
    """
    import multiprocessing as mp
    import threading

    return (not os.environ.get(NO_FORK_ENV) and "fork" in mp.get_all_start_methods()
            and (os.cpu_count() or 1) > 1 and threading.active_count() == 1)


class Deferred:
    """``fn(*args, **kwargs)``, computed in a forked child when possible; `result()` gets it.

    `fn` must not touch the store or any open file (the child shares the parent's
    descriptors); it may read files by path. Its return value must pickle.
    """

    def __init__(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
        self.fn, self.args, self.kwargs = fn, args, kwargs
        self._proc: Any = None
        self._conn: Any = None
        if fork_available():
            self._proc, self._conn = _fork(_child, (fn, args, kwargs), duplex=False)

    @classmethod
    def here(cls, fn: Callable[[], Any]) -> Deferred:
        """A `Deferred` that computes ``fn()`` in this process when asked (no child)."""
        job = cls.__new__(cls)
        job.fn, job.args, job.kwargs = fn, (), {}
        job._proc = job._conn = None
        return job

    def result(self) -> Any:
        """The child's result, or the same computation done here when the child failed."""
        if self._proc is not None:
            ok, value = False, None
            try:
                if self._wait():
                    ok, value = self._conn.recv()  # before join: a big result would fill the pipe
            except (EOFError, OSError) as exc:  # the child died without answering
                log.debug("child for %s gave no result (%s)", getattr(self.fn, "__name__", self.fn), exc)
            except Exception as exc:  # an unreadable answer (unpickling failed): compute it here
                log.debug("child result unreadable (%s)", exc)
            finally:
                self._conn.close()
                self._proc.join()
                self._proc = None
            if ok:
                return value
        return self.fn(*self.args, **self.kwargs)

    def _wait(self) -> bool:
        """Wait for the child's answer; False when it died or hangs past `CHILD_TIMEOUT_S`."""
        import time

        deadline = time.monotonic() + CHILD_TIMEOUT_S
        while not self._conn.poll(0.05):
            if not self._proc.is_alive():
                return bool(self._conn.poll(0))
            if time.monotonic() > deadline:
                log.warning("child for %s took over %d s; computing it here",
                            getattr(self.fn, "__name__", self.fn), CHILD_TIMEOUT_S)
                self._proc.kill()
                return False
        return True


def _child(send: Any, fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    """In the child: compute, send ``(True, value)``; on any failure ``(False, None)``."""
    try:
        value = fn(*args, **kwargs)
        payload = (True, value)
    except BaseException:  # the parent computes it again and raises the error itself
        payload = (False, None)
    try:
        send.send(payload)
    except Exception:  # e.g. an unpicklable value: tell the parent to compute it
        with contextlib.suppress(Exception):
            send.send((False, None))
    finally:
        send.close()


class Worker:
    """A child forked early, that imports `modules` while this process works, then computes
    the one job `submit` hands it.

    Fork it before this process opens the store: the child then inherits no SQLite
    connection and may open the store itself (read only, its own connection), so it can
    start on data as soon as the parent has committed it. `close` ends it when no job came.
    """

    def __init__(self, modules: Sequence[str] = ()) -> None:
        self._proc: Any = None
        self._conn: Any = None
        if fork_available():
            self._proc, self._conn = _fork(_worker, (tuple(modules),), duplex=True)

    def submit(self, fn: Callable[..., Any], args: Sequence[Any] = (),
               fallback: Callable[[], Any] | None = None) -> Deferred:
        """``fn(*args)`` in the child (`fn` and `args` must pickle); the `Deferred`'s result is
        its value, or ``fallback()`` (default ``fn(*args)``) computed here if the child fails."""
        job = Deferred.here(fallback or (lambda: fn(*args)))
        if self._proc is None:
            return job
        proc, conn = self._proc, self._conn
        self._proc = self._conn = None
        try:
            conn.send((fn, tuple(args)))
        except Exception as exc:  # unpicklable job or a dead child: compute here
            log.debug("worker job not sent (%s)", exc)
            conn.close()
            proc.kill()
            proc.join()
            return job
        job._proc, job._conn = proc, conn
        return job

    def close(self) -> None:
        """End the child if no job was submitted (a no-op otherwise)."""
        if self._proc is None:
            return
        with contextlib.suppress(Exception):
            self._conn.send(None)
        self._conn.close()
        self._proc.join(timeout=5)
        if self._proc.is_alive():
            self._proc.kill()
            self._proc.join()
        self._proc = self._conn = None


def _fork(target: Callable[..., None], args: tuple[Any, ...], duplex: bool) -> tuple[Any, Any]:
    """Fork a daemon child running ``target(child_end, *args)``: ``(process, parent_end)``, or
    ``(None, None)`` when the fork fails (no memory, process limits, ...)."""
    import multiprocessing as mp

    ctx = mp.get_context("fork")
    _flush_std_streams()
    parent_end, child_end = ctx.Pipe(duplex=duplex)  # one-way pipes return (receiver, sender)
    try:
        proc = ctx.Process(target=_child_main, args=(os.getpid(), parent_end, target, child_end, *args),
                           daemon=True)
        proc.start()
    except OSError as exc:
        log.debug("no child process (%s); computing here", exc)
        parent_end.close()
        child_end.close()
        return None, None
    child_end.close()
    return proc, parent_end


#: How often a child checks that its parent is still alive (where PR_SET_PDEATHSIG is not).
PARENT_POLL_S = 1.0
_PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


def _child_main(parent_pid: int, parent_end: Any, target: Callable[..., None], child_end: Any,
                *args: Any) -> None:
    """Start of every child: make sure it dies with its parent, then run `target`.

    * The parent's end of the pipe, inherited at the fork, is closed here: otherwise the child
      itself keeps it open and never sees EOF when the parent dies.
    * On Linux the kernel sends SIGKILL to the child when the parent dies
      (``prctl(PR_SET_PDEATHSIG)``); everywhere a daemon thread also polls ``getppid()``.
    * Ctrl-C reaches the whole process group: the child leaves quietly (no traceback), and
      the parent decides what the interruption means.
    """
    import signal

    signal.signal(signal.SIGINT, lambda *_: os._exit(130))
    with contextlib.suppress(Exception):
        parent_end.close()
    _die_with_parent(parent_pid)
    target(child_end, *args)


def _die_with_parent(parent_pid: int) -> None:
    import signal
    import threading
    import time

    if sys.platform.startswith("linux"):
        with contextlib.suppress(Exception):
            import ctypes

            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)
    if os.getppid() != parent_pid:  # the parent died before prctl took effect
        os._exit(1)

    def watch() -> None:
        while True:
            time.sleep(PARENT_POLL_S)
            if os.getppid() != parent_pid:
                os._exit(1)

    threading.Thread(target=watch, name="geo-lead-parent-watch", daemon=True).start()


def _flush_std_streams() -> None:
    """Unflushed output would be written twice (a forked child inherits the buffers)."""
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(AttributeError, OSError, ValueError):
            stream.flush()


def _worker(conn: Any, modules: tuple[str, ...]) -> None:
    """In the worker child: import `modules`, wait for one ``(fn, args)`` job, answer it."""
    for name in modules:
        with contextlib.suppress(Exception):  # a missing optional module: the job will say
            importlib.import_module(name)
    try:
        job = conn.recv()
    except (EOFError, OSError):  # the parent ended (or was killed) first
        return
    if job is None:
        conn.close()
        return
    fn, args = job
    _child(conn, fn, args, {})
