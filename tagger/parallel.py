"""Work over many clips in worker processes: ordered map, progress bar,
worker lifetime. Used by sharding and by scoring raw audio.

Workers are spawned (TensorFlow is not fork-safe) and never import
TensorFlow. A worker ends when its parent dies, however the parent dies
(kill -9 included): the kernel sends it SIGKILL (PR_SET_PDEATHSIG), and a
watchdog thread checks the parent on systems without that call.
"""

import collections
import concurrent.futures
import contextlib
import ctypes
import multiprocessing
import os
import signal
import sys
import threading
import time
import types
from typing import Callable, Iterator

_PR_SET_PDEATHSIG = 1


def progress_bar(total: int, initial: int = 0, enabled: bool = True,
                 unit: str = "clip", desc: str = "features"):
  """A tqdm bar with rate and ETA; in a log file (CI, nohup) one line every
  10 s, not one per update."""
  from tqdm import auto as tqdm  # pylint: disable=g-import-not-at-top
  interval = 0.1 if sys.stderr.isatty() else 10.0
  return tqdm.tqdm(total=total, initial=initial, unit=unit,
                   disable=not enabled, smoothing=0.05, dynamic_ncols=True,
                   mininterval=interval, desc=desc)


def _die_with_parent(parent_pid: int) -> None:
  """In a worker: end when the parent process ends."""
  try:
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
  except (OSError, AttributeError):
    pass  # not Linux: the watchdog below still ends the worker
  if os.getppid() != parent_pid:  # the parent died before prctl
    os._exit(1)  # pylint: disable=protected-access

  def watch():
    while True:
      time.sleep(1.0)
      if os.getppid() != parent_pid:
        os._exit(1)  # pylint: disable=protected-access
  threading.Thread(target=watch, daemon=True, name="parent-watch").start()


def _start_worker(parent_pid: int, initializer, initargs) -> None:
  _die_with_parent(parent_pid)
  initializer(*initargs)


def ordered_parallel_map(fn: Callable, items: Iterator, num_workers: int,
                         initializer: Callable, initargs: tuple,
                         in_flight_per_worker: int = 2,
                         size: Callable = lambda item: 0,
                         max_in_flight_size: int = 1 << 30) -> Iterator:
  """fn over items in worker processes, results in input order.

  Tasks are submitted while fewer than in_flight_per_worker per worker are
  pending and their total size(item) (clip bytes) is under
  max_in_flight_size (one task always goes), so what is read ahead stays
  bounded whatever the dataset and its files' sizes. fn, initializer and
  the items must be picklable.
  """
  initializer(*initargs)  # also in this process, for the inline path
  if num_workers <= 1:
    yield from map(fn, items)
    return
  context = multiprocessing.get_context("spawn")
  with _workers_skip_main_module(), concurrent.futures.ProcessPoolExecutor(
      num_workers, mp_context=context, initializer=_start_worker,
      initargs=(os.getpid(), initializer, initargs)) as pool:
    pending = collections.deque()  # (future, size)
    for item in items:
      pending.append((pool.submit(fn, item), size(item)))
      while pending and (
          len(pending) >= in_flight_per_worker * num_workers or
          sum(s for _, s in pending) >= max_in_flight_size):
        yield pending.popleft()[0].result()
    while pending:
      yield pending.popleft()[0].result()


@contextlib.contextmanager
def _workers_skip_main_module():
  """Spawned workers re-import the parent's __main__ (a tool, which imports
  TensorFlow: ~600 MB and seconds per worker). They need only fn's module,
  so while the pool starts processes __main__ is a bare module."""
  real_main = sys.modules["__main__"]
  sys.modules["__main__"] = types.ModuleType("__main__")
  try:
    yield
  finally:
    sys.modules["__main__"] = real_main
