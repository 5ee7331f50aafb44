// The live preview page: every server-sent "update" fetches the state once and
// redraws; the frames reload only when the render, the reader or the mode changed.
"use strict";

const $ = (id) => document.getElementById(id);
const choice = { list: null, row: 0, mode: "light", tab: "html" };
let asked = 0; // the newest state request: an older answer arriving late is dropped
let lastRender = -1; // the render the frames show (a new score alone reloads nothing)

function query() {
  const q = new URLSearchParams();
  if (choice.list) q.set("list", choice.list);
  q.set("row", String(choice.row));
  return q;
}

function fill(select, values, chosen) {
  const labels = values.map(String);
  const same =
    select.options.length === labels.length &&
    labels.every((label, i) => select.options[i].textContent === label);
  if (!same) {
    select.replaceChildren(
      ...labels.map((label, i) => {
        const option = document.createElement("option");
        option.value = String(i);
        option.textContent = label;
        return option;
      })
    );
  }
  select.value = String(chosen);
}

function fitFrame(frame) {
  const doc = frame.contentDocument;
  if (doc && doc.documentElement) {
    frame.style.height = doc.documentElement.scrollHeight + "px";
  }
}

function loadFrames(render) {
  const q = query();
  q.set("render", String(render));
  for (const id of ["frame-375", "frame-600"]) {
    const frame = $(id);
    const url = `/frame/${choice.mode}.html?${q}`;
    if (frame.dataset.url !== url) {
      frame.dataset.url = url;
      frame.dataset.loaded = "";
      frame.src = url;
    }
  }
}

function showError(lines, hasDraft) {
  $("error").hidden = lines.length === 0;
  $("error-lines").textContent = lines.join("\n");
  $("error-note").textContent = hasDraft
    ? "The last good render stays below; it updates once the files compose again."
    : "Nothing has composed yet.";
}

function showCheck(draft) {
  const check = draft.check;
  const errors = check.findings.filter((f) => f.level === "error").length;
  const warnings = check.findings.length - errors;
  $("verdict").className = check.ok ? "ok" : "failed";
  $("verdict").textContent = `${check.ok ? "OK" : "FAILED"}: ${errors} errors, ${warnings} warnings`;
  const meter = $("size-meter");
  meter.max = check.clip_bytes;
  meter.high = check.clip_bytes * 0.88;
  meter.value = Math.min(check.html_bytes, check.clip_bytes);
  $("size").textContent =
    `HTML ${(check.html_bytes / 1024).toFixed(1)} KB as sent of Gmail's ` +
    `${check.clip_bytes / 1024} KB clip (${check.measured_with})`;
  $("findings").replaceChildren(
    ...check.findings.map((f) => {
      const item = document.createElement("li");
      item.className = f.level;
      const level = document.createElement("span");
      level.className = "level";
      level.textContent = f.level;
      item.append(level, `${f.code}: ${f.message}`);
      return item;
    }),
    ...check.notes.map((note) => {
      const item = document.createElement("li");
      item.textContent = `note: ${note}`;
      return item;
    })
  );
  const spam = draft.spam;
  $("spam").textContent = {
    absent: "SpamAssassin: not installed (apt-get install spamassassin)",
    pending: "SpamAssassin: scoring…",
    done: `SpamAssassin: ${spam.describe}`,
    failed: `SpamAssassin failed: ${spam.error}`,
  }[spam.state];
}

function showText(draft) {
  const pre = $("text");
  pre.replaceChildren(
    ...draft.text.map((line) => {
      const span = document.createElement("span");
      if (line.over) span.className = "over";
      span.textContent = line.text + "\n";
      return span;
    })
  );
  $("ruler").style.left = `calc(12px + ${draft.text_limit}ch)`;
}

function render(state) {
  showError(state.error, state.draft !== null);
  $("reader-error").hidden = state.reader_error.length === 0;
  $("reader-error-lines").textContent = state.reader_error.join("\n");
  choice.list = state.list;
  choice.row = state.row;
  fill($("list"), state.lists.length ? state.lists : ["(no lists)"], Math.max(0, state.lists.indexOf(state.list)));
  fill($("reader"), state.readers, state.row);
  const draft = state.draft;
  if (draft === null) return;
  $("avatar").textContent = (draft.sender_name || "?").slice(0, 1);
  $("sender").textContent = draft.sender_name;
  $("subject").textContent = draft.subject;
  $("preheader").textContent = draft.preheader;
  $("composed").textContent = `${draft.id} · composed ${draft.composed_at}`;
  $("composed").title = `in ${draft.seconds} s; to ${draft.to}`;
  showCheck(draft);
  showText(draft);
  $("articles").replaceChildren(
    ...draft.articles.map((title) => {
      const item = document.createElement("li");
      item.textContent = title;
      return item;
    })
  );
  $("path").textContent = `${draft.path}/`;
  document.title = `${draft.subject} – digest-mail live preview`;
  lastRender = draft.render;
  loadFrames(lastRender);
}

async function refresh() {
  const mine = ++asked;
  const response = await fetch(`/state.json?${query()}`, { cache: "no-store" });
  const state = await response.json();
  if (mine === asked) render(state);
}

function selectTab(tab) {
  choice.tab = tab;
  $("tab-html").setAttribute("aria-selected", String(tab === "html"));
  $("tab-text").setAttribute("aria-selected", String(tab === "text"));
  $("html-view").hidden = tab !== "html";
  $("text-view").hidden = tab !== "text";
}

function selectMode(mode) {
  choice.mode = mode;
  $("mode-light").setAttribute("aria-pressed", String(mode === "light"));
  $("mode-dark").setAttribute("aria-pressed", String(mode === "dark"));
  document.body.classList.toggle("dark", mode === "dark");
  loadFrames(lastRender);
}

function start() {
  for (const id of ["frame-375", "frame-600"]) {
    const frame = $(id);
    frame.addEventListener("load", () => {
      fitFrame(frame);
      frame.dataset.loaded = frame.dataset.url || "";
    });
  }
  $("tab-html").addEventListener("click", () => selectTab("html"));
  $("tab-text").addEventListener("click", () => selectTab("text"));
  $("mode-light").addEventListener("click", () => selectMode("light"));
  $("mode-dark").addEventListener("click", () => selectMode("dark"));
  $("list").addEventListener("change", (event) => {
    const names = Array.from(event.target.options, (o) => o.textContent);
    choice.list = names[Number(event.target.value)];
    choice.row = 0;
    refresh();
  });
  $("reader").addEventListener("change", (event) => {
    choice.row = Number(event.target.value);
    refresh();
  });
  const events = new EventSource("/events");
  events.addEventListener("update", () => refresh());
  events.addEventListener("open", () => {
    $("link").className = "link live";
    $("link").textContent = "live";
  });
  events.addEventListener("error", () => {
    $("link").className = "link down";
    $("link").textContent = "disconnected: is digest-mail preview --serve still running?";
  });
}

start();
