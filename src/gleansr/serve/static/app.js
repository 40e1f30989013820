// gleansr web page: pick a model, drop images, send each to POST /v1/upscale, compare before/after.
// No framework and nothing from the internet: this file, the page and its stylesheet are all it needs.
"use strict";

const $ = (sel, root = document) => root.querySelector(sel);
const PARALLEL = 2;  // requests in flight at once; the rest wait in this page's own queue
const waiting = [];
let running = 0;
let models = [];

function showServerMessage(text) {
  const box = $("#server-message");
  box.textContent = text || "";
  box.hidden = !text;
}

// The API's answer to a failed request: its stable code and sentence, or the HTTP status alone.
async function apiError(response) {
  try {
    const body = await response.json();
    if (body && body.error && body.error.message) return body.error;
  } catch (e) { /* not JSON: fall through */ }
  return { code: "", message: `the server answered HTTP ${response.status}` };
}

const quote = (label) => `\u201c${label}\u201d`;
const SHRINK = quote("shrink larger inputs"), FACES = quote("whole photo with faces"), RETRY = quote("try again");

// What went wrong, in this page's words: the API's sentences name API parameters and endpoints
// (resize=true, GET /v1/models), so the codes whose remedy is one of this page's controls get a
// sentence naming the control. Codes about the picture itself keep the server's sentence, which
// names the problem the same way the command line does. `retry`: whether trying again can help.
const PAGE_WORDS = {
  input_too_large: (job) => {
    const m = job.info, n = m ? `${m.in_size}x${m.in_size}` : "";
    return { retry: true, text: `${job.file.name}${pictureSize(job)} is larger than the ${n} input of ${job.model}` +
      (m ? `, which restores tiny pictures of ${m.domain}` : "") + `. Tick ${SHRINK} and press ${RETRY} to shrink ` +
      `it to ${n} anyway (most of its detail is lost), or pick a model made for pictures like it` +
      (m && m.face_model ? `; for a photo of people tick ${FACES}` : "") + "." };
  },
  resize_too_large: (job) => ({ retry: false, text: `${job.file.name}${pictureSize(job)} is too large for this ` +
    "server to shrink: crop it to the part that matters first." }),
  model_unavailable: (job) => ({ retry: true, text: `${job.model} is not installed on this server: pick an ` +
    `installed model and press ${RETRY}.` }),
  unknown_model: (job) => ({ retry: false, text: `this server does not offer ${job.model}: reload the page to ` +
    "see the models it has." }),
  not_a_face_model: () => ({ retry: true, text: `${FACES} needs a face model: pick one ` +
    `(${models.filter((m) => m.face_model).map((m) => m.name).join(", ")}) and press ${RETRY}.` }),
  faces_unavailable: () => ({ retry: true, text: "this server cannot find faces in photos (its face detection " +
    `is not installed): untick ${FACES} and press ${RETRY}.` }),
  too_many_pixels: (job) => ({ retry: false, text: `${job.file.name}${pictureSize(job)} has more pixels than ` +
    "this server takes in or gives back: try a smaller picture." }),
  queue_full: () => ({ retry: true, text: `the server is busy: press ${RETRY} in a moment.` }),
  timeout: () => ({ retry: true, text: "the server took longer than its time limit (it may be busy): press " +
    `${RETRY} in a moment.` }),
  internal_error: () => ({ retry: true, text: "the server failed while upscaling this picture (its log says " +
    `why): press ${RETRY}, or pick another model.` }),
};

function inPageWords(error, job) {
  const words = PAGE_WORDS[error.code];
  return words ? words(job) : { retry: false, text: error.message };
}

function pictureSize(job) {
  const img = $(".lr", job.card);
  return img.naturalWidth ? ` (${img.naturalWidth}x${img.naturalHeight})` : "";
}

async function loadModels() {
  let response;
  try {
    response = await fetch("/v1/models");
  } catch (e) {
    showServerMessage("cannot reach the gleansr server");
    return;
  }
  if (!response.ok) { showServerMessage((await apiError(response)).message); return; }
  const info = await response.json();
  models = info.models;
  const select = $("#model");
  for (const m of models) {
    const option = new Option(`${m.name}: ${m.domain}, ${m.in_size}x${m.in_size} -> ${m.out_size}x${m.out_size}` +
                              (m.present ? "" : " (not installed)"), m.name);
    option.disabled = !m.present;
    option.selected = m.name === info.default;
    select.add(option);
  }
  for (const p of info.precisions) $("#precision").add(new Option(p, p));
  if (!models.some((m) => m.present)) {
    showServerMessage("no model is installed on this server yet: `gleansr models` on the server lists them " +
                      "and says how to get their weights");
  }
  describeModel();
}

function describeModel() {
  const m = models.find((x) => x.name === $("#model").value);
  $("#model-note").textContent = m ? `${m.name} expects ${m.input_kind}, at most ${m.in_size}x${m.in_size} ` +
    `pixels; it returns ${m.out_size}x${m.out_size} (x${m.scale}).` : "";
  // whole photos need a face model: the box is off (and unticked) for every other model
  const faces = $("#faces");
  faces.disabled = !(m && m.face_model);
  if (faces.disabled) faces.checked = false;
}

