"""ONNX and LiteRT (TFLite) files of the portable pipeline (``model/inference/portable.py``).

:func:`onnx_bytes` converts the graph with tf2onnx (the ``onnx`` extra); :func:`tflite_bytes`
with TensorFlow's own ``tf.lite.TFLiteConverter``, built-in operators only. Both keep the
contract of :data:`portable.IMAGE_SPEC` / :data:`portable.MASK_SPEC` -> ``inpainted``.
"""
import tempfile

import tensorflow as tf
from tensorflow.python.framework import convert_to_constants  # no public freeze in TF 2

from model.errors import UserError
from model.inference import portable

ONNX_OPSET = 17


def onnx_bytes(generator, model_config, opset=ONNX_OPSET):
  """The serialized ONNX model (dynamic H and W, batch 1) of ``generator``.

  Raises ``UserError`` when tf2onnx is not installed (``pip install -e ".[cpu,onnx]"``).
  """
  try:
    import tf2onnx  # pylint: disable=import-outside-toplevel  (optional dependency)
  except ImportError:
    raise UserError('ONNX export needs tf2onnx: pip install -e ".[cpu,onnx]"') from None
  function = portable.inpaint_function(generator, model_config)
  model, _ = tf2onnx.convert.from_function(
      function, input_signature=[portable.IMAGE_SPEC, portable.MASK_SPEC], opset=opset)
  model.doc_string = ("DeepFill v1: image uint8 [1,H,W,3] RGB, mask uint8 [1,H,W,1] "
                      "(>127 = hole) -> inpainted uint8 [1,H,W,3]")
  return model.SerializeToString()


def tflite_bytes(generator, model_config):
  """The serialized TFLite flatbuffer of ``generator`` (built-in ops only, dynamic H and W:
  the interpreter resizes to each input), with one signature ``serving_default``:
  ``image``, ``mask`` -> ``inpainted``."""
  function = portable.inpaint_function(generator, model_config)
  # Weights frozen into constants first (converted as they are, they stay variables that the
  # interpreter starts at zero), then saved as a SavedModel signature so that the file keeps
  # the names image, mask -> inpainted.
  frozen = convert_to_constants.convert_variables_to_constants_v2(
      function.get_concrete_function())

  def serve(image, mask):
    return {portable.OUTPUT_NAME: frozen(image=image, mask=mask)[0]}

  signature = tf.function(serve, input_signature=function.input_signature, autograph=False)
  with tempfile.TemporaryDirectory() as tmp:
    tf.saved_model.save(tf.Module(), tmp, signatures={"serving_default": signature})
    converter = tf.lite.TFLiteConverter.from_saved_model(tmp, signature_keys=["serving_default"])
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    return converter.convert()
