// The zoo serve page: pick a model, drop an image, see the prediction drawn and the raw JSON.
// Plain JS, no build step. What is drawn follows the keys of the result, not the task's name:
// "boxes" -> rectangles with labels, "segments" -> a mask overlay decoded from COCO RLE,
// "topk" -> bars. When drawing is done, <body data-state="drawn"> and the canvas's data-* say what.
"use strict";

const $ = (id) => document.getElementById(id);
const PALETTE = ["#e6194b", "#3cb44b", "#4363d8", "#f58231", "#911eb4", "#46f0f0", "#f032e6", "#bcf60c",
                 "#fabebe", "#008080", "#e6beff", "#9a6324", "#fffac8", "#800000", "#aaffc3", "#808000"];
const colour = (label) => PALETTE[((label % PALETTE.length) + PALETTE.length) % PALETTE.length];
const state = { models: [], image: null, file: null };

function setState(name, message) {
  document.body.dataset.state = name;
  if (message !== undefined) $("status").textContent = message;
}

// ---- COCO RLE (pycocotools' compressed counts), column-major like pycocotools ----------------
function rleCounts(s) {
  const counts = [];
  let p = 0;
  while (p < s.length) {
    let x = 0, k = 0, more = true;
    while (more) {
      const c = s.charCodeAt(p) - 48;
      x += (c & 0x1f) * Math.pow(2, 5 * k);
      more = (c & 0x20) !== 0;
      p++; k++;
      if (!more && (c & 0x10)) x -= Math.pow(2, 5 * k);  // sign extension
    }
    if (counts.length > 2) x += counts[counts.length - 2];
    counts.push(x);
  }
  return counts;
}

// A binary mask (Uint8Array, row-major, height x width) from {size: [h, w], counts}.
function decodeRLE(rle) {
  const [h, w] = rle.size;
  const counts = typeof rle.counts === "string" ? rleCounts(rle.counts) : rle.counts;
  const mask = new Uint8Array(h * w);
  let at = 0, value = 0;
  for (const run of counts) {
    if (value) {
      for (let j = at; j < at + run; j++) mask[(j % h) * w + Math.floor(j / h)] = 1;
    }
    at += run;
    value ^= 1;
  }
  return mask;
}

// ---- models and options -----------------------------------------------------------------------
async function loadModels() {
  const res = await fetch("/models");
  const body = await res.json();
  state.models = body.models;
  const select = $("model");
  select.innerHTML = "";
  for (const m of state.models) {
    const opt = document.createElement("option");
    opt.value = m.name;
    opt.textContent = `${m.name} (${m.task})`;
    select.appendChild(opt);
  }
  showModel();
  setState("idle", "Choose or drop an image.");
}

function currentModel() {
  return state.models.find((m) => m.name === $("model").value);
}

function showModel() {
  const m = currentModel();
  if (!m) return;
  const classes = m.classes.length > 6 ? `${m.classes.slice(0, 6).join(", ")}, ...` : m.classes.join(", ");
  $("model-info").textContent = `${m.model} | ${m.task} | ${m.num_classes} classes (${classes}) | ` +
    `input ${m.input_size.join("x")} | ${m.device}`;
  const form = $("options");
  form.innerHTML = "";
  for (const [name, meaning] of Object.entries(m.options || {})) {
    const label = document.createElement("label");
    label.innerHTML = `<span></span><input><small></small>`;
    label.querySelector("span").textContent = name;
    const input = label.querySelector("input");
    input.name = name;
    input.placeholder = "default";
    label.querySelector("small").textContent = meaning;
    input.addEventListener("change", () => state.file && predict());
    form.appendChild(label);
  }
}

// ---- predict and draw ---------------------------------------------------------------------------
async function predict() {
  const m = currentModel();
  if (!m || !state.file) return;
  setState("predicting", `Predicting with ${m.name}...`);
  const data = new FormData();
  data.append("model", m.name);
  for (const input of $("options").querySelectorAll("input")) {
    if (input.value.trim() !== "") data.append(input.name, input.value.trim());
  }
  data.append("file", state.file, state.file.name || "image");
  let res, body;
  try {
    res = await fetch("/predict", { method: "POST", body: data });
    body = await res.json();
  } catch (err) {
    setState("error", `Request failed: ${err}`);
    return;
  }
  $("raw").textContent = JSON.stringify(body, null, 2);
  window.zoo.last = body;
  if (!res.ok) {
    clearResult();
    setState("error", `${res.status} ${body.error}: ${body.detail}`);
    return;
  }
  if (state.image) draw(body.predictions[0]);
  setState("drawn", `${m.name}: ${body.predictions[0].source}`);
}

function clearResult() {
  $("bars").innerHTML = "";
  $("legend").innerHTML = "";
  $("summary").textContent = "";
}

