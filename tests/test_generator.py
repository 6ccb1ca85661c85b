"""Generator, conv layers and checkpoint round trips (tiny shapes)."""
import json
import os

import keras
import numpy as np
import pytest
import tensorflow as tf

from layers.gen_conv import GenConv, GenDeconv, mirror_pad
from model import config as config_lib, generator as generator_lib
from model import weights as checkpoints
from model.errors import UserError


def _rand(shape, seed=0):
  return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


@pytest.mark.parametrize("padding", ["zero", "reflect", "symmetric"])
@pytest.mark.parametrize("gated", [False, True])
def test_gen_conv_round_trip_and_shapes(padding, gated):
  layer = GenConv(6, 3, strides=2, padding=padding, gated=gated, name="c")
  x = _rand([2, 10, 14, 3])
  y = layer(x)
  assert y.shape == (2, 5, 7, 6)
  clone = GenConv.from_config(layer.get_config())
  clone(x)
  clone.set_weights(layer.get_weights())
  np.testing.assert_array_equal(clone(x), y)
  assert layer.conv.kernel.shape[-1] == (12 if gated else 6)


def test_gen_conv_zero_padding_is_tf_same():
  layer = GenConv(4, 3, dilation_rate=2, activation=None, padding="zero")
  x = _rand([1, 9, 11, 2])
  y = layer(x)
  ref = tf.nn.conv2d(x, layer.conv.kernel, 1, "SAME", dilations=2) + layer.conv.bias
  np.testing.assert_allclose(y, ref, atol=1e-5)


@pytest.mark.parametrize("mode", ["reflect", "symmetric"])
def test_mirror_pad_larger_than_input_matches_repeated_numpy(mode):
  x = _rand([1, 3, 4, 2])
  y = mirror_pad(tf.constant(x), 7, mode).numpy()
  ref = x
  for axis in (1, 2):  # rounds of at most (size - slack), as documented
    left = 7
    while left:
      amount = min(left, ref.shape[axis] - (1 if mode == "reflect" else 0))
      width = [(0, 0)] * 4
      width[axis] = (amount, amount)
      ref, left = np.pad(ref, width, mode=mode), left - amount
  assert y.shape == (1, 17, 18, 2)
  np.testing.assert_array_equal(mirror_pad(tf.constant(x), 2, mode), np.pad(
      x, [(0, 0), (2, 2), (2, 2), (0, 0)], mode=mode))
  np.testing.assert_array_equal(y, ref)
  fn = tf.function(lambda t: mirror_pad(t, 7, mode),
                   input_signature=[tf.TensorSpec([None, None, None, 2])])
  np.testing.assert_array_equal(fn(x), ref)


def test_gen_deconv_duplicates_pixels():
  layer = GenDeconv(3, name="up")
  x = _rand([1, 3, 5, 2])
  layer(x)
  up = np.repeat(np.repeat(x, 2, axis=1), 2, axis=2)
  ref = tf.nn.elu(tf.nn.conv2d(up, layer.gen_conv.conv.kernel, 1, "SAME")
                  + layer.gen_conv.conv.bias)
  np.testing.assert_allclose(layer(x), ref, atol=1e-5)
  assert layer.gen_conv.name == "up_conv"
  clone = GenDeconv.from_config(layer.get_config())
  assert clone.get_config() == layer.get_config()


def test_v1_parameter_count_and_official_names():
  gen = generator_lib.build_generator(config_lib.preset("v1"))
  assert gen.count_params() == 3601542  # ARCHITECTURE.md §2 and the golden variables.txt
  names = checkpoints.official_variable_names(gen)
  assert len(names) == 84
  assert "inpaint_net/conv13_upsample/conv13_upsample_conv/kernel" in names
  assert "inpaint_net/pmconv6/bias" in names
  assert list(names["inpaint_net/conv1/kernel"].shape) == [5, 5, 5, 32]


