"""A stand-in ONNX graph with ``export.py --format onnx``'s contract (inputs, output, dtypes)."""


GREY = 128


def write_standin_model(path, grey=GREY):
  """An ONNX graph with the real one's inputs and output: the image where mask <= 127, ``grey``
  in the hole (image uint8 [1,H,W,3], mask uint8 [1,H,W,1] -> inpainted uint8 [1,H,W,3])."""
  import onnx
  from onnx import TensorProto, helper
  dims = [1, "height", "width"]
  graph = helper.make_graph(
      [helper.make_node("Greater", ["mask", "threshold"], ["hole"]),
       helper.make_node("Where", ["hole", "grey", "image"], ["inpainted"])],
      "deepfill_standin",
      [helper.make_tensor_value_info("image", TensorProto.UINT8, dims + [3]),
       helper.make_tensor_value_info("mask", TensorProto.UINT8, dims + [1])],
      [helper.make_tensor_value_info("inpainted", TensorProto.UINT8, dims + [3])],
      [helper.make_tensor("threshold", TensorProto.UINT8, [], [127]),
       helper.make_tensor("grey", TensorProto.UINT8, [], [grey])])
  model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
  model.ir_version = 8
  onnx.checker.check_model(model)
  onnx.save(model, path)
