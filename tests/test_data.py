"""Tests for model/training/data.py: file listing, determinism, resumption, skipping bad files."""
import os

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from model.training import data
from model.errors import UserError

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PHOTOS = os.path.join(REPO, "..", "shared", "data", "train", "photos")
SIZE = 32


def _save(path, array):
  Image.fromarray(np.asarray(array, np.uint8)).save(path)
  return str(path)


def _solid(path, rgb, h=40, w=56):
  return _save(path, np.broadcast_to(np.array(rgb, np.uint8), (h, w, 3)))


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
  """Four real photos, downscaled to about 48 px on the short side (varied aspect)."""
  if not os.path.isdir(PHOTOS):
    pytest.skip("shared photos not available")
  names = sorted(n for n in os.listdir(PHOTOS) if n.endswith(".jpg"))[:4]
  if len(names) < 4:
    pytest.skip("not enough shared photos")
  out = tmp_path_factory.mktemp("photos")
  files = []
  for i, name in enumerate(names):
    with Image.open(os.path.join(PHOTOS, name)) as im:
      im = im.convert("RGB")
      im.thumbnail((48 + 16 * i, 48))  # short side ~48 or less
      path = out / f"photo{i}.jpg"
      im.save(path, quality=90)
      files.append(str(path))
  return files


@pytest.fixture(scope="module")
def colours(tmp_path_factory):
  """Five solid-colour images (one grey PNG) whose identity survives crops and flips."""
  out = tmp_path_factory.mktemp("colours")
  values = [(200, 10, 10), (10, 200, 10), (10, 10, 200), (200, 200, 10)]
  files = [_solid(out / f"c{i}.png", v) for i, v in enumerate(values)]
  files.append(_save(out / "grey.png", np.full((36, 44), 120, np.uint8)))
  return files, values + [(120, 120, 120)]


def _batches(ds, n):
  return [b.numpy() for b in ds.take(n)]


def _to_rgb255(image, channel_order="bgr"):
  if channel_order == "bgr":
    image = image[..., ::-1]
  return (image + 1.0) * 127.5


def test_list_files_directory(tmp_path):
  (tmp_path / "sub" / "deeper").mkdir(parents=True)
  paths = [_solid(tmp_path / "b.png", (1, 2, 3)), _solid(tmp_path / "a.JPG", (1, 2, 3)),
           _solid(tmp_path / "sub" / "deeper" / "c.bmp", (1, 2, 3)),
           _solid(tmp_path / "sub" / "d.webp", (1, 2, 3))]
  (tmp_path / "notes.txt").write_text("not an image")
  assert data.list_files(tmp_path) == sorted(paths)


def test_training_reads_files_as_test_py_does(tmp_path):
  """One extension list and one reader: a TIFF is listed, and an EXIF-rotated JPEG, a 16-bit
  PNG and an RGBA TIFF decode (eagerly and in the tf.data graph) to test.py's pixels."""
  from model.fileio import decode
  rng = np.random.default_rng(0)
  photo = rng.integers(0, 256, (24, 40, 3), dtype=np.uint8)
  exif = Image.Exif()
  exif[0x0112] = 6  # shown turned by 90 degrees
  Image.fromarray(photo).save(tmp_path / "turned.jpg", exif=exif.tobytes(), quality=95)
  Image.fromarray(rng.integers(0, 65536, (24, 40), dtype=np.uint16)).save(tmp_path / "deep.png")
  Image.fromarray(np.dstack([photo, photo[..., 0]])).save(tmp_path / "alpha.tif")
  files = data.list_files(tmp_path)
  assert [os.path.basename(f) for f in files] == ["alpha.tif", "deep.png", "turned.jpg"]
  in_graph = tf.function(data._decode, input_signature=[tf.TensorSpec([], tf.string)])
  for path in files:
    expected = decode.read_image(path)[0]
    np.testing.assert_array_equal(data._decode(tf.constant(path)).numpy(), expected, path)
    np.testing.assert_array_equal(in_graph(tf.constant(path)).numpy(), expected, path)
  assert data._decode(tf.constant(files[2])).shape == (40, 24, 3)


def test_list_files_flist(tmp_path):
  (tmp_path / "imgs").mkdir()
  a = _solid(tmp_path / "imgs" / "a.png", (1, 2, 3))
  b = _solid(tmp_path / "b.png", (1, 2, 3))
  flist = tmp_path / "lists" / "train.flist"
  flist.parent.mkdir()
  flist.write_text(f"# training images\n\n../imgs/a.png\n  {b}  \n\n")
  files = data.list_files(str(flist))
  assert [os.path.realpath(f) for f in files] == [os.path.realpath(a), os.path.realpath(b)]


