"""Run a pure computation in a forked child process while this process does other work.

`geo-lead run` computes hotspots, site and the report's figures in forked children while the
parent scores and draws the maps. A child only computes and sends its result back through a
pipe: every store write stays in the parent, so crash safety and the single-writer rule are
unchanged, and a killed child writes nothing.

Contract of a child job (`Deferred`, `Worker.submit`):

* Its inputs are plain data (frames, paths, numbers): never an open store or database
  connection (`Deferred` raises `TypeError` for one). A `Deferred`'s inputs reach the child
  by the fork itself; a `Worker`'s job is pickled.
* An exception raised in the child is raised here, by `result`, with the child's formatted
  traceback as its ``__cause__`` (`ChildTraceback`); it is not computed again.
* A `Worker`'s job may wait for one more value from the parent (`from_parent`), which the
  parent sends with `Deferred.send` once it has it (e.g. once it has committed what the job
  reads next).
* A child that cannot answer (it died, its answer or its error does not pickle, it used no CPU
  time for `settings.CHILD_IDLE_S`, or it gave no answer within `settings.CHILD_TIMEOUT_S`) is
  logged as a warning naming what happened, and the same computation is done here, so the
  result is the same as a sequential run's.
* Nothing is forked when ``fork`` is unavailable (Windows), `GEO_LEAD_NO_FORK` is set, there
  is one core, or another thread runs that a fork could copy while it holds a lock
  (`fork_blocker`); everything is then computed here.
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import os
import pickle
import sqlite3
import sys
import time
import traceback
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Generic, TypeVar

if TYPE_CHECKING:
    from multiprocessing.connection import Connection
    from multiprocessing.process import BaseProcess

log = logging.getLogger(__name__)

T = TypeVar("T")

#: Set this environment variable (to anything) to compute everything in one process.
NO_FORK_ENV = "GEO_LEAD_NO_FORK"
#: Name of the threads jemalloc (pyarrow's allocator) runs; it re-creates them after a fork.
_FORK_SAFE_THREAD_NAMES = frozenset({"jemalloc_bg_thd"})

_forks = 0


def forks() -> int:
    """How many children this process has forked so far (tests check the fork path is taken)."""
    return _forks


def fork_available() -> bool:
    """True where a child can be forked now (`fork_blocker` gives no reason not to)."""
    return fork_blocker() is None


def fork_blocker() -> str | None:
    """Why no child can be forked now, or None when one can.

    A fork copies only the calling thread: a lock another thread holds at that moment stays
    locked in the child forever. So no child is forked while any other thread runs, counted
    by the operating system (``/proc/self/task`` on Linux; Python threads elsewhere), except
    the native pools known to re-initialise in a child: OpenBLAS's workers (counted through
    threadpoolctl) and jemalloc's background thread.
    """
    import multiprocessing as mp

    if os.environ.get(NO_FORK_ENV):
        return f"{NO_FORK_ENV} is set"
    if "fork" not in mp.get_all_start_methods():
        return "this platform cannot fork"
    if (os.cpu_count() or 1) < 2:
        return "one core"
    others = other_threads()
    if others:
        return f"{others} other thread(s) run in this process"
    return None


def other_threads() -> int:
    """Threads of this process besides the calling one that make a fork unsafe.

    Every other Python thread counts. On Linux the OS threads that are not Python threads
    count too, less OpenBLAS's workers and jemalloc's background thread (both fork-safe).
    """
    import threading

    current = threading.current_thread()
    python = [t for t in threading.enumerate() if t is not current and t.is_alive()]
    if python:
        return len(python)
    try:
        tids = os.listdir("/proc/self/task")
    except OSError:  # no /proc: Python threads are all that can be counted
        return 0
    native = [t for t in tids if int(t) != threading.get_native_id()]
    if not native:
        return 0
    named_safe = sum(_thread_name(t) in _FORK_SAFE_THREAD_NAMES for t in native)
    return max(0, len(native) - named_safe - _openblas_workers())


def _thread_name(tid: str) -> str:
    try:
        with open(f"/proc/self/task/{tid}/comm", encoding="utf-8") as fh:
            return fh.read().strip()
    except OSError:  # the thread ended meanwhile
        return ""


def _openblas_workers() -> int:
    """Worker threads of the OpenBLAS libraries loaded (each runs ``num_threads - 1``)."""
    try:
        from threadpoolctl import threadpool_info
    except ImportError:  # without it OpenBLAS's workers are not told apart: no fork
        return 0
    return sum(max(0, int(info.get("num_threads", 1)) - 1) for info in threadpool_info()
               if info.get("internal_api") == "openblas")


class ChildTraceback(Exception):
    """The formatted traceback of an exception raised in a child: the ``__cause__`` of the
    exception `Deferred.result` raises here."""

    def __init__(self, text: str) -> None:
        super().__init__(text)
        self.text = text

    def __str__(self) -> str:
        return f'\n"""\n{self.text}"""'


@dataclass(frozen=True)
class _Answer:
    """What a child sends back: its value, or the error it raised (None when the error does
    not pickle) with the formatted traceback, or why its answer could not be sent."""

    kind: str  # "value", "raised" or "unsent"
    value: object = None
    error: BaseException | None = None
    text: str = ""


def _timeout_s() -> float:
    from geo_lead import settings

    return float(settings.CHILD_TIMEOUT_S)


def _idle_s() -> float:
    from geo_lead import settings

    return float(settings.CHILD_IDLE_S)


def cpu_seconds(pid: int) -> float | None:
    """CPU time (user + system) process `pid` has used, from ``/proc/<pid>/stat``; None where
    that cannot be read (not Linux, or the process is gone)."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as fh:
            fields = fh.read().rpartition(")")[2].split()
    except OSError:
        return None
    try:  # fields 14 and 15 of stat(5): utime, stime in clock ticks (here from field 3 on)
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (IndexError, ValueError, OSError):
        return None


