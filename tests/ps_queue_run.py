"""The tasks of test_negative_queue.py's cluster: one NegativeQueue under parameter servers.

Started by `cluster_local.LocalCluster` as chief, 2 workers and 2 ps (TF_CONFIG);
ps and workers serve. The chief's ClusterCoordinator schedules steps that each
enqueue a batch of distinct ids and draw, on whichever worker is free, and
prints ``RESULT <json>``: the queue's counters and contents, which worker ran
which batch, and a draw made after all steps.
"""

import json

import egin_tf.train  # noqa: F401  (first: Keras 2 before anything uses tf.keras)
from data_pipeline.tf_env import tf
from egin_tf.train import distribute
from egin_tf.layers.negative_queue import NegativeQueue

CAPACITY = 40_000  # 320 KB of int64: above MIN_SHARD_BYTES, so split over the ps
BATCHES, BATCH = 24, 50


def _strategy() -> tf.distribute.ParameterServerStrategy:
  resolver = tf.distribute.cluster_resolver.TFConfigClusterResolver()
  return tf.distribute.ParameterServerStrategy(
      resolver, variable_partitioner=distribute.table_partitioner(2))


def main():
  task = distribute.current_task()
  if task.serves_only:
    distribute.serve_forever(task)
    return
  strategy = _strategy()
  coordinator = tf.distribute.coordinator.ClusterCoordinator(strategy)
  with strategy.scope():
    queue = NegativeQueue(capacity=CAPACITY, num_negatives=BATCHES * BATCH, seed=1)
    queue.build(None)

  @tf.function
  def step(ids):
    queue.enqueue(ids)
    worker = tf.distribute.coordinator.experimental_get_current_worker_index()
    return worker, queue.sample().ids

  batches = [tf.range(k * 1000 + 1, k * 1000 + 1 + BATCH, dtype=tf.int64)
             for k in range(BATCHES)]
  runs = [coordinator.schedule(step, args=(ids,)) for ids in batches]
  coordinator.join()
  final = coordinator.schedule(tf.function(lambda: queue.sample().ids))
  coordinator.join()
  shards = getattr(queue.ids, "variables", [queue.ids])  # a ShardedVariable's parts
  print("RESULT " + json.dumps({
      "workers": [int(r.fetch()[0]) for r in runs],
      "draws": [r.fetch()[1].tolist() for r in runs],
      "final_draw": final.fetch().tolist(),
      "ids": tf.concat(shards, axis=0).numpy().tolist(),
      "id_devices": [v.device for v in shards],
      "write_position": int(queue.write_position.numpy()),
      "filled": int(queue.filled.numpy()),
      "sample_step": int(queue.sample_step.numpy()),
  }), flush=True)


if __name__ == "__main__":
  main()
