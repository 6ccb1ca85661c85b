// The painting page of the static folder (export.py --format web): open a photo, paint the hole
// or open a mask, inpaint with deepfill.js in this browser, repeat, download. Nothing is sent to
// any server: the photo is decoded, inpainted and encoded in the page.
//
// The photo is kept as ImageData at its full resolution (the canvas shows it scaled by CSS);
// the mask canvas has the same size, so holes are painted at full resolution. The mask is a
// list of actions (strokes, opened masks, clears) replayed for undo/redo.
import { MAX_PIXELS, availableThreads, inpaint, load } from "./deepfill.js";

const $ = (id) => document.getElementById(id);
const photoCanvas = $("photo");
const maskCanvas = $("mask");
const photoCtx = photoCanvas.getContext("2d", { willReadFrequently: true });
const maskCtx = maskCanvas.getContext("2d", { willReadFrequently: true });
const HOLE_COLOUR = "rgb(255, 48, 96)";
const MIN_SIZE = 4;
const MAX_SIZE = 200;
const DECODE = { colorSpaceConversion: "none", premultiplyAlpha: "none" };

const state = {
  photo: null,    // {pixels: ImageData, name (stem), fileName, blob (PNG of a result) | null}
  before: null,   // the photo before the last inpainting
  actions: [],    // {kind: "stroke", erase, size, points} | {kind: "mask", canvas} | {kind: "clear"}
  redo: [],
  stroke: null,
  tool: "brush",
  busy: false,
  showingBefore: false,
  downloadUrl: null,
};

// ---------------------------------------------------------------- messages and status

function showError(text) {
  $("message-text").textContent = text;
  $("message").hidden = false;
}

function hideError() {
  $("message").hidden = true;
}

function setStatus(text) {
  $("status").textContent = text;
}

function describePhoto() {
  if (!state.photo) return "No photo.";
  const shown = maskCanvas.getBoundingClientRect().width;
  const scale = shown ? Math.round((100 * shown) / photoCanvas.width) : 100;
  return `${state.photo.fileName}: ${photoCanvas.width}×${photoCanvas.height} px, shown at ${scale} %.`;
}

async function loadModel() {
  const started = performance.now();
  try {
    const info = await load();
    const seconds = ((performance.now() - started) / 1000).toFixed(1);
    const why = info.threads === 1 && availableThreads() === 1 && !globalThis.crossOriginIsolated
      ? " (the server sends no cross-origin isolation headers, which threads need)" : "";
    $("model").textContent = `model ready in ${seconds} s · WebAssembly, ${info.threads} ` +
      `thread${info.threads === 1 ? "" : "s"}${why}`;
  } catch (e) {
    $("model").textContent = "model not loaded";
    showError(e.message);
  }
}

// ---------------------------------------------------------------- opening files

function stem(name) {
  const base = (name || "photo").split(/[\\/]/).pop();
  const dot = base.lastIndexOf(".");
  return dot > 0 ? base.slice(0, dot) : base;
}

// The file's pixels as ImageData, or null (with a message) when the browser cannot decode it.
async function decode(file) {
  let bitmap;
  try {
    bitmap = await createImageBitmap(file, DECODE);
  } catch (_) {
    showError(`Cannot open ${file.name || "the pasted data"}: not an image this browser can ` +
              "decode (use PNG, JPEG, WebP, BMP or GIF).");
    return null;
  }
  const canvas = new OffscreenCanvas(bitmap.width, bitmap.height);
  const ctx = canvas.getContext("2d", { willReadFrequently: true });
  ctx.drawImage(bitmap, 0, 0);
  bitmap.close();
  return ctx.getImageData(0, 0, canvas.width, canvas.height);
}

async function openPhoto(file) {
  if (!file) return;
  if (state.busy) {
    showError("Wait for the current inpainting to finish before opening another photo.");
    return;
  }
  const pixels = await decode(file);
  if (!pixels) return;
  hideError();
  const fileName = file.name || "pasted.png";
  setPhoto({ pixels, name: stem(fileName), fileName, blob: null }, null);
  const padded = Math.ceil(pixels.width / 8) * Math.ceil(pixels.height / 8) * 64;
  if (padded > MAX_PIXELS) {
    showError(`${fileName} is ${pixels.width}×${pixels.height}: too large to inpaint in this ` +
              `browser (at most ${(MAX_PIXELS / 1e6).toFixed(2)} megapixels, e.g. 896×896). ` +
              "Scale or crop it first, or use serve.py or test.py.");
  }
}

