// The web page: pick a model, generate a grid, edit an image and its fill region, complete it,
// score it, upscale a small image.
"use strict";

const SIZE = 28;             // model pixels per side until /models gives the image_size
const CANVAS_SIDE = 280;     // the editor's on-screen side, in CSS pixels
// image: size*size RGB triples (a grayscale model's are equal); colours: 1 gray, 3 RGB;
// model: the chosen model's name, sent with every request (null until /models answers: the default)
const state = { size: SIZE, colours: 1, image: null, mask: null, classes: null, drawing: false, model: null };
const $ = (id) => document.getElementById(id);

function setStatus(id, text, isError = false) {
  const el = $(id);
  el.textContent = text;
  el.classList.toggle("error", isError);
}

async function errorText(response) {
  try {
    const body = await response.json();
    return typeof body.detail === "string" ? body.detail : JSON.stringify(body.detail);
  } catch (e) {
    return `${response.status} ${response.statusText}`;
  }
}

// --- editor: a size x size image and a boolean mask, drawn scaled up ----------------------
function resetEditor(size) {
  state.size = size;
  state.image = new Uint8ClampedArray(size * size * 3);
  state.mask = new Uint8Array(size * size);
  const canvas = $("canvas");
  canvas.width = canvas.height = size * Math.ceil(CANVAS_SIDE / size);  // whole device pixels a cell
  canvas.setAttribute("aria-label", `image editor, ${size}x${size} pixels`);
  redraw();
}

// What to do, written on the editor while it is empty (black, nothing to fill).
function drawEmptyHint(ctx, side) {
  const lines = ["pick a test image,", "upload one, or draw;", "then paint the region", "to fill (red)"];
  ctx.save();
  ctx.fillStyle = "rgba(255, 255, 255, 0.6)";
  ctx.font = `${Math.round(side / 15)}px system-ui, sans-serif`;
  ctx.textAlign = "center";
  ctx.textBaseline = "middle";
  const step = side / 11;
  lines.forEach((line, k) => ctx.fillText(line, side / 2, side / 2 + (k - (lines.length - 1) / 2) * step));
  ctx.restore();
}

function redraw() {
  const canvas = $("canvas");
  const ctx = canvas.getContext("2d");
  const cell = canvas.width / state.size;
  for (let y = 0; y < state.size; y++) {
    for (let x = 0; x < state.size; x++) {
      const k = 3 * (y * state.size + x);
      ctx.fillStyle = `rgb(${state.image[k]},${state.image[k + 1]},${state.image[k + 2]})`;
      ctx.fillRect(x * cell, y * cell, cell, cell);
      if (state.mask[y * state.size + x]) {
        ctx.fillStyle = "rgba(255, 64, 64, 0.55)";
        ctx.fillRect(x * cell, y * cell, cell, cell);
      }
    }
  }
  if (!state.image.some((v) => v) && !state.mask.some((m) => m)) drawEmptyHint(ctx, canvas.width);
}

function paint(event) {
  const canvas = $("canvas");
  const rect = canvas.getBoundingClientRect();
  const cx = Math.floor(((event.clientX - rect.left) / rect.width) * state.size);
  const cy = Math.floor(((event.clientY - rect.top) / rect.height) * state.size);
  const radius = Number($("brush").value) - 1;
  const tool = document.querySelector("input[name=tool]:checked").value;
  for (let y = cy - radius; y <= cy + radius; y++) {
    for (let x = cx - radius; x <= cx + radius; x++) {
      if (x < 0 || y < 0 || x >= state.size || y >= state.size) continue;
      if ((x - cx) ** 2 + (y - cy) ** 2 > radius * radius + radius) continue;
      const k = y * state.size + x;
      if (tool === "mask") state.mask[k] = 1;
      else { state.image.set(tool === "draw" ? penColour() : [0, 0, 0], 3 * k); state.mask[k] = 0; }
    }
  }
  redraw();
}

// The pen: white for a grayscale model, the colour picker's colour for a colour model.
function penColour() {
  if (state.colours === 1) return [255, 255, 255];
  const hex = $("pen-colour").value;  // "#rrggbb"
  return [1, 3, 5].map((i) => parseInt(hex.slice(i, i + 2), 16));
}