def refuse_open_resources(args: Sequence[object], kwargs: Mapping[str, object]) -> None:
    """Raise `TypeError` when an argument is an open database connection or holds one (a store).

    A forked child must not use the parent's connection: SQLite's locks and journal state
    belong to the process that opened it. Pass the store's path, or read what the job needs
    first.
    """
    for name, value in [*((f"argument {i + 1}", a) for i, a in enumerate(args)), *kwargs.items()]:
        if isinstance(value, sqlite3.Connection) or isinstance(getattr(value, "conn", None), sqlite3.Connection):
            msg = (f"{name} of a child job is {type(value).__name__} with an open database connection;"
                   " pass the store's path, or read what the job needs before forking")
            raise TypeError(msg)


class Deferred(Generic[T]):
    """``fn(*args, **kwargs)``, computed in a forked child when possible; `result()` gets it.

    The inputs reach the child by the fork (they are not pickled) and must not be an open
    store or connection (`TypeError`); the return value must pickle. `fn` may read files by
    path.
    """

    def __init__(self, fn: Callable[..., T], *args: object, **kwargs: object) -> None:
        refuse_open_resources(args, kwargs)
        self.fn, self.args, self.kwargs = fn, args, kwargs
        self._name: str | None = None
        self._proc: BaseProcess | None = None
        self._conn: Connection | None = None
        if fork_available():
            self._proc, self._conn = _fork(_child, (fn, args, kwargs), duplex=False)

    @classmethod
    def here(cls, fn: Callable[[], T], name: str | None = None) -> Deferred[T]:
        """A `Deferred` that computes ``fn()`` in this process when asked (no child); `name`
        names the job in warnings (default: `fn`'s)."""
        job: Deferred[T] = cls.__new__(cls)
        job.fn, job.args, job.kwargs = fn, (), {}
        job._proc = job._conn = None
        job._name = name
        return job

    @property
    def in_child(self) -> bool:
        """True while a forked child computes the job (False: `result` computes it here, or has
        answered already)."""
        return self._proc is not None

    @property
    def name(self) -> str:
        """The job's name in warnings."""
        return getattr(self, "_name", None) or _name(self.fn)

    def send(self, value: object) -> None:
        """Hand `value` to a `Worker` job waiting for it (`from_parent`). A no-op without a child
        (the job is computed here, from this process's own data); a child that is gone is
        found out by `result`. A value bigger than the pipe holds (~200 KB pickled) waits here
        until the job reads it."""
        if self._proc is None or self._conn is None:
            return
        try:
            self._conn.send(_Later(value))
        except (OSError, ValueError) as exc:
            log.debug("value not sent to the child computing %s: %r", self.name, exc)

    def answered(self) -> bool:
        """True when `result` would not wait: the child has answered (or ended), or there is no
        child (computed here on `result`). Does not wait itself."""
        if self._proc is None or self._conn is None:
            return True
        try:
            return bool(self._conn.poll(0)) or not self._proc.is_alive()
        except (OSError, ValueError):  # a closed pipe: `result` reports it
            return True

    def result(self) -> T:
        """The child's result; its exception raised here; or, when the child could not answer,
        the same computation done here (with a warning saying why)."""
        if self._proc is None or self._conn is None:
            return self.fn(*self.args, **self.kwargs)
        answer = self._collect(self._proc, self._conn)
        self._proc = self._conn = None
        if answer.kind == "value":
            return answer.value  # type: ignore[return-value]
        if answer.kind == "raised" and answer.error is not None:
            raise answer.error from ChildTraceback(answer.text)
        if answer.kind == "raised":
            log.warning("the child computing %s raised an error that does not pickle; computing it in"
                        " this process. The child's traceback:\n%s", self.name, answer.text)
        else:
            log.warning("the child computing %s gave no result (%s); computing it in this process",
                        self.name, answer.text)
        return self.fn(*self.args, **self.kwargs)

    def _collect(self, proc: BaseProcess, conn: Connection) -> _Answer:
        """Wait for the child's answer and end the child."""
        try:
            waited = self._wait(proc, conn)
            if waited is not None:
                return waited
            answer = conn.recv()  # before join: a big result would fill the pipe
            return answer if isinstance(answer, _Answer) else _Answer("unsent", text="an unknown answer")
        except (EOFError, OSError):
            proc.join(timeout=5)
            return _Answer("unsent", text=f"it ended without answering (exit code {proc.exitcode})")
        except Exception as exc:  # its answer does not unpickle here
            return _Answer("unsent", text=f"its answer could not be read: {exc!r}")
        finally:
            conn.close()
            proc.join()

    def _wait(self, proc: BaseProcess, conn: Connection) -> _Answer | None:
        """None once an answer is ready; else why none will come: the child died, or it hung
        (no CPU time used for `settings.CHILD_IDLE_S`, or no answer within
        `settings.CHILD_TIMEOUT_S`) and was killed."""
        timeout_s, idle_s = _timeout_s(), _idle_s()
        started = time.monotonic()
        cpu, busy_at = cpu_seconds(proc.pid or 0), started
        while not conn.poll(0.25):  # returns as soon as the answer arrives
            if not proc.is_alive():
                if conn.poll(0):
                    return None
                proc.join()
                return _Answer("unsent", text=f"it ended without answering (exit code {proc.exitcode})")
            now, used = time.monotonic(), cpu_seconds(proc.pid or 0)
            if used is None or used != cpu:
                cpu, busy_at = used, now
            if now - busy_at > idle_s:
                proc.kill()
                return _Answer("unsent", text=(
                    f"it used no CPU time for {idle_s:g} s: hung (settings.CHILD_IDLE_S, environment "
                    f"variable GEO_LEAD_CHILD_IDLE_S; {NO_FORK_ENV}=1 computes everything in one "
                    "process); the child was killed"))
            if now - started > timeout_s:
                proc.kill()
                return _Answer("unsent", text=(
                    f"no answer within {timeout_s:g} s (settings.CHILD_TIMEOUT_S; raise it with the "
                    f"environment variable GEO_LEAD_CHILD_TIMEOUT_S, or set {NO_FORK_ENV}=1 to compute "
                    "everything in one process); the child was killed"))
        return None


