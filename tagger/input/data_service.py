"""tf.data service: the training input's host side on other machines.

A dispatcher knows a fixed list of workers; each worker runs the host side
of `input_pipeline.train_dataset` (read the shards, pair, cut windows) for
its share of the batches and the trainer only receives finished batches.

How the work is split (what stays and what changes against local input):
  - Every worker builds the same per-epoch pairing table from the seed
    (cheap: two permutations of record indices), then keeps only its own
    batches: `shard(SHARD_HINT, SHARD_HINT)` sits between the pairing and
    the window cuts, so the expensive part is split, not repeated, and the
    dispatcher fills in (number of workers, this worker) (ShardingPolicy.
    HINT, which needs the dispatcher's fixed worker list).
  - A batch's content (its clips, partners, target length, windows and
    seeds) depends only on (seed, epoch, step), so every batch is the one
    local input would make, and every clip is once a primary and once a
    partner per epoch, as locally.
  - What changes is the order: the trainer takes batches as the workers
    deliver them (first come, first served), so a batch can come a few
    steps (the workers' buffers) earlier or later than locally, also across
    an epoch boundary; over the run every batch comes exactly once. A
    resumed run restarts at its epoch and gets that epoch's batches.
  - Evaluation stays on the trainer (it is small and must see every clip
    once).

Workers must read the shard paths the trainer names (a shared file system
or an object store); the dataset graph they run names files, never holds
records.
"""

import dataclasses
import socket
from typing import List, Sequence

import tensorflow as tf

from tagger import errors

service = tf.data.experimental.service


class DataServiceError(errors.UserError):
  """A data service address or worker list that cannot work."""


def split_address(address: str) -> str:
  """'grpc://host:port' or 'host:port' -> 'host:port' (checked)."""
  bare = address.split("://", 1)[-1]
  host, _, port = bare.rpartition(":")
  if not host or not port.isdigit():
    raise DataServiceError(f"data service address {address!r} is not "
                           "host:port (e.g. dispatcher-host:5050)")
  return bare


def check_reachable(address: str, timeout_s: float = 10.0) -> None:
  """Refuses an address nothing listens on (the service's client would
  otherwise wait for it forever)."""
  host, _, port = split_address(address).rpartition(":")
  try:
    socket.create_connection((host, int(port)), timeout=timeout_s).close()
  except OSError as e:
    raise DataServiceError(
        f"no tf.data service dispatcher answers at {address} ({e}); start "
        "one with python -m tools.data_service --role=dispatcher") from e


def free_ports(count: int) -> List[int]:
  """`count` different TCP ports free on loopback now (tests, benchmarks).
  All are held open until all are chosen: the OS may otherwise hand out
  one port twice, and gRPC servers share a port (SO_REUSEPORT) silently."""
  sockets = []
  try:
    for _ in range(count):
      s = socket.socket()
      s.bind(("localhost", 0))
      sockets.append(s)
    return [s.getsockname()[1] for s in sockets]
  finally:
    for s in sockets:
      s.close()


def free_port() -> int:
  return free_ports(1)[0]


def start_dispatcher(port: int, worker_addresses: Sequence[str],
                     job_gc_timeout_s: int = 60,
                     work_dir: str = "") -> service.DispatchServer:
  """A dispatcher for a fixed list of workers (host:port each, as each
  worker announces itself); started, serving until the process ends.

  With work_dir (a folder every restart of this dispatcher sees), it runs
  fault-tolerant: it journals its state (jobs, tasks, which worker serves
  which share) there before it answers, so a dispatcher that is killed
  and started again with the same port and work_dir resumes its jobs; the
  workers and the trainer wait for it and go on, and every batch still
  comes once. Without it, a restarted dispatcher knows no job and the
  trainer's reads fail."""
  if not worker_addresses:
    raise DataServiceError("the dispatcher needs its workers' addresses "
                           "(--worker_addresses=host1:5051,host2:5051): "
                           "the batches are split by worker index")
  for address in worker_addresses:
    split_address(address)
  config = service.DispatcherConfig(
      port=port, protocol="grpc", worker_addresses=list(worker_addresses),
      job_gc_timeout_ms=job_gc_timeout_s * 1000,
      work_dir=work_dir or None, fault_tolerant_mode=bool(work_dir))
  try:
    return service.DispatchServer(config)
  except RuntimeError as e:   # the journal's folder cannot be made or read
    if not work_dir:
      raise
    raise DataServiceError(f"--work_dir {work_dir}: the dispatcher cannot "
                           f"keep its journal there ({e})") from e


def start_worker(dispatcher: str, port: int,
                 worker_address: str) -> service.WorkerServer:
  """A worker of `dispatcher` serving on `port`, announcing itself as
  `worker_address` (must be one of the dispatcher's worker addresses)."""
  config = service.WorkerConfig(
      dispatcher_address=split_address(dispatcher),
      worker_address=split_address(worker_address), port=port,
      protocol="grpc")
  return service.WorkerServer(config)


