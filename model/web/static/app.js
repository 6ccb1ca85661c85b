// DeepFill web page: open a photo, paint the hole, inpaint through /api/inpaint, repeat, download.
//
// The photo canvas and the mask canvas have the photo's full resolution; CSS only scales what
// is shown, so the mask is painted and sent at full resolution. The mask is kept as a list of
// actions (strokes and clears) replayed for undo/redo. The photo is sent as the bytes that were
// opened (or the PNG the server returned), never re-encoded by the browser, so the server sees
// exactly the file a user would give to `python test.py`.
"use strict";

(() => {
  const $ = (id) => document.getElementById(id);
  const photoCanvas = $("photo");
  const maskCanvas = $("mask");
  const photoCtx = photoCanvas.getContext("2d");
  const maskCtx = maskCanvas.getContext("2d");
  const HOLE_COLOUR = "rgb(255, 48, 96)";
  const MIN_SIZE = 4;
  const MAX_SIZE = 200;

  const state = {
    photo: null,         // {blob, bitmap, name (stem), fileName}
    before: null,        // the photo before the last inpainting, or null
    actions: [],         // {kind: "stroke", erase, size, points} | {kind: "clear"}
    redo: [],
    stroke: null,        // the stroke being painted
    tool: "brush",
    busy: false,
    showingBefore: false,
    limits: null,        // from /api/health
    models: null,        // [{name, preset, cnum}] from /api/health; the <select> holds the choice
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

  async function errorText(response) {
    let text = `${response.status} ${response.statusText}`;
    try {
      const body = await response.json();
      if (body && body.error) text = body.error;
    } catch (_) { /* not JSON: keep the status line */ }
    const retry = response.headers.get("Retry-After");
    if (response.status === 503 && retry) text += ` (retry in ${retry} s)`;
    return `Inpainting failed: ${text}`;
  }

  // ---------------------------------------------------------------- health and models

  function describeModel() {
    const name = $("model-choice").value;
    const m = (state.models || []).find((x) => x.name === name);
    if (!m) return;
    const p = m.pipeline;
    $("model").textContent = `model ${m.name} (${m.preset}, cnum ${m.cnum}` +
      (p ? `; ${p.strategy}, ${p.seam_blend ? "seam-blended" : "no blending"})` : ")");
  }

  async function loadHealth() {
    try {
      const response = await fetch("/api/health", { cache: "no-store" });
      const health = await response.json();
      state.limits = health.limits;
      state.models = health.models || [
        { name: health.model, preset: health.preset, cnum: health.cnum, pipeline: health.pipeline }];
      const choice = $("model-choice");
      choice.replaceChildren(...state.models.map((m) => {
        const option = document.createElement("option");
        option.value = m.name;
        option.textContent = m.name;
        option.selected = m.name === (health.default || health.model);
        return option;
      }));
      choice.disabled = state.models.length < 2;
      describeModel();
    } catch (e) {
      $("model").textContent = "server not reachable";
      showError(`Cannot reach the server (${e.message}).`);
    }
  }

  // ---------------------------------------------------------------- opening a photo

  function stem(name) {
    const base = (name || "photo").split(/[\\/]/).pop();
    const dot = base.lastIndexOf(".");
    return dot > 0 ? base.slice(0, dot) : base;
  }

  async function openFile(file) {
    if (!file) return;
    if (state.busy) {
      showError("Wait for the current inpainting to finish before opening another photo.");
      return;
    }
    if (state.limits && file.size > state.limits.max_upload_mb * 1048576) {
      showError(`${file.name} is ${(file.size / 1048576).toFixed(1)} MB; the server accepts ` +
                `up to ${state.limits.max_upload_mb} MB.`);
      return;
    }
    let bitmap;
    try {
      bitmap = await createImageBitmap(file);
    } catch (_) {
      showError(`Cannot open ${file.name || "the pasted data"}: not an image this browser can ` +
                "decode (use PNG, JPEG, WebP, BMP or GIF).");
      return;
    }
    const megapixels = (bitmap.width * bitmap.height) / 1e6;
    if (state.limits && megapixels > state.limits.max_megapixels) {
      showError(`${file.name} has ${megapixels.toFixed(1)} megapixels; the server accepts up to ` +
                `${state.limits.max_megapixels}.`);
      bitmap.close();
      return;
    }
    hideError();
    const fileName = file.name || "pasted.png";
    setPhoto({ blob: file, bitmap, name: stem(fileName), fileName }, null);
  }

  function setPhoto(photo, before) {
    for (const old of [state.photo, state.before]) {
      if (old && old !== photo && old !== before) old.bitmap.close();
    }
    state.photo = photo;
    state.before = before;
    state.showingBefore = false;
    $("compare").setAttribute("aria-pressed", "false");
    $("canvas-wrap").classList.remove("before");
    const { width, height } = photo.bitmap;
    for (const canvas of [photoCanvas, maskCanvas]) {
      // Setting a size clears the canvas even when it does not change.
      canvas.width = width;
      canvas.height = height;
    }
    photoCtx.drawImage(photo.bitmap, 0, 0);
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
      return;
    }
    const points = action.points;
    drawSegment(ctx, action, points[0], points[0]);
    for (let i = 1; i < points.length; i++) drawSegment(ctx, action, points[i - 1], points[i]);
  }

  function redrawMask() {
    maskCtx.globalCompositeOperation = "source-over";
    maskCtx.clearRect(0, 0, maskCanvas.width, maskCanvas.height);
    for (const action of state.actions) drawAction(maskCtx, action);
  }

  // Photo pixels per CSS pixel of the displayed canvas.
  function displayScale() {
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

  // True when a brush stroke was made since the last clear (erasing may still empty the mask;
  // `maskFile` counts the real pixels before anything is sent).
  function hasPaint() {
    for (let i = state.actions.length - 1; i >= 0; i--) {
      const action = state.actions[i];
      if (action.kind === "clear") return false;
      if (!action.erase) return true;
    }
    return false;
  }

  // ---------------------------------------------------------------- inpainting

  // The painted area as a black PNG with white holes, at the photo's size. Every pixel the
  // brush touched at all (alpha > 0, antialiased edges included) is a hole.
  async function maskFile() {
    const { width, height } = maskCanvas;
    const painted = new Uint32Array(maskCtx.getImageData(0, 0, width, height).data.buffer);
    const out = new ImageData(width, height);
    const pixels = new Uint32Array(out.data.buffer);
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
    if (!holes) return { blob: null, holes };
    const canvas = document.createElement("canvas");
    canvas.width = width;
    canvas.height = height;
    canvas.getContext("2d").putImageData(out, 0, 0);
    const blob = await new Promise((resolve) => canvas.toBlob(resolve, "image/png"));
    return { blob, holes };
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
    setBusy(true);
    const started = performance.now();
    const seconds = () => ((performance.now() - started) / 1000).toFixed(1);
    $("elapsed").textContent = "0.0 s";
    const timer = setInterval(() => { $("elapsed").textContent = `${seconds()} s`; }, 100);
    try {
      const mask = await maskFile();
      if (!mask.holes) {
        showError("Paint over the area to fill first (the mask is empty).");
        return;
      }
      const form = new FormData();
      form.append("image", state.photo.blob, state.photo.fileName);
      form.append("mask", mask.blob, "mask.png");
      form.append("model", $("model-choice").value);
      setStatus(`Inpainting ${mask.holes} pixels…`);
      const response = await fetch("/api/inpaint", { method: "POST", body: form });
      if (!response.ok) {
        showError(await errorText(response));
        setStatus(describePhoto());
        return;
      }
      const blob = await response.blob();
      const bitmap = await createImageBitmap(blob);
      const previous = state.photo;
      setPhoto({ blob, bitmap, name: previous.name, fileName: `${previous.name}_inpainted.png` },
               previous);
      setStatus(`Inpainted in ${seconds()} s. Paint again to refine, or download. ` +
                describePhoto());
    } catch (e) {
      showError(`Inpainting failed: the server did not answer (${e.message}).`);
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
    const shown = state.showingBefore ? state.before : state.photo;
    photoCtx.clearRect(0, 0, photoCanvas.width, photoCanvas.height);
    photoCtx.drawImage(shown.bitmap, 0, 0);
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
  }

  // ---------------------------------------------------------------- wiring

  $("model-choice").addEventListener("change", describeModel);
  $("file").addEventListener("change", (event) => {
    openFile(event.target.files[0]);
    event.target.value = "";   // opening the same file again fires "change" again
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
      const onControl = event.target.closest && event.target.closest("button, a, input");
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
    if (file) openFile(file);
  });
  document.addEventListener("paste", (event) => {
    const items = event.clipboardData ? Array.from(event.clipboardData.items) : [];
    const item = items.find((each) => each.kind === "file" && each.type.startsWith("image/"));
    if (item) {
      event.preventDefault();
      openFile(item.getAsFile());
    }
  });

  setBrushSize(brushSize());
  updateButtons();
  loadHealth();
})();
