// The labwire dashboard page. Everything from the network is shown with textContent or
// attributes set one by one: never parsed as HTML.
"use strict";

const TOKEN = new URLSearchParams(location.search).get("token") || "";
const LOG_LINES = 200;
const PLOT_POINTS = 240;
const PLOT_SECONDS = 60;
const COLOURS = ["#2563eb", "#dc2626", "#16a34a", "#9333ea", "#ea580c", "#0891b2", "#ca8a04", "#db2777"];

const devices = new Map();
const pending = new Map();
const progressHandlers = new Map();
let socket = null;
let nextId = 1;

function el(tag, options = {}, children = []) {
  const node = document.createElement(tag);
  if (options.cls) node.className = options.cls;
  if (options.text !== undefined) node.textContent = String(options.text);
  for (const [key, value] of Object.entries(options.attrs || {})) node.setAttribute(key, value);
  for (const child of children) node.append(child);
  return node;
}

function withToken(path) {
  return TOKEN ? `${path}${path.includes("?") ? "&" : "?"}token=${encodeURIComponent(TOKEN)}` : path;
}

function show(value) {
  const text = JSON.stringify(value);
  return text.length <= 100 ? text : JSON.stringify(value, null, 1);
}

function clock(seconds) {
  const when = new Date(seconds * 1000);
  return when.toTimeString().slice(0, 8) + "." + String(when.getMilliseconds()).padStart(3, "0");
}

// ------------------------------------------------------------------ connection

function connect() {
  const scheme = location.protocol === "https:" ? "wss:" : "ws:";
  socket = new WebSocket(`${scheme}//${location.host}${withToken("/ws")}`);
  socket.onopen = () => setLink("live", "connected");
  socket.onmessage = (event) => receive(JSON.parse(event.data));
  socket.onclose = () => {
    setLink("down", "disconnected: retrying");
    for (const [, callback] of pending) callback({ ok: false, error: "the dashboard connection closed" });
    pending.clear();
    progressHandlers.clear();
    setTimeout(connect, 1000);
  };
}

function setLink(state, text) {
  const badge = document.getElementById("link");
  badge.className = `badge ${state}`;
  badge.textContent = text;
}

function request(message, callback, onProgress) {
  if (!socket || socket.readyState !== WebSocket.OPEN) {
    callback({ ok: false, error: "not connected to the dashboard server" });
    return;
  }
  const id = nextId++;
  pending.set(id, callback);
  if (onProgress) progressHandlers.set(id, onProgress);
  socket.send(JSON.stringify({ id, ...message }));
}

function receive(message) {
  switch (message.type) {
    case "registry": {
      const text = `registry ${message.url}: ${message.status}` + (message.error ? ` (${message.error})` : "");
      document.getElementById("registry").textContent = text;
      break;
    }
    case "device": drawDevice(message); break;
    case "status": setStatus(message.name, message.status, message.error); break;
    case "property": setProperty(message.name, message.property, message.value); break;
    case "signal": addSignal(message); break;
    case "operations": setOperations(message.name, message.operations); break;
    case "progress": {
      const onProgress = progressHandlers.get(message.id);
      if (onProgress) onProgress(message);
      break;
    }
    case "reply": {
      const callback = pending.get(message.id);
      pending.delete(message.id);
      progressHandlers.delete(message.id);
      if (callback) callback(message);
      break;
    }
  }
}

// ------------------------------------------------------------------ devices

