// The page: uploads with progress, a card per job (polled once a second, so a reload
// loses nothing), before/after comparison, download. Plain DOM, no build step.
"use strict";

const $ = (selector, root = document) => root.querySelector(selector);
const cards = new Map(); // job id -> its card
let limits = null; // the server's, from /api/config

function say(text, isError = false) {
  const li = document.createElement("li");
  li.textContent = text;
  li.classList.toggle("error", isError);
  $("#messages").prepend(li);
  return li;
}

function duration(seconds) {
  if (seconds < 60) return `${Math.max(1, Math.round(seconds))} s`;
  const m = Math.floor(seconds / 60);
  return m < 60 ? `${m} min ${Math.round(seconds % 60)} s` : `${Math.floor(m / 60)} h ${m % 60} min`;
}

async function loadConfig() {
  const config = await (await fetch("/api/config")).json();
  const select = $("#model");
  for (const m of config.models) select.add(new Option(m.label, m.name));
  const saved = localStorage.getItem("nas-sr-model");
  if (config.models.some((m) => m.name === saved)) select.value = saved;
  select.addEventListener("change", () => localStorage.setItem("nas-sr-model", select.value));
  limits = config.limits;
  $("#limits").textContent = `This server takes ${limits.text}.`;
  $("#keep").textContent = duration(config.keep_minutes * 60);
}

function upload(file) {
  if (limits && file.size > limits.upload_bytes) { // say so now rather than after the upload
    say(`${file.name} was not accepted: it is too large for this server (${limits.text})`, true);
    return;
  }
  const note = say(`Uploading ${file.name}…`);
  const form = new FormData();
  form.append("file", file, file.name);
  form.append("model", $("#model").value);
  const xhr = new XMLHttpRequest();
  xhr.open("POST", "/api/jobs");
  xhr.upload.onprogress = (e) => {
    if (e.lengthComputable) note.textContent = `Uploading ${file.name}: ${Math.round(100 * e.loaded / e.total)}%`;
  };
  xhr.onload = () => {
    if (xhr.status === 202) {
      note.remove();
      poll();
      return;
    }
    let detail = xhr.statusText;
    try { detail = JSON.parse(xhr.responseText).detail; } catch { /* not JSON: keep the status */ }
    note.textContent = `${file.name} was not accepted: ${detail}`;
    note.classList.add("error");
  };
  xhr.onerror = () => {
    note.textContent = `${file.name}: the upload failed (is the server still running?)`;
    note.classList.add("error");
  };
  xhr.send(form);
}

function statusText(job) {
  const notes = job.notes.length ? ` · ${job.notes.join(" · ")}` : "";
  switch (job.status) {
    case "queued":
      return `Waiting: ${job.position === 1 ? "next in line" : `#${job.position} in line`}`;
    case "running": {
      const unit = job.kind === "video" ? "frames" : "tiles";
      const eta = job.eta_s == null ? "" : ` · about ${duration(job.eta_s)} left`;
      return `Upscaling… ${Math.round(100 * job.progress)}% of the ${unit}${eta}${notes}`;
    }
    case "done": return `Done in ${duration(job.elapsed_s)}${notes}`;
    case "failed": return `Failed: ${job.error}`;
    default: return "Cancelled";
  }
}

function media(job, url, isBefore) {
  const el = document.createElement(job.kind === "video" ? "video" : "img");
  el.src = url;
  if (job.kind === "video") {
    Object.assign(el, { muted: true, loop: true, playsInline: true, preload: "auto" });
    if (!isBefore) el.controls = true;
  } else {
    el.alt = isBefore ? `${job.name}, as uploaded` : `${job.name}, upscaled x${job.scale}`;
  }
  return el;
}

