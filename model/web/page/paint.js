// The painting page, shared by serve.py's page (server.js) and the static site of export.py
// --format web (site.js): open a photo, paint the hole or open a mask, inpaint, look, paint
// again, download. Where the inpainting runs is the engine's business (ARCHITECTURE.md §9.6):
//
//   engine.admit(file, width, height) -> {refuse: text} | {warn: text} | undefined  (may be async)
//   engine.inpaint(photo, mask) -> {blob (PNG), pixels (ImageData, optional)}; throws Error(text)
//   engine.where() -> "" | " in this browser"  (for the status line)
//
// photo: {blob (the file as opened, or the last result), bitmap (decoded with pixels.DECODE),
// pixels (its exact RGBA once an engine has read them), name (stem), fileName}; mask: {image
// (ImageData, opaque: white holes on black, at the photo's size), holes (count)}.
//
// The photo and mask canvases have the photo's full resolution; CSS only scales what is shown,
// so holes are painted at full resolution. The mask is a list of actions (strokes, opened
// masks, clears) replayed for undo/redo.
import { decodeImage, readPixels } from "./pixels.js";

export const $ = (id) => document.getElementById(id);

const HOLE_COLOUR = "rgb(255, 48, 96)";
const MIN_SIZE = 4;
const MAX_SIZE = 200;

export function showError(text) {
  $("message-text").textContent = text;
  $("message").hidden = false;
}

function hideError() {
  $("message").hidden = true;
}

function setStatus(text) {
  $("status").textContent = text;
}

function stem(name) {
  const base = (name || "photo").split(/[\\/]/).pop();
  const dot = base.lastIndexOf(".");
  return dot > 0 ? base.slice(0, dot) : base;
}

function nextFrame() {  // lets the browser paint the busy state before the work starts
  return new Promise((resolve) => requestAnimationFrame(() => setTimeout(resolve, 0)));
}