function drawDevice(info) {
  const old = devices.get(info.name);
  const card = el("section", { cls: "device", attrs: { "data-device": info.name } });
  const item = el("li", { text: info.name, attrs: { "data-device": info.name } });
  item.addEventListener("click", () => card.scrollIntoView({ behavior: "smooth", block: "start" }));
  const state = { info, card, item, props: new Map(), series: new Map(), dirty: false };
  const header = el("header", {}, [
    el("h2", { cls: "name", text: info.name }),
    el("span", { cls: "type", text: info.device_type }),
    el("span", { cls: "address mono", text: info.address }),
    el("span", { cls: "status", text: info.status }),
  ]);
  state.problem = el("p", { cls: "problem" });
  const methods = el("div", { cls: "methods" }, [el("h3", { text: "Methods" })]);
  for (const method of info.methods) methods.append(methodForm(info.name, method));
  if (!info.methods.length) methods.append(el("p", { cls: "muted", text: "none" }));
  const table = el("table", { cls: "props" });
  for (const prop of info.properties) table.append(propertyRow(info.name, prop, state));
  const properties = el("div", { cls: "properties" }, [el("h3", { text: "Properties" }), table]);
  if (!info.properties.length) properties.append(el("p", { cls: "muted", text: "none" }));
  state.canvas = el("canvas", { cls: "plot", attrs: { width: "600", height: "140" } });
  state.legend = el("div", { cls: "legend" });
  state.log = el("ol", { cls: "log" });
  const names = info.signals.length ? info.signals.join(", ") : "none";
  const signals = el("div", { cls: "signals" }, [
    el("h3", { text: "Signals" }),
    el("p", { cls: "muted", text: names }),
    state.canvas, state.legend, state.log,
  ]);
  if (old) {
    for (const line of old.log.children) state.log.append(line.cloneNode(true));
    state.series = old.series;
  }
  card.append(header, state.problem);
  if (info.operations) {
    state.ops = new Map();
    state.opsList = el("ul", { cls: "ops" });
    state.opsNone = el("p", { cls: "muted", text: "none" });
    card.append(el("div", { cls: "operations" }, [el("h3", { text: "Operations" }), state.opsList, state.opsNone]));
  }
  card.append(el("div", { cls: "columns" }, [methods, properties, signals]));
  if (old) {
    old.card.replaceWith(card);
    old.item.replaceWith(item);
  } else {
    insertSorted(document.getElementById("devices"), card, info.name);
    insertSorted(document.getElementById("device-list"), item, info.name);
  }
  devices.set(info.name, state);
  document.getElementById("empty").hidden = devices.size > 0;
  setStatus(info.name, info.status, info.error);
  if (info.operations) setOperations(info.name, info.operations);
  state.dirty = true;
}

function insertSorted(parent, node, name) {
  for (const child of parent.children) {
    if (child.getAttribute("data-device") > name) {
      parent.insertBefore(node, child);
      return;
    }
  }
  parent.append(node);
}

function setStatus(name, status, error) {
  const state = devices.get(name);
  if (!state) return;
  const gone = status === "unreachable" || status === "removed";
  for (const node of [state.card, state.item]) {
    node.classList.toggle("gone", gone);
    node.classList.toggle("connecting", status === "connecting");
    node.setAttribute("data-status", status);
  }
  state.card.querySelector(".status").textContent = status;
  state.problem.textContent = error || "";
}

// ------------------------------------------------------------------ methods