// A mask file: a pixel is a hole when its brightest colour channel, composited over black by
// its alpha, is > 127 (as test.py reads masks). It is added to the painted hole.
async function openMask(file) {
  if (!file || !state.photo || state.busy) return;
  const pixels = await decode(file);
  if (!pixels) return;
  const { width, height } = photoCanvas;
  if (pixels.width !== width || pixels.height !== height) {
    showError(`${file.name}: mask is ${pixels.width}x${pixels.height} but the photo is ` +
              `${width}x${height} (width x height); masks are not resized, save the mask at ` +
              "the photo's size.");
    return;
  }
  const src = pixels.data;
  const holes = new ImageData(width, height);
  const out = holes.data;
  let count = 0;
  for (let i = 0; i < src.length; i += 4) {
    const value = Math.max(src[i], src[i + 1], src[i + 2]);
    if (Math.floor((value * src[i + 3] + 127) / 255) > 127) {
      out[i] = 255; out[i + 1] = 48; out[i + 2] = 96; out[i + 3] = 255;
      count++;
    }
  }
  if (!count) {
    showError(`${file.name}: the mask has no hole (holes are white, > 127, on black).`);
    return;
  }
  hideError();
  const canvas = new OffscreenCanvas(width, height);
  canvas.getContext("2d").putImageData(holes, 0, 0);
  state.actions.push({ kind: "mask", canvas });
  state.redo = [];
  redrawMask();
  updateButtons();
  setStatus(`${file.name}: ${count} hole pixels added. ` + describePhoto());
}

function showPixels(pixels) {
  photoCtx.putImageData(pixels, 0, 0);
}

function setPhoto(photo, before) {
  state.photo = photo;
  state.before = before;
  state.showingBefore = false;
  $("compare").setAttribute("aria-pressed", "false");
  $("compare").textContent = "Before";
  $("canvas-wrap").classList.remove("before");
  const { width, height } = photo.pixels;
  for (const canvas of [photoCanvas, maskCanvas]) {
    canvas.width = width;   // setting a size clears the canvas even when it does not change
    canvas.height = height;
  }
  showPixels(photo.pixels);
  state.actions = [];
  state.redo = [];
  $("empty").hidden = true;
  $("canvas-wrap").hidden = false;
  updateDownload();
  updateButtons();
  setStatus(describePhoto());
}

// ---------------------------------------------------------------- painting

function drawSegment(ctx, stroke, a, b) {
  ctx.globalCompositeOperation = stroke.erase ? "destination-out" : "source-over";
  ctx.fillStyle = HOLE_COLOUR;
  ctx.strokeStyle = HOLE_COLOUR;
  ctx.lineWidth = stroke.size;
  ctx.lineCap = "round";
  ctx.lineJoin = "round";
  ctx.beginPath();
  if (a === b) {
    ctx.arc(a.x, a.y, stroke.size / 2, 0, 2 * Math.PI);
    ctx.fill();
  } else {
    ctx.moveTo(a.x, a.y);
    ctx.lineTo(b.x, b.y);
    ctx.stroke();
  }
}

function drawAction(ctx, action) {
  if (action.kind === "clear") {
    ctx.clearRect(0, 0, ctx.canvas.width, ctx.canvas.height);
  } else if (action.kind === "mask") {
    ctx.globalCompositeOperation = "source-over";
    ctx.drawImage(action.canvas, 0, 0);
  } else {
    const points = action.points;
    drawSegment(ctx, action, points[0], points[0]);
    for (let i = 1; i < points.length; i++) drawSegment(ctx, action, points[i - 1], points[i]);
  }
}

function redrawMask() {
  maskCtx.globalCompositeOperation = "source-over";
  maskCtx.clearRect(0, 0, maskCanvas.width, maskCanvas.height);
  for (const action of state.actions) drawAction(maskCtx, action);
}

function displayScale() {  // photo pixels per CSS pixel
  const rect = maskCanvas.getBoundingClientRect();
  return rect.width ? maskCanvas.width / rect.width : 1;
}

function toPhoto(event) {
  const rect = maskCanvas.getBoundingClientRect();
  return {
    x: ((event.clientX - rect.left) * maskCanvas.width) / rect.width,
    y: ((event.clientY - rect.top) * maskCanvas.height) / rect.height,
  };
}

function brushSize() {
  return Number($("size").value);
}

function setBrushSize(value) {
  const size = Math.max(MIN_SIZE, Math.min(MAX_SIZE, Math.round(value)));
  $("size").value = String(size);
  $("size-value").textContent = String(size);
  $("cursor").style.width = $("cursor").style.height = `${size}px`;
}

function setTool(tool) {
  state.tool = tool;
  $("brush").setAttribute("aria-pressed", String(tool === "brush"));
  $("eraser").setAttribute("aria-pressed", String(tool === "eraser"));
}

