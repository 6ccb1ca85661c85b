"""Reproducible evaluation masks (NumPy + OpenCV, no TensorFlow): v1 boxes and v2 brush strokes.

A mask is a function of ``(mode, seed, image index, height, width)`` only: each
draw uses its own ``numpy.random.Generator`` (PCG64) seeded with
``SeedSequence([seed, index, mode key])``, so the mask of image ``i`` does not
depend on the other images, on how many there are or on the order they are
processed in, and the ``box`` and ``free_form`` masks of an image are
independent draws. Masks are bool ``[H, W]``, True = hole. The same seed gives
the same masks with the same NumPy and OpenCV versions.

Modes (sizes scale with the image, so the hole covers the same share of it at any size):

* ``box``: the v1 training hole (ARCHITECTURE.md §6.1) scaled from 256x256: a bbox of
  ``H//2 x W//2`` at a uniform position (top in ``[0, H - H//2)``, left
  likewise, like ``random_bbox`` with zero margins), shrunk by ``d`` uniform in
  ``[0, (H//8)//2]`` on both sides of each axis (``[0, 16]`` at 256, the
  release's delta 32). Hole sides are 37.5-50 % of the image sides, i.e. 14-25 %
  of its area; the box always reaches into the central half of the image.
* ``multi``: 2 or 3 separate boxes covering about 10 % of the photo together (each 0.8-1.2
  times its share, aspect ratio 1/2-2), placed uniformly at random so that no two are within
  a quarter of the photo's short side of each other (up to 200 draws, then fewer boxes).
* ``free_form``: the v2 brush strokes (ARCHITECTURE.md §6.1): 1-3 strokes of 4-11 steps,
  step angles from the release's window around 2pi/5 (alternately mirrored),
  step lengths ``clip(N(r, floor(r/2)), 0, 2r)`` with ``r = sqrt(H^2 + W^2) / 8``,
  vertices clipped to the image and truncated to integers, stroke width
  ``int(U(12, 40) * s)`` (at least 1) with ``s = sqrt(H^2 + W^2) / (256 sqrt 2)``,
  drawn as thick ``cv2.line`` segments plus filled discs of that diameter at
  every vertex. At 256x256 this is the release's generator except that x runs
  along the width (the release swaps H and W for non-square images) and OpenCV
  rasterises instead of PIL. Measured over 2000 draws at 256x256, 128x96 and
  512x340: 1-46 % of the image (1st-99th percentile 2-37 %), mean 15 %.
"""
import math

import cv2
import numpy as np

from model.brush import (ANGLE_RANGE, MAX_NUM_STROKES, MAX_NUM_VERTEX, MAX_WIDTH,  # noqa: F401
                                MEAN_ANGLE, MIN_NUM_VERTEX, MIN_WIDTH, REFERENCE_DIAGONAL)

EVAL_MASK_MODES = ("box", "free_form")  # the two kinds evaluate.py scores (--mask_mode both)
MULTI = "multi"  # several separate boxes, for photos at full resolution (ARCHITECTURE.md §7.7)
_MODE_KEYS = {"box": 1, "free_form": 2, MULTI: 3}
MULTI_COVER = 0.10  # the multi boxes' total share of the photo



def mask_rng(seed, index, mode):
  """The random generator of one mask: a function of (seed, image index, mode) only."""
  if mode not in _MODE_KEYS:
    raise ValueError(f"mask mode must be one of {tuple(_MODE_KEYS)}, got {mode!r}")
  if int(seed) < 0 or int(index) < 0:
    raise ValueError(f"seed and index must be non-negative, got {seed}, {index}")
  return np.random.Generator(np.random.PCG64(
      np.random.SeedSequence([int(seed), int(index), _MODE_KEYS[mode]])))


def box_mask(height, width, rng):
  """The v1 bbox hole scaled to ``height x width`` (see the module docstring)."""
  box_h, box_w = max(height // 2, 1), max(width // 2, 1)
  top = int(rng.integers(0, height - box_h)) if height > box_h else 0
  left = int(rng.integers(0, width - box_w)) if width > box_w else 0
  dh = int(rng.integers(0, (height // 8) // 2 + 1))
  dw = int(rng.integers(0, (width // 8) // 2 + 1))
  hole = np.zeros((height, width), bool)
  hole[top + dh:top + box_h - dh, left + dw:left + box_w - dw] = True
  return hole


def brush_stroke_mask(height, width, rng):
  """v2 free-form brush strokes scaled to ``height x width`` (see the module docstring)."""
  diagonal = math.sqrt(height * height + width * width)
  radius = diagonal / 8.0
  scale = diagonal / REFERENCE_DIAGONAL
  canvas = np.zeros((height, width), np.uint8)
  for _ in range(int(rng.integers(1, MAX_NUM_STROKES + 1))):
    steps = int(rng.integers(MIN_NUM_VERTEX, MAX_NUM_VERTEX + 1))
    angle_lo = MEAN_ANGLE - rng.uniform(0.0, ANGLE_RANGE)
    angle_hi = MEAN_ANGLE + rng.uniform(0.0, ANGLE_RANGE)
    angles = rng.uniform(angle_lo, angle_hi, steps)
    angles[0::2] = 2.0 * math.pi - angles[0::2]
    x, y = int(rng.integers(0, width)), int(rng.integers(0, height))
    vertices = [(x, y)]
    for angle in angles:
      length = float(np.clip(rng.normal(radius, math.floor(radius / 2.0)), 0.0, 2.0 * radius))
      x = int(np.clip(x + length * math.cos(angle), 0, width))
      y = int(np.clip(y + length * math.sin(angle), 0, height))
      vertices.append((x, y))
    stroke = max(int(rng.uniform(MIN_WIDTH * scale, MAX_WIDTH * scale)), 1)
    for start, end in zip(vertices[:-1], vertices[1:]):
      cv2.line(canvas, start, end, 1, thickness=stroke)
    for vertex in vertices:
      cv2.circle(canvas, vertex, stroke // 2, 1, thickness=-1)
  return canvas.astype(bool)


def multi_box_mask(height, width, rng):
  """2 or 3 separate boxes covering about ``MULTI_COVER`` of the photo (module docstring)."""
  count = int(rng.integers(2, 4))
  gap = min(height, width) // 4
  hole = np.zeros((height, width), bool)
  placed = []
  for _ in range(count):
    area = MULTI_COVER * height * width / count * rng.uniform(0.8, 1.2)
    aspect = math.exp(rng.uniform(math.log(0.5), math.log(2.0)))
    h = int(min(max(round(math.sqrt(area * aspect)), 1), height))
    w = int(min(max(round(area / h), 1), width))
    for _ in range(200):
      top, left = int(rng.integers(0, height - h + 1)), int(rng.integers(0, width - w + 1))
      box = (top, left, top + h, left + w)
      if all(box[0] >= b[2] + gap or b[0] >= box[2] + gap or box[1] >= b[3] + gap
             or b[1] >= box[3] + gap for b in placed):
        placed.append(box)
        hole[box[0]:box[2], box[1]:box[3]] = True
        break
  return hole


def eval_mask(mode, height, width, seed, index):
  """The evaluation mask of image number ``index`` (0-based) for ``seed``: bool ``[H, W]``."""
  rng = mask_rng(seed, index, mode)
  if mode == "box":
    return box_mask(int(height), int(width), rng)
  if mode == MULTI:
    return multi_box_mask(int(height), int(width), rng)
  return brush_stroke_mask(int(height), int(width), rng)
