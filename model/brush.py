"""Brush-stroke (free-form) mask parameters of the DeepFill v2 release, at 256×256 (ARCHITECTURE.md §6.1).

Shared by the TF training masks (``model/training/masks.py``) and the NumPy evaluation masks
(``model/evaluation/masks.py``); widths and lengths scale with the image diagonal.
"""
import math

MIN_NUM_VERTEX = 4
MAX_NUM_VERTEX = 11
MAX_NUM_STROKES = 3
MEAN_ANGLE = 2.0 * math.pi / 5.0
ANGLE_RANGE = 2.0 * math.pi / 15.0
MIN_WIDTH = 12.0
MAX_WIDTH = 40.0
REFERENCE_DIAGONAL = 256.0 * math.sqrt(2.0)