function toPngBlob(values, channels = 3) {
  // values: size*size gray levels (channels 1) or RGB triples (3) -> a PNG blob at model size
  const c = document.createElement("canvas");
  c.width = c.height = state.size;
  const ctx = c.getContext("2d");
  const data = ctx.createImageData(state.size, state.size);
  for (let k = 0; k < state.size * state.size; k++) {
    const [r, g, b] = channels === 1 ? [values[k], values[k], values[k]] : values.slice(3 * k, 3 * k + 3);
    data.data.set([r, g, b, 255], 4 * k);
  }
  ctx.putImageData(data, 0, 0);
  return new Promise((resolve) => c.toBlob(resolve, "image/png"));
}

function loadIntoEditor(src) {
  const img = new Image();
  img.onload = () => {
    const c = document.createElement("canvas");
    c.width = c.height = state.size;
    const ctx = c.getContext("2d");
    ctx.drawImage(img, 0, 0, state.size, state.size);
    const px = ctx.getImageData(0, 0, state.size, state.size).data;
    for (let k = 0; k < state.size * state.size; k++) {
      const [r, g, b] = [px[4 * k], px[4 * k + 1], px[4 * k + 2]];
      const gray = Math.round(0.299 * r + 0.587 * g + 0.114 * b);  // what a grayscale model reads
      state.image.set(state.colours === 1 ? [gray, gray, gray] : [r, g, b], 3 * k);
    }
    state.mask.fill(0);
    redraw();
  };
  img.src = src;
}

function figure(src, caption, onClick) {
  const fig = document.createElement("figure");
  const img = document.createElement("img");
  img.src = src;
  img.alt = caption;
  if (onClick) img.addEventListener("click", onClick);
  const cap = document.createElement("figcaption");
  cap.textContent = caption;
  fig.append(img, cap);
  return fig;
}

// --- calls --------------------------------------------------------------------------------
// A multipart form that names the chosen model, as every request does.
function modelForm() {
  const form = new FormData();
  if (state.model) form.append("model", state.model);
  return form;
}

async function generate(event) {
  event.preventDefault();
  setStatus("gen-status", "sampling…");
  const body = { n: Number($("gen-n").value), temperature: Number($("gen-temperature").value), format: "json" };
  if ($("gen-label").value !== "") body.label = Number($("gen-label").value);
  if ($("gen-seed").value !== "") body.seed = Number($("gen-seed").value);
  if (state.model) body.model = state.model;
  const started = performance.now();
  const gallery = $("gen-results");
  const bar = $("gen-progress");
  try {
    const result = await cancellable($("generate-button"), bar, (signal) => streamJob("/generate", {
      method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body),
    }, (progress) => showProgress(gallery, bar, "gen-status", progress), signal));
    gallery.replaceChildren();
    for (const item of result.images) {
      const src = `data:image/png;base64,${item.png_base64}`;
      const name = item.label_name ?? "";
      gallery.append(figure(src, `${name} #${item.seed}`, () => loadIntoEditor(src)));
    }
    const seconds = ((performance.now() - started) / 1000).toFixed(1);
    setStatus("gen-status", `${result.images.length} images in ${seconds} s`);
  } catch (e) {
    streamFailed("gen-status", e);
  }
}

async function complete(event) {
  event.preventDefault();
  if (!state.mask.some((m) => m)) { setStatus("cmp-status", "paint the region to fill first (red)", true); return; }
  setStatus("cmp-status", "completing…");
  const form = modelForm();
  form.append("image", await toPngBlob(state.image), "image.png");
  form.append("mask", await toPngBlob(Array.from(state.mask, (m) => (m ? 255 : 0)), 1), "mask.png");
  form.append("n", $("cmp-n").value);
  form.append("particles", $("cmp-particles").value);
  form.append("format", "json");
  if ($("cmp-label").value !== "") form.append("label", $("cmp-label").value);
  const gallery = $("cmp-results");
  const bar = $("cmp-progress");
  try {
    const result = await cancellable($("complete-button"), bar, (signal) => streamJob(
      "/complete", { method: "POST", body: form },
      (progress) => showProgress(gallery, bar, "cmp-status", progress), signal));
    gallery.replaceChildren();
    for (const item of result.images) {
      const src = `data:image/png;base64,${item.png_base64}`;
      gallery.append(figure(src, `${item.bits_per_dim.toFixed(2)} bits/dim`, () => loadIntoEditor(src)));
    }
    setStatus("cmp-status", `${result.images.length} completions`);
  } catch (e) {
    streamFailed("cmp-status", e);
  }
}