function canPaint() {
  return state.photo && !state.busy && !state.showingBefore;
}

function moveCursor(event) {
  const cursor = $("cursor");
  const wrap = $("canvas-wrap").getBoundingClientRect();
  cursor.style.left = `${event.clientX - wrap.left}px`;
  cursor.style.top = `${event.clientY - wrap.top}px`;
  cursor.style.display = canPaint() && event.pointerType !== "touch" ? "block" : "none";
}

maskCanvas.addEventListener("pointerdown", (event) => {
  if (!canPaint() || event.button !== 0) return;
  event.preventDefault();
  maskCanvas.setPointerCapture(event.pointerId);
  const point = toPhoto(event);
  state.stroke = {
    kind: "stroke",
    erase: state.tool === "eraser",
    size: brushSize() * displayScale(),
    points: [point],
  };
  drawSegment(maskCtx, state.stroke, point, point);
});

maskCanvas.addEventListener("pointermove", (event) => {
  moveCursor(event);
  const stroke = state.stroke;
  if (!stroke) return;
  const coalesced = event.getCoalescedEvents ? event.getCoalescedEvents() : [];
  for (const each of coalesced.length ? coalesced : [event]) {
    const point = toPhoto(each);
    const last = stroke.points[stroke.points.length - 1];
    if (point.x === last.x && point.y === last.y) continue;
    stroke.points.push(point);
    drawSegment(maskCtx, stroke, last, point);
  }
});

function endStroke() {
  if (!state.stroke) return;
  state.actions.push(state.stroke);
  state.redo = [];
  state.stroke = null;
  updateButtons();
}

maskCanvas.addEventListener("pointerup", endStroke);
maskCanvas.addEventListener("pointercancel", endStroke);
maskCanvas.addEventListener("pointerleave", () => { $("cursor").style.display = "none"; });

function undo() {
  if (state.busy || state.stroke || !state.actions.length) return;
  state.redo.push(state.actions.pop());
  redrawMask();
  updateButtons();
}

function redo() {
  if (state.busy || state.stroke || !state.redo.length) return;
  state.actions.push(state.redo.pop());
  redrawMask();
  updateButtons();
}

function clearMask() {
  if (state.busy || !hasPaint()) return;
  state.actions.push({ kind: "clear" });
  state.redo = [];
  redrawMask();
  updateButtons();
}

// True when something was painted or opened since the last clear (erasing may still empty the
// mask; `holeMask` counts the real pixels).
function hasPaint() {
  for (let i = state.actions.length - 1; i >= 0; i--) {
    const action = state.actions[i];
    if (action.kind === "clear") return false;
    if (!action.erase) return true;
  }
  return false;
}

// ---------------------------------------------------------------- inpainting

// The hole as ImageData for deepfill.js: opaque where the brush touched at all (alpha > 0,
// antialiased edges included, as the server page sends), transparent elsewhere.
function holeMask() {
  const { width, height } = maskCanvas;
  const painted = maskCtx.getImageData(0, 0, width, height).data;
  const mask = new ImageData(width, height);
  const out = mask.data;
  let holes = 0;
  for (let i = 3; i < painted.length; i += 4) {
    if (painted[i]) {
      out[i - 3] = out[i - 2] = out[i - 1] = out[i] = 255;
      holes++;
    }
  }
  return { mask, holes };
}

function setBusy(busy) {
  state.busy = busy;
  $("busy").hidden = !busy;
  $("canvas-wrap").classList.toggle("busy", busy);
  $("inpaint").textContent = busy ? "Inpainting…" : "Inpaint";
  updateButtons();
}

function nextFrame() {  // lets the browser paint the busy state before the model runs
  return new Promise((resolve) => requestAnimationFrame(() => setTimeout(resolve, 0)));
}

async function run() {
  if (!state.photo || state.busy) return;
  if (state.showingBefore) toggleBefore();
  hideError();
  const { mask, holes } = holeMask();
  if (!holes) {
    showError("Paint over the area to fill first (the mask is empty).");
    return;
  }
  setBusy(true);
  const started = performance.now();
  const seconds = () => ((performance.now() - started) / 1000).toFixed(1);
  $("elapsed").textContent = "0.0 s";
  const timer = setInterval(() => { $("elapsed").textContent = `${seconds()} s`; }, 100);
  try {
    setStatus(`Inpainting ${holes} pixels in this browser…`);
    await nextFrame();
    const pixels = await inpaint(state.photo.pixels, mask, { channel: "alpha" });
    const previous = state.photo;
    const canvas = new OffscreenCanvas(pixels.width, pixels.height);
    canvas.getContext("2d").putImageData(pixels, 0, 0);
    const blob = await canvas.convertToBlob({ type: "image/png" });
    setPhoto({ pixels, name: previous.name, fileName: `${previous.name}_inpainted.png`, blob },
             previous);
    setStatus(`Inpainted in ${seconds()} s. Paint again to refine, or download. ` +
              describePhoto());
  } catch (e) {
    showError(`Inpainting failed: ${e.message}`);
    setStatus(describePhoto());
  } finally {
    clearInterval(timer);
    setBusy(false);
  }
}

