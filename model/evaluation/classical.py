"""OpenCV's classical inpainting as evaluation baselines: Telea (2004) and Navier-Stokes (2001)."""
import cv2
import numpy as np

FLAGS_BY_NAME = {"telea": cv2.INPAINT_TELEA, "ns": cv2.INPAINT_NS}


def inpaint(method, rgb, hole, radius=3):
  """uint8 RGB ``[H, W, 3]`` with ``hole`` (bool ``[H, W]``) filled by ``cv2.inpaint``.

  Pixels outside the hole are returned as given.
  """
  if method not in FLAGS_BY_NAME:
    raise ValueError(f"unknown classical method {method!r}; one of {sorted(FLAGS_BY_NAME)}")
  bgr = cv2.inpaint(cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), hole.astype(np.uint8) * 255,
                    float(radius), FLAGS_BY_NAME[method])
  return np.where(hole[..., None], cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), rgb)