@pytest.mark.parametrize("arch", ["v1", "gated"])
def test_generator_dynamic_shapes_and_round_trip(arch, tmp_path):
  cfg = config_lib.preset(arch, cnum=4)
  gen = generator_lib.build_generator(cfg)
  x = _rand([2, 24, 40, 3], 1)
  m = np.zeros([2, 24, 40, 1], np.float32)
  m[0, 8:16, 8:24] = 1
  m[1, 0:8, 24:40] = 1
  x_in = x * (1 - m)
  x1, x2, off = gen((x_in, m))
  assert x1.shape == x2.shape == (2, 24, 40, 3) and off.shape == (2, 3, 5, 2)
  assert np.abs(x2).max() <= 1.0
  fn = tf.function(lambda a, b: gen((a, b)),
                   input_signature=[tf.TensorSpec([None, None, None, 3]),
                                    tf.TensorSpec([None, None, None, 1])])
  y1, y2, yoff = fn(x_in, m)
  np.testing.assert_allclose(y2, x2, atol=1e-5)
  # Keras config round trip.
  clone = generator_lib.InpaintGenerator.from_config(gen.get_config()).initialize()
  clone.set_weights(gen.get_weights())
  np.testing.assert_allclose(clone((x_in, m))[1], x2, atol=1e-6)
  # Our checkpoint format round trip.
  checkpoints.save_generator(gen, cfg, str(tmp_path))
  assert json.loads((tmp_path / "model.json").read_text())["arch"] == arch
  loaded, loaded_cfg = checkpoints.load_generator(str(tmp_path))
  assert loaded_cfg == cfg
  np.testing.assert_allclose(loaded((x_in, m))[1], x2, atol=1e-6)


@pytest.mark.parametrize("value", [None, 16])
def test_model_json_with_legacy_attention_tile_loads(value, tmp_path):
  """Older model.json files hold "attention_tile" (null or a number); it is ignored."""
  cfg = config_lib.preset("v1", cnum=4)
  gen = generator_lib.build_generator(cfg)
  checkpoints.save_generator(gen, cfg, str(tmp_path))
  path = tmp_path / "model.json"
  path.write_text(json.dumps(dict(json.loads(path.read_text()), attention_tile=value)))
  loaded, loaded_cfg = checkpoints.load_generator(str(tmp_path))
  assert loaded_cfg == cfg
  with pytest.raises(ValueError, match="unknown model config keys"):
    config_lib.ModelConfig.from_dict({"attention_tiles": 3})


def test_batch_of_two_equals_two_batches_of_one():
  gen = generator_lib.build_generator(config_lib.preset("v1", cnum=4))
  x = _rand([2, 32, 16, 3], 2)
  m = np.zeros([2, 32, 16, 1], np.float32)
  m[0, 4:20, 2:10] = 1
  m[1, 16:32, 8:16] = 1
  both = gen((x * (1 - m), m))[1].numpy()
  for i in range(2):
    one = gen((x[i:i + 1] * (1 - m[i:i + 1]), m[i:i + 1]))[1].numpy()
    np.testing.assert_allclose(both[i:i + 1], one, atol=1e-5)


def test_loader_errors(tmp_path):
  with pytest.raises(UserError, match="not found"):
    checkpoints.load_generator(str(tmp_path / "nope"))
  with pytest.raises(UserError, match="no DeepFill checkpoint"):
    checkpoints.load_generator(str(tmp_path))
  # A TF1-style checkpoint with a mis-shaped variable.
  gen = generator_lib.build_generator(config_lib.preset("v1", cnum=4))
  names = checkpoints.official_variable_names(gen)
  values = {n: tf.Variable(v.numpy()) for n, v in names.items()}
  values["inpaint_net/conv3/kernel"] = tf.Variable(tf.zeros([3, 3, 8, 7]))
  _write_tf1(values, tmp_path / "bad")
  with pytest.raises(UserError, match="conv3/kernel"):
    checkpoints.load_generator(str(tmp_path / "bad"))
  values.pop("inpaint_net/conv3/kernel")
  _write_tf1(values, tmp_path / "missing")
  with pytest.raises(UserError, match="lacks 1"):
    checkpoints.load_generator(str(tmp_path / "missing"))
  (tmp_path / "junk").mkdir()
  (tmp_path / "junk" / "model.json").write_text("{not json")
  with pytest.raises(UserError, match="model.json"):
    checkpoints.load_generator(str(tmp_path / "junk"))


def test_official_loader_ignores_extra_variables(tmp_path):
  gen = generator_lib.build_generator(config_lib.preset("v1", cnum=4))
  names = checkpoints.official_variable_names(gen)
  values = {n: tf.Variable(v.numpy() + 0.5) for n, v in names.items()}
  values["discriminator/dout_local_fc/kernel"] = tf.Variable(tf.zeros([3, 1]))
  values["inpaint_net/conv1/kernel/Adam"] = tf.Variable(tf.zeros([5, 5, 5, 4]))
  _write_tf1(values, tmp_path / "ok")
  loaded, cfg = checkpoints.load_generator(str(tmp_path / "ok"))
  assert cfg.cnum == 4 and cfg.channel_order == "bgr"
  got = checkpoints.official_variable_names(loaded)
  for n, v in values.items():
    if n in got:
      np.testing.assert_array_equal(got[n].numpy(), v.numpy())


