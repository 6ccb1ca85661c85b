// DeepFill v1 in the browser: `inpaint(image, mask)` runs `model.onnx` (the folder this file is
// in) with ONNX Runtime Web's WebAssembly backend. The model and the runtime are fetched from
// this folder; the pixels never leave the page. See docs/BROWSER.md.
//
//   import { inpaint } from "./deepfill.js";
//   const result = await inpaint(imageData, maskData);   // ImageData -> ImageData
//
// Threads: ONNX Runtime's threaded WebAssembly needs SharedArrayBuffer, which browsers give only
// to a cross-origin isolated page (headers Cross-Origin-Opener-Policy: same-origin and
// Cross-Origin-Embedder-Policy: require-corp). Plain static servers such as `python -m
// http.server` send neither, so there the model runs on one thread; with the headers it uses up
// to 4 (one per core). Inference runs in ONNX Runtime's proxy Web Worker, so the page stays
// responsive meanwhile.
import * as ort from "./ort/ort.wasm.min.mjs";

const HERE = new URL(".", import.meta.url);
const MODEL_URL = new URL("model.onnx", HERE).href;
const MAX_THREADS = 4;

/**
 * The largest image (pixels, after padding H and W to multiples of 8) that `inpaint` accepts.
 * The ONNX graph's contextual attention is dense: its score matrix has (H·W/64)² floats, and
 * WebAssembly has 4 GB of memory. Measured in Chromium: 896² runs (3.3 GB peak), 1024² fails
 * with bad_alloc after using it all (bench/WEB_RESULTS.md).
 */
export const MAX_PIXELS = 896 * 896;

let loading = null;  // Promise<ort.InferenceSession> once load() was called

/** Number of WebAssembly threads this page can use (1 unless cross-origin isolated). */
export function availableThreads() {
  if (!globalThis.crossOriginIsolated) return 1;
  return Math.max(1, Math.min(MAX_THREADS, globalThis.navigator?.hardwareConcurrency || 1));
}

/**
 * Fetches the runtime and the model and creates the session (once; later calls share it).
 * `options.threads` caps the thread count (default: `availableThreads()`).
 * Resolves to {threads, inputNames, outputNames}.
 */
export async function load(options = {}) {
  if (!loading) {
    ort.env.wasm.wasmPaths = new URL("ort/", HERE).href;
    ort.env.wasm.numThreads = Math.max(1, Math.min(options.threads || MAX_THREADS,
                                                   availableThreads()));
    ort.env.logLevel = "error";
    ort.env.wasm.proxy = true;
    loading = ort.InferenceSession.create(MODEL_URL, {
      executionProviders: ["wasm"],
      graphOptimizationLevel: "all",
    }).catch((error) => {
      loading = null;  // a later call tries again
      throw new Error(`cannot load the model ${MODEL_URL}: ${error.message || error}`);
    });
  }
  const session = await loading;
  return {
    threads: ort.env.wasm.numThreads,
    inputNames: session.inputNames,
    outputNames: session.outputNames,
  };
}

function checkPixels(name, value) {
  const ok = value && Number.isInteger(value.width) && Number.isInteger(value.height) &&
    value.data && value.data.length === value.width * value.height * 4;
  if (!ok) throw new TypeError(`${name} must be an ImageData (RGBA, width x height x 4 bytes)`);
}

/**
 * Which channel of `mask` marks the holes: "alpha" when some pixel is not opaque (holes painted
 * on a transparent layer), otherwise "red" (a black mask with white holes, as `test.py` reads).
 */
export function maskChannel(mask) {
  const data = mask.data;
  for (let i = 3; i < data.length; i += 4) if (data[i] !== 255) return "alpha";
  return "red";
}

/**
 * Inpaints the holes of `image`.
 *
 * image: ImageData (RGB is used; the alpha is copied to the result).
 * mask:  ImageData of the same size; a pixel is a hole where its alpha is > 127 if the mask has
 *        any transparent pixel, else where its red is > 127 (white on black). `options.channel`
 *        ("alpha" | "red") overrides the choice.
 * Returns a new ImageData: the image's pixels outside the hole, the model's fill inside.
 * Throws RangeError for bad arguments and images over `MAX_PIXELS` (`options.maxPixels`).
 */
export async function inpaint(image, mask, options = {}) {
  checkPixels("image", image);
  checkPixels("mask", mask);
  const { width, height } = image;
  if (mask.width !== width || mask.height !== height) {
    throw new RangeError(`mask is ${mask.width}x${mask.height} but image is ${width}x${height} ` +
                         "(width x height); masks are not resized");
  }
  const padded = Math.ceil(width / 8) * 8 * Math.ceil(height / 8) * 8;
  const limit = options.maxPixels || MAX_PIXELS;
  if (padded > limit) {
    throw new RangeError(`${width}x${height} is too large to inpaint in the browser (at most ` +
                         `${(limit / 1e6).toFixed(2)} megapixels, e.g. 896x896: WebAssembly's ` +
                         "4 GB memory); scale or crop it, or use serve.py or test.py");
  }
  const channel = options.channel || maskChannel(mask);
  if (channel !== "alpha" && channel !== "red") {
    throw new RangeError(`options.channel must be "alpha" or "red", got ${channel}`);
  }
  const offset = channel === "alpha" ? 3 : 0;
  const pixels = width * height;
  const src = image.data;
  const marks = mask.data;
  const rgb = new Uint8Array(pixels * 3);
  const hole = new Uint8Array(pixels);
  let holes = 0;
  for (let i = 0, j = 0, k = 0; i < pixels; i++, j += 4, k += 3) {
    rgb[k] = src[j];
    rgb[k + 1] = src[j + 1];
    rgb[k + 2] = src[j + 2];
    if (marks[j + offset] > 127) {
      hole[i] = 255;
      holes++;
    }
  }
  const out = new ImageData(new Uint8ClampedArray(src), width, height);
  if (!holes) return out;  // nothing to fill: the model would return the image unchanged

  await load(options);
  const session = await loading;
  const feeds = {  // the graph's contract (export.py --format onnx)
    image: new ort.Tensor("uint8", rgb, [1, height, width, 3]),
    mask: new ort.Tensor("uint8", hole, [1, height, width, 1]),
  };
  let fill;
  try {
    fill = (await session.run(feeds)).inpainted;
  } catch (error) {
    const text = String(error.message || error);
    const why = /bad_alloc|memory/i.test(text) ? "out of memory (WebAssembly has 4 GB)" : text;
    throw new Error(`inpainting failed (${width}x${height}): ${why}`);
  }
  const filled = fill.data;
  if (filled.length !== pixels * 3) {
    throw new Error(`the model returned ${fill.dims.join("x")} values for a ${width}x${height} image`);
  }
  const dst = out.data;
  for (let i = 0, j = 0, k = 0; i < pixels; i++, j += 4, k += 3) {
    dst[j] = filled[k];
    dst[j + 1] = filled[k + 1];
    dst[j + 2] = filled[k + 2];
  }
  fill.dispose();
  return out;
}
