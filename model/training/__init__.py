"""Training: tf.data input, training masks, losses, the train step, validation and summaries."""