@dataclasses.dataclass
class LoopbackCluster:
  """A dispatcher and workers in this process on loopback (tests,
  benchmarks); `address` is what --config.input.data_service takes."""
  dispatcher: service.DispatchServer
  workers: List[service.WorkerServer]
  address: str
  worker_addresses: List[str]

  def stop(self) -> None:
    for worker in self.workers:
      worker._stop()  # pylint: disable=protected-access
    self.dispatcher._stop()  # pylint: disable=protected-access


def local_cluster(port: int, num_workers: int,
                  work_dir: str = "") -> LoopbackCluster:
  """A dispatcher on `port` and workers on the next ports, on loopback."""
  ports = [port + 1 + k for k in range(num_workers)]
  return _cluster(port, ports, work_dir)


def loopback_cluster(num_workers: int, work_dir: str = "") -> LoopbackCluster:
  """local_cluster on free ports."""
  port, *ports = free_ports(num_workers + 1)
  return _cluster(port, ports, work_dir)


def _cluster(port: int, ports: Sequence[int],
             work_dir: str = "") -> LoopbackCluster:
  addresses = [f"localhost:{p}" for p in ports]
  dispatcher = start_dispatcher(port, addresses, work_dir=work_dir)
  address = f"localhost:{port}"
  workers = [start_worker(address, p, a) for p, a in zip(ports, addresses)]
  return LoopbackCluster(dispatcher, workers, address, addresses)


def split_by_worker(ds: tf.data.Dataset) -> tf.data.Dataset:
  """Keeps this worker's elements (k % W == worker index), filled in by the
  service; a no-op anywhere else."""
  return ds.shard(tf.data.experimental.SHARD_HINT,
                  tf.data.experimental.SHARD_HINT)


def read_from_service(ds: tf.data.Dataset, address: str) -> tf.data.Dataset:
  """`ds` run by the service's workers (each its shard, split_by_worker),
  read first come, first served: every element exactly once, in the order
  the workers deliver them.

  (Coordinated reads would fix the order, but need an endless dataset and
  were seen to take a round twice from one worker when the other's task
  started late: a batch twice, another never.)
  """
  return ds.apply(service.distribute(
      processing_mode=service.ShardingPolicy.HINT,
      service=f"grpc://{split_address(address)}",
      # Float16 log-mel windows barely compress; compressing costs the
      # workers more than it saves on a datacenter network.
      compression=None))


def explain_lost_job(address: str, error: Exception) -> Exception:
  """A read error of the service as one line where it is a dispatcher
  that was restarted without its journal (the job it served is gone);
  else `error` itself."""
  if "not configured to be fault tolerant" not in str(error):
    return error
  return DataServiceError(
      f"the tf.data service dispatcher at {address} was restarted without "
      "a journal and lost this run's job: start it with --work_dir (then a "
      "restart resumes its jobs) and run the same command to resume from "
      "the last checkpoint")


class LostBatchesError(DataServiceError):
  """Batches the service never delivered (a worker stopped): the run
  stops rather than train on an epoch missing a share of its data."""


class BatchAccount:
  """Counts the training batches the service delivers, by the epoch each
  was made for, and checks that every epoch comes whole.

  Batches arrive first come, first served, so a fast worker can run
  epochs ahead of a slow one (with small epochs, many epochs): lateness
  alone says nothing. An epoch short of its `per_epoch` batches counts as
  lost once `lost_after` batches of later epochs (and at least two
  epochs' worth) have come after it: a stopped worker's share never
  comes, and the run stops with one line instead of finishing on the
  other workers' batches without a word."""

  def __init__(self, per_epoch: int, first_epoch: int, address: str,
               lost_after: int):
    self.per_epoch, self.first_epoch = per_epoch, first_epoch
    self.address = address
    self.lost_after = max(int(lost_after), 2 * per_epoch)
    self.counts = {}

  def add(self, epochs) -> None:
    """epochs: the data epoch of each per-replica batch of one step."""
    for epoch in epochs:
      self.counts[int(epoch)] = self.counts.get(int(epoch), 0) + 1

  def check(self) -> None:
    """Raises LostBatchesError for an epoch whose missing batches are
    past waiting for."""
    if not self.counts:
      return
    for epoch in range(self.first_epoch, max(self.counts)):
      got = self.counts.get(epoch, 0)
      after = sum(n for e, n in self.counts.items() if e > epoch)
      if got < self.per_epoch and after >= self.lost_after:
        raise LostBatchesError(
            f"the tf.data service at {self.address} delivered {got} of "
            f"epoch {epoch}'s {self.per_epoch} batches while {after} "
            f"batches of later epochs came (up to epoch {max(self.counts)})"
            ": a worker stopped and its share of the data was lost. "
            "Restart the worker (tools/data_service --role=worker ...) and "
            "run the same command to resume from the last checkpoint")
