"""Evaluation: image metrics and the fixed, seeded evaluation masks (no TensorFlow needed)."""
