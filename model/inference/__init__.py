"""Inference: the any-size Inpainter, the hole-local plan and the SavedModel serving functions."""
