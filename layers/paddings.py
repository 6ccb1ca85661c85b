"""The padding modes of GenConv (ARCHITECTURE.md §2), defined once: no dependencies, so that
``flags.py`` offers them without importing TensorFlow."""
PADDINGS = ("zero", "reflect", "symmetric")
