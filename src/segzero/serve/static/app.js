// segzero web page: send an image and a request to /v1/segment/stream, show the reasoner's text as it is
// written, then the server's overlay picture.
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
const overlayImage = $("overlay-image");

// The answer "nothing matches" (status no_target) is an answer, not an error: an empty mask.
const NOTHING_MATCHES = "Nothing matches: nothing in the image matches the request, so the mask is empty.";

let limits = { max_upload_bytes: null, max_request_chars: null };
let previewUrl = null;

// Limits and model names come from the server so the page and the API never disagree.
fetch("/health")
  .then((r) => (r.ok ? r.json() : null))
  .then((health) => {
    if (!health) return;
    limits = health.limits || limits;
    if (limits.max_request_chars) requestInput.maxLength = limits.max_request_chars;
    $("models").textContent = `Models: reasoner ${health.reasoner || "unknown"}, segmenter ${health.segmenter || "unknown"}.`;
  })
  .catch(() => {});

// A request that suits the loaded models, and example images when the server has some.
fetch("/examples")
  .then((r) => (r.ok ? r.json() : null))
  .then((examples) => {
    if (!examples) return;
    requestInput.placeholder = `e.g. ${examples.request}`;
    const list = $("example-list");
    for (const example of examples.images || []) {
      const button = document.createElement("button");
      button.type = "button";
      const thumb = document.createElement("img");
      thumb.src = example.url;
      thumb.alt = "";
      const label = document.createElement("span");
      label.textContent = example.request;
      button.append(thumb, label);
      button.setAttribute("aria-label", `Example image: ${example.request}`);
      button.addEventListener("click", () => useExample(example));
      list.append(button);
    }
    $("examples").hidden = !(examples.images || []).length;
  })
  .catch(() => {});

async function useExample(example) {
  const blob = await (await fetch(example.url)).blob();
  const transfer = new DataTransfer();
  transfer.items.add(new File([blob], example.url.split("/").pop(), { type: "image/png" }));
  imageInput.files = transfer.files;
  requestInput.value = example.request;
  clearError();
  showPreview();
  setStatus("Example chosen: press Segment.", false);
  submitButton.focus();
}

function setStatus(text, busy) {
  statusText.textContent = text;
  progress.hidden = !busy;
  submitButton.disabled = busy;
  form.setAttribute("aria-busy", busy ? "true" : "false");
}

// Any failed request also clears the previous answer, so it is not mistaken for this request's.
function showError(message) {
  clearResult();
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

function showOverlay(result) {
  const n = (result.objects || []).length;
  const summary = result.no_target
    ? NOTHING_MATCHES
    : n
    ? `${n} object${n > 1 ? "s" : ""} found, mask of ${result.mask_area.toLocaleString()} pixels.`
    : "No object found: the answer could not be used.";
  const url = `data:image/png;base64,${result.overlay_png_base64}`;
  overlayImage.src = url;
  overlayImage.alt = `The image beside it with the answer drawn: mask, box and points. ${summary}`;
  $("overlay-caption").textContent = summary;
  $("download-link").href = url;
}

// The reasoner's text, shown as it streams in; hidden again once the result (or an error) is in.
function showLive(text) {
  const live = $("live-text");
  const atBottom = live.scrollTop + live.clientHeight >= live.scrollHeight - 4;
  live.textContent += text;
  if (atBottom) live.scrollTop = live.scrollHeight;
  $("live").hidden = false;
}

function clearLive() {
  $("live").hidden = true;
  $("live-text").textContent = "";
}

// Server-sent events from a fetch body: calls onEvent(name, data) for each complete event.
async function readEvents(response, onEvent) {
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    buffer += decoder.decode(value || new Uint8Array(), { stream: !done });
    let end;
    while ((end = buffer.indexOf("\n\n")) >= 0) {
      const block = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      let name = "message";
      const data = [];
      for (const line of block.split("\n")) {
        if (line.startsWith("event:")) name = line.slice(6).trim();
        else if (line.startsWith("data:")) data.push(line.slice(5).trim());
      }
      if (data.length) onEvent(name, JSON.parse(data.join("\n")));
    }
    if (done) return;
  }
}

function clearResult() {
  clearLive();
  resultSection.hidden = true;
  overlayImage.removeAttribute("src");
  overlayImage.alt = "";
  $("overlay-caption").textContent = "";
  $("download-link").removeAttribute("href");
  $("reasoning").textContent = "";
  $("details").replaceChildren();
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
    ["Segmenter score", result.score == null ? "none" : result.score.toFixed(3)],
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
  body.append("overlay", "true");
  clearResult();
  setStatus("Running the model: its text appears below as it is written.", true);
  const started = performance.now();
  try {
    const response = await fetch("/v1/segment/stream", { method: "POST", body });
    if (!response.ok) {
      let data = null;
      try {
        data = await response.json();
      } catch (_) {
        data = null;
      }
      const message = (data && data.error) || `The server answered ${response.status} ${response.statusText}.`;
      setStatus("", false);
      showError(message);
      return;
    }
    let result = null;
    let failure = null;
    await readEvents(response, (name, data) => {
      if (name === "text") showLive(data.text);
      else if (name === "result") result = data;
      else if (name === "error") failure = data.error;
    });
    if (!result) {
      setStatus("", false);
      showError(failure || "The server ended the answer early; try again.");
      return;
    }
    clearLive();
    showOverlay(result);
    showDetails(result);
    resultSection.hidden = false;
    const seconds = ((performance.now() - started) / 1000).toFixed(1);
    setStatus(`Done in ${seconds} s. ${$("overlay-caption").textContent}`, false);
  } catch (error) {
    setStatus("", false);
    showError(`Could not reach the server (${error.message}); check that it is running.`);
  }
});
