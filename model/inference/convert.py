"""ONNX and LiteRT (TFLite) files of the portable pipeline (``model/inference/portable.py``).

:func:`onnx_bytes` converts the graph with tf2onnx (the ``onnx`` extra); :func:`tflite_bytes`
with TensorFlow's own ``tf.lite.TFLiteConverter``, built-in operators only. Both keep the
contract of :data:`portable.IMAGE_SPEC` / :data:`portable.MASK_SPEC` -> ``inpainted``.
"""
import tensorflow as tf
from tensorflow.python.framework import convert_to_constants

from model.errors import UserError
from model.inference import portable

ONNX_OPSET = 17
ONNX_FILE = "model.onnx"
TFLITE_FILE = "model.tflite"


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


def tflite_bytes(generator, model_config, size=None):
  """The serialized TFLite flatbuffer of ``generator`` (built-in ops only).

  ``size``: None for dynamic H and W (the interpreter is resized to each input), or
  ``(height, width)`` to fix them.
  """
  function = portable.inpaint_function(generator, model_config)
  if size is None:
    concrete = function.get_concrete_function()
  else:
    height, width = size
    concrete = tf.function(function.python_function, autograph=False).get_concrete_function(
        tf.TensorSpec([1, height, width, 3], tf.uint8, name="image"),
        tf.TensorSpec([1, height, width, 1], tf.uint8, name="mask"))
  # Weights frozen into constants first: left as resource variables, the converter keeps them
  # as variables that the interpreter starts at zero.
  frozen = convert_to_constants.convert_variables_to_constants_v2(concrete)
  converter = tf.lite.TFLiteConverter.from_concrete_functions([frozen])
  converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
  return converter.convert()
