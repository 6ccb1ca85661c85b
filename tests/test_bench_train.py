"""bench/bench_train.py's FLOP count of a traced step, against hand-counted convolutions."""
import os
import sys

import tensorflow as tf

from conftest import REPO

sys.path.insert(0, os.path.join(REPO, "bench"))
import bench_train  # noqa: E402  pylint: disable=wrong-import-position


def test_graph_flops_counts_forward_and_both_conv_gradients():
  kernel = tf.Variable(tf.ones([3, 3, 3, 4]))
  weights = tf.Variable(tf.ones([4, 5]))

  @tf.function
  def step(x):
    with tf.GradientTape() as tape:
      tape.watch(x)
      y = tf.nn.conv2d(x, kernel, 1, "SAME")                 # [2, 8, 8, 4]
      z = tf.matmul(tf.reshape(y, [128, 4]), weights)         # [128, 5]
      loss = tf.reduce_sum(z)
    return [loss, *tape.gradient(loss, [x, kernel])]

  flops = bench_train.graph_flops(step.get_concrete_function(tf.TensorSpec([2, 8, 8, 3])))
  conv = 2 * (2 * 8 * 8 * 4) * (3 * 3 * 3)       # multiply-adds x 2 of one 3x3x3 -> 4 conv
  assert flops["conv"] == 3 * conv                 # forward, input and filter gradients
  matmul = 2 * 128 * 5 * 4
  # Forward and the gradient of its left input; the graph also holds the gradient of
  # ``weights``, which nothing uses (TensorFlow prunes it): not counted.
  assert flops["matmul"] == 2 * matmul
  assert sum(op.type == "MatMul" for op in step.get_concrete_function(
      tf.TensorSpec([2, 8, 8, 3])).graph.get_operations()) == 3
  assert flops["uncounted"] == 0