def _name(fn: Callable[..., object]) -> str:
    return str(getattr(fn, "__qualname__", fn))


def _child(send: Connection, fn: Callable[..., object], args: tuple[object, ...],
           kwargs: dict[str, object]) -> None:
    """In the child: compute and send a `_Answer` (the value, or the error with its traceback)."""
    try:
        answer = _Answer("value", value=fn(*args, **kwargs))
    except BaseException as exc:  # sent to the parent, which raises it
        answer = _Answer("raised", error=_picklable(exc), text="".join(traceback.format_exception(exc)))
    try:
        send.send(answer)
    except Exception as exc:  # e.g. an unpicklable value: the parent computes it itself
        with contextlib.suppress(Exception):
            send.send(_Answer("unsent", text=f"its result does not pickle: {exc!r}"))
    finally:
        send.close()


def _picklable(exc: BaseException) -> BaseException | None:
    """`exc` when it survives a pickle round trip (its traceback is sent as text), else None."""
    try:
        pickle.loads(pickle.dumps(exc))
    except Exception:
        return None
    return exc


class Worker:
    """A child forked early, that imports `modules` while this process works, then computes
    the one job `submit` hands it.

    Fork it before this process opens the store: the child then inherits no SQLite
    connection and may open the store itself (read only, its own connection), so it can
    start on data as soon as the parent has committed it. `close` ends it when no job came.
    `prefetch` has it import more modules before the job, once this process knows the job
    will need them.
    """

    def __init__(self, modules: Sequence[str] = ()) -> None:
        self._proc: BaseProcess | None = None
        self._conn: Connection | None = None
        if fork_available():
            self._proc, self._conn = _fork(_worker, (tuple(modules),), duplex=True)

    def prefetch(self, modules: Sequence[str]) -> None:
        """Have the child import `modules` now, before the job `submit` will hand it (in that
        order: the job starts after them). A no-op without a child or after `submit`; a
        missing module is no error (the job will say)."""
        if self._proc is None or self._conn is None or not modules:
            return
        try:
            self._conn.send(_Prefetch(tuple(modules)))
        except OSError as exc:  # a dead child: `submit` will find out and compute here
            log.debug("prefetch not sent to the worker child: %r", exc)

    def submit(self, fn: Callable[..., T], args: Sequence[object] = (),
               fallback: Callable[[], T] | None = None) -> Deferred[T]:
        """``fn(*args)`` in the child (`fn` and `args` must pickle). The `Deferred`'s result is
        its value, or the error it raised; ``fallback()`` (default ``fn(*args)``) is computed
        here when there is no child or it cannot answer."""
        refuse_open_resources(args, {})
        job = Deferred.here(fallback or (lambda: fn(*args)), name=_name(fn))
        if self._proc is None or self._conn is None:
            return job
        proc, conn = self._proc, self._conn
        self._proc = self._conn = None
        try:
            conn.send((fn, tuple(args)))
        except Exception as exc:  # unpicklable job or a dead child: compute here
            log.warning("the job %s could not be sent to its child (%r); computing it in this process",
                        _name(fn), exc)
            conn.close()
            proc.kill()
            proc.join()
            return job
        job._proc, job._conn = proc, conn
        return job

    def close(self) -> None:
        """End the child if no job was submitted (a no-op otherwise)."""
        if self._proc is None or self._conn is None:
            return
        with contextlib.suppress(Exception):
            self._conn.send(None)
        self._conn.close()
        self._proc.join(timeout=5)
        if self._proc.is_alive():
            self._proc.kill()
            self._proc.join()
        self._proc = self._conn = None


