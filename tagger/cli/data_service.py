r"""Starts a tf.data service dispatcher or worker for the training input.

  # one dispatcher, told its workers (the batches are split by worker):
  python -m tools.data_service --role=dispatcher --port=5050 \
      --worker_addresses=host1:5051,host2:5051 --work_dir=/shared/dispatcher
  # on host1 and host2:
  python -m tools.data_service --role=worker --port=5051 \
      --dispatcher=dispatcher-host:5050
  # the trainer:
  python -m tools.train ... --config.input.data_service=dispatcher-host:5050

  # or everything on this machine (a dispatcher and N workers, one process):
  python -m tools.data_service --role=local --num_workers=2 --port=5050

With --work_dir the dispatcher journals its state there: killed and
started again with the same flags, it resumes the running jobs and training
goes on (every batch still once). Without it a restarted dispatcher has
lost the job and training must be restarted from its last checkpoint.

Workers read the shard paths the trainer names: give them the same file
system (shared disk, s3://, gs://, hdfs://). They serve until stopped.
"""

import socket

from absl import app
from absl import flags

from tagger import fileio
from tagger.cli import run_tool
from tagger.input import data_service

FLAGS = flags.FLAGS
flags.DEFINE_enum("role", None, ["dispatcher", "worker", "local"],
                  "What this process runs.", required=False)
flags.DEFINE_integer("port", 5050, "Port to serve on (local: the "
                     "dispatcher's; its workers take the next ones).")
flags.DEFINE_list("worker_addresses", [], "dispatcher: every worker's "
                  "host:port, as each worker announces itself.")
flags.DEFINE_string("dispatcher", "", "worker: the dispatcher's host:port.")
flags.DEFINE_string("worker_address", "", "worker: host:port this worker "
                    "announces (default: this host's name and --port).")
flags.DEFINE_string("work_dir", "", "dispatcher, local: a folder for the "
                    "dispatcher's journal (fault-tolerant mode: a restart "
                    "with the same flags resumes its jobs).")
flags.DEFINE_integer("num_workers", 2, "local: workers to start.")
flags.DEFINE_integer("job_gc_timeout_s", 60, "dispatcher: a job nobody "
                     "reads for this long is dropped.")
flags.mark_flag_as_required("role")


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  fileio.register_filesystem("s3://")  # workers may read any scheme
  if FLAGS.role == "dispatcher":
    server = data_service.start_dispatcher(FLAGS.port, FLAGS.worker_addresses,
                                           FLAGS.job_gc_timeout_s,
                                           FLAGS.work_dir)
    print(f"dispatcher serving on port {FLAGS.port} for workers "
          f"{','.join(FLAGS.worker_addresses)}"
          + (f", journal in {FLAGS.work_dir}" if FLAGS.work_dir else ""),
          flush=True)
  elif FLAGS.role == "worker":
    if not FLAGS.dispatcher:
      raise app.UsageError("--role=worker needs --dispatcher=host:port")
    address = FLAGS.worker_address or f"{socket.getfqdn()}:{FLAGS.port}"
    server = data_service.start_worker(FLAGS.dispatcher, FLAGS.port, address)
    print(f"worker {address} serving for {FLAGS.dispatcher}", flush=True)
  else:
    cluster = data_service.local_cluster(FLAGS.port, FLAGS.num_workers,
                                         FLAGS.work_dir)
    server = cluster.dispatcher
    print(f"dispatcher localhost:{FLAGS.port} with {FLAGS.num_workers} "
          "workers; train with "
          f"--config.input.data_service={cluster.address}", flush=True)
  server.join()


def run():
  run_tool(main)


if __name__ == "__main__":
  run()