def test_list_files_empty_raises(tmp_path):
  (tmp_path / "empty").mkdir()
  with pytest.raises(UserError, match="no images"):
    data.list_files(tmp_path / "empty")
  (tmp_path / "empty.flist").write_text("# nothing\n\n")
  with pytest.raises(UserError, match="names no images"):
    data.list_files(tmp_path / "empty.flist")
  with pytest.raises(UserError, match="not found"):
    data.list_files(tmp_path / "missing.flist")


def test_shapes_and_range(photos):
  batches = _batches(data.make_dataset(photos, SIZE, 3, seed=0), 3)
  for b in batches:
    assert b.shape == (3, SIZE, SIZE, 3) and b.dtype == np.float32
    assert b.min() >= -1.0 and b.max() <= 1.0
    assert b.std() > 0.01  # real content, not placeholders


def test_deterministic_given_seed(photos):
  a = _batches(data.make_dataset(photos, SIZE, 2, seed=7), 4)
  b = _batches(data.make_dataset(photos, SIZE, 2, seed=7), 4)
  c = _batches(data.make_dataset(photos, SIZE, 2, seed=8), 4)
  assert all(np.array_equal(x, y) for x, y in zip(a, b))
  assert not all(np.array_equal(x, y) for x, y in zip(a, c))


def test_start_batch_equals_skip(photos):
  # 4 files, batch 3: batches straddle epoch boundaries.
  full = _batches(data.make_dataset(photos, SIZE, 3, seed=1), 7)
  for start in (1, 3, 4):
    resumed = _batches(data.make_dataset(photos, SIZE, 3, seed=1, start_batch=start), 3)
    for x, y in zip(full[start:], resumed):
      np.testing.assert_array_equal(x, y)


def _identify(batch, values, channel_order="bgr"):
  """Index of the colour of each image in ``batch`` (all pixels must agree)."""
  rgb = _to_rgb255(batch, channel_order)
  ids = []
  for image in rgb:
    mean = image.reshape(-1, 3).mean(0)
    assert np.abs(image - mean).max() < 1.0
    ids.append(int(np.argmin([np.abs(mean - v).max() for v in values])))
    assert np.abs(mean - values[ids[-1]]).max() < 1.0
  return ids


def test_each_epoch_is_a_permutation(colours):
  files, values = colours
  ds = data.make_dataset(files, SIZE, 5, seed=3)
  epochs = [_identify(b, values) for b in _batches(ds, 4)]
  assert all(sorted(e) == list(range(5)) for e in epochs)
  assert len({tuple(e) for e in epochs}) > 1  # reshuffled every epoch


def test_no_shuffle_keeps_order_and_rgb(colours):
  files, values = colours
  ds = data.make_dataset(files, SIZE, 1, seed=0, shuffle=False, repeat=False,
                         random_flip=False, channel_order="rgb")
  assert [_identify(b.numpy(), values, "rgb")[0] for b in ds] == list(range(5))


def test_shards_partition_each_epoch(colours):
  files, values = colours
  seen = []
  for index in range(2):
    ds = data.make_dataset(files, SIZE, 1, seed=5, repeat=False, num_shards=2,
                           shard_index=index)
    seen.append([_identify(b.numpy(), values)[0] for b in ds])
  assert len(seen[0]) == 3 and len(seen[1]) == 2
  assert sorted(seen[0] + seen[1]) == list(range(5))


def test_bad_files_are_skipped_and_counted(tmp_path, photos, capfd):
  good = []
  for i, path in enumerate(photos[:3]):
    good.append(str(tmp_path / f"good{i}.jpg"))
    with open(path, "rb") as src, open(good[-1], "wb") as dst:
      dst.write(src.read())
  with open(good[0], "rb") as f:
    jpeg = f.read()
  rng = np.random.default_rng(0)
  garbage = rng.integers(0, 256, 3000, np.uint8).tobytes()
  (tmp_path / "corrupt.jpg").write_bytes(jpeg[:300] + garbage)
  (tmp_path / "text.png").write_text("this is not a PNG")
  _save(tmp_path / "tiny.png", np.zeros((1, 1, 3)))
  files = data.list_files(tmp_path)
  assert len(files) == 6

  counter = data.make_skip_counter()
  ds = data.make_dataset(files, SIZE, 1, seed=0, repeat=False, drop_remainder=False,
                         skip_counter=counter)
  images = _batches(ds, 10)
  assert len(images) == 3
  assert int(counter.numpy()) == 3
  # The survivors are exactly the good images (compared on a non-augmented pass).
  plain = data.make_dataset(files, SIZE, 1, seed=0, shuffle=False, repeat=False,
                            random_crop=False, random_flip=False)
  reference = data.make_dataset(good, SIZE, 1, seed=0, shuffle=False, repeat=False,
                                random_crop=False, random_flip=False)
  for x, y in zip(_batches(plain, 10), _batches(reference, 10), strict=True):
    np.testing.assert_array_equal(x, y)
  err = capfd.readouterr().err
  for name in ("corrupt.jpg", "text.png", "tiny.png"):
    assert err.count(name) >= 1, err


