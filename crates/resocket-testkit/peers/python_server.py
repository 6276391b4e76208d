"""A Python `websockets` server for resocket's interop tests: an independent implementation of
RFC 6455 on the other end of the client's frame codec (`resocket_testkit::PeerServer`).

Binds 127.0.0.1:0, prints the port on the first line of stdout, then serves until killed.
Every Binary message is echoed. Text messages are commands:

- "echo:<text>"          -> the same text back
- "fragments:<n>"        -> one Text message sent as n fragments: "0,1,...,n-1"
- "ping"                 -> a Ping with payload b"interop", then "pong:<payload>" once the
                            client's Pong has arrived
- "close:<code>:<reason>" -> a Close frame with that code and reason
- "later:<ms>:<text>"     -> the text back after that many milliseconds (a slow answer)
- any other text          -> echoed as it is
"""

import asyncio
import sys

from websockets.asyncio.server import serve


async def handler(ws):
    async for msg in ws:
        if isinstance(msg, bytes):
            await ws.send(msg)
        elif msg.startswith("echo:"):
            await ws.send(msg[len("echo:"):])
        elif msg.startswith("fragments:"):
            n = int(msg[len("fragments:"):])
            parts = [str(i) + ("," if i < n - 1 else "") for i in range(n)]
            await ws.send(parts)
        elif msg == "ping":
            waiter = await ws.ping(b"interop")
            latency = await waiter
            await ws.send("pong:interop" if latency >= 0 else "pong:?")
        elif msg.startswith("later:"):
            _, ms, text = msg.split(":", 2)
            await asyncio.sleep(int(ms) / 1000)
            await ws.send(text)
        elif msg.startswith("close:"):
            _, code, reason = msg.split(":", 2)
            await ws.close(int(code), reason)
            return
        else:
            await ws.send(msg)


async def main():
    # No keepalive pings of its own and no size limit: the tests decide both.
    async with serve(handler, "127.0.0.1", 0, ping_interval=None, max_size=None) as server:
        port = server.sockets[0].getsockname()[1]
        print(port, flush=True)
        await server.serve_forever()


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        sys.exit(0)