function buildCompare(card, job) {
  const box = $(".compare", card);
  const stage = $(".stage", card);
  const after = media(job, job.result_url, false);
  const before = media(job, job.input_url, true);
  $(".after", card).append(after);
  $(".before", card).append(before);
  const slider = $(".slider", card);
  const setPos = (pct) => {
    slider.value = pct;
    stage.style.setProperty("--pos", `${pct}%`);
  };
  slider.addEventListener("input", () => setPos(slider.value));
  if (job.kind === "image") { // drag on the picture itself; a video keeps its controls
    const drag = (e) => {
      if (e.buttons !== 1) return;
      const r = stage.getBoundingClientRect();
      setPos(Math.min(100, Math.max(0, 100 * (e.clientX - r.left) / r.width)));
    };
    stage.addEventListener("pointerdown", drag);
    stage.addEventListener("pointermove", drag);
  } else { // the "before" video follows the one with controls
    const sync = () => {
      if (Math.abs(before.currentTime - after.currentTime) > 0.1) before.currentTime = after.currentTime;
    };
    after.addEventListener("play", () => { sync(); before.play(); });
    after.addEventListener("pause", () => { before.pause(); sync(); });
    after.addEventListener("seeked", sync);
    after.addEventListener("timeupdate", sync);
  }
  // fit: never wider than the result's own pixels; 100%: one result pixel per screen pixel
  const zoom = $(".zoom select", card);
  const setZoom = () => {
    const factor = Number(zoom.value) || 1;
    stage.style.setProperty("--w", `${factor * job.output_size[0] / devicePixelRatio}px`);
    $(".frame", card).classList.toggle("zoomed", factor > 1 || zoom.value === "1");
  };
  zoom.addEventListener("change", setZoom);
  setZoom();
  box.hidden = false;
}

function render(job) {
  let card = cards.get(job.id);
  if (!card) {
    card = $("#job-card").content.firstElementChild.cloneNode(true);
    card.dataset.id = job.id;
    $(".name", card).textContent = job.name;
    $(".remove", card).addEventListener("click", async () => {
      await fetch(`/api/jobs/${job.id}`, { method: "DELETE" });
      poll();
    });
    cards.set(job.id, card);
    $("#jobs").prepend(card);
  }
  const [w, h] = job.input_size;
  const [W, H] = job.output_size;
  const frames = job.frames ? `, ${job.frames} frames` : "";
  $(".meta", card).textContent = `${job.kind}${frames} · ${w}×${h} → ${W}×${H} · ${job.model}`;
  card.className = `panel job ${job.kind} ${job.status}`;
  $(".bar div", card).style.width = `${100 * (job.status === "done" ? 1 : job.progress)}%`;
  $(".status", card).textContent = statusText(job);
  const download = $(".download", card);
  if (job.status === "done" && download.hidden) {
    download.href = `${job.result_url}?download=true`;
    download.setAttribute("download", "");
    download.hidden = false;
    buildCompare(card, job);
  }
}

async function poll() {
  let jobs;
  try {
    jobs = await (await fetch("/api/jobs")).json();
  } catch {
    return; // the server is restarting or gone; the next poll tries again
  }
  const ids = new Set(jobs.map((j) => j.id));
  for (const [id, card] of cards) {
    if (!ids.has(id)) { card.remove(); cards.delete(id); }
  }
  jobs.forEach(render);
  $("#empty").hidden = jobs.length > 0;
}

function setUpDrop() {
  const drop = $("#drop");
  const input = $("#file");
  input.addEventListener("change", () => { [...input.files].forEach(upload); input.value = ""; });
  drop.addEventListener("keydown", (e) => { if (e.key === "Enter" || e.key === " ") input.click(); });
  // a file dropped anywhere is uploaded, not opened by the browser in place of the page
  window.addEventListener("dragover", (e) => { e.preventDefault(); drop.classList.add("over"); });
  window.addEventListener("dragleave", (e) => { if (!e.relatedTarget) drop.classList.remove("over"); });
  window.addEventListener("drop", (e) => {
    e.preventDefault();
    drop.classList.remove("over");
    [...e.dataTransfer.files].forEach(upload);
  });
}

setUpDrop();
loadConfig().then(poll);
setInterval(poll, 1000);
