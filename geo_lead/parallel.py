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
import logging
import os
import sys
from collections.abc import Callable
from typing import Any

log = logging.getLogger(__name__)

#: Set this environment variable (to anything) to compute everything in one process.
NO_FORK_ENV = "GEO_LEAD_NO_FORK"
#: A child still computing after this long is killed and the parent computes instead.
CHILD_TIMEOUT_S = 900


def fork_available() -> bool:
    """True where a child can be forked (POSIX) and it is not switched off."""
    import multiprocessing as mp

    return not os.environ.get(NO_FORK_ENV) and "fork" in mp.get_all_start_methods() and (os.cpu_count() or 1) > 1


class Deferred:
    """``fn(*args, **kwargs)``, computed in a forked child when possible; `result()` gets it.

    `fn` must not touch the store or any open file (the child shares the parent's
    descriptors); it may read files by path. Its return value must pickle.
    """

    def __init__(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
        self.fn, self.args, self.kwargs = fn, args, kwargs
        self._proc: Any = None
        self._conn: Any = None
        if not fork_available():
            return
        import multiprocessing as mp

        ctx = mp.get_context("fork")
        # Unflushed output would be written twice (the child inherits the buffers).
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(AttributeError, OSError, ValueError):
                stream.flush()
        recv, send = ctx.Pipe(duplex=False)
        try:
            proc = ctx.Process(target=_child, args=(send, fn, args, kwargs), daemon=True)
            proc.start()
        except OSError as exc:  # no memory for the fork, process limits, ...
            log.debug("no child process (%s); computing %s here", exc, getattr(fn, "__name__", fn))
            recv.close()
            send.close()
            return
        send.close()
        self._proc, self._conn = proc, recv

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