def _write_tf1(values, directory):
  """Writes a name-keyed checkpoint like tf.compat.v1.train.Saver does."""
  os.makedirs(directory, exist_ok=True)
  arrays = {n: np.asarray(v) for n, v in values.items()}
  with tf.Graph().as_default():
    tf_vars = {n: tf.compat.v1.Variable(a, name=n.replace("/", "_"))
               for n, a in arrays.items()}
    saver = tf.compat.v1.train.Saver(var_list=tf_vars)
    with tf.compat.v1.Session() as sess:
      sess.run(tf.compat.v1.global_variables_initializer())
      saver.save(sess, os.path.join(str(directory), "snap"), global_step=0)


@pytest.mark.parametrize("mode", ["reflect", "symmetric"])
def test_mirror_pad_dynamic_shape_has_no_loop_and_matches_rounds(mode):
  """Unknown sizes: one gather per axis (no while loop to trace), same pixels as the rounds."""
  fn = tf.function(lambda t: mirror_pad(t, 7, mode),
                   input_signature=[tf.TensorSpec([None, None, None, 1])])
  graph = fn.get_concrete_function().graph.as_graph_def()
  assert not [n.op for n in graph.node if n.op in ("While", "StatelessWhile")]
  assert not graph.library.function  # no loop or branch bodies
  for h, w in ((2, 2), (3, 5), (8, 1), (16, 9)):
    if mode == "reflect" and min(h, w) < 2:
      continue
    x = _rand([1, h, w, 1])
    static = mirror_pad(tf.constant(x), 7, mode).numpy()  # tf.pad in rounds
    np.testing.assert_array_equal(fn(x), static, err_msg=f"{h}x{w}")


def _damage(path, how):
  data = bytearray(path.read_bytes())
  if how == "cut":
    path.write_bytes(bytes(data[:len(data) // 2]))
  else:  # bytes overwritten in the middle: the stored checksum no longer matches
    data[len(data) // 2:len(data) // 2 + 64] = b"\x55" * 64
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("kind", ["ours", "official"])
@pytest.mark.parametrize("part, how", [("data", "cut"), ("data", "overwritten"), ("index", "cut")])
def test_truncated_or_corrupt_checkpoint_names_the_file(kind, part, how, tmp_path):
  gen = generator_lib.build_generator(config_lib.preset("v1", cnum=4))
  if kind == "ours":
    checkpoints.save_generator(gen, config_lib.preset("v1", cnum=4), str(tmp_path / "ckpt"))
  else:
    _write_tf1({n: tf.Variable(v.numpy()) for n, v in
                checkpoints.official_variable_names(gen).items()}, tmp_path / "ckpt")
  (damaged,) = [p for p in (tmp_path / "ckpt").iterdir()
                if (".data-" in p.name if part == "data" else p.name.endswith(".index"))]
  _damage(damaged, how)
  with pytest.raises(UserError) as info:
    checkpoints.load_generator(str(tmp_path / "ckpt"))
  message = str(info.value)
  assert message.startswith(f"{damaged}: checkpoint file is truncated or corrupt"), message
  assert "\n" not in message and "{{" not in message


@pytest.mark.parametrize("padding", ["zero", "reflect"])
@pytest.mark.parametrize("k,stride,dilation", [(5, 1, 1), (3, 2, 1), (3, 1, 2), (3, 1, 16)])
def test_gen_conv_direct_ops_equal_keras_conv(padding, k, stride, dilation):
  """GenConv.convolve builds the ops Keras' Conv2D builds: equal bits, eager and traced with
  unknown sizes; a dilated conv's trace stays small (tf.nn.convolution adds ~80 ops)."""
  layer = GenConv(4, k, stride, dilation, padding=padding, name="c")
  layer.build((None, None, None, 3))
  layer.conv.bias.assign(np.linspace(-0.5, 0.5, 4).astype(np.float32))
  spec = [tf.TensorSpec([None, None, None, 3])]
  ours = tf.function(layer.convolve, input_signature=spec)
  keras_conv = tf.function(layer.conv, input_signature=spec)
  for h, w in ((5, 7), (13, 9), (24, 17)):
    x = _rand([1, h, w, 3], seed=h)
    if padding != "zero":
      x = mirror_pad(tf.constant(x), dilation * (k - 1) // 2, padding)
    np.testing.assert_array_equal(layer.convolve(x), layer.conv(x), err_msg=f"{h}x{w}")
    np.testing.assert_array_equal(ours(x), keras_conv(x), err_msg=f"{h}x{w} traced")
  assert len(ours.get_concrete_function().graph.get_operations()) < 30