// ---------------------------------------------------------------- before/after, download

function toggleBefore() {
  if (!state.before || state.busy || state.stroke) return;
  state.showingBefore = !state.showingBefore;
  showPixels((state.showingBefore ? state.before : state.photo).pixels);
  $("compare").setAttribute("aria-pressed", String(state.showingBefore));
  $("compare").textContent = state.showingBefore ? "After" : "Before";
  $("canvas-wrap").classList.toggle("before", state.showingBefore);
  updateButtons();
}

function updateDownload() {
  const link = $("download");
  if (state.downloadUrl) URL.revokeObjectURL(state.downloadUrl);
  state.downloadUrl = null;
  if (state.photo && state.photo.blob) {
    state.downloadUrl = URL.createObjectURL(state.photo.blob);
    link.href = state.downloadUrl;
    link.download = state.photo.fileName;
    link.setAttribute("aria-disabled", "false");
  } else {
    link.removeAttribute("href");
    link.setAttribute("aria-disabled", "true");
  }
}

function updateButtons() {
  const idle = Boolean(state.photo) && !state.busy;
  $("undo").disabled = !idle || !state.actions.length || state.showingBefore;
  $("redo").disabled = !idle || !state.redo.length || state.showingBefore;
  $("clear").disabled = !idle || !hasPaint() || state.showingBefore;
  $("inpaint").disabled = !idle || !hasPaint();
  $("compare").disabled = !idle || !state.before;
  $("file").disabled = state.busy;
  $("mask-file").disabled = !idle;
}

// ---------------------------------------------------------------- wiring

$("file").addEventListener("change", (event) => {
  openPhoto(event.target.files[0]);
  event.target.value = "";  // opening the same file again fires "change" again
});
$("mask-file").addEventListener("change", (event) => {
  openMask(event.target.files[0]);
  event.target.value = "";
});
$("brush").addEventListener("click", () => setTool("brush"));
$("eraser").addEventListener("click", () => setTool("eraser"));
$("size").addEventListener("input", (event) => setBrushSize(Number(event.target.value)));
$("undo").addEventListener("click", undo);
$("redo").addEventListener("click", redo);
$("clear").addEventListener("click", clearMask);
$("inpaint").addEventListener("click", run);
$("compare").addEventListener("click", toggleBefore);
$("message-close").addEventListener("click", hideError);
window.addEventListener("resize", () => setStatus(describePhoto()));

document.addEventListener("keydown", (event) => {
  const key = event.key.toLowerCase();
  const mod = event.ctrlKey || event.metaKey;
  if (mod && key === "z") {
    event.preventDefault();
    if (event.shiftKey) redo(); else undo();
  } else if (mod && key === "y") {
    event.preventDefault();
    redo();
  } else if (!mod && !event.altKey) {
    const onControl = event.target.closest && event.target.closest("button, a, input");
    if (key === "[") setBrushSize(brushSize() / 1.25);
    else if (key === "]") setBrushSize(brushSize() * 1.25);
    else if (key === "b") setTool("brush");
    else if (key === "e") setTool("eraser");
    else if (key === "v") toggleBefore();
    else if (key === "enter" && !onControl) run();
  }
});

const stage = $("stage");
window.addEventListener("dragover", (event) => {
  event.preventDefault();
  stage.classList.add("dragging");
});
window.addEventListener("dragleave", (event) => {
  if (!event.relatedTarget) stage.classList.remove("dragging");
});
window.addEventListener("drop", (event) => {
  event.preventDefault();
  stage.classList.remove("dragging");
  const file = event.dataTransfer && event.dataTransfer.files[0];
  if (file) openPhoto(file);
});
document.addEventListener("paste", (event) => {
  const items = event.clipboardData ? Array.from(event.clipboardData.items) : [];
  const item = items.find((each) => each.kind === "file" && each.type.startsWith("image/"));
  if (item) {
    event.preventDefault();
    openPhoto(item.getAsFile());
  }
});

setBrushSize(brushSize());
updateButtons();
loadModel();
