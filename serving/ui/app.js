// clearsight web page: draw or upload a digit, call the public HTTP API, show the prediction,
// the explanation overlays and the activation maps. No build step, no dependencies.
"use strict";

const $ = (id) => document.getElementById(id);
const pad = $("pad");
const ctx = pad.getContext("2d");

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

$("clear").addEventListener("click", clearPad);
// An upload fills the pad as it is; a dark digit on a light background is turned light on dark
// by the service, which says so under the prediction.
$("upload").addEventListener("change", () => {
  const file = $("upload").files[0];
  if (!file) return;
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

function showBars(probabilities, label) {
  const bars = $("bars");
  bars.replaceChildren();
  probabilities.forEach((p, digit) => {
    const name = document.createElement("b");
    name.textContent = digit;
    const bar = document.createElement("div");
    bar.className = "bar";
    const fill = document.createElement("span");
    fill.style.width = `${(100 * p).toFixed(1)}%`;
    if (digit === label) fill.style.background = "#0a7d3b";
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
      `${e.method}${substituted} for class ${e.target}${quality}, ${e.timing.compute_ms.toFixed(0)} ms`,
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
  const image = { kind: "base64", data: pad.toDataURL("image/png") };
  const explain = methods.length ? { methods, encodings: ["png_overlay"] } : false;
  $("predict").disabled = true;
  setStatus("asking the model…");
  try {
    const payload = await call("/predict", { images: [image], explain });
    const result = payload.results[0];
    if (result.status === "error") throw new Error(result.error);
    $("verdict").innerHTML = "";
    $("verdict").append(`${result.label} `);
    const small = document.createElement("small");
    small.textContent = `${(100 * result.confidence).toFixed(1)}% confident`;
    $("verdict").append(small);
    showBars(result.probabilities, result.label);
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
  } catch (error) {
    $("model").textContent = `model metadata unavailable: ${error.message}`;
  }
}

clearPad();
loadMetadata();