async function score(event) {
  event.preventDefault();
  const button = $("score-button");
  button.disabled = true;
  setStatus("score-status", "scoring…");
  const image = await toPngBlob(state.image);
  try {
    const pngForm = modelForm();
    pngForm.append("image", image, "image.png");
    pngForm.append("format", "png");
    const jsonForm = modelForm();
    jsonForm.append("image", image, "image.png");
    const [png, json] = await Promise.all([
      api("/likelihood", { method: "POST", body: pngForm }),
      api("/likelihood", { method: "POST", body: jsonForm }),
    ]);
    if (!png.ok) { setStatus("score-status", await errorText(png), true); return; }
    const heatmap = $("heatmap");
    heatmap.src = URL.createObjectURL(await png.blob());
    heatmap.hidden = false;
    const list = $("posterior");
    list.replaceChildren();
    if (json.ok) {
      const result = await json.json();
      setStatus("score-status", `${result.bits_per_dim.toFixed(3)} bits/dim, ${result.total_bits.toFixed(0)} bits in all`);
      const posterior = Object.entries(result.class_posterior ?? {}).sort((a, b) => b[1] - a[1]).slice(0, 4);
      for (const [name, p] of posterior) {
        const li = document.createElement("li");
        li.textContent = `${name}: ${(100 * p).toFixed(1)}%`;
        list.append(li);
      }
    }
  } catch (e) {
    setStatus("score-status", `request failed: ${e}`, true);
  } finally {
    button.disabled = false;
  }
}

// --- upscale: a test image or an upload, shrunk by the server, and samples that agree -----
// test-images.png: the first Fashion-MNIST test image of each class, side by side (28x28 each;
// shown at the model's size, so that they suit any model, and drawn again when the size changes).
const upscaleInput = { blob: null, truth: null };
const testStrip = new Image();

function pickTestImage(canvas) {
  for (const other of $("up-picker").children) other.classList.toggle("picked", other === canvas);
  upscaleInput.truth = canvas.toDataURL("image/png");
  canvas.toBlob((blob) => { upscaleInput.blob = blob; }, "image/png");
  $("up-upload").value = "";
}

function testImage(strip, k, title) {
  const side = strip.height;
  const c = document.createElement("canvas");
  c.width = c.height = state.size;
  const ctx = c.getContext("2d");
  ctx.imageSmoothingQuality = "high";
  ctx.drawImage(strip, k * side, 0, side, side, 0, 0, state.size, state.size);
  c.title = title;
  return c;
}

// Both pickers at the model's size; a model that cannot upscale has its picker hidden.
function showTestImages() {
  if (!testStrip.naturalWidth) return;  // not loaded yet: its onload calls this
  $("ed-picker").replaceChildren();
  $("up-picker").replaceChildren();
  for (let k = 0; k < Math.floor(testStrip.width / testStrip.height); k++) {
    const forEditor = testImage(testStrip, k, `test image ${k + 1}: load it into the editor`);
    forEditor.addEventListener("click", () => loadIntoEditor(forEditor.toDataURL("image/png")));
    $("ed-picker").append(forEditor);
    const forUpscale = testImage(testStrip, k, `test image ${k + 1}`);
    forUpscale.addEventListener("click", () => pickTestImage(forUpscale));
    $("up-picker").append(forUpscale);
  }
  pickTestImage($("up-picker").firstChild);
}

