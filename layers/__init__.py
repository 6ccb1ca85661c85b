"""Keras 3 layers of DeepFill (generator convs, critic convs, contextual attention)."""