def test_skips_when_repeating(tmp_path, colours):
  files, _ = colours
  (tmp_path / "bad.png").write_text("nope")
  counter = data.make_skip_counter()
  ds = data.make_dataset(files[:2] + [str(tmp_path / "bad.png")], SIZE, 2, seed=0,
                         skip_counter=counter)
  batches = _batches(ds, 3)  # 6 good images = 3 epochs of 2 good + 1 bad
  assert all(b.shape == (2, SIZE, SIZE, 3) for b in batches)
  assert int(counter.numpy()) == 1  # one bad file, counted once however many epochs


def test_a_file_that_breaks_after_the_first_epoch_is_counted(tmp_path):
  """A photo readable in epoch 0 and broken later was skipped but never counted."""
  files = [_solid(tmp_path / f"p{i}.png", (40 * i, 90, 160)) for i in range(3)]
  counter = data.make_skip_counter()
  ds = data.make_dataset(files, SIZE, 1, seed=0, shuffle=False, skip_counter=counter)
  it = iter(ds)
  for _ in range(3):  # epoch 0: every file is good
    next(it)
  (tmp_path / "p1.png").write_text("replaced by a text file")
  for _ in range(40):  # later epochs (past whatever the pipeline prefetched): p1 fails
    next(it)
  assert int(counter.numpy()) == 1  # counted once, however many epochs it fails in


def test_small_image_is_upscaled(tmp_path):
  # 12 x 30 vertical ramp: short side 12 < 32, so it is scaled to 32 x 80 and cropped.
  ramp = np.repeat(np.linspace(0, 255, 12)[:, None, None], 30, axis=1).repeat(3, axis=2)
  path = _save(tmp_path / "small.png", ramp)
  (batch,) = _batches(data.make_dataset([path], SIZE, 1, seed=0), 1)
  rows = _to_rgb255(batch[0])[..., 0].mean(axis=1)
  assert rows[0] < 20 and rows[-1] > 235  # whole ramp visible: upscaled, not cropped
  assert np.all(np.diff(rows) >= -1e-3)
  np.testing.assert_allclose(_to_rgb255(batch[0]).std(axis=1), 0, atol=1e-3)


def test_no_random_crop_squashes_whole_image(tmp_path):
  # Left half black, right half white, 40 x 120: squashed, both halves stay visible.
  image = np.zeros((40, 120, 3), np.uint8)
  image[:, 60:] = 255
  path = _save(tmp_path / "wide.png", image)
  (batch,) = _batches(data.make_dataset([path], SIZE, 1, seed=0, random_crop=False,
                                        random_flip=False), 1)
  cols = _to_rgb255(batch[0])[..., 0].mean(axis=0)
  assert cols[:SIZE // 2 - 1].max() < 1 and cols[SIZE // 2 + 1:].min() > 254


def test_load_validation_images(tmp_path, photos):
  # 40 x 80 image: left and right quarters red, centre green; centre crop keeps green.
  image = np.zeros((40, 80, 3), np.uint8)
  image[:, :20] = image[:, 60:] = (255, 0, 0)
  image[:, 20:60] = (0, 255, 0)
  centre = _save(tmp_path / "centre.png", image)
  (tmp_path / "bad.png").write_text("nope")
  files = [str(tmp_path / "bad.png"), centre] + photos
  batch = data.load_validation_images(files, SIZE, 3, channel_order="rgb")
  again = data.load_validation_images(files, SIZE, 3, channel_order="rgb")
  assert batch.shape == (3, SIZE, SIZE, 3) and batch.dtype == np.float32
  np.testing.assert_array_equal(batch, again)
  (single,) = data.load_validation_images([centre], SIZE, 1, channel_order="bgr")
  rgb = _to_rgb255(single)
  np.testing.assert_allclose(rgb[:, 2:-2], np.broadcast_to([0, 255, 0], (SIZE, SIZE - 4, 3)),
                             atol=1)
  assert len(data.load_validation_images([centre, str(tmp_path / "bad.png")], SIZE, 5)) == 1
  with pytest.raises(UserError):
    data.load_validation_images([str(tmp_path / "bad.png")], SIZE, 2)
