"""In-graph serving functions for the SavedModel export (TF Serving, ``tf.saved_model.load``).

Two signatures, both on uint8 RGB pixels with white (> 127) = hole:

* ``serving_default(image uint8 [B,H,W,3], mask uint8 [B,H,W,1]) -> {"inpainted": uint8 [B,H,W,3]}``
* ``inpaint_bytes(image_bytes string [B], mask_bytes string [B]) -> {"png_bytes": string [B]}``
  (PNG/JPEG/BMP/GIF/still WebP in, PNG out; items may have different sizes). Files are
  decoded by ``model/inference/bytes_decode.py`` as test.py reads them, EXIF orientation
  included.

Each sample runs :meth:`model.inference.inpainter.Inpainter.fill` — the pipeline ``test.py``
runs — one at a time (``tf.map_fn``). Batch 1 per sample keeps the results bit-identical to
``test.py``: a batched call changes the last float bits, which moves some truncated 8-bit
values by one level. Bad input ends in an ``InvalidArgumentError`` naming the problem: a mask
that is not ``[B, H, W, 1]`` or not the image's size; in ``inpaint_bytes`` a file the rules of
``model/fileio/rules.py`` refuse.
"""

import keras
import tensorflow as tf

from model import limits
from model.fileio import rules
from model.inference import bytes_decode
from model.inference import inpainter as inpainter_lib

IMAGE_SPEC = tf.TensorSpec([None, None, None, 3], tf.uint8, name="image")
MASK_SPEC = tf.TensorSpec([None, None, None, 1], tf.uint8, name="mask")
IMAGE_BYTES_SPEC = tf.TensorSpec([None], tf.string, name="image_bytes")
MASK_BYTES_SPEC = tf.TensorSpec([None], tf.string, name="mask_bytes")
# export.py --signatures: "serving" is what the Beam pipeline loads (nothing else is built).
SIGNATURE_SETS = {"all": ("serving_default", "inpaint_bytes"), "serving": ("serving_default",)}


class ServingModel:
  """The generator wrapped into the two serving signatures.

  Args:
    generator: a built :class:`InpaintGenerator` with weights.
    model_config: its :class:`ModelConfig` (gives the channel order).
    max_memory_gb: working-memory bound of contextual attention per image; the query
      tile is computed from it and the image size in the graph.
    max_pixels: ``inpaint_bytes`` refuses an image or mask whose header declares more
      pixels (width × height) than this, before decoding it (``limits.max_pixels`` of
      ``--max_megapixels``).
    seam_blend, strategy, inference, precision: as :class:`Inpainter` (baked into the export;
      ``auto`` is resolved on the exporting machine).
  """

  def __init__(self, generator, model_config, max_memory_gb=1.0,
               max_pixels=limits.DEFAULT_MAX_PIXELS, seam_blend=None, strategy=None,
               inference=None, precision=None):
    self.inpainter = inpainter_lib.Inpainter(generator, model_config, max_memory_gb, seam_blend,
                                             strategy, inference, precision)
    self.max_pixels = int(max_pixels)

  def _one(self, image, hole):
    """``Inpainter.fill`` on one sample (hole-local path chosen in the graph)."""
    return tf.cond(tf.reduce_any(hole), lambda: self.inpainter.fill(image, hole),
                   lambda: tf.identity(image))

  def serve(self, image, mask):
    """``serving_default``: batched uint8 pixels, one mask per sample."""
    tf.debugging.assert_equal(tf.shape(mask)[3], 1, message=(
        "mask must be uint8 [B, H, W, 1] (one channel, > 127 = hole)"))
    tf.debugging.assert_equal(tf.shape(mask)[:3], tf.shape(image)[:3],
                              message="mask must have the image's batch, height and width")
    holes = mask[..., 0] > rules.MASK_THRESHOLD

    def each():
      # parallel_iterations=1: one image at a time, so the memory bound holds per request.
      return tf.map_fn(lambda item: self._one(*item), (image, holes),
                       fn_output_signature=tf.TensorSpec([None, None, 3], tf.uint8),
                       parallel_iterations=1)

    # map_fn cannot stack an empty list of [?, ?, 3] items: an empty batch is returned as is.
    out = tf.cond(tf.shape(image)[0] > 0, each, lambda: tf.identity(image))
    return {"inpainted": out}

  def serve_bytes(self, image_bytes, mask_bytes):
    """``inpaint_bytes``: encoded images and masks (sizes may differ per item) -> PNG bytes."""
    tf.debugging.assert_equal(tf.shape(mask_bytes), tf.shape(image_bytes),
                              message="need one mask per image")

    def one(item):
      data, mask_data = item
      image = bytes_decode.decode_upright(data, 3, self.max_pixels, "image")
      hole = bytes_decode.decode_mask(mask_data, self.max_pixels)
      return tf.io.encode_png(self._one(image, hole))

    out = tf.map_fn(one, (image_bytes, mask_bytes),
                    fn_output_signature=tf.TensorSpec([], tf.string), parallel_iterations=1)
    return {"png_bytes": out}

  def archive(self, signatures="all"):
    """A ``keras.export.ExportArchive`` with the signatures of `SIGNATURE_SETS[signatures]`
    (``serving_default`` first)."""
    if signatures not in SIGNATURE_SETS:
      raise ValueError(f"signatures must be one of {sorted(SIGNATURE_SETS)}, got {signatures!r}")
    archive = keras.export.ExportArchive()
    archive.track(self.inpainter.generator)
    archive.add_endpoint("serving_default", self.serve, input_signature=[IMAGE_SPEC, MASK_SPEC])
    if "inpaint_bytes" in SIGNATURE_SETS[signatures]:
      archive.add_endpoint("inpaint_bytes", self.serve_bytes,
                           input_signature=[IMAGE_BYTES_SPEC, MASK_BYTES_SPEC])
    return archive