def _fork(target: Callable[..., None], args: tuple[object, ...],
          duplex: bool) -> tuple[BaseProcess | None, Connection | None]:
    """Fork a daemon child running ``target(child_end, *args)``: ``(process, parent_end)``, or
    ``(None, None)`` when the fork fails (no memory, process limits, ...)."""
    import multiprocessing as mp

    global _forks
    ctx = mp.get_context("fork")
    _flush_std_streams()
    parent_end, child_end = ctx.Pipe(duplex=duplex)  # one-way pipes return (receiver, sender)
    try:
        proc = ctx.Process(target=_child_main, args=(os.getpid(), parent_end, target, child_end, *args),
                           daemon=True)
        proc.start()
    except OSError as exc:
        log.warning("no child process (%s); computing in this process", exc)
        parent_end.close()
        child_end.close()
        return None, None
    _forks += 1
    child_end.close()
    return proc, parent_end


#: How often a child checks that its parent is still alive (where PR_SET_PDEATHSIG is not).
PARENT_POLL_S = 1.0
_PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


def _child_main(parent_pid: int, parent_end: Connection, target: Callable[..., None], child_end: Connection,
                *args: object) -> None:
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


@dataclass(frozen=True)
class _Later:
    """A message to a `Worker`'s job: the value it waits for (`Deferred.send`, `from_parent`)."""

    value: object


#: The pipe of the `Worker` job running in this process (`from_parent`); None elsewhere.
_job_conn: Connection | None = None


def from_parent() -> object:
    """In a `Worker`'s job: the value the parent sends with `Deferred.send` (waits for it).

    Raises
    ------
    RuntimeError
        Called outside a worker child's job.
    EOFError
        The parent closed the pipe (it ended, or dropped the job) without sending it.
    """
    if _job_conn is None:
        raise RuntimeError("from_parent is for a Worker's job, in its child")
    message = _job_conn.recv()
    if not isinstance(message, _Later):
        raise RuntimeError(f"the worker's parent sent {type(message).__name__}, not a value for the job")
    return message.value


@dataclass(frozen=True)
class _Prefetch:
    """A message to a `Worker`'s child: import these modules (`Worker.prefetch`)."""

    modules: tuple[str, ...]


def _import_all(modules: Sequence[str]) -> None:
    for name in modules:
        with contextlib.suppress(Exception):  # a missing optional module: the job will say
            importlib.import_module(name)


def _worker(conn: Connection, modules: tuple[str, ...]) -> None:
    """In the worker child: import `modules` (and those of any `_Prefetch` message), wait for
    one ``(fn, args)`` job, answer it."""
    _import_all(modules)
    try:
        job = conn.recv()
        while isinstance(job, _Prefetch):
            _import_all(job.modules)
            job = conn.recv()
    except (EOFError, OSError):  # the parent ended (or was killed) first
        return
    if job is None:
        conn.close()
        return
    global _job_conn
    fn, args = job
    _job_conn = conn
    _child(conn, fn, args, {})