function methodForm(device, method) {
  const form = el("form", { cls: "method", attrs: { "data-method": method.name } });
  form.append(el("div", {}, [
    el("code", { cls: "mname", text: method.name }),
    el("code", { cls: "signature", text: method.signature || "(signature unknown)" }),
  ]));
  if (method.operation) form.firstChild.append(el("span", { cls: "tag", text: "operation" }));
  if (method.doc) form.append(el("p", { cls: "doc", text: method.doc }));
  const fields = [];
  const params = method.params || [{ name: "arguments", kind: "args", type: "json", required: false, has_default: false, annotation: "JSON list" }];
  for (const param of params) {
    const input = el("input", { attrs: { name: param.name, "data-type": param.type } });
    if (param.type === "bool") {
      input.type = "checkbox";
      input.checked = Boolean(param.default);
    } else {
      input.type = param.type === "int" || param.type === "float" ? "number" : "text";
      if (input.type === "number") input.step = param.type === "int" ? "1" : "any";
      if (param.has_default && param.default_text === undefined) {
        input.value = param.type === "str" && typeof param.default === "string" ? param.default : JSON.stringify(param.default);
      }
      const hint = param.kind === "args" ? "JSON list" : param.kind === "kwargs" ? "JSON object" : param.annotation || "JSON";
      input.placeholder = param.default_text !== undefined ? `default ${param.default_text}` : hint;
    }
    const prefix = param.kind === "args" ? "*" : param.kind === "kwargs" ? "**" : "";
    const label = el("label", {}, [el("span", { text: prefix + param.name + (param.required ? " *" : "") }), input]);
    fields.push({ param, input });
    form.append(label);
  }
  const label = method.operation ? "Start" : method.buffer ? "Call (buffer)" : "Call";
  const button = el("button", { text: label, attrs: { type: "submit" } });
  const result = el("div", { cls: "result" });
  form.append(button, result);
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    let call;
    try {
      call = collect(fields);
    } catch (problem) {
      result.replaceChildren(el("div", { cls: "error", text: problem.message }));
      return;
    }
    button.disabled = true;
    result.replaceChildren(el("div", { cls: "muted", text: method.operation ? "starting…" : "calling…" }));
    let running = null;
    const onProgress = (update) => {
      if (!running) {
        running = progressView(device, update.operation);
        result.replaceChildren(running.node);
      }
      running.update(update.fraction, update.message);
    };
    request({ op: "call", device, method: method.name, args: call.args, kwargs: call.kwargs }, (reply) => {
      button.disabled = false;
      result.replaceChildren(...showReply(reply, method.name));
    }, onProgress);
  });
  return form;
}

// ------------------------------------------------------------------ operations

function progressView(device, operation) {
  const bar = el("progress", { attrs: { max: "1" } });
  const text = el("span", { cls: "op-message" });
  const cancel = el("button", { cls: "cancel", text: "Cancel", attrs: { type: "button" } });
  const problem = el("span", { cls: "error" });
  cancel.addEventListener("click", () => {
    cancel.disabled = true;
    request({ op: "cancel", device, operation }, (reply) => {
      problem.textContent = reply.ok ? "" : reply.error;
      if (!reply.ok) cancel.disabled = false;
    });
  });
  const node = el("div", { cls: "progress", attrs: { "data-operation": operation } }, [cancel, bar, text, problem]);
  const update = (fraction, message) => {
    if (typeof fraction === "number") bar.value = fraction;
    else bar.removeAttribute("value");
    text.textContent = (typeof fraction === "number" ? `${Math.round(fraction * 100)}% ` : "") + (message || "");
  };
  return { node, update, cancel };
}

function setOperations(name, operations) {
  const state = devices.get(name);
  if (!state || !state.ops) return;
  const seen = new Set();
  for (const op of operations) {
    seen.add(op.id);
    let entry = state.ops.get(op.id);
    if (!entry) {
      const view = progressView(name, op.id);
      entry = {
        view,
        row: el("li", { attrs: { "data-operation": op.id } }),
        state: el("span", { cls: "op-state" }),
        elapsed: el("span", { cls: "elapsed muted" }),
        outcome: el("span", { cls: "op-outcome" }),
      };
      entry.row.append(el("code", { cls: "mname", text: op.method }), entry.state, entry.elapsed, view.node, entry.outcome);
      state.ops.set(op.id, entry);
    }
    const live = op.state === "running" || op.state === "cancelling";
    entry.row.setAttribute("data-state", op.state);
    entry.state.textContent = op.state;
    const left = live && typeof op.remaining === "number" ? `, ~${op.remaining} s left` : "";
    entry.elapsed.textContent = `${op.elapsed} s${left}`;
    entry.view.update(op.fraction, op.message);
    entry.view.node.hidden = !live;
    if (op.state !== "running") entry.view.cancel.disabled = true;
    entry.outcome.textContent = live ? "" : op.error || (op.message ? `${op.message}` : "");
    entry.outcome.classList.toggle("error", op.state === "failed");
  }
  for (const [id, entry] of state.ops) {
    if (!seen.has(id)) {
      entry.row.remove();
      state.ops.delete(id);
    }
  }
  state.opsList.replaceChildren(...operations.map((op) => state.ops.get(op.id).row));
  state.opsNone.hidden = operations.length > 0;
}

