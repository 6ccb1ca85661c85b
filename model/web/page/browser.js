// The painting page's engine that inpaints in this browser: deepfill.js's `inpaint()` (the
// model code: ONNX Runtime Web on model.onnx) imported from the folder of an export.py --format
// web site. The photo's exact pixels go in (pixels.js), the result comes out as an exact PNG.
import { encodePng, readPixels } from "./pixels.js";

/** The `startPage` engine (paint.js) running `base`/deepfill.js (`base`: a URL ending in /). */
export function browserEngine(base) {
  let module = null;
  const deepfill = () => (module ??= import(new URL("deepfill.js", base).href));

  return {
    where: () => " in this browser",

    /** Loads the runtime and the model; resolves to a line such as "ready in 1.2 s · ...". */
    async load() {
      const started = performance.now();
      const { availableThreads, load } = await deepfill();
      const info = await load();
      const seconds = ((performance.now() - started) / 1000).toFixed(1);
      const why = info.threads === 1 && availableThreads() === 1 && !globalThis.crossOriginIsolated
        ? " (the server sends no cross-origin isolation headers, which threads need)" : "";
      return `ready in ${seconds} s · WebAssembly, ${info.threads} ` +
        `thread${info.threads === 1 ? "" : "s"}${why}`;
    },

    async admit(file, width, height) {
      const { MAX_PIXELS } = await deepfill();
      const padded = Math.ceil(width / 8) * Math.ceil(height / 8) * 64;
      if (padded <= MAX_PIXELS) return undefined;
      return { warn: `${file.name || "pasted.png"} is ${width}×${height}: too large to inpaint ` +
        `in this browser (at most ${(MAX_PIXELS / 1e6).toFixed(2)} megapixels, e.g. 896×896). ` +
        "Scale or crop it first, or use serve.py or test.py." };
    },

    async inpaint(photo, mask) {
      const { inpaint } = await deepfill();
      photo.pixels ??= readPixels(photo.bitmap);
      const pixels = await inpaint(photo.pixels, mask.image, { channel: "red" });
      return { pixels, blob: await encodePng(pixels) };
    },
  };
}
