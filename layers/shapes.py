"""Static output shapes of SAME-padded strided convolutions (shared by the conv layers)."""


def same_conv_output_shape(input_shape, strides, filters):
  """``(B, ceil(H / strides), ceil(W / strides), filters)``; unknown dims stay None."""
  b, h, w, _ = input_shape
  h = None if h is None else -(-h // strides)
  w = None if w is None else -(-w // strides)
  return (b, h, w, filters)
