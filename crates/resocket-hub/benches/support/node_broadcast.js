// The Node `ws` broadcast server of the hub's benches: every message from one client goes to
// every other client, as the `ws` README's broadcast example does it
// (`wss.clients.forEach(c => c.send(data))`, the sender skipped).
//
// Usage: node --expose-gc node_broadcast.js [deflate]
// Binds 127.0.0.1:0 and prints the port on the first line of stdout. With `deflate`,
// permessage-deflate is on with `ws`'s defaults (zlib level 6 and context takeover, one
// compressor per connection) except the threshold: 0 instead of 1024 bytes, so the benches'
// 128-byte messages are compressed too.
// A Text message containing `"type":"subscribe"` is answered `{"type":"subscribed"}` to its
// sender only and not broadcast, so the benches' clients know they are registered, as they do
// with the hub. A line `gc` on stdin runs a full garbage collection and answers `gc` on
// stdout, so that a memory figure does not count garbage.

const { WebSocketServer, WebSocket } = require("ws");

const deflate = process.argv[2] === "deflate";
const wss = new WebSocketServer({
  host: "127.0.0.1",
  port: 0,
  perMessageDeflate: deflate ? { threshold: 0 } : false,
});

wss.on("listening", () => {
  process.stdout.write(`${wss.address().port}\n`);
});

wss.on("connection", (ws) => {
  ws.on("message", (data, isBinary) => {
    if (!isBinary && data.includes('"type":"subscribe"')) {
      ws.send('{"type":"subscribed"}');
      return;
    }
    wss.clients.forEach((client) => {
      if (client !== ws && client.readyState === WebSocket.OPEN) {
        client.send(data, { binary: isBinary });
      }
    });
  });
});

let pending = "";
process.stdin.on("data", (chunk) => {
  pending += chunk;
  let newline;
  while ((newline = pending.indexOf("\n")) >= 0) {
    const line = pending.slice(0, newline);
    pending = pending.slice(newline + 1);
    if (line === "gc") {
      global.gc();
      process.stdout.write("gc\n");
    }
  }
});
// The bench closing stdin (or dying) ends the server.
process.stdin.on("end", () => process.exit(0));
