"""The instruments of the speed benchmarks: peak memory of a process and
its children, examples a second of a step over an iterator, CPU seconds."""

import glob
import os
import resource
import threading
import time


class PeakMemory:
  """Samples the resident memory of this process and all its descendants.

  getrusage's ru_maxrss for children counts the parent's image a spawned
  child holds between fork and exec, so it overstates workers; /proc does
  not. Linux only (elsewhere it reports 0).
  """

  def __init__(self, interval_s: float = 0.2):
    self.interval_s = interval_s
    self.peak_total_mb = 0.0
    self.peak_worker_mb = 0.0
    self._stop = threading.Event()
    self._thread = threading.Thread(target=self._run, daemon=True)

  @staticmethod
  def _rss_mb(pid: int) -> float:
    try:
      with open(f"/proc/{pid}/status", encoding="ascii") as f:
        for line in f:
          if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    except OSError:
      pass
    return 0.0

  @staticmethod
  def _children(pid: int) -> list:
    found = []
    for task in glob.glob(f"/proc/{pid}/task/*/children"):
      try:
        with open(task, encoding="ascii") as f:
          found += [int(c) for c in f.read().split()]
      except OSError:
        pass
    return found + [g for c in found for g in PeakMemory._children(c)]

  def _run(self):
    me = os.getpid()
    while not self._stop.wait(self.interval_s):
      workers = [self._rss_mb(c) for c in self._children(me)]
      self.peak_worker_mb = max([self.peak_worker_mb] + workers)
      self.peak_total_mb = max(self.peak_total_mb,
                               self._rss_mb(me) + sum(workers))

  def __enter__(self):
    self._thread.start()
    return self

  def __exit__(self, *exc):
    self._stop.set()
    self._thread.join()


def rate(iterator, step_fn, warmup: int, steps: int, batch: int) -> float:
  """Examples/s of `steps` batches after `warmup` batches."""
  for _ in range(warmup):
    step_fn(next(iterator))
  start = time.perf_counter()
  for _ in range(steps):
    out = step_fn(next(iterator))
  # The last step's outputs must exist before the clock stops.
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  tf.nest.flatten(out)[0].numpy()
  return steps * batch / (time.perf_counter() - start)


def cpu_seconds() -> float:
  """User + system CPU seconds of this process (not its children)."""
  usage = resource.getrusage(resource.RUSAGE_SELF)
  return usage.ru_utime + usage.ru_stime