async function upscale(event) {
  event.preventDefault();
  if ($("upscale-button").disabled) return;
  if (!upscaleInput.blob) { setStatus("up-status", "pick a test image or upload one first", true); return; }
  setStatus("up-status", "upscaling…");
  const form = modelForm();
  form.append("image", upscaleInput.blob, "image.png");
  if ($("up-factor").value !== "") form.append("factor", $("up-factor").value);
  form.append("n", $("up-n").value);
  form.append("particles", $("up-particles").value);
  form.append("format", "json");
  if ($("up-label").value !== "") form.append("label", $("up-label").value);
  const gallery = $("up-results");
  const bar = $("up-progress");
  try {
    const result = await cancellable($("upscale-button"), bar, (signal) => streamJob(
      "/upscale", { method: "POST", body: form },
      (progress) => showProgress(gallery, bar, "up-status", progress), signal));
    const png = (data) => `data:image/png;base64,${data}`;
    gallery.replaceChildren(
      figure(png(result.small_png_base64), "small"),
      figure(png(result.bicubic_png_base64), "bicubic"),
    );
    for (const item of result.images) {
      gallery.append(figure(png(item.png_base64), `${item.label_name ?? ""} ${item.bits_per_dim.toFixed(2)} bits/dim`));
    }
    if (upscaleInput.truth) gallery.append(figure(upscaleInput.truth, "truth"));
    const f = result.factor;
    setStatus("up-status", `${result.images.length} samples; the ${f}x${f} block means of each are the small image`);
  } catch (e) {
    streamFailed("up-status", e);
  }
}

// --- the page follows the chosen model: image size, colour, class names, upscale factors --
const CLASS_MENUS = ["gen-label", "cmp-label", "up-label"];

// Each class menu: its first option ("any", "infer", "guess") and then the model's classes;
// an unconditional model has no classes, so the choice is hidden and disabled.
function setClasses(classes) {
  state.classes = classes && classes.length ? classes : null;
  for (const id of CLASS_MENUS) {
    const menu = $(id);
    while (menu.options.length > 1) menu.remove(1);
    for (const [k, name] of (state.classes ?? []).entries()) menu.append(new Option(name, String(k)));
    menu.value = "";
    menu.disabled = !state.classes;
    menu.closest("label").hidden = !state.classes;
  }
}

function either(values) {
  return values.length > 1 ? `${values.slice(0, -1).join(", ")} or ${values.at(-1)}` : values.join("");
}

// The factor menu from the model's upscale_factors (f: a small image of S/f x S/f), then "from the
// upload's size"; no factors (a side with no suitable divisor): the panel says so and is off.
function setUpscaleFactors(size, factors) {
  const menu = $("up-factor");
  menu.replaceChildren();
  for (const f of factors) menu.append(new Option(`${f} (${size / f}x${size / f})`, String(f)));
  menu.append(new Option("from the upload's size", ""));
  menu.value = factors.includes(4) ? "4" : String(factors[0] ?? "");
  const smalls = factors.map((f) => `${size / f}x${size / f}`);
  if (factors.length) {
    $("up-hint").textContent =
      `Pick a test image or upload one. It is shrunk to ${either(smalls)} by block means; each sample ` +
      `is a ${size}x${size} image whose block means, rounded, are exactly that small image.`;
  } else {
    $("up-hint").textContent =
      `Upscaling is off for this model: ${size} has no whole factor of 2 or more that leaves a small ` +
      `image big enough to enlarge back to ${size}x${size}.`;
  }
  for (const control of $("upscale-form").elements) control.disabled = !factors.length;
  $("up-picker").hidden = !factors.length;
}

// Everything on the page that depends on the model, from its ModelInfo (/models/{name}).
function applyModel(info) {
  const size = info.image_size ?? info.config.image_size;
  const bpd = info.test_bits_per_dim ? `, ${info.test_bits_per_dim.toFixed(3)} bits/dim on the test set` : "";
  const classes = info.classes && info.classes.length ? `${info.classes.length} classes` : "unconditional";
  const colours = info.image_channels ?? 1;
  $("model-info").textContent =
    `${info.arch} PixelCNN, ${info.parameters.toLocaleString()} parameters, ${size}×${size} ` +
    `${colours === 3 ? "RGB" : "grayscale"}, ${info.config.levels} levels, ${classes}${bpd}`;
  const resized = size !== state.size;
  const recoloured = colours !== state.colours;
  state.model = info.name;
  state.colours = colours;
  $("pen-colour-choice").hidden = colours !== 3;
  if (resized || recoloured) resetEditor(size);  // the image in the editor no longer fits the model
  for (const id of ["gen-progress", "cmp-progress", "up-progress"]) $(id).max = size;  // it counts rows
  setClasses(info.classes);
  setUpscaleFactors(size, info.upscale_factors ?? []);
  if (resized) showTestImages();
}

