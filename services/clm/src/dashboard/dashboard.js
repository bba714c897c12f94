// The clm dashboard: four analytics reports of one tenant, fetched with gRPC-Web
// (application/grpc-web+proto) through the server that serves this page, and drawn as
// tables with bars. Protobuf is encoded and decoded here by field number, for the few
// messages the page uses (see proto/clm/analytics/v1/analytics.proto).

"use strict";

// ---- protobuf, just enough ----

function varint(value) {
  const out = [];
  let v = BigInt(value);
  do {
    let byte = Number(v & 0x7fn);
    v >>= 7n;
    if (v > 0n) byte |= 0x80;
    out.push(byte);
  } while (v > 0n);
  return out;
}

function field(number, wire, payload) {
  return [...varint((number << 3) | wire), ...payload];
}

const encode = {
  string: (n, s) => {
    const bytes = [...new TextEncoder().encode(s)];
    return field(n, 2, [...varint(bytes.length), ...bytes]);
  },
  int: (n, v) => field(n, 0, varint(v)),
  message: (n, bytes) => field(n, 2, [...varint(bytes.length), ...bytes]),
};

// Decodes one message into a map from field number to the values seen, in order:
// numbers for varints, DataViews for fixed 64-bit fields, Uint8Arrays for the rest.
function decode(bytes) {
  const fields = new Map();
  let i = 0;
  const readVarint = () => {
    let result = 0n;
    let shift = 0n;
    for (;;) {
      const byte = bytes[i++];
      result |= BigInt(byte & 0x7f) << shift;
      if ((byte & 0x80) === 0) return result;
      shift += 7n;
    }
  };
  while (i < bytes.length) {
    const key = Number(readVarint());
    const number = key >> 3;
    let value;
    switch (key & 7) {
      case 0: value = BigInt.asIntN(64, readVarint()); break;
      case 1: value = new DataView(bytes.buffer, bytes.byteOffset + i, 8); i += 8; break;
      case 2: {
        const length = Number(readVarint());
        value = bytes.subarray(i, i + length);
        i += length;
        break;
      }
      case 5: value = new DataView(bytes.buffer, bytes.byteOffset + i, 4); i += 4; break;
      default: throw new Error(`unsupported wire type in field ${number}`);
    }
    if (!fields.has(number)) fields.set(number, []);
    fields.get(number).push(value);
  }
  return fields;
}

const read = {
  string: (m, n) => (m.get(n) ? new TextDecoder().decode(m.get(n).at(-1)) : ""),
  int: (m, n) => (m.get(n) ? Number(m.get(n).at(-1)) : 0),
  double: (m, n) => (m.get(n) ? m.get(n).at(-1).getFloat64(0, true) : 0),
  message: (m, n) => (m.get(n) ? decode(m.get(n).at(-1)) : null),
  messages: (m, n) => (m.get(n) || []).map(decode),
  // Repeated doubles: packed (one length-delimited run) or not.
  doubles: (m, n) => (m.get(n) || []).flatMap((v) => {
    if (v instanceof DataView) return [v.getFloat64(0, true)];
    const view = new DataView(v.buffer, v.byteOffset, v.length);
    return Array.from({ length: v.length / 8 }, (_, k) => view.getFloat64(k * 8, true));
  }),
};

// ---- gRPC-Web ----

async function call(method, request) {
  const body = new Uint8Array(5 + request.length);
  new DataView(body.buffer).setUint32(1, request.length);
  body.set(request, 5);
  const headers = {
    "content-type": "application/grpc-web+proto",
    "x-grpc-web": "1",
    "x-tenant-id": document.getElementById("tenant").value || "default",
  };
  const token = document.getElementById("token").value.trim();
  if (token) headers.authorization = `Bearer ${token}`;
  const response = await fetch(`/clm.analytics.v1.AnalyticsService/${method}`, {
    method: "POST",
    headers,
    body,
  });
  const bytes = new Uint8Array(await response.arrayBuffer());
  let message = null;
  let status = response.headers.get("grpc-status");
  let statusMessage = response.headers.get("grpc-message") || "";
  for (let i = 0; i + 5 <= bytes.length;) {
    const flag = bytes[i];
    const length = new DataView(bytes.buffer, i + 1, 4).getUint32(0);
    const frame = bytes.subarray(i + 5, i + 5 + length);
    i += 5 + length;
    if (flag & 0x80) {
      for (const line of new TextDecoder().decode(frame).split("\r\n")) {
        const [name, ...rest] = line.split(":");
        if (name.trim().toLowerCase() === "grpc-status") status = rest.join(":").trim();
        if (name.trim().toLowerCase() === "grpc-message") statusMessage = decodeURIComponent(rest.join(":").trim());
      }
    } else {
      message = decode(frame);
    }
  }
  if (!response.ok || status !== "0") {
    throw new Error(`${method}: ${status === null ? response.status : `status ${status}`} ${statusMessage}`);
  }
  return message || new Map();
}

