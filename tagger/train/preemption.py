"""Stopping a run cleanly when it is told to: SIGTERM and SIGINT.

Preemptible cloud GPUs and Kubernetes end a job with SIGTERM, a grace
period, then SIGKILL. Killed outright, a run loses everything since its
last epoch-end checkpoint (hours at AudioSet scale). Under StopSignals the
first SIGTERM or SIGINT only sets a flag: the trainer ends the step in
flight, writes a checkpoint that resumes at the next step exactly
(RunState.epoch_step), and exits with PREEMPTED_EXIT. A second signal acts
as it would without this (the previous handler): a stuck run can still be
stopped.
"""

import signal
import threading

from tagger import errors

PREEMPTED_EXIT = 75   # EX_TEMPFAIL: re-run the same command to resume
SIGNALS = (signal.SIGTERM, signal.SIGINT)


class Preempted(errors.UserError):
  """The run stopped on a signal after writing a checkpoint."""
  exit_status = PREEMPTED_EXIT


class StopSignals:
  """Context manager: `requested` names the first signal received ('' when
  none). Handlers are installed only in the main thread (Python allows no
  other); elsewhere nothing changes and requested stays ''."""

  def __init__(self, signals=SIGNALS):
    self.signals = tuple(signals)
    self.requested = ""
    self._previous = {}

  def _handle(self, signum, frame):
    del frame
    self.requested = signal.Signals(signum).name
    for sig, handler in self._previous.items():   # a second one: as before
      signal.signal(sig, handler)

  def __enter__(self):
    if threading.current_thread() is threading.main_thread():
      for sig in self.signals:
        self._previous[sig] = signal.signal(sig, self._handle)
    return self

  def __exit__(self, *exc):
    for sig, handler in self._previous.items():
      signal.signal(sig, handler)
    self._previous = {}
    return False
