// Entry of serve.py's page: the painting page (paint.js) with the engine that sends the photo to
// the server's /api/inpaint, and, when the server offers an export.py --format web site
// (/api/health's "browser"), a switch that runs that site's deepfill.js in this browser instead.
//
// The photo is sent as the bytes that were opened (or the PNG the server returned), never
// re-encoded by the browser, so the server sees exactly the file a user would give to test.py.
import { $, showError, startPage } from "./paint.js";
import { browserEngine } from "./browser.js";
import { encodePng } from "./pixels.js";

let health = null;
let local = null;       // the browser engine, when the server offers a site
let localText = null;   // its load() line, once loaded

async function errorText(response) {
  let text = `${response.status} ${response.statusText}`;
  try {
    const body = await response.json();
    if (body && body.error) text = body.error;
  } catch (_) { /* not JSON: keep the status line */ }
  const retry = response.headers.get("Retry-After");
  if (response.status === 503 && retry) text += ` (retry in ${retry} s)`;
  return text;
}

const server = {
  where: () => "",

  admit(file, width, height) {
    const limits = health && health.limits;
    if (!limits) return undefined;
    const name = file.name || "pasted.png";
    if (file.size > limits.max_upload_mb * 1048576) {
      return { refuse: `${name} is ${(file.size / 1048576).toFixed(1)} MB; the server accepts ` +
                       `up to ${limits.max_upload_mb} MB.` };
    }
    const megapixels = (width * height) / 1e6;
    if (megapixels > limits.max_megapixels) {
      return { refuse: `${name} has ${megapixels.toFixed(1)} megapixels; the server accepts up ` +
                       `to ${limits.max_megapixels}.` };
    }
    return undefined;
  },

  async inpaint(photo, mask) {
    const form = new FormData();
    form.append("image", photo.blob, photo.fileName);
    form.append("mask", await encodePng(mask.image, 2), "mask.png");
    form.append("model", $("model-choice").value);
    let response;
    try {
      response = await fetch("/api/inpaint", { method: "POST", body: form });
    } catch (e) {
      throw new Error(`the server did not answer (${e.message}).`);
    }
    if (!response.ok) throw new Error(await errorText(response));
    return { blob: await response.blob() };
  },
};

const runHere = () => Boolean(local) && $("run-here").checked;

function describeModel() {
  if (runHere()) {
    $("model").textContent = `model ${health.browser.name} in this browser (original, no ` +
      `blending): ${localText || "loading…"}`;
    return;
  }
  const name = $("model-choice").value;
  const m = ((health && health.models) || []).find((x) => x.name === name);
  if (!m) return;
  const p = m.pipeline;
  $("model").textContent = `model ${m.name} (${m.preset}, cnum ${m.cnum}` +
    (p ? `; ${p.strategy}, ${p.seam_blend ? "seam-blended" : "no blending"})` : ")");
}

async function switchEngine() {
  const here = runHere();
  $("privacy").hidden = !here;
  $("model-choice").disabled = here || health.models.length < 2;
  describeModel();
  if (here && !localText) {
    try {
      localText = await local.load();
    } catch (e) {
      $("run-here").checked = false;
      showError(e.message);
      switchEngine();
      return;
    }
    describeModel();
  }
}

async function loadHealth() {
  try {
    const response = await fetch("/api/health", { cache: "no-store" });
    health = await response.json();
    health.models = health.models || [
      { name: health.model, preset: health.preset, cnum: health.cnum, pipeline: health.pipeline }];
    const choice = $("model-choice");
    choice.replaceChildren(...health.models.map((m) => {
      const option = document.createElement("option");
      option.value = m.name;
      option.textContent = m.name;
      option.selected = m.name === (health.default || health.model);
      return option;
    }));
    $("model-group").hidden = false;
    if (health.browser) {
      local = browserEngine(new URL(health.browser.path, location.href));
      $("run-here-group").hidden = false;
    }
    switchEngine();
  } catch (e) {
    $("model").textContent = "server not reachable";
    showError(`Cannot reach the server (${e.message}).`);
  }
}

$("model-choice").addEventListener("change", describeModel);
$("run-here").addEventListener("change", switchEngine);
startPage({
  where: () => (runHere() ? local : server).where(),
  admit: (file, width, height) => (runHere() ? local : server).admit(file, width, height),
  inpaint: (photo, mask) => (runHere() ? local : server).inpaint(photo, mask),
});
loadHealth();