// ---- the page ----

const FUNNEL_STEPS = ["page_view", "demo_request", "trial_started", "purchase"];
const fmt = new Intl.NumberFormat("en");
const pct = (share) => `${(share * 100).toFixed(1)} %`;

function el(tag, attributes = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attributes)) {
    if (k === "style") node.style.cssText = v;
    else node.setAttribute(k, v);
  }
  node.append(...children);
  return node;
}

function bar(share) {
  return el("div", { class: "bar" }, el("span", { style: `width:${Math.max(0, Math.min(1, share)) * 100}%` }));
}

// Fills the element `id` with a table: a row of `headers`, then `rows`, lists of cells.
function table(id, headers, rows) {
  document.getElementById(id).replaceChildren(el("table", {},
    el("tr", {}, ...headers.map((h) => el("th", {}, h))),
    ...rows.map((cells) => el("tr", {}, ...cells))));
}

const cell = (text) => el("td", {}, text);
// A number the browser test reads back by `testid`.
const count = (testid, value) => el("td", { class: "n", "data-testid": testid }, fmt.format(value));
const share = (value) => el("td", { class: "n" }, pct(value));

async function funnel() {
  const request = [
    ...FUNNEL_STEPS.flatMap((s) => encode.string(1, s)),
    ...encode.message(4, encode.int(1, 30 * 86400)),
    ...encode.int(5, 1),
  ];
  const total = read.message(await call("GetFunnel", new Uint8Array(request)), 1) || new Map();
  const steps = read.messages(total, 2).map((s) => ({
    step: read.string(s, 1),
    contacts: read.int(s, 2),
    overall: read.double(s, 3),
  }));
  table("funnel", ["step", "contacts", "of the first", ""], steps.map((s) => [
    cell(s.step), count(`funnel-${s.step}`, s.contacts), share(s.overall), cell(bar(s.overall)),
  ]));
}

async function stages() {
  const reply = await call("GetStageMetrics", new Uint8Array());
  const rows = read.messages(reply, 1).map((s) => ({ stage: read.string(s, 1), contacts: read.int(s, 2) }));
  const most = Math.max(1, ...rows.map((r) => r.contacts));
  table("stages", ["stage", "contacts", ""], rows.map((r) => [
    cell(r.stage), count(`stage-${r.stage}`, r.contacts), cell(bar(r.contacts / most)),
  ]));
}

async function cohorts() {
  const request = [...encode.int(3, 1), ...encode.int(4, 1), ...encode.string(7, "EUR")];
  const reply = await call("GetCohortRetention", new Uint8Array(request));
  const rows = read.messages(reply, 1).map((c) => ({
    start: read.int(read.message(c, 1) || new Map(), 1),
    size: read.int(c, 2),
    shares: read.doubles(c, 4),
  }));
  const width = Math.max(0, ...rows.map((r) => r.shares.length));
  const periods = Array.from({ length: width }, (_, k) => `+${k}`);
  table("cohorts", ["cohort", "size", ...periods], rows.map((r, i) => [
    cell(new Date(r.start * 1000).toISOString().slice(0, 7)),
    count(`cohort-${i}-size`, r.size),
    ...r.shares.map((s, k) => el("td", {
      class: "n heat",
      style: `background: rgba(37, 99, 235, ${s.toFixed(3)}); color: ${s > 0.5 ? "#fff" : "inherit"}`,
      "data-testid": `cohort-${i}-${k}`,
    }, pct(s))),
  ]));
}

async function rfm() {
  const reply = await call("GetRfmSegments", new Uint8Array(encode.string(7, "EUR")));
  const rows = read.messages(reply, 1).map((s) => ({
    name: read.string(s, 1),
    customers: read.int(s, 2),
    share: read.double(s, 3),
  }));
  table("rfm", ["segment", "customers", "share", ""], rows.map((r) => [
    cell(r.name), count(`rfm-${r.name}`, r.customers), share(r.share), cell(bar(r.share)),
  ]));
}

async function load() {
  document.body.dataset.ready = "false";
  const error = document.getElementById("error");
  error.textContent = "";
  try {
    await Promise.all([funnel(), stages(), cohorts(), rfm()]);
    document.body.dataset.ready = "true";
  } catch (e) {
    error.textContent = String(e.message || e);
    document.body.dataset.ready = "error";
  }
}

document.getElementById("form").addEventListener("submit", (event) => {
  event.preventDefault();
  load();
});
const params = new URLSearchParams(location.search);
if (params.get("tenant")) document.getElementById("tenant").value = params.get("tenant");
load();
