// Entry of the static site of export.py --format web: the painting page (paint.js) with the
// engine that runs deepfill.js, beside this file, in the browser. Nothing is sent anywhere.
import { $, showError, startPage } from "./paint.js";
import { browserEngine } from "./browser.js";

const engine = browserEngine(new URL("./", import.meta.url));
document.title = "DeepFill in the browser — paint a hole, inpaint";
$("privacy").hidden = false;
$("model").textContent = "loading the model…";
startPage(engine);
engine.load().then(
  (text) => { $("model").textContent = `model ${text}`; },
  (e) => { $("model").textContent = "model not loaded"; showError(e.message); });
