// The dashboard's logic: subscribe to the hub's `$stats` room over the hub's own WebSocket and
// draw what arrives. A `token` query parameter on this page is passed on to the hub.
"use strict";

const $ = (id) => document.getElementById(id);
const points = []; // [in/s, out/s] per snapshot, newest last
const MAX_POINTS = 120;

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
  $("connections").textContent = s.connections;
  $("rooms").textContent = s.rooms;
  $("in").textContent = s.in_per_s;
  $("out").textContent = s.out_per_s;
  $("slow").textContent = s.slow_consumer_disconnects;
  points.push([s.in_per_s, s.out_per_s]);
  if (points.length > MAX_POINTS) points.shift();
  draw();
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
  };
  ws.onmessage = (ev) => {
    const f = JSON.parse(ev.data);
    if (f.type === "message" && f.room === "$stats") show(f.data);
    if (f.type === "error") console.warn("hub error", f);
  };
  ws.onclose = (ev) => {
    $("status").textContent = `disconnected (${ev.code})`;
    $("status").className = "down";
    setTimeout(connect, 2000); // the hub may be restarting
  };
}

connect();
