"""File I/O: robust image and mask reading, header checks and atomic writes (no TensorFlow)."""
