// The dashboard's logic: subscribe to the hub's `$stats` room (this node) and `$nodes` room
// (every node of the cluster) over the hub's own WebSocket and draw what arrives. A `token`
// query parameter on this page is passed on to the hub.
"use strict";

const $ = (id) => document.getElementById(id);
const points = []; // [in/s, out/s] per snapshot, newest last
const MAX_POINTS = 120;
// Node id -> { n: its latest announcement, seen: when it arrived (this browser's clock) }.
const nodes = new Map();
// A node silent for this many of its intervals is shown as stale, and later dropped.
const STALE_INTERVALS = 3;
const GONE_INTERVALS = 30;
let thisNode = null; // this node's id, from `$stats`

const rtt = (us) => (us == null ? "–" : us < 1000 ? `${us} µs` : `${(us / 1000).toFixed(1)} ms`);

function draw() {
  const c = $("chart"), g = c.getContext("2d");
  g.clearRect(0, 0, c.width, c.height);
  const max = Math.max(1, ...points.flat());
  [["#36c", 0], ["#c63", 1]].forEach(([color, k]) => {
    g.strokeStyle = color;
    g.beginPath();
    points.forEach((p, i) => {
      const x = (i / (MAX_POINTS - 1)) * c.width;
      const y = c.height - 10 - (p[k] / max) * (c.height - 20);
      i ? g.lineTo(x, y) : g.moveTo(x, y);
    });
    g.stroke();
  });
  g.fillStyle = "#666";
  g.fillText(`max ${max} msg/s  (blue: in, orange: out)`, 8, 14);
}

function show(s) {
  thisNode = s.node;
  $("node").textContent = s.node;
  $("engine").textContent = s.engine;
  $("rtt").textContent = rtt(s.redis_rtt_us);
  $("connections").textContent = s.connections;
  $("rooms").textContent = s.rooms;
  $("in").textContent = s.in_per_s;
  $("out").textContent = s.out_per_s;
  $("slow").textContent = s.slow_consumer_disconnects;
  points.push([s.in_per_s, s.out_per_s]);
  if (points.length > MAX_POINTS) points.shift();
  draw();
}

function drawNodes() {
  const now = Date.now();
  const rows = [];
  for (const [id, { n, seen }] of [...nodes].sort(([a], [b]) => a.localeCompare(b))) {
    const age = now - seen;
    if (age > GONE_INTERVALS * n.interval_ms) {
      nodes.delete(id);
      continue;
    }
    const tr = document.createElement("tr");
    tr.dataset.node = id;
    tr.className = (age > STALE_INTERVALS * n.interval_ms ? "stale" : "") + (id === thisNode ? " self" : "");
    const cells = [id, n.engine, n.connections, rtt(n.redis_rtt_us), n.redis_reconnects ?? "–",
      `${(age / 1000).toFixed(0)} s ago`];
    for (const c of cells) {
      const td = document.createElement("td");
      td.textContent = c; // text, never HTML: ids come from the hubs' settings
      tr.appendChild(td);
    }
    rows.push(tr);
  }
  $("nodes").tBodies[0].replaceChildren(...rows);
  $("node-count").textContent = rows.length;
}

function connect() {
  const token = new URLSearchParams(location.search).get("token");
  const scheme = location.protocol === "https:" ? "wss:" : "ws:";
  // `ws` next to this page, so the dashboard works where the hub's router is mounted.
  const base = location.pathname.endsWith("/") ? location.pathname : location.pathname + "/";
  const url = `${scheme}//${location.host}${base}ws` + (token ? `?token=${encodeURIComponent(token)}` : "");
  const ws = new WebSocket(url, "resocket.v1");
  ws.onopen = () => {
    $("status").textContent = "live";
    $("status").className = "live";
    ws.send(JSON.stringify({ type: "subscribe", room: "$stats" }));
    ws.send(JSON.stringify({ type: "subscribe", room: "$nodes" }));
  };
  ws.onmessage = (ev) => {
    const f = JSON.parse(ev.data);
    if (f.type === "message" && f.room === "$stats") show(f.data);
    if (f.type === "message" && f.room === "$nodes") {
      nodes.set(f.data.node, { n: f.data, seen: Date.now() });
      drawNodes();
    }
    if (f.type === "error") console.warn("hub error", f);
  };
  ws.onclose = (ev) => {
    $("status").textContent = `disconnected (${ev.code})`;
    $("status").className = "down";
    setTimeout(connect, 2000); // the hub may be restarting
  };
}

connect();
setInterval(drawNodes, 1000); // "last seen" moves on between announcements
