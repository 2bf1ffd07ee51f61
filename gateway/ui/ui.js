// meshgate /ui: a live view of one gateway, read from its admin API (no library, no CDN).
//
// Polls /readyz, /api/routes, /api/connectors, /api/deadletters and /api/mesh (the
// peers heard on the control channel: the whole mesh) every second and
// follows /api/events (Server-Sent Events read through fetch, so that the bearer token
// can be sent: EventSource cannot send headers). The token comes from the URL fragment
// (#token=...; removed from the address bar at once, kept in sessionStorage) or from
// the form shown after a 401.
"use strict";

const POLL_MS = 1000;
const EVENTS_KEPT = 200;
const LABEL_GAP = 16; // px between the labels of parallel edges
const SVG = "http://www.w3.org/2000/svg";
const COUNTERS = ["received", "delivered", "filtered", "dead_lettered", "undeliverable", "failed", "loop_dropped", "retries"];

let token = null;
let previous = null; // {at, routes: {name: counters}}
let rates = {};
let streaming = null;

function readToken() {
  const match = /(?:^#|&)token=([^&]*)/.exec(location.hash);
  if (match) {
    token = decodeURIComponent(match[1]);
    sessionStorage.setItem("meshgate-token", token);
    history.replaceState(null, "", location.pathname + location.search);
  } else {
    token = sessionStorage.getItem("meshgate-token");
  }
}

class Unauthorized extends Error {}

async function api(path, options = {}) {
  const headers = token ? { Authorization: "Bearer " + token } : {};
  const response = await fetch(path, { ...options, headers, cache: "no-store" });
  if (response.status === 401) throw new Unauthorized(path);
  return response;
}

function askToken(message) {
  const form = document.getElementById("login");
  form.hidden = false;
  document.getElementById("login-error").textContent = message || "";
  document.getElementById("token").focus();
}

function el(tag, attributes = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attributes)) {
    if (key === "class") node.className = value;
    else node.setAttribute(key, value);
  }
  for (const child of children) node.append(child === null || child === undefined ? "" : child);
  return node;
}

function svg(tag, attributes = {}, text) {
  const node = document.createElementNS(SVG, tag);
  for (const [key, value] of Object.entries(attributes)) node.setAttribute(key, value);
  if (text !== undefined) node.textContent = text;
  return node;
}

function number(value) {
  return value === null || value === undefined ? "–" : Number(value).toLocaleString("en");
}

function ms(latency) {
  if (!latency || latency.count === 0) return "–";
  return `${latency.p50_ms} / ${latency.p99_ms}`;
}