function parseValue(type, raw, name) {
  if (type === "str") return raw;
  if (type === "int") {
    const value = Number(raw);
    if (!Number.isInteger(value)) throw new Error(`${name}: ${JSON.stringify(raw)} is not an integer`);
    return value;
  }
  if (type === "float") {
    const value = Number(raw);
    if (raw.trim() === "" || Number.isNaN(value)) throw new Error(`${name}: ${JSON.stringify(raw)} is not a number`);
    return value;
  }
  try {
    return JSON.parse(raw);
  } catch (_) {
    return raw;  // not JSON: a string, as on the command line
  }
}

function collect(fields) {
  const args = [];
  const kwargs = {};
  let skipped = false;
  for (const { param, input } of fields) {
    if (param.type === "bool") {
      if (param.kind === "positional" && !skipped) args.push(input.checked);
      else kwargs[param.name] = input.checked;
      continue;
    }
    const raw = input.value;
    if (raw === "") {
      if (param.required) throw new Error(`${param.name} is required`);
      skipped = skipped || param.kind === "positional";
      continue;
    }
    if (param.kind === "args") {
      const values = JSON.parse(raw);
      if (!Array.isArray(values)) throw new Error(`${param.name}: give a JSON list, e.g. [1, 2]`);
      if (skipped && values.length) throw new Error(`${param.name}: fill the positional fields before it`);
      args.push(...values);
    } else if (param.kind === "kwargs") {
      const values = JSON.parse(raw);
      if (values === null || typeof values !== "object" || Array.isArray(values)) throw new Error(`${param.name}: give a JSON object`);
      Object.assign(kwargs, values);
    } else if (param.kind === "positional" && !skipped) {
      args.push(parseValue(param.type, raw, param.name));
    } else {
      kwargs[param.name] = parseValue(param.type, raw, param.name);
    }
  }
  return { args, kwargs };
}

function showReply(reply, name) {
  if (!reply.ok) return [el("div", { cls: "error", text: reply.error })];
  const parts = [];
  if (reply.blob) {
    const url = withToken(`/blob/${encodeURIComponent(reply.blob.key)}`);
    if (reply.blob.media.startsWith("image/")) {
      parts.push(el("img", { cls: "image", attrs: { src: url, alt: `image returned by ${name}` } }));
    } else {
      parts.push(el("a", { text: `download ${reply.blob.bytes} bytes`, attrs: { href: url, download: `${name}.bin` } }));
    }
  }
  parts.push(el("pre", { cls: "value", text: show(reply.result) }));
  return parts;
}

// ------------------------------------------------------------------ properties

function propertyRow(device, prop, state) {
  const value = el("code", { text: show(prop.value) });
  const cell = el("td", { cls: "value" }, [value]);
  const row = el("tr", { attrs: { "data-property": prop.name } }, [
    el("td", { cls: "pname", text: prop.name, attrs: { title: prop.doc || "" } }), cell,
  ]);
  state.props.set(prop.name, { value, cell });
  if (prop.writable) {
    const input = el("input", { attrs: { type: "text", "aria-label": `new value of ${prop.name}` } });
    input.value = typeof prop.value === "string" ? prop.value : JSON.stringify(prop.value);
    const button = el("button", { text: "Set", attrs: { type: "submit" } });
    const message = el("div", { cls: "message" });
    const form = el("form", { cls: "edit" }, [input, button]);
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      button.disabled = true;
      message.replaceChildren();
      request({ op: "set", device, property: prop.name, value: parseValue("json", input.value) }, (reply) => {
        button.disabled = false;
        message.replaceChildren(reply.ok ? el("span", { cls: "muted", text: "set" }) : el("span", { cls: "error", text: reply.error }));
      });
    });
    cell.append(form, message);
  }
  return row;
}

