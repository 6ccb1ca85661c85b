// Exact pixels in and out of the page. A 2D canvas stores colours premultiplied by alpha, so
// reading a semi-transparent photo through one changes its RGB (all of it where alpha is 0),
// and so does writing a result through one. Here the photo is decoded without premultiplication
// or colour conversion, read through a WebGL texture, and results are written as PNG by
// `encodePng`: every RGBA value is kept (ARCHITECTURE.md §9.6).

/** createImageBitmap options: the file's own values, as test.py reads them. */
export const DECODE = { premultiplyAlpha: "none", colorSpaceConversion: "none" };

/** The file's pixels as an ImageBitmap (throws when the browser cannot decode it). */
export function decodeImage(blob) {
  return createImageBitmap(blob, DECODE);
}

// RGBA bytes of `bitmap` through a WebGL texture, or null without WebGL (or when the bitmap
// is larger than a texture may be).
function readWithWebGL(bitmap) {
  const canvas = document.createElement("canvas");
  const gl = canvas.getContext("webgl2") || canvas.getContext("webgl");
  if (!gl) return null;
  const { width, height } = bitmap;
  const largest = gl.getParameter(gl.MAX_TEXTURE_SIZE);
  let data = null;
  const texture = gl.createTexture();
  const framebuffer = gl.createFramebuffer();
  if (width <= largest && height <= largest) {
    gl.bindTexture(gl.TEXTURE_2D, texture);
    gl.pixelStorei(gl.UNPACK_PREMULTIPLY_ALPHA_WEBGL, false);
    gl.pixelStorei(gl.UNPACK_COLORSPACE_CONVERSION_WEBGL, gl.NONE);
    gl.texImage2D(gl.TEXTURE_2D, 0, gl.RGBA, gl.RGBA, gl.UNSIGNED_BYTE, bitmap);
    gl.bindFramebuffer(gl.FRAMEBUFFER, framebuffer);
    gl.framebufferTexture2D(gl.FRAMEBUFFER, gl.COLOR_ATTACHMENT0, gl.TEXTURE_2D, texture, 0);
    if (gl.checkFramebufferStatus(gl.FRAMEBUFFER) === gl.FRAMEBUFFER_COMPLETE) {
      // Texture row 0 is the image's top row, and readPixels starts at row 0.
      data = new Uint8Array(width * height * 4);
      gl.readPixels(0, 0, width, height, gl.RGBA, gl.UNSIGNED_BYTE, data);
      if (gl.getError() !== gl.NO_ERROR) data = null;
    }
  }
  gl.deleteFramebuffer(framebuffer);
  gl.deleteTexture(texture);
  const lose = gl.getExtension("WEBGL_lose_context");
  if (lose) lose.loseContext();
  return data && new ImageData(new Uint8ClampedArray(data.buffer), width, height);
}

/**
 * The exact RGBA values of `bitmap` (decoded with `DECODE`) as ImageData. Without WebGL a 2D
 * canvas is used, which is exact for opaque images only: a semi-transparent one then throws.
 */
export function readPixels(bitmap) {
  const exact = readWithWebGL(bitmap);
  if (exact) return exact;
  const canvas = document.createElement("canvas");
  canvas.width = bitmap.width;
  canvas.height = bitmap.height;
  const ctx = canvas.getContext("2d", { willReadFrequently: true });
  ctx.drawImage(bitmap, 0, 0);
  const pixels = ctx.getImageData(0, 0, canvas.width, canvas.height);
  for (let i = 3; i < pixels.data.length; i += 4) {
    if (pixels.data[i] !== 255) {
      throw new Error("this browser cannot read the exact colours of a semi-transparent " +
                      "image without WebGL; use an opaque photo, serve.py or test.py");
    }
  }
  return pixels;
}

// ---------------------------------------------------------------- PNG writing

const CRC_TABLE = new Uint32Array(256).map((_, n) => {
  let c = n;
  for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
  return c;
});