function targetConnector(text) {
  // TargetSpec.describe(): "connector field=value ..." (the connector name has no space)
  const end = text.search(/[\s{]/);
  return end < 0 ? text : text.slice(0, end);
}

// -- the polled views --------------------------------------------------------------------

function updateRates(routes) {
  const now = performance.now();
  const counters = {};
  for (const route of routes) counters[route.name] = route.counters;
  if (previous) {
    const seconds = (now - previous.at) / 1000;
    for (const route of routes) {
      const before = previous.routes[route.name];
      if (!before || seconds <= 0) continue;
      rates[route.name] = Math.max(0, (route.counters.received - before.received) / seconds);
    }
  }
  previous = { at: now, routes: counters };
}

function renderRoutes(routes) {
  const body = document.querySelector("#routes tbody");
  body.replaceChildren();
  for (const route of routes) {
    const targets = route.targets.map(targetConnector).join(", ");
    const row = el("tr", { "data-route": route.name },
      el("td", {}, route.name),
      el("td", { "data-field": "state" }, el("span", { class: `badge state-${route.state}`, title: route.reason || "" }, route.state)),
      el("td", {}, `${route.source.connector} → ${targets}`),
      el("td", { class: "num", "data-field": "rate" }, (rates[route.name] || 0).toFixed(1)));
    for (const name of COUNTERS) {
      row.append(el("td", { class: "num", "data-field": name }, number(route.counters[name])));
    }
    row.append(
      el("td", { class: "num", "data-field": "in_flight" }, number(route.in_flight)),
      el("td", { class: "num" }, ms(route.latency)),
      el("td", { class: "error", "data-field": "last_error", title: route.last_error || "" }, route.last_error || ""));
    body.append(row);
  }
}

function renderConnectors(connectors) {
  const body = document.querySelector("#connectors tbody");
  body.replaceChildren();
  for (const connector of connectors) {
    body.append(el("tr", { "data-connector": connector.name },
      el("td", {}, connector.name),
      el("td", {}, connector.type),
      el("td", { "data-field": "state" }, el("span", { class: `badge state-${connector.state}` }, connector.state)),
      el("td", { class: connector.state === "up" ? "muted" : "error" }, connector.reason || ""),
      el("td", { class: "num" }, number(connector.reconnects)),
      el("td", { class: "num", "data-field": "published" }, number(connector.published)),
      el("td", { class: "num" }, number(connector.publish_failures)),
      el("td", { class: "num" }, ms(connector.publish_latency))));
  }
}

function renderGraph(routes, connectors) {
  const graph = document.getElementById("graph");
  const byName = Object.fromEntries(connectors.map((c) => [c.name, c]));
  const sources = [...new Set(routes.map((r) => r.source.connector))];
  const targets = [];
  const edges = [];
  for (const route of routes) {
    for (const target of route.targets) {
      const name = targetConnector(target);
      if (!targets.includes(name)) targets.push(name);
      edges.push({ route, from: route.source.connector, to: name, deadLetter: false });
    }
    if (route.dead_letter) {
      const name = targetConnector(route.dead_letter);
      if (!targets.includes(name)) targets.push(name);
      edges.push({ route, from: route.source.connector, to: name, deadLetter: true });
    }
  }
  const width = Math.max(graph.clientWidth || 900, 600);
  const perPair = {};
  for (const edge of edges) perPair[edge.from + ">" + edge.to] = (perPair[edge.from + ">" + edge.to] || 0) + 1;
  const rowHeight = Math.max(64, ...Object.values(perPair).map((n) => n * LABEL_GAP * 1.6 + 30));
  const rows = Math.max(sources.length, targets.length, 1);
  const height = rows * rowHeight + 20;
  graph.setAttribute("viewBox", `0 0 ${width} ${height}`);
  graph.setAttribute("height", height);
  graph.replaceChildren();
  const nodeWidth = 170;
  const left = 20;
  const right = width - nodeWidth - 20;
  const place = (list, index) => 10 + (height - 20) * (index + 0.5) / list.length;
  const position = {};
  sources.forEach((name, i) => { position["s:" + name] = { x: left + nodeWidth, y: place(sources, i) }; });
  targets.forEach((name, i) => { position["t:" + name] = { x: right, y: place(targets, i) }; });
  const total = {};
  for (const edge of edges) total[edge.from + ">" + edge.to] = (total[edge.from + ">" + edge.to] || 0) + 1;
  const pairs = {};
  for (const edge of edges) {
    const a = position["s:" + edge.from];
    const b = position["t:" + edge.to];
    const key = edge.from + ">" + edge.to;
    const nth = (pairs[key] = (pairs[key] || 0) + 1) - 1;
    const bend = (nth - (total[key] - 1) / 2) * 2 * LABEL_GAP; // spread parallel edges
    const middle = (a.x + b.x) / 2;
    const path = `M ${a.x} ${a.y} C ${middle} ${a.y + bend}, ${middle} ${b.y + bend}, ${b.x} ${b.y}`;
    const rate = rates[edge.route.name] || 0;
    const classes = ["edge", edge.deadLetter ? "dead-letter" : "", rate > 0 && !edge.deadLetter ? "active" : ""].join(" ");
    const group = svg("g", { "data-route": edge.route.name, "data-to": edge.to });
    group.append(svg("path", { d: path, class: classes, "marker-end": "url(#arrow)" }));
    const label = edge.deadLetter
      ? `${edge.route.name} dead letters: ${number(edge.route.counters.dead_lettered)}`
      : `${edge.route.name} · ${rate.toFixed(1)} ev/s · ${number(edge.route.counters.delivered)} delivered`;
    const lx = middle;
    const ly = (a.y + b.y) / 2 + bend * 0.75 - 3;
    const text = svg("text", { x: lx, y: ly, "text-anchor": "middle", class: "label" }, label);
    group.append(text);
    graph.append(group);
  }
  const defs = svg("defs");
  const marker = svg("marker", { id: "arrow", viewBox: "0 0 10 10", refX: "10", refY: "5", markerWidth: "7", markerHeight: "7", orient: "auto-start-reverse" });
  marker.append(svg("path", { d: "M 0 0 L 10 5 L 0 10 z", fill: "#6e7781" }));
  defs.append(marker);
  graph.prepend(defs);
  const node = (name, x, y, side) => {
    const connector = byName[name] || { type: "?", state: "?" };
    const up = connector.state === "up";
    const group = svg("g", { class: `node ${up ? "up" : "down"}`, "data-connector": name, "data-side": side });
    group.append(svg("rect", { x, y: y - 22, width: nodeWidth, height: 44 }));
    group.append(svg("text", { x: x + 10, y: y - 4, "font-weight": "600" }, name));
    group.append(svg("text", { x: x + 10, y: y + 13, class: "muted" }, `${connector.type} · ${connector.state}`));
    graph.append(group);
  };
  sources.forEach((name, i) => node(name, left, place(sources, i), "source"));
  targets.forEach((name, i) => node(name, right, place(targets, i), "target"));
}

// -- the whole mesh (/api/mesh) ---------------------------------------------------------------

function meshRoutes(instances) {
  // Replicas of one gateway run the same routes: the first instance's, counters summed.
  const routes = (instances[0] && instances[0].routes) || [];
  return routes.map((route) => {
    const delivered = instances.reduce((sum, peer) => {
      const same = (peer.routes || []).find((r) => r.name === route.name);
      return sum + ((same && same.counters && same.counters.delivered) || 0);
    }, 0);
    return { ...route, delivered };
  });
}

function renderMesh(mesh, self) {
  const state = document.getElementById("mesh-state");
  const graph = document.getElementById("mesh-graph");
  const body = document.querySelector("#mesh-gateways tbody");
  body.replaceChildren();
  graph.replaceChildren();
  if (!mesh.enabled) {
    state.textContent = "(no control channel: set gateway.mesh to see the other gateways)";
    graph.setAttribute("height", 0);
    return;
  }
  const gateways = Object.entries(mesh.gateways || {}).sort(([a], [b]) => a.localeCompare(b));
  state.textContent = `(${gateways.length} gateway${gateways.length === 1 ? "" : "s"} on ${mesh.channel.connector} ${mesh.channel.address})`;
  const sources = [];
  const targets = [];
  const edges = [];
  for (const [gid, instances] of gateways) {
    const routes = meshRoutes(instances);
    const brokers = new Set();
    for (const route of routes) {
      const from = route.source.broker;
      brokers.add(from);
      if (!sources.includes(from)) sources.push(from);
      edges.push({ gateway: gid, route: route.name, broker: from, side: "in", label: `${route.name} ← ${route.source.address}` });
      for (const target of route.targets) {
        brokers.add(target.broker);
        if (!targets.includes(target.broker)) targets.push(target.broker);
        edges.push({ gateway: gid, route: route.name, broker: target.broker, side: "out", label: `${route.name} → ${target.address}` });
      }
    }
    const newest = Math.min(...instances.map((peer) => peer.seen_seconds_ago));
    const first = instances[0] || {};
    body.append(el("tr", { "data-gateway": gid, class: gid === self ? "self" : "" },
      el("td", {}, gid === self ? `${gid} (this gateway)` : gid),
      el("td", { class: "num", "data-field": "instances", title: instances.map((p) => `${p.host}/${p.pid}`).join(", ") }, String(instances.length)),
      el("td", {}, first.version || ""),
      el("td", { "data-field": "routes" }, routes.map((r) => r.name).join(", ")),
      el("td", { "data-field": "brokers" }, [...brokers].join(", ")),
      el("td", { class: "num", "data-field": "delivered" }, number(routes.reduce((sum, r) => sum + r.delivered, 0))),
      el("td", { class: "num" }, `${newest.toFixed(1)} s ago`)));
  }
  const width = Math.max(graph.clientWidth || 900, 600);
  const rowHeight = 70;
  const rows = Math.max(sources.length, targets.length, gateways.length, 1);
  const height = rows * rowHeight + 20;
  graph.setAttribute("viewBox", `0 0 ${width} ${height}`);
  graph.setAttribute("height", height);
  const nodeWidth = 190;
  const columns = { in: 20, gateway: (width - nodeWidth) / 2, out: width - nodeWidth - 20 };
  const place = (count, index) => 10 + (height - 20) * (index + 0.5) / count;
  const gatewayY = Object.fromEntries(gateways.map(([gid], i) => [gid, place(gateways.length, i)]));
  const brokerY = (side, broker) => side === "in"
    ? place(sources.length, sources.indexOf(broker))
    : place(targets.length, targets.indexOf(broker));
  const defs = svg("defs");
  const marker = svg("marker", { id: "mesh-arrow", viewBox: "0 0 10 10", refX: "10", refY: "5", markerWidth: "7", markerHeight: "7", orient: "auto-start-reverse" });
  marker.append(svg("path", { d: "M 0 0 L 10 5 L 0 10 z", fill: "#6e7781" }));
  defs.append(marker);
  graph.append(defs);
  const count = {};
  for (const edge of edges) {
    const key = edge.side + edge.gateway + ">" + edge.broker;
    const nth = (count[key] = (count[key] || 0) + 1) - 1;
    const by = brokerY(edge.side, edge.broker);
    const gy = gatewayY[edge.gateway];
    const a = edge.side === "in" ? { x: columns.in + nodeWidth, y: by } : { x: columns.gateway + nodeWidth, y: gy };
    const b = edge.side === "in" ? { x: columns.gateway, y: gy } : { x: columns.out, y: by };
    const middle = (a.x + b.x) / 2;
    const bend = nth * LABEL_GAP;
    const group = svg("g", { "data-mesh-edge": edge.side, "data-gateway": edge.gateway, "data-route": edge.route, "data-broker": edge.broker });
    group.append(svg("path", { d: `M ${a.x} ${a.y} C ${middle} ${a.y + bend}, ${middle} ${b.y + bend}, ${b.x} ${b.y}`, class: "edge", "marker-end": "url(#mesh-arrow)" }));
    group.append(svg("text", { x: middle, y: (a.y + b.y) / 2 + bend - 3, "text-anchor": "middle", class: "label" }, edge.label));
    graph.append(group);
  }
  const node = (x, y, title, subtitle, attributes, classes) => {
    const group = svg("g", { class: `node ${classes}`, ...attributes });
    group.append(svg("title", {}, attributes["data-broker"] || title)); // the full name on hover
    group.append(svg("rect", { x, y: y - 22, width: nodeWidth, height: 44 }));
    group.append(svg("text", { x: x + 10, y: y - 4, "font-weight": "600" }, title));
    group.append(svg("text", { x: x + 10, y: y + 13, class: "muted" }, subtitle));
    graph.append(group);
  };
  const short = (text) => (text.length > 25 ? text.slice(0, 24) + "…" : text);
  sources.forEach((broker, i) => node(columns.in, place(sources.length, i), short(broker), "broker (read)", { "data-broker": broker, "data-side": "source" }, "up"));
  targets.forEach((broker, i) => node(columns.out, place(targets.length, i), short(broker), "broker (written)", { "data-broker": broker, "data-side": "target" }, "up"));
  for (const [gid, instances] of gateways) {
    const label = `gateway · ${instances.length} instance${instances.length === 1 ? "" : "s"}`;
    node(columns.gateway, gatewayY[gid], gid, label, { "data-gateway": gid }, gid === self ? "up self" : "up");
  }
}

function renderDeadLetters(routes, store) {
  const body = document.querySelector("#dead-letter-counts tbody");
  body.replaceChildren();
  for (const route of routes) {
    body.append(el("tr", { "data-route": route.name },
      el("td", {}, route.name),
      el("td", { class: "num", "data-field": "dead_lettered" }, number(route.counters.dead_lettered)),
      el("td", { class: "num", "data-field": "stored" }, number((store.per_route || {})[route.name] || 0))));
  }
  document.getElementById("store-total").textContent = `(${number(store.total || 0)} entries)`;
  const list = document.getElementById("store");
  list.replaceChildren();
  for (const entry of store.entries || []) {
    const when = new Date(entry.stored_at * 1000).toISOString().slice(11, 19);
    list.append(el("li", { "data-entry": entry.id },
      `#${entry.id} ${when} ${entry.route} ${entry.connector}:${entry.address} `,
      el("span", { class: "error" }, `${entry.reason}: ${entry.error}`)));
  }
}

async function poll() {
  try {
    const [ready, routes, connectors, store, mesh] = await Promise.all([
      api("/readyz").then((r) => r.json()),
      api("/api/routes").then((r) => r.json()),
      api("/api/connectors").then((r) => r.json()),
      api("/api/deadletters").then((r) => (r.ok ? r.json() : { total: 0, per_route: {}, entries: [] })),
      api("/api/mesh").then((r) => (r.ok ? r.json() : { enabled: false, gateways: {} })),
    ]);
    document.getElementById("login").hidden = true;
    document.getElementById("gateway-id").textContent = routes.gateway || "";
    const badge = document.getElementById("readiness");
    badge.textContent = ready.ready ? "ready" : "not ready";
    badge.className = "badge " + (ready.ready ? "ready" : "not-ready");
    updateRates(routes.routes);
    renderRoutes(routes.routes);
    renderConnectors(connectors.connectors);
    renderGraph(routes.routes, connectors.connectors);
    renderDeadLetters(routes.routes, store);
    renderMesh(mesh, routes.gateway);
    document.getElementById("updated").textContent = "updated " + new Date().toLocaleTimeString();
    if (!streaming) streaming = follow();
  } catch (error) {
    if (error instanceof Unauthorized) {
      askToken(token ? "that token was refused" : "");
      return; // polling resumes after the form is sent
    }
    document.getElementById("updated").textContent = "gateway unreachable: " + error.message;
  }
  setTimeout(poll, POLL_MS);
}

// -- the event stream ----------------------------------------------------------------------

function showEvent(kind, data) {
  const list = document.getElementById("events");
  const attributes = data.attributes || {};
  const item = el("li", { "data-outcome": data.outcome, "data-route": data.route, "data-id": attributes.id || "" },
    el("span", { class: "muted" }, data.time.slice(11, 23) + " "),
    el("span", { class: `outcome outcome-${data.outcome}` }, data.outcome),
    ` ${data.route} ${data.address} `,
    attributes.id ? `id=${attributes.id} type=${attributes.type} ` : "",
    data.error ? el("span", { class: "error" }, data.error) : "");
  list.prepend(item);
  while (list.children.length > EVENTS_KEPT) list.lastChild.remove();
}

async function follow() {
  const state = document.getElementById("events-state");
  for (let delay = 1000; ; delay = Math.min(delay * 2, 15000)) {
    try {
      const response = await api("/api/events");
      state.textContent = "(live)";
      const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
      let buffer = "";
      let kind = "message";
      delay = 1000;
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buffer += value;
        let end;
        while ((end = buffer.indexOf("\n")) >= 0) {
          const line = buffer.slice(0, end).replace(/\r$/, "");
          buffer = buffer.slice(end + 1);
          if (line.startsWith("event: ")) kind = line.slice(7);
          else if (line.startsWith("data: ")) showEvent(kind, JSON.parse(line.slice(6)));
        }
      }
    } catch (error) {
      if (error instanceof Unauthorized) { streaming = null; return; }
    }
    state.textContent = "(reconnecting)";
    await new Promise((resolve) => setTimeout(resolve, delay));
  }
}

document.getElementById("login").addEventListener("submit", (submit) => {
  submit.preventDefault();
  token = document.getElementById("token").value.trim();
  sessionStorage.setItem("meshgate-token", token);
  poll();
});

readToken();
poll();
