"""DeepFill v1 models, checkpoint I/O, inference and training utilities."""
