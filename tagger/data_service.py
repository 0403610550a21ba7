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
  - The trainer reads the workers in strict rounds (coordinated reads, one
    consumer), so the order is fixed by the worker count: within each round
    of W consecutive batches the workers' batches may come in another order
    than locally. When an epoch's step count is not a multiple of W, a
    round can straddle two epochs, so a batch can move one step across an
    epoch boundary.
  - Evaluation stays on the trainer (it is small and must see every clip
    once).

Workers must read the shard paths the trainer names (a shared file system
or an object store); the dataset graph they run names files, never holds
records.
"""

import dataclasses
import socket
import uuid
from typing import List, Optional, Sequence

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


def free_port() -> int:
  """A TCP port free on loopback now (tests and benchmarks)."""
  with socket.socket() as s:
    s.bind(("localhost", 0))
    return s.getsockname()[1]


def start_dispatcher(port: int, worker_addresses: Sequence[str],
                     job_gc_timeout_s: int = 60) -> service.DispatchServer:
  """A dispatcher for a fixed list of workers (host:port each, as each
  worker announces itself); started, serving until the process ends."""
  if not worker_addresses:
    raise DataServiceError("the dispatcher needs its workers' addresses "
                           "(--worker_addresses=host1:5051,host2:5051): "
                           "the batches are split by worker index")
  for address in worker_addresses:
    split_address(address)
  config = service.DispatcherConfig(
      port=port, protocol="grpc", worker_addresses=list(worker_addresses),
      job_gc_timeout_ms=job_gc_timeout_s * 1000)
  return service.DispatchServer(config)


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

  def stop(self) -> None:
    for worker in self.workers:
      worker._stop()  # pylint: disable=protected-access
    self.dispatcher._stop()  # pylint: disable=protected-access


def local_cluster(port: int, num_workers: int) -> LoopbackCluster:
  """A dispatcher on `port` and workers on the next ports, on loopback."""
  ports = [port + 1 + k for k in range(num_workers)]
  return _cluster(port, ports)


def loopback_cluster(num_workers: int) -> LoopbackCluster:
  """local_cluster on free ports."""
  return _cluster(free_port(), [free_port() for _ in range(num_workers)])


def _cluster(port: int, ports: Sequence[int]) -> LoopbackCluster:
  addresses = [f"localhost:{p}" for p in ports]
  dispatcher = start_dispatcher(port, addresses)
  address = f"localhost:{port}"
  workers = [start_worker(address, p, a) for p, a in zip(ports, addresses)]
  return LoopbackCluster(dispatcher, workers, address)


def split_by_worker(ds: tf.data.Dataset) -> tf.data.Dataset:
  """Keeps this worker's elements (k % W == worker index), filled in by the
  service; a no-op anywhere else."""
  return ds.shard(tf.data.experimental.SHARD_HINT,
                  tf.data.experimental.SHARD_HINT)


def read_from_service(ds: tf.data.Dataset, address: str,
                      pipeline_id: int = 0,
                      count: Optional[int] = None) -> tf.data.Dataset:
  """`ds` run by the service's workers, read in strict rounds.

  count: elements to read (None: ds is endless). Coordinated reads need an
  endless dataset, so ds is repeated and the reader stops at count.
  """
  job = f"tagger-input-{pipeline_id}-{uuid.uuid4().hex[:12]}"
  out = ds.repeat().apply(service.distribute(
      processing_mode=service.ShardingPolicy.HINT,
      service=f"grpc://{split_address(address)}", job_name=job,
      consumer_index=0, num_consumers=1,
      # Float16 log-mel windows barely compress; compressing costs the
      # workers more than it saves on a datacenter network.
      compression=None))
  return out if count is None else out.take(count)
