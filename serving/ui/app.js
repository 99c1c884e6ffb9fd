// clearsight web page: draw a digit or upload an image, call the public HTTP API, show the
// prediction, the explanation overlays and the activation maps. No build step, no dependencies.
// What the page offers follows the served model's task (/metadata): a drawing pad for
// digit-like models, an image upload for every model (the service resizes it and says so).
"use strict";

const $ = (id) => document.getElementById(id);
const pad = $("pad");
const ctx = pad.getContext("2d");
// The served task (/metadata's task); until it is known the page is the digits' page.
let task = { class_names: ["0", "1", "2", "3", "4", "5", "6", "7", "8", "9"], digit_like: true };
let uploaded = null; // the chosen file as a data URL, for models without the drawing pad

function clearPad() {
  ctx.fillStyle = "#000";
  ctx.fillRect(0, 0, pad.width, pad.height);
}

// Drawing with mouse, pen or touch (pointer events): white ink on black, like MNIST.
let drawing = false;
function point(event) {
  const box = pad.getBoundingClientRect();
  return [(event.clientX - box.left) * pad.width / box.width,
          (event.clientY - box.top) * pad.height / box.height];
}
pad.addEventListener("pointerdown", (event) => {
  drawing = true;
  pad.setPointerCapture(event.pointerId);
  ctx.beginPath();
  ctx.moveTo(...point(event));
});
pad.addEventListener("pointermove", (event) => {
  if (!drawing) return;
  ctx.lineTo(...point(event));
  ctx.strokeStyle = "#fff";
  ctx.lineWidth = 22;
  ctx.lineCap = ctx.lineJoin = "round";
  ctx.stroke();
});
["pointerup", "pointercancel"].forEach((name) => pad.addEventListener(name, () => { drawing = false; }));

function usesPad() {
  return Boolean(task.digit_like);
}

// Digit-like models: the pad (an upload is drawn onto it). Any other model: the upload only,
// sent as the file itself, so the service sees the image at its own size and colours.
function applyTask(served) {
  task = served;
  const pad_ = usesPad();
  $("draw").hidden = !pad_;
  $("clear").hidden = !pad_;
  $("picked").hidden = pad_;
  $("draw-title").textContent = pad_ ? "1. Draw a digit" : "1. Upload an image";
  $("upload-label").textContent = pad_ ? "or upload an image" : "an image (PNG or JPEG)";
  const size = `${served.width}x${served.height} ${served.channels === 3 ? "colour" : "grey"}`;
  $("preview-note").textContent = `the model takes ${size} images; others are resized`;
  const truth = $("truth");
  truth.replaceChildren(...served.class_names.map((name, index) => {
    const option = document.createElement("option");
    option.value = String(index);
    option.textContent = name;
    return option;
  }));
}

$("clear").addEventListener("click", clearPad);
// On the pad, an upload fills it as it is; a dark digit on a light background is turned light
// on dark by the service, which says so under the prediction.
$("upload").addEventListener("change", () => {
  const file = $("upload").files[0];
  if (!file) return;
  if (!usesPad()) {
    const reader = new FileReader();
    reader.onload = () => { uploaded = reader.result; $("preview").src = uploaded; };
    reader.readAsDataURL(file);
    return;
  }
  const image = new Image();
  image.onload = () => { clearPad(); ctx.drawImage(image, 0, 0, pad.width, pad.height); };
  image.src = URL.createObjectURL(file);
});

function headers(key = $("apikey").value.trim()) {
  return key ? { "Content-Type": "application/json", "Authorization": `Bearer ${key}` }
             : { "Content-Type": "application/json" };
}

function setStatus(text, isError = false) {
  $("status").textContent = text;
  $("status").className = isError ? "error" : "";
}

// Feedback is its own scope: it goes with the feedback token, never the predict key.
async function call(path, body, key = undefined) {
  const response = await fetch(path, { method: "POST", headers: headers(key), body: JSON.stringify(body) });
  const payload = await response.json().catch(() => ({}));
  if (!response.ok) {
    throw new Error(payload.error || payload.detail?.[0]?.msg || `HTTP ${response.status}`);
  }
  return payload;
}

// One bar per class, named; past 10 classes only the most probable ones (top_classes).
function showBars(result) {
  const bars = $("bars");
  bars.replaceChildren();
  const rows = result.probabilities.length > 10 ? result.top_classes
    : result.probabilities.map((p, index) => ({ index, name: task.class_names[index] ?? String(index), probability: p }));
  rows.forEach(({ index, name: className, probability: p }) => {
    const name = document.createElement("b");
    name.textContent = className;
    const bar = document.createElement("div");
    bar.className = "bar";
    const fill = document.createElement("span");
    fill.style.width = `${(100 * p).toFixed(1)}%`;
    if (index === result.label) fill.style.background = "#0a7d3b";
    bar.append(fill);
    const value = document.createElement("span");
    value.textContent = `${(100 * p).toFixed(1)}%`;
    bars.append(name, bar, value);
  });
}

// What the service did to the image before the model saw it (inverted, fitted to 28x28...).
function showPreprocessing(result) {
  const list = $("preprocessing");
  list.replaceChildren();
  for (const step of result.preprocessing || []) {
    const item = document.createElement("li");
    item.textContent = step;
    list.append(item);
  }
  showOutOfDistribution(result);
}