function setProperty(name, property, value) {
  const state = devices.get(name);
  const entry = state && state.props.get(property);
  if (!entry) return;
  entry.value.textContent = show(value);
  entry.cell.classList.remove("flash");
  void entry.cell.offsetWidth;
  entry.cell.classList.add("flash");
}

// ------------------------------------------------------------------ signals

function addSignal(message) {
  const state = devices.get(message.name);
  if (!state) return;
  const line = el("li", {}, [
    el("span", { cls: "when mono", text: clock(message.time) }),
    el("span", { cls: "sig", text: message.signal }),
    el("span", { cls: "args mono", text: message.args.map(show).join(", ") }),
  ]);
  const log = state.log;
  const atBottom = log.scrollTop + log.clientHeight >= log.scrollHeight - 4;
  log.append(line);
  while (log.children.length > LOG_LINES) log.firstChild.remove();
  if (atBottom) log.scrollTop = log.scrollHeight;
  const numbers = [];
  message.args.forEach((arg, index) => {
    const suffix = message.args.length > 1 ? `[${index}]` : "";
    if (typeof arg === "number") numbers.push([message.signal + suffix, arg]);
    else if (Array.isArray(arg) && arg.length <= 8 && arg.every((v) => typeof v === "number")) {
      arg.forEach((v, i) => numbers.push([`${message.signal}${suffix}[${i}]`, v]));
    }
  });
  for (const [key, value] of numbers) {
    if (!state.series.has(key)) state.series.set(key, []);
    const points = state.series.get(key);
    points.push([message.time, value]);
    if (points.length > PLOT_POINTS) points.shift();
    state.dirty = true;
  }
}

function drawPlot(state) {
  const canvas = state.canvas;
  const width = canvas.clientWidth || 600;
  const height = canvas.clientHeight || 140;
  if (canvas.width !== width) canvas.width = width;
  if (canvas.height !== height) canvas.height = height;
  const context = canvas.getContext("2d");
  context.clearRect(0, 0, width, height);
  const now = Date.now() / 1000;
  let low = Infinity;
  let high = -Infinity;
  for (const points of state.series.values()) {
    for (const [when, value] of points) {
      if (when >= now - PLOT_SECONDS) { low = Math.min(low, value); high = Math.max(high, value); }
    }
  }
  const legend = [];
  if (low === Infinity) {
    context.fillStyle = "#9ca3af";
    context.fillText(state.series.size ? "no numeric signal in the last minute" : "numeric signals are plotted here", 8, 16);
  } else {
    if (high === low) { high += 1; low -= 1; }
    const y = (value) => height - 14 - ((value - low) / (high - low)) * (height - 28);
    const x = (when) => ((when - (now - PLOT_SECONDS)) / PLOT_SECONDS) * (width - 4);
    context.fillStyle = "#6b7280";
    context.fillText(String(+high.toPrecision(6)), 4, 10);
    context.fillText(String(+low.toPrecision(6)), 4, height - 2);
    let index = 0;
    for (const [key, points] of state.series) {
      const colour = COLOURS[index++ % COLOURS.length];
      context.strokeStyle = colour;
      context.lineWidth = 1.5;
      context.beginPath();
      points.forEach(([when, value], i) => (i ? context.lineTo(x(when), y(value)) : context.moveTo(x(when), y(value))));
      context.stroke();
      const swatch = el("span", { text: `■ ${key}` });
      swatch.style.color = colour;
      legend.push(swatch);
    }
  }
  state.legend.replaceChildren(...legend);
}

setInterval(() => {
  for (const state of devices.values()) {
    if (state.series.size || state.dirty) drawPlot(state);
    state.dirty = false;
  }
}, 500);

connect();
