"""Decoding rules shared by the Pillow reader (`model.fileio.decode`) and the SavedModel's
TensorFlow decoder (`model.inference.bytes_decode`), defined once. No dependencies."""

MASK_THRESHOLD = 127  # a mask pixel is a hole when its brightest colour channel is above this
# Progressive JPEGs have about 10 scans (libjpeg's default script: 10; mozjpeg: up to ~15).
# Each scan is a pass over the whole image, so a file repeating a tiny scan thousands of times
# costs minutes of decoding for a few hundred KB; above this many scans a JPEG is refused.
MAX_JPEG_SCANS = 100
TOO_MANY_SCANS = (f"JPEG has more than {MAX_JPEG_SCANS} scans (progressive JPEGs have about "
                  "10); refused, decoding it would take very long")
ANIMATED_WEBP = ("animated WebP is not supported (nor by the SavedModel, whose decoder cannot "
                 "read animations safely); save the frame you want as PNG")
PNG_CHECKSUM = ("damaged PNG: a chunk's checksum (CRC) does not match its data; the file was "
                "altered or cut, save it again")