function crc32(bytes) {
  let c = 0xffffffff;
  for (let i = 0; i < bytes.length; i++) c = CRC_TABLE[(c ^ bytes[i]) & 255] ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

function chunk(type, body) {
  const out = new Uint8Array(12 + body.length);
  const view = new DataView(out.buffer);
  view.setUint32(0, body.length);
  for (let i = 0; i < 4; i++) out[4 + i] = type.charCodeAt(i);
  out.set(body, 8);
  view.setUint32(8 + body.length, crc32(out.subarray(4, 8 + body.length)));
  return out;
}

function paeth(a, b, c) {
  const p = a + b - c;
  const pa = Math.abs(p - a), pb = Math.abs(p - b), pc = Math.abs(p - c);
  return pa <= pb && pa <= pc ? a : pb <= pc ? b : c;
}

// Writes `row` filtered with PNG filter `type` (0-4) to `out` at `at`; returns the sum of the
// filtered bytes read as signed values (the usual heuristic for choosing a row's filter).
function filterRow(type, row, prev, bpp, out, at) {
  let cost = 0;
  for (let i = 0; i < row.length; i++) {
    const a = i >= bpp ? row[i - bpp] : 0;
    const b = prev ? prev[i] : 0;
    let predictor = 0;
    if (type === 1) predictor = a;
    else if (type === 2) predictor = b;
    else if (type === 3) predictor = (a + b) >> 1;
    else if (type === 4) predictor = paeth(a, b, prev && i >= bpp ? prev[i - bpp] : 0);
    const value = (row[i] - predictor) & 255;
    out[at + i] = value;
    cost += value < 128 ? value : 256 - value;
  }
  return cost;
}

async function deflate(bytes) {  // zlib format (RFC 1950), as PNG's IDAT holds it
  const stream = new Blob([bytes]).stream().pipeThrough(new CompressionStream("deflate"));
  return new Uint8Array(await new Response(stream).arrayBuffer());
}

/**
 * A PNG file (Blob) of `image` (ImageData) holding exactly its values: grey when every pixel is
 * opaque grey, RGB when every pixel is opaque, else RGBA (alpha as given). `filter`: the PNG
 * filter of every row (0-4), or "adaptive" to choose one per row.
 */
export async function encodePng(image, filter = "adaptive") {
  const { width, height, data } = image;
  let opaque = true;
  let grey = true;
  for (let i = 0; i < data.length && (opaque || grey); i += 4) {
    if (data[i + 3] !== 255) opaque = false;
    if (data[i] !== data[i + 1] || data[i] !== data[i + 2]) grey = false;
  }
  const channels = !opaque ? 4 : grey ? 1 : 3;
  const stride = width * channels;
  const raw = new Uint8Array((stride + 1) * height);
  const trial = new Uint8Array(stride);
  let prev = null;
  for (let y = 0; y < height; y++) {
    const row = new Uint8Array(stride);
    for (let x = 0, j = y * width * 4; x < width; x++, j += 4) {
      for (let k = 0; k < channels; k++) row[x * channels + k] = data[j + k];
    }
    let best = filter;
    if (filter === "adaptive") {
      let bestCost = Infinity;
      for (let type = 0; type < 5; type++) {
        const cost = filterRow(type, row, prev, channels, trial, 0);
        if (cost < bestCost) { best = type; bestCost = cost; }
      }
    }
    const at = y * (stride + 1);
    raw[at] = best;
    filterRow(best, row, prev, channels, raw, at + 1);
    prev = row;
  }
  const header = new Uint8Array(13);
  const view = new DataView(header.buffer);
  view.setUint32(0, width);
  view.setUint32(4, height);
  header[8] = 8;  // bits per sample; compression, filter and interlace methods stay 0
  header[9] = { 1: 0, 3: 2, 4: 6 }[channels];
  const signature = new Uint8Array([137, 80, 78, 71, 13, 10, 26, 10]);
  return new Blob([signature, chunk("IHDR", header), chunk("IDAT", await deflate(raw)),
                   chunk("IEND", new Uint8Array(0))], { type: "image/png" });
}