// The model menu from /models: the default marked, a model that cannot serve disabled with its
// reason as the option's title. Shown only when there is a choice. Returns the model to start
// with: the default, or the first that can serve.
function listModels(listing) {
  const menu = $("model");
  menu.replaceChildren();
  for (const entry of listing) {
    const usable = !entry.error && entry.info;
    const text = `${entry.name}${entry.default ? " (default)" : ""}${usable ? "" : " (cannot serve)"}`;
    const option = new Option(text, entry.name);
    option.disabled = !usable;
    if (entry.error) option.title = entry.error;
    else if (entry.reload_error) option.title = `its new file was refused, the old weights serve: ${entry.reload_error}`;
    menu.append(option);
  }
  $("model-choice").hidden = listing.length < 2;
  const usable = listing.filter((entry) => !entry.error && entry.info);
  const chosen = usable.find((entry) => entry.default) ?? usable[0];
  if (!chosen) throw new Error("no model can serve");
  menu.value = chosen.name;
  return chosen.info;
}

// Another model chosen: its info fresh from the server (it may have been replaced or failed
// since the page loaded); on failure the menu goes back to the model in use and says why.
async function chooseModel() {
  const menu = $("model");
  const name = menu.value;
  setStatus("model-status", "");
  try {
    const response = await api(`/models/${encodeURIComponent(name)}`);
    if (!response.ok) throw new Error(await errorText(response));
    const info = await response.json();
    if (menu.value === name) applyModel(info);  // a later choice, still loading, wins
  } catch (e) {
    if (menu.value !== name) return;
    menu.value = state.model;
    setStatus("model-status", `cannot switch to ${name}: ${e.message}`, true);
  }
}

// The models from /models (after a key, where the service asks for one).
async function loadModels() {
  try {
    const response = await api("/models");
    if (!response.ok) throw new Error(await errorText(response));
    applyModel(listModels(await response.json()));
  } catch (e) {
    $("model-info").textContent = "the model is not ready yet; reload in a moment";
  }
}

async function init() {
  resetEditor(SIZE);
  testStrip.onload = showTestImages;
  testStrip.src = "/static/test-images.png";
  $("key-form").addEventListener("submit", useKey);
  $("model").addEventListener("change", chooseModel);
  $("generate-form").addEventListener("submit", generate);
  $("complete-form").addEventListener("submit", complete);
  $("score-form").addEventListener("submit", score);
  $("upscale-form").addEventListener("submit", upscale);
  $("up-upload").addEventListener("change", (e) => {
    const file = e.target.files[0];
    if (!file) return;
    for (const other of $("up-picker").children) other.classList.remove("picked");
    upscaleInput.blob = file;
    upscaleInput.truth = null;
  });
  const canvas = $("canvas");
  canvas.addEventListener("pointerdown", (e) => { state.drawing = true; canvas.setPointerCapture(e.pointerId); paint(e); });
  canvas.addEventListener("pointermove", (e) => { if (state.drawing) paint(e); });
  canvas.addEventListener("pointerup", () => { state.drawing = false; });
  $("upload").addEventListener("change", (e) => {
    const file = e.target.files[0];
    if (file) loadIntoEditor(URL.createObjectURL(file));
  });
  $("mask-top").addEventListener("click", () => {
    state.mask.fill(0);
    state.mask.fill(1, 0, Math.floor(state.size / 2) * state.size);
    redraw();
  });
  $("clear-mask").addEventListener("click", () => { state.mask.fill(0); redraw(); });
  $("clear-image").addEventListener("click", () => { state.image.fill(0); state.mask.fill(0); redraw(); });
  await loadModels();  // last: with keys it waits for one, and the controls must work meanwhile
}

init();