function draw(pred) {
  clearResult();
  const img = state.image;
  const canvas = $("canvas");
  const scale = Math.min(640 / img.naturalWidth, 480 / img.naturalHeight, 8);
  canvas.width = Math.round(img.naturalWidth * scale);
  canvas.height = Math.round(img.naturalHeight * scale);
  const ctx = canvas.getContext("2d");
  ctx.imageSmoothingEnabled = true;
  ctx.drawImage(img, 0, 0, canvas.width, canvas.height);
  const drawn = [];
  if (Array.isArray(pred.segments)) {
    drawSegments(ctx, pred, canvas);
    drawn.push(`${pred.segments.length} classes present`);
  }
  if (Array.isArray(pred.boxes)) {
    drawBoxes(ctx, pred, scale);
    drawn.push(`${pred.boxes.length} boxes`);
  }
  if (Array.isArray(pred.topk)) {
    drawBars(pred.topk);
    drawn.unshift(`${pred.name} (${pred.score.toFixed(3)})`);
  }
  canvas.dataset.boxes = Array.isArray(pred.boxes) ? pred.boxes.length : 0;
  canvas.dataset.segments = Array.isArray(pred.segments) ? pred.segments.length : 0;
  canvas.dataset.bars = Array.isArray(pred.topk) ? pred.topk.length : 0;
  $("summary").textContent = drawn.join(" | ");
}

function drawBoxes(ctx, pred, scale) {
  ctx.lineWidth = 2;
  ctx.font = "bold 13px system-ui, sans-serif";
  ctx.textBaseline = "top";
  pred.boxes.forEach((box, i) => {
    const [x1, y1, x2, y2] = box.map((v) => v * scale);
    const c = colour(pred.labels[i]);
    ctx.strokeStyle = c;
    ctx.strokeRect(x1, y1, x2 - x1, y2 - y1);
    const text = `${pred.names[i]} ${pred.scores[i].toFixed(2)}`;
    const tw = ctx.measureText(text).width + 6;
    const ty = y1 >= 17 ? y1 - 17 : y1;
    ctx.fillStyle = c;
    ctx.fillRect(x1, ty, tw, 17);
    ctx.fillStyle = "#fff";
    ctx.fillText(text, x1 + 3, ty + 2);
  });
}

function hexRGB(hex) {
  return [1, 3, 5].map((i) => parseInt(hex.slice(i, i + 2), 16));
}

function drawSegments(ctx, pred, canvas) {
  const [h, w] = pred.size;
  const overlay = document.createElement("canvas");
  overlay.width = w;
  overlay.height = h;
  const octx = overlay.getContext("2d");
  const pixels = octx.createImageData(w, h);
  for (const seg of pred.segments) {
    const mask = decodeRLE(seg.rle);
    const [r, g, b] = hexRGB(colour(seg.label));
    for (let i = 0; i < mask.length; i++) {
      if (!mask[i]) continue;
      pixels.data[4 * i] = r; pixels.data[4 * i + 1] = g; pixels.data[4 * i + 2] = b; pixels.data[4 * i + 3] = 110;
    }
    const li = document.createElement("li");
    li.innerHTML = `<span class="swatch"></span><span></span>`;
    li.querySelector(".swatch").style.background = colour(seg.label);
    li.lastChild.textContent = `${seg.name}: ${(100 * seg.area / (w * h)).toFixed(1)}%`;
    $("legend").appendChild(li);
  }
  octx.putImageData(pixels, 0, 0);
  ctx.imageSmoothingEnabled = false;
  ctx.drawImage(overlay, 0, 0, canvas.width, canvas.height);
  ctx.imageSmoothingEnabled = true;
}

function drawBars(topk) {
  for (const entry of topk) {
    const li = document.createElement("li");
    li.innerHTML = `<span class="name"></span><span class="track"><span class="bar"></span></span>` +
                   `<span class="score"></span>`;
    li.querySelector(".name").textContent = entry.name;
    li.querySelector(".bar").style.display = "block";
    li.querySelector(".bar").style.width = `${(100 * entry.score).toFixed(1)}%`;
    li.querySelector(".score").textContent = entry.score.toFixed(3);
    li.dataset.label = entry.label;
    $("bars").appendChild(li);
  }
}

// ---- choosing an image ----------------------------------------------------------------------------
function useFile(file) {
  if (!file) return;
  state.file = file;
  const url = URL.createObjectURL(file);
  const img = new Image();
  img.onload = () => { state.image = img; predict(); };
  img.onerror = () => { state.image = null; predict(); };  // the browser cannot show it: the server says why
  img.src = url;
}

function wire() {
  $("file").addEventListener("change", (e) => useFile(e.target.files[0]));
  $("model").addEventListener("change", () => { showModel(); predict(); });
  const drop = $("drop");
  drop.addEventListener("dragover", (e) => { e.preventDefault(); drop.classList.add("over"); });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (e) => {
    e.preventDefault();
    drop.classList.remove("over");
    useFile(e.dataTransfer.files[0]);
  });
}

window.zoo = { decodeRLE, rleCounts, last: null };
wire();
loadModels().catch((err) => setState("error", `Could not load /models: ${err}`));
