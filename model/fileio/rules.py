"""The rules an image or mask file is held to, written out once (documentation cites this list).

Two readers apply them: the Pillow reader ``model/fileio/decode.py`` (test.py, evaluate.py,
train.py's data, the web app, batch_inpaint.py) and the SavedModel's TensorFlow decoder
``model/inference/bytes_decode.py`` (``inpaint_bytes``). No dependencies.

1. Formats: PNG, JPEG, BMP, GIF (its first frame), still WebP; TIFF in the Pillow reader only
   (TensorFlow has no TIFF decoder). An animated WebP is refused (``ANIMATED_WEBP``).
2. From the header, before anything is decoded: width x height at most the pixel cap
   (``--max_megapixels``, ``model/limits.py``; a GIF's frame descriptors count too), a JPEG with
   more than ``MAX_JPEG_SCANS`` scans (SOS markers 0xFF 0xDA anywhere in the file, an EXIF
   thumbnail's included; both readers count them so) is refused, and the Pillow reader refuses a mask whose size
   cannot be its image's. The decoded array is checked against the cap again.
3. Damaged data is refused with one line naming the file (libtiff's error lines included); a
   damaged but complete JPEG decodes as viewers show it.
4. Pixels are RGB in display orientation: the EXIF Orientation tag applied as
   ``PIL.ImageOps.exif_transpose`` applies it.
5. 16-bit samples become round(v / 257); other sample types (float, 32-bit) are refused.
6. Masks: a pixel is a hole when its brightest colour channel is above ``MASK_THRESHOLD``.
"""

MASK_THRESHOLD = 127  # a mask pixel is a hole when its brightest colour channel is above this
# Each scan is a pass over the whole image, so a small file repeating a tiny scan thousands of
# times is a CPU bomb; progressive JPEGs have about 10 (libjpeg's default script).
MAX_JPEG_SCANS = 100
TOO_MANY_SCANS = (f"JPEG has more than {MAX_JPEG_SCANS} scans (progressive JPEGs have about "
                  "10); refused, decoding it would take very long")
ANIMATED_WEBP = ("animated WebP is not supported (nor by the SavedModel, whose decoder cannot "
                 "read animations safely); save the frame you want as PNG")
PNG_CHECKSUM = ("damaged PNG: a chunk's checksum (CRC) does not match its data; the file was "
                "altered or cut, save it again")
