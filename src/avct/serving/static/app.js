// avct web page: submit a job to /v1/jobs, poll it, show the video. Plain JS, no build step.
"use strict";

const $ = (id) => document.getElementById(id);
const POLL_MS = 500;
let recording = null;   // a File recorded from the microphone (used instead of the audio input)
let recorder = null;    // the active MediaRecorder
let currentJob = null;  // id of the job being polled

class Cancelled extends Error {}

function say(text) { $("status").textContent = text; }
function fail(text) { $("error").textContent = text; say(""); }

// One line from an error response: {"detail": "..."} (or FastAPI's list of validation errors).
async function errorText(response) {
  try {
    const body = await response.json();
    if (typeof body.detail === "string") return body.detail;
    if (Array.isArray(body.detail)) return body.detail.map((d) => d.msg).join("; ");
  } catch (e) { /* not JSON */ }
  return `HTTP ${response.status} ${response.statusText}`;
}

// Defaults and limits come from the server, so the page never restates them.
async function loadConfig() {
  const response = await fetch("v1/config");
  if (!response.ok) return;
  const config = await response.json();
  for (const [name, value] of Object.entries(config.defaults)) {
    const control = document.querySelector(`.option[name="${name}"]`);
    if (!control || value === null) continue;
    if (control.type === "checkbox") control.checked = Boolean(value);
    else control.value = value;
  }
  const limits = config.limits;
  $("limits").textContent = `Limits: ${limits.max_upload_mb} MB per upload, ${limits.max_audio_s} s of speech; ` +
    `results are kept ${limits.keep_minutes} minutes.`;
}

function chosenAudio() {
  return recording || ($("audio").files.length ? $("audio").files[0] : null);
}

async function submit(event) {
  event.preventDefault();
  $("error").textContent = "";
  const image = $("image").files[0];
  const audio = chosenAudio();
  if (!image) { fail("choose a face photo"); $("image").focus(); return; }
  if (!audio) { fail("choose an audio file or record from the microphone"); $("audio").focus(); return; }

  const form = new FormData();
  form.append("image", image, image.name);
  form.append("audio", audio, audio.name);
  for (const control of document.querySelectorAll(".option")) {
    const value = control.type === "checkbox" ? String(control.checked) : control.value.trim();
    if (value !== "") form.append(control.name, value);
  }

  $("result").hidden = true;
  $("generate").disabled = true;
  showProgress(0);
  say("Uploading…");
  try {
    const response = await fetch("v1/jobs", { method: "POST", body: form });
    if (!response.ok) throw new Error(await errorText(response));
    currentJob = (await response.json()).id;
    $("cancel").hidden = false;
    await poll(currentJob);
  } catch (e) {
    if (e instanceof Cancelled) say("Cancelled.");
    else fail(e.message);
    $("progress").hidden = true;
  } finally {
    $("generate").disabled = false;
    $("cancel").hidden = true;
    currentJob = null;
  }
}

function showProgress(fraction) {
  $("progress").hidden = false;
  $("progress").value = fraction;
}

async function poll(id) {
  let lastStatus = "";
  for (;;) {
    const response = await fetch(`v1/jobs/${id}`);
    if (!response.ok) throw new Error(await errorText(response));
    const job = await response.json();
    showProgress(job.progress);
    if (job.status === "done") return showResult(id);
    if (job.status === "failed") throw new Error(job.error);
    const percent = Math.round(job.progress * 100);
    // Announce status changes, not every percent (screen readers read each change of a live region).
    if (job.status !== lastStatus) say(job.status === "queued" ? "Waiting in the queue…" : "Generating…");
    $("progress").setAttribute("aria-valuetext", `${job.status}, ${percent} %`);
    lastStatus = job.status;
    await new Promise((resolve) => setTimeout(resolve, POLL_MS));
    if (currentJob !== id) throw new Cancelled();
  }
}

function showResult(id) {
  const url = `v1/jobs/${id}/video`;
  $("video").src = url;
  $("download").href = url;
  $("download").download = `avct-${id.slice(0, 8)}.mp4`;
  $("result").hidden = false;
  say("Done: the video is below.");
  $("result-title").focus();
}

async function cancel() {
  const id = currentJob;
  currentJob = null;
  if (id) await fetch(`v1/jobs/${id}`, { method: "DELETE" });
}

// Microphone: MediaRecorder writes webm/ogg (Opus); the server decodes any container PyAV reads.
async function toggleRecording() {
  const button = $("record");
  if (recorder) { recorder.stop(); return; }
  if (!navigator.mediaDevices || !window.MediaRecorder) {
    fail("this browser cannot record audio here (it needs https or localhost)");
    return;
  }
  let stream;
  try {
    stream = await navigator.mediaDevices.getUserMedia({ audio: true });
  } catch (e) {
    fail(`microphone not available: ${e.message}`);
    return;
  }
  const type = ["audio/webm;codecs=opus", "audio/ogg;codecs=opus", "audio/webm"]
    .find((t) => MediaRecorder.isTypeSupported(t)) || "";
  const chunks = [];
  recorder = new MediaRecorder(stream, type ? { mimeType: type } : {});
  recorder.ondataavailable = (e) => chunks.push(e.data);
  recorder.onstop = () => {
    stream.getTracks().forEach((track) => track.stop());
    const mime = recorder.mimeType || "audio/webm";
    const blob = new Blob(chunks, { type: mime });
    recording = new File([blob], mime.includes("ogg") ? "recording.ogg" : "recording.webm", { type: mime });
    $("recording").src = URL.createObjectURL(blob);
    $("recording").hidden = false;
    $("audio").value = "";
    $("record-state").textContent = "Recorded; this recording will be used.";
    button.textContent = "Record again";
    button.setAttribute("aria-pressed", "false");
    recorder = null;
  };
  recorder.start();
  button.textContent = "Stop recording";
  button.setAttribute("aria-pressed", "true");
  $("record-state").textContent = "Recording…";
}

function audioChosen() {  // a picked file replaces an earlier recording
  if ($("audio").files.length) {
    recording = null;
    $("recording").hidden = true;
    $("record-state").textContent = "";
  }
}

$("job-form").addEventListener("submit", submit);
$("record").addEventListener("click", toggleRecording);
$("cancel").addEventListener("click", cancel);
$("audio").addEventListener("change", audioChosen);
loadConfig();
