// segzero web page: send an image and a request to /v1/segment, draw the answer on a canvas.
// No build step and no outside resources: this file is served as is.
"use strict";

const $ = (id) => document.getElementById(id);
const form = $("segment-form");
const imageInput = $("image-input");
const requestInput = $("request-input");
const submitButton = $("submit-button");
const dropZone = $("drop-zone");
const preview = $("preview");
const progress = $("progress");
const statusText = $("status-text");
const errorBox = $("error");
const resultSection = $("result");
const canvas = $("overlay-canvas");

// The answer "nothing matches" (status no_target) is an answer, not an error: an empty mask.
const NOTHING_MATCHES = "Nothing matches: nothing in the image matches the request, so the mask is empty.";

let limits = { max_upload_bytes: null, max_request_chars: null };
let previewUrl = null;

// Limits come from the server so the page and the API never disagree.
fetch("/health")
  .then((r) => (r.ok ? r.json() : null))
  .then((health) => {
    if (!health) return;
    limits = health.limits || limits;
    if (limits.max_request_chars) requestInput.maxLength = limits.max_request_chars;
  })
  .catch(() => {});

function setStatus(text, busy) {
  statusText.textContent = text;
  progress.hidden = !busy;
  submitButton.disabled = busy;
  form.setAttribute("aria-busy", busy ? "true" : "false");
}

function showError(message) {
  errorBox.textContent = message;
  errorBox.hidden = false;
}

function clearError() {
  errorBox.textContent = "";
  errorBox.hidden = true;
}

function chosenFile() {
  return imageInput.files && imageInput.files[0];
}

function showPreview() {
  const file = chosenFile();
  if (previewUrl) URL.revokeObjectURL(previewUrl);
  previewUrl = file ? URL.createObjectURL(file) : null;
  preview.hidden = !file;
  if (file) {
    preview.src = previewUrl;
    preview.alt = `Preview of ${file.name}`;
  }
}

imageInput.addEventListener("change", () => {
  clearError();
  showPreview();
});

// Drag and drop onto the image box; the file input stays the one source of truth.
["dragenter", "dragover"].forEach((type) =>
  dropZone.addEventListener(type, (event) => {
    event.preventDefault();
    dropZone.classList.add("dragging");
  })
);
["dragleave", "dragend"].forEach((type) =>
  dropZone.addEventListener(type, () => dropZone.classList.remove("dragging"))
);
dropZone.addEventListener("drop", (event) => {
  event.preventDefault();
  dropZone.classList.remove("dragging");
  const files = event.dataTransfer && event.dataTransfer.files;
  if (!files || !files.length) return;
  imageInput.files = files;
  clearError();
  showPreview();
  setStatus(`Image ${files[0].name} chosen.`, false);
  requestInput.focus();
});

// COCO compressed RLE string -> run lengths (pycocotools' rleFrString).
function rleCounts(text) {
  const counts = [];
  let p = 0;
  while (p < text.length) {
    let x = 0;
    let k = 0;
    let more = true;
    while (more) {
      const c = text.charCodeAt(p) - 48;
      x += (c & 0x1f) * 2 ** (5 * k);
      more = (c & 0x20) !== 0;
      p += 1;
      k += 1;
      if (!more && (c & 0x10)) x -= 2 ** (5 * k); // sign extension
    }
    if (counts.length > 2) x += counts[counts.length - 2];
    counts.push(x);
  }
  return counts;
}

// RLE -> ImageData tinting the mask pixels; runs are column-major and start with background.
function maskImageData(rle, color) {
  const [h, w] = rle.size;
  const data = new ImageData(w, h);
  let index = 0;
  let value = 0;
  for (const run of rleCounts(rle.counts)) {
    if (value) {
      for (let i = index; i < index + run; i++) {
        const x = Math.floor(i / h);
        const y = i - x * h;
        const o = (y * w + x) * 4;
        data.data[o] = color[0];
        data.data[o + 1] = color[1];
        data.data[o + 2] = color[2];
        data.data[o + 3] = color[3];
      }
    }
    index += run;
    value = 1 - value;
  }
  return data;
}

