"""The one listing rule, pairing by stem and output-path checks (model/fileio/paths.py; no TF)."""
import os

import pytest

from support.pictures import assert_user_error, photo
from model.fileio import encode
from model.fileio import paths


@pytest.mark.parametrize("name", ["out.xyz", "out", "out.gif"])
def test_bad_output_extension(tmp_path, name):
  assert_user_error(paths.check_output_path, tmp_path / name,
                     match="unsupported output extension")
  assert_user_error(encode.write_image, tmp_path / name, photo(), match="use one of .png")
  assert os.listdir(tmp_path) == []


def test_list_images(tmp_path):
  for name in ["b.PNG", "a.jpg", "c.webp", "d.txt", ".hidden.png", "e.jpeg", "f.tiff"]:
    (tmp_path / name).write_bytes(b"x")
  (tmp_path / "sub.png").mkdir()
  (tmp_path / "sub.png" / "deep.png").write_bytes(b"x")
  names = [os.path.basename(p) for p in paths.list_images(tmp_path)]
  assert names == ["a.jpg", "b.PNG", "c.webp", "e.jpeg", "f.tiff"]
  assert_user_error(paths.list_images, tmp_path / "nope", match="no such directory")
  assert_user_error(paths.list_images, tmp_path / "d.txt", match="is not a directory")


def test_one_listing_rule_also_when_recursive(tmp_path):
  """Training's recursive listing uses the same name rule: hidden files (e.g. macOS '._x.jpg')
  and hidden folders are skipped, names in any case, sorted by path."""
  for rel in ["b.PNG", "._a.jpg", "sub/c.JPEG", "sub/.d.png", ".cache/e.png", "sub/x.txt"]:
    (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
    (tmp_path / rel).write_bytes(b"x")
  found = [os.path.relpath(p, tmp_path) for p in paths.list_images(tmp_path, recursive=True)]
  assert found == ["b.PNG", os.path.join("sub", "c.JPEG")]
  assert [os.path.basename(p) for p in paths.list_images(tmp_path)] == ["b.PNG"]


def test_pair_by_stem(tmp_path):
  images, masks = tmp_path / "images", tmp_path / "masks"
  images.mkdir()
  masks.mkdir()
  for name in ["a.jpg", "b.png", "c.png"]:
    (images / name).write_bytes(b"x")
  for name in ["a.png", "b_mask.png", "zz.png"]:
    (masks / name).write_bytes(b"x")
  pairs, unpaired = paths.pair_by_stem(images, masks)
  assert pairs == [(str(images / "a.jpg"), str(masks / "a.png")),
                   (str(images / "b.png"), str(masks / "b_mask.png"))]
  assert unpaired == [str(images / "c.png")]

  single = str(masks / "zz.png")
  pairs, unpaired = paths.pair_by_stem(images, single)
  assert [m for _, m in pairs] == [single] * 3 and unpaired == []

  (masks / "a_mask.png").write_bytes(b"x")
  assert_user_error(paths.pair_by_stem, images, masks, match="a.jpg: several masks match")
  assert_user_error(paths.pair_by_stem, images, tmp_path / "nope",
                     match="no such mask file or directory")


def test_pair_in_one_folder(tmp_path):
  for name in ["a.png", "a_mask.png", "a.jpg", "b.png"]:
    (tmp_path / name).write_bytes(b"x")
  pairs, unpaired = paths.pair_by_stem(tmp_path, tmp_path)
  assert pairs == [(str(tmp_path / "a.jpg"), str(tmp_path / "a_mask.png")),
                   (str(tmp_path / "a.png"), str(tmp_path / "a_mask.png"))]
  assert unpaired == [str(tmp_path / "b.png")]
  # A single mask file inside the image folder is not paired with itself.
  pairs, _ = paths.pair_by_stem(tmp_path, tmp_path / "a_mask.png")
  assert str(tmp_path / "a_mask.png") not in [i for i, _ in pairs] and len(pairs) == 3