/** Wires the page's controls to `engine` (see the top of this file). */
export function startPage(engine) {
  const photoCanvas = $("photo");
  const maskCanvas = $("mask");
  const photoCtx = photoCanvas.getContext("2d");
  const maskCtx = maskCanvas.getContext("2d", { willReadFrequently: true });

  const state = {
    photo: null,         // see the top of this file
    before: null,        // the photo before the last inpainting, or null
    actions: [],         // {kind: "stroke", erase, size, points} | {kind: "mask", canvas} | {kind: "clear"}
    redo: [],
    stroke: null,        // the stroke being painted
    tool: "brush",
    busy: false,
    showingBefore: false,
    downloadUrl: null,
  };

  function describePhoto() {
    if (!state.photo) return "No photo.";
    const shown = maskCanvas.getBoundingClientRect().width;
    const scale = shown ? Math.round((100 * shown) / photoCanvas.width) : 100;
    return `${state.photo.fileName}: ${photoCanvas.width}×${photoCanvas.height} px, shown at ${scale} %.`;
  }

  // -------------------------------------------------------------- opening files

  // The file decoded, or null (with a message) when the browser cannot decode it.
  async function decode(file) {
    try {
      return await decodeImage(file);
    } catch (_) {
      showError(`Cannot open ${file.name || "the pasted data"}: not an image this browser can ` +
                "decode (use PNG, JPEG, WebP, BMP or GIF).");
      return null;
    }
  }

  async function openPhoto(file) {
    if (!file) return;
    if (state.busy) {
      showError("Wait for the current inpainting to finish before opening another photo.");
      return;
    }
    const bitmap = await decode(file);
    if (!bitmap) return;
    const fileName = file.name || "pasted.png";
    const verdict = (await engine.admit(file, bitmap.width, bitmap.height)) || {};
    if (verdict.refuse) {
      showError(verdict.refuse);
      bitmap.close();
      return;
    }
    hideError();
    setPhoto({ blob: file, bitmap, pixels: null, name: stem(fileName), fileName }, null);
    if (verdict.warn) showError(verdict.warn);
  }

  // A mask file: a pixel is a hole when its brightest colour channel, composited over black by
  // its alpha, is > 127 (as test.py reads masks). It is added to the painted hole.
  async function openMask(file) {
    if (!file || !state.photo || state.busy) return;
    const bitmap = await decode(file);
    if (!bitmap) return;
    const { width, height } = photoCanvas;
    if (bitmap.width !== width || bitmap.height !== height) {
      showError(`${file.name}: mask is ${bitmap.width}x${bitmap.height} but the photo is ` +
                `${width}x${height} (width x height); masks are not resized, save the mask at ` +
                "the photo's size.");
      bitmap.close();
      return;
    }
    let src;
    try {
      src = readPixels(bitmap).data;
    } catch (e) {
      showError(`${file.name}: ${e.message}`);
      return;
    } finally {
      bitmap.close();
    }
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
    const canvas = document.createElement("canvas");
    canvas.width = width;
    canvas.height = height;
    canvas.getContext("2d").putImageData(holes, 0, 0);
    state.actions.push({ kind: "mask", canvas });
    state.redo = [];
    redrawMask();
    updateButtons();
    setStatus(`${file.name}: ${count} hole pixels added. ` + describePhoto());
  }

  function showBitmap(bitmap) {
    photoCtx.clearRect(0, 0, photoCanvas.width, photoCanvas.height);
    photoCtx.drawImage(bitmap, 0, 0);
  }

  function setPhoto(photo, before) {
    for (const old of [state.photo, state.before]) {
      if (old && old !== photo && old !== before) old.bitmap.close();
    }
    state.photo = photo;
    state.before = before;
    state.showingBefore = false;
    $("compare").setAttribute("aria-pressed", "false");
    $("compare").textContent = "Before";
    $("canvas-wrap").classList.remove("before");
    const { width, height } = photo.bitmap;
    for (const canvas of [photoCanvas, maskCanvas]) {
      canvas.width = width;   // setting a size clears the canvas even when it does not change
      canvas.height = height;
    }
    showBitmap(photo.bitmap);
    state.actions = [];
    state.redo = [];
    $("empty").hidden = true;
    $("canvas-wrap").hidden = false;
    updateDownload();
    updateButtons();
    setStatus(describePhoto());
  }

  // -------------------------------------------------------------- painting

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

  function displayScale() {  // photo pixels per CSS pixel of the displayed canvas
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

  // True when something was painted or opened since the last clear (erasing may still empty
  // the mask; `holeMask` counts the real pixels before anything runs).
  function hasPaint() {
    for (let i = state.actions.length - 1; i >= 0; i--) {
      const action = state.actions[i];
      if (action.kind === "clear") return false;
      if (!action.erase) return true;
    }
    return false;
  }

  // -------------------------------------------------------------- inpainting

  // The hole at the photo's size: every pixel the brush touched at all (alpha > 0, antialiased
  // edges included) is white, the rest black; all opaque.
  function holeMask() {
    const { width, height } = maskCanvas;
    const painted = new Uint32Array(maskCtx.getImageData(0, 0, width, height).data.buffer);
    const image = new ImageData(width, height);
    const pixels = new Uint32Array(image.data.buffer);
    const ALPHA = 0xff000000 >>> 0;   // RGBA bytes read as little-endian 32-bit words
    let holes = 0;
    for (let i = 0; i < painted.length; i++) {
      if (painted[i] & ALPHA) {
        pixels[i] = 0xffffffff;
        holes++;
      } else {
        pixels[i] = ALPHA;
      }
    }
    return { image, holes };
  }

  function setBusy(busy) {
    state.busy = busy;
    $("busy").hidden = !busy;
    $("canvas-wrap").classList.toggle("busy", busy);
    $("inpaint").textContent = busy ? "Inpainting…" : "Inpaint";
    updateButtons();
  }

  async function inpaint() {
    if (!state.photo || state.busy) return;
    if (state.showingBefore) toggleBefore();
    hideError();
    const mask = holeMask();
    if (!mask.holes) {
      showError("Paint over the area to fill first (the mask is empty).");
      return;
    }
    setBusy(true);
    const started = performance.now();
    const seconds = () => ((performance.now() - started) / 1000).toFixed(1);
    $("elapsed").textContent = "0.0 s";
    const timer = setInterval(() => { $("elapsed").textContent = `${seconds()} s`; }, 100);
    try {
      setStatus(`Inpainting ${mask.holes} pixels${engine.where()}…`);
      await nextFrame();
      const result = await engine.inpaint(state.photo, mask);
      const bitmap = await decodeImage(result.blob);
      const previous = state.photo;
      setPhoto({ blob: result.blob, bitmap, pixels: result.pixels || null, name: previous.name,
                 fileName: `${previous.name}_inpainted.png` }, previous);
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

  // -------------------------------------------------------------- before/after, download

  function toggleBefore() {
    if (!state.before || state.busy || state.stroke) return;
    state.showingBefore = !state.showingBefore;
    showBitmap((state.showingBefore ? state.before : state.photo).bitmap);
    $("compare").setAttribute("aria-pressed", String(state.showingBefore));
    $("compare").textContent = state.showingBefore ? "After" : "Before";
    $("canvas-wrap").classList.toggle("before", state.showingBefore);
    updateButtons();
  }

  function updateDownload() {
    const link = $("download");
    if (state.downloadUrl) URL.revokeObjectURL(state.downloadUrl);
    state.downloadUrl = null;
    if (state.photo && state.before) {
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

  // -------------------------------------------------------------- wiring

  $("file").addEventListener("change", (event) => {
    openPhoto(event.target.files[0]);
    event.target.value = "";   // opening the same file again fires "change" again
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
  $("inpaint").addEventListener("click", inpaint);
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
      const onControl = event.target.closest && event.target.closest("button, a, input, select");
      if (key === "[") setBrushSize(brushSize() / 1.25);
      else if (key === "]") setBrushSize(brushSize() * 1.25);
      else if (key === "b") setTool("brush");
      else if (key === "e") setTool("eraser");
      else if (key === "v") toggleBefore();
      else if (key === "enter" && !onControl) inpaint();
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
}