// A job is one picture sent with the controls as they are when it is queued (or queued again).
function queue(file, card) {
  const model = $("#model").value;
  waiting.push({ file, card, model, info: models.find((m) => m.name === model), precision: $("#precision").value,
                 resize: $("#resize").checked, faces: $("#faces").checked });
  setStatus(card, "queued");
  pump();
}

function addFiles(files) {
  for (const file of files) {
    const card = $("#card").content.firstElementChild.cloneNode(true);
    $(".name", card).textContent = file.name;
    const thumb = $(".lr", card);
    // a file this browser cannot show (not an image, or TIFF) gets no broken-image icon
    thumb.addEventListener("error", () => { $(".input", card).hidden = true; }, { once: true });
    thumb.addEventListener("load", () => {
      $(".input figcaption", card).textContent = `your picture, ${thumb.naturalWidth}x${thumb.naturalHeight}`;
    }, { once: true });
    thumb.src = URL.createObjectURL(file);
    $(".retry", card).addEventListener("click", () => { clearProblem(card); queue(file, card); });
    $(".remove", card).addEventListener("click", () => { URL.revokeObjectURL(thumb.src); card.remove(); });
    $("#results").prepend(card);
    queue(file, card);
  }
}

function setStatus(card, text) {
  const status = $(".status", card);
  status.textContent = text;
  status.className = `status ${text}`;
}

function pump() {
  while (running < PARALLEL && waiting.length) {
    running += 1;
    upscale(waiting.shift()).finally(() => { running -= 1; pump(); });
  }
}

async function upscale(job) {
  const { file, card } = job;
  setStatus(card, "running");
  // model_input: the answer carries the image the model saw, for the "before" half
  const query = new URLSearchParams({ model: job.model, precision: job.precision, resize: job.resize,
                                      faces: job.faces, model_input: !job.faces });
  let response;
  try {
    response = await fetch(`/v1/upscale?${query}`, {
      method: "POST", body: file,
      headers: { "Content-Type": file.type || "application/octet-stream", "X-Filename": encodeURIComponent(file.name) },
    });
  } catch (e) {
    return fail(card, { retry: true, text: `the connection to the server was lost: press ${RETRY}.` });
  }
  if (!response.ok) return fail(card, inPageWords(await apiError(response), job));
  const blob = await response.blob();
  showResult(card, file, blob, response.headers);
}

// A failed card shows what went wrong and only controls that work: no result, no download link.
function fail(card, { text, retry }) {
  setStatus(card, "failed");
  $(".compare", card).hidden = true;
  $(".download", card).hidden = true;
  $(".message", card).textContent = text;
  $(".retry", card).hidden = !retry;
  $(".problem", card).hidden = false;
}

function clearProblem(card) {
  $(".problem", card).hidden = true;
}

function showResult(card, file, blob, headers) {
  const url = URL.createObjectURL(blob);
  const [w, h] = (headers.get("X-Gleansr-Output-Size") || "0x0").split("x").map(Number);
  const before = $(".before", card), after = $(".after", card);
  for (const img of [before, after]) { img.width = w; img.height = h; }
  // the model's input (after crop and resize), else (a whole photo) the photo itself
  const seen = headers.get("X-Gleansr-Model-Input");
  before.src = seen || $(".lr", card).src;
  after.src = url;
  before.addEventListener("load", () => {
    $(".before-note", card).textContent = `${seen ? "the model's input" : "your photo"} ` +
      `(${before.naturalWidth}x${before.naturalHeight}, nearest neighbour)`;
  }, { once: true });
  const slider = $(".slider", card);
  for (const box of [$(".stage", card), slider]) box.style.width = `${w}px`;  // at most the screen's (CSS)
  slider.addEventListener("input", () => { $(".before-clip", card).style.width = `${slider.value}%`; });
  const faces = headers.get("X-Gleansr-Faces");
  $(".timing", card).textContent = `${headers.get("X-Gleansr-Model")}, ${headers.get("X-Gleansr-Total-Ms")} ms` +
    (faces === null ? "" : `, ${faces} face(s) restored`);
  $(".compare", card).hidden = false;
  const link = $(".download", card);
  link.href = url;
  link.download = `${file.name.replace(/\.[^.]*$/, "")}_x${headers.get("X-Gleansr-Scale")}.png`;
  link.hidden = false;
  setStatus(card, "done");
}

function setUpDropZone() {
  const zone = $("#drop");
  zone.addEventListener("dragover", (e) => { e.preventDefault(); zone.classList.add("over"); });
  zone.addEventListener("dragleave", () => zone.classList.remove("over"));
  zone.addEventListener("drop", (e) => {
    e.preventDefault();
    zone.classList.remove("over");
    addFiles(e.dataTransfer.files);
  });
  $("#files").addEventListener("change", (e) => { addFiles(e.target.files); e.target.value = ""; });
}

document.addEventListener("DOMContentLoaded", () => {
  $("#model").addEventListener("change", describeModel);
  setUpDropZone();
  loadModels();
});