// Checks this image failed against the model's training reference (an unusual digit).
function showOutOfDistribution(result) {
  const box = $("out-of-distribution");
  const failed = result.out_of_distribution || [];
  box.hidden = failed.length === 0;
  box.textContent = failed.length === 0 ? "" :
    `Unlike the training digits, so the answer is less trustworthy: ${failed.join("; ")}`;
}

function figure(src, caption, cls) {
  const fig = document.createElement("figure");
  if (cls) fig.className = cls;
  const img = document.createElement("img");
  img.src = src;
  img.alt = caption;
  const text = document.createElement("figcaption");
  text.textContent = caption;
  fig.append(img, text);
  return fig;
}

function showExplanations(result) {
  const box = $("overlays");
  box.replaceChildren();
  for (const e of result.explanations) {
    const gap = e.quality.completeness_gap;
    const substituted = e.method !== e.requested_method ? ` (instead of ${e.requested_method})` : "";
    const quality = gap == null ? "" : `, completeness gap ${(100 * gap).toFixed(2)}%`;
    box.append(figure(`data:image/png;base64,${e.png_overlay}`,
      `${e.method}${substituted} for class ${e.target_name ?? e.target}${quality}, ${e.timing.compute_ms.toFixed(0)} ms`,
      "overlay"));
  }
  for (const warning of result.warnings || []) setStatus(warning);
}

async function showActivations(image) {
  const box = $("activations");
  box.replaceChildren();
  try {
    const payload = await call("/activations", { image });
    for (const layer of payload.layers) {
      box.append(figure(`data:image/png;base64,${layer.png}`,
        `${layer.name}: ${layer.shape.join("x")} (channels left to right)`));
    }
  } catch (error) {
    box.textContent = `activation maps unavailable: ${error.message}`;
  }
}

$("predict").addEventListener("click", async () => {
  const methods = [...document.querySelectorAll("#methods input:checked")].map((box) => box.value);
  if (!usesPad() && !uploaded) {
    setStatus("Choose an image to upload first.", true);
    return;
  }
  const image = { kind: "base64", data: usesPad() ? pad.toDataURL("image/png") : uploaded };
  const explain = methods.length ? { methods, encodings: ["png_overlay"] } : false;
  $("predict").disabled = true;
  setStatus("asking the model…");
  try {
    const payload = await call("/predict", { images: [image], explain });
    const result = payload.results[0];
    if (result.status === "error") throw new Error(result.error);
    $("verdict").innerHTML = "";
    $("verdict").append(`${result.class_name ?? result.label} `);
    const small = document.createElement("small");
    small.textContent = `${(100 * result.confidence).toFixed(1)}% confident`;
    $("verdict").append(small);
    showBars(result);
    offerFeedback(image, result.label, payload.request_id);
    showPreprocessing(result);
    showExplanations(result);
    setStatus(`done in ${payload.timing.total_ms.toFixed(0)} ms (${result.status})`);
    await showActivations(image);
  } catch (error) {
    setStatus(`The service refused this input: ${error.message}`, true);
  } finally {
    $("predict").disabled = false;
  }
});

// "The right answer was ...": the image just predicted, with the label a person gives it,
// goes to POST /feedback (one incoming batch, checked and added to the training data), with
// the request_id of the prediction shown: the service takes feedback only for answers it gave.
let lastImage = null;
let lastRequestId = null;

function offerFeedback(image, predicted, requestId) {
  lastImage = image;
  lastRequestId = requestId;
  $("truth").value = String(predicted);
  $("feedback").hidden = false;
  $("feedback-status").textContent = "";
}

$("feedback").addEventListener("submit", async (event) => {
  event.preventDefault();
  if (!lastImage || !lastRequestId) return;
  $("send-feedback").disabled = true;
  try {
    const label = Number($("truth").value);
    const token = $("feedback-token").value.trim();
    const body = { images: [lastImage], labels: [label], request_id: lastRequestId };
    const answer = await call("/feedback", body, token);
    $("feedback-status").textContent = `thank you: saved as ${answer.batch} for the next retrain`;
  } catch (error) {
    $("feedback-status").textContent = `feedback not saved: ${error.message}`;
  } finally {
    $("send-feedback").disabled = false;
  }
});

async function loadMetadata() {
  try {
    const response = await fetch("/metadata", { headers: headers() });
    const meta = await response.json();
    if (!response.ok) throw new Error(meta.error || `HTTP ${response.status}`);
    const line = $("model");
    line.textContent = `${meta.name} v${meta.version} (${meta.registry_alias || "pinned"}), run `;
    const run = document.createElement(meta.mlflow_run_url ? "a" : "code");
    run.textContent = meta.run_id || "unknown";
    if (meta.mlflow_run_url) { run.href = meta.mlflow_run_url; run.target = "_blank"; }
    line.append(run);
    if (meta.task && meta.task.class_names) applyTask(meta.task);
  } catch (error) {
    $("model").textContent = `model metadata unavailable: ${error.message}`;
  }
}

clearPad();
loadMetadata();
