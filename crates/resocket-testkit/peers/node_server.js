// A Node `ws` server for resocket's interop tests: the same commands as python_server.py, on
// the other widely used independent implementation of RFC 6455.
//
// Binds 127.0.0.1:0, prints the port on the first line of stdout, then serves until killed.
// Binary messages are echoed; Text messages are "echo:<text>", "fragments:<n>", "ping",
// "later:<ms>:<text>" and "close:<code>:<reason>" (see python_server.py); any other text is echoed as it is.

const { WebSocketServer } = require("ws");

// permessage-deflate is off by default in `ws` servers; on, as in Python `websockets` and
// browsers. Messages under its 1 KiB threshold go uncompressed, so a connection mixes both.
const server = new WebSocketServer({
  host: "127.0.0.1",
  port: 0,
  maxPayload: 0,
  perMessageDeflate: true,
});

server.on("listening", () => {
  process.stdout.write(`${server.address().port}\n`);
});

server.on("connection", (ws) => {
  ws.on("message", (data, isBinary) => {
    if (isBinary) {
      ws.send(data);
      return;
    }
    const msg = data.toString();
    if (msg.startsWith("echo:")) {
      ws.send(msg.slice("echo:".length));
    } else if (msg.startsWith("fragments:")) {
      const n = Number(msg.slice("fragments:".length));
      for (let i = 0; i < n; i++) {
        // `fin: false` keeps the message open: every part after the first is a continuation.
        ws.send(String(i) + (i < n - 1 ? "," : ""), { fin: i === n - 1 });
      }
    } else if (msg === "ping") {
      ws.once("pong", (payload) => ws.send(`pong:${payload.toString()}`));
      ws.ping(Buffer.from("interop"));
    } else if (msg.startsWith("later:")) {
      const [, ms, ...text] = msg.split(":");
      setTimeout(() => ws.send(text.join(":")), Number(ms));
    } else if (msg.startsWith("close:")) {
      const [, code, ...reason] = msg.split(":");
      ws.close(Number(code), reason.join(":"));
    } else {
      ws.send(msg);
    }
  });
});