async function drawResult(file, result) {
  const [width, height] = result.image_size;
  canvas.width = width;
  canvas.height = height;
  const ctx = canvas.getContext("2d");
  const bitmap = await createImageBitmap(file, { imageOrientation: "from-image" });
  ctx.drawImage(bitmap, 0, 0, width, height);
  if (result.mask_rle && result.mask_area > 0) {
    const layer = document.createElement("canvas");
    layer.width = width;
    layer.height = height;
    layer.getContext("2d").putImageData(maskImageData(result.mask_rle, [255, 64, 64, 128]), 0, 0);
    ctx.drawImage(layer, 0, 0);
  }
  const line = Math.max(1, Math.round(Math.min(width, height) / 200));
  const radius = Math.max(3, Math.round(Math.min(width, height) / 80));
  for (const obj of result.objects || []) {
    if (obj.box) {
      const [x1, y1, x2, y2] = obj.box;
      ctx.strokeStyle = "rgb(0, 220, 0)";
      ctx.lineWidth = line;
      ctx.strokeRect(x1, y1, x2 - x1 + 1, y2 - y1 + 1);
    }
    for (const [x, y] of obj.points || []) {
      ctx.beginPath();
      ctx.arc(x, y, radius, 0, 2 * Math.PI);
      ctx.fillStyle = "rgb(255, 230, 0)";
      ctx.fill();
      ctx.strokeStyle = "black";
      ctx.lineWidth = 1;
      ctx.stroke();
    }
  }
  const n = (result.objects || []).length;
  const summary = result.no_target
    ? NOTHING_MATCHES
    : n
    ? `${n} object${n > 1 ? "s" : ""} found, mask of ${result.mask_area.toLocaleString()} pixels.`
    : "No object found: the answer could not be used.";
  canvas.setAttribute("aria-label", `Answer drawn over the picture. ${summary}`);
  $("overlay-caption").textContent = summary;
  $("download-link").href = canvas.toDataURL("image/png");
}

function showDetails(result) {
  const usable = result.status === "ok" || result.status === "partial";
  const answer = result.no_target
    ? NOTHING_MATCHES
    : usable
    ? result.status
    : `not usable (${result.status}): ${result.reason}`;
  $("reasoning").textContent = result.thinking
    ? result.thinking
    : `The model wrote no reasoning in <think> tags. Its raw answer: ${(result.completion || "").trim() || "(empty)"}`;
  const rows = [
    ["Request", result.request],
    ["Answer", answer],
    ["SAM2 score", result.score == null ? "none" : result.score.toFixed(3)],
    ["Image", `${result.image_size[0]} x ${result.image_size[1]} pixels`],
    ["Batch", `${result.batch_size} request${result.batch_size > 1 ? "s" : ""} together`],
    ["Time", `${(result.timings.server_total || 0).toFixed(2)} s`],
  ];
  const details = $("details");
  details.replaceChildren();
  for (const [name, value] of rows) {
    const dt = document.createElement("dt");
    dt.textContent = name;
    const dd = document.createElement("dd");
    dd.textContent = value;
    details.append(dt, dd);
  }
}

form.addEventListener("submit", async (event) => {
  event.preventDefault();
  clearError();
  const file = chosenFile();
  const request = requestInput.value.trim();
  if (!file) {
    showError("Choose an image first.");
    imageInput.focus();
    return;
  }
  if (!request) {
    showError("Type a request, e.g. 'the cup on the left'.");
    requestInput.focus();
    return;
  }
  if (limits.max_upload_bytes && file.size > limits.max_upload_bytes) {
    showError(`The image is ${file.size.toLocaleString()} bytes; the server accepts at most ${limits.max_upload_bytes.toLocaleString()}.`);
    imageInput.focus();
    return;
  }
  const body = new FormData();
  body.append("image", file, file.name);
  body.append("request", request);
  setStatus("Running the model... this can take a while.", true);
  const started = performance.now();
  try {
    const response = await fetch("/v1/segment", { method: "POST", body });
    let data = null;
    try {
      data = await response.json();
    } catch (_) {
      data = null;
    }
    if (!response.ok) {
      const message = (data && data.error) || `The server answered ${response.status} ${response.statusText}.`;
      setStatus("", false);
      showError(message);
      return;
    }
    await drawResult(file, data);
    showDetails(data);
    resultSection.hidden = false;
    const seconds = ((performance.now() - started) / 1000).toFixed(1);
    setStatus(`Done in ${seconds} s. ${$("overlay-caption").textContent}`, false);
  } catch (error) {
    setStatus("", false);
    showError(`Could not reach the server (${error.message}); check that it is running.`);
  }
});
