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

// One sentence for any failed answer: the server's JSON message, else the HTTP status.
async function errorText(response) {
  try {
    const body = await response.json();
    if (body && body.error && body.error.message) return body.error.message;
  } catch (e) { /* not JSON: fall through */ }
  return `the server answered HTTP ${response.status}`;
}

async function loadModels() {
  let response;
  try {
    response = await fetch("/v1/models");
  } catch (e) {
    showServerMessage("cannot reach the gleansr server");
    return;
  }
  if (!response.ok) { showServerMessage(await errorText(response)); return; }
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

function addFiles(files) {
  for (const file of files) {
    const card = $("#card").content.firstElementChild.cloneNode(true);
    $(".name", card).textContent = file.name;
    $(".lr", card).src = URL.createObjectURL(file);
    $("#results").prepend(card);
    waiting.push({ file, card, model: $("#model").value, precision: $("#precision").value,
                   resize: $("#resize").checked, faces: $("#faces").checked });
  }
  pump();
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
  const query = new URLSearchParams({ model: job.model, precision: job.precision, resize: job.resize,
                                      faces: job.faces });
  let response;
  try {
    response = await fetch(`/v1/upscale?${query}`, {
      method: "POST", body: file,
      headers: { "Content-Type": file.type || "application/octet-stream", "X-Filename": encodeURIComponent(file.name) },
    });
  } catch (e) {
    return fail(card, "the connection to the server was lost");
  }
  if (!response.ok) return fail(card, await errorText(response));
  const blob = await response.blob();
  showResult(card, file, blob, response.headers);
}

function fail(card, message) {
  setStatus(card, "failed");
  const box = $(".message", card);
  box.textContent = message;
  box.hidden = false;
}

function showResult(card, file, blob, headers) {
  const url = URL.createObjectURL(blob);
  const [w, h] = (headers.get("X-Gleansr-Output-Size") || "0x0").split("x").map(Number);
  const before = $(".before", card), after = $(".after", card);
  for (const img of [before, after]) { img.width = w; img.height = h; }
  before.src = $(".lr", card).src;
  after.src = url;
  const slider = $(".slider", card);
  slider.style.width = `${w}px`;
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
