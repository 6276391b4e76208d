//! An exchange-style feed: token auth, two channel subscriptions, answers to application-level
//! pings, and a connection cut halfway through that the client recovers from by itself.
//!
//! Run it with `cargo run -p resocket --example exchange_feed`. It starts its own feed server
//! and a fault-injecting proxy on loopback, so it needs no network.

use std::time::Duration;

use resocket::{
    chain_handshakers,
    extension::{Extension, ExtensionContext, Verdict},
    handshake::{Auth, ChannelFormat, Matcher, Subscribe},
    retry::ExponentialBackoff,
    Client, Message,
};
use resocket_testkit::{Exchange, FaultProxy, TestServer};

/// Answers the feed's `{"type":"ping"}` with `{"type":"pong"}` and keeps pings out of the data.
struct AppPong;

impl Extension for AppPong {
    fn on_message_in(&self, msg: &Message, ctx: &ExtensionContext) -> Verdict {
        if msg.to_text().is_ok_and(|t| t.contains(r#""type":"ping""#)) {
            // A full queue only delays the pong to the next ping; the feed tolerates that.
            let _ = ctx.try_send(Message::text(r#"{"type":"pong"}"#));
            return Verdict::Drop;
        }
        Verdict::Keep
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut feed = Exchange::new("demo-token");
    feed.ticks = Some(Duration::from_millis(200));
    feed.app_pings = Some(Duration::from_millis(500));
    let server = TestServer::start(feed.behavior()).await;
    let proxy = FaultProxy::start(server.addr()).await;

    let subscribed = Matcher::json_field("type", "subscribed");
    // `build()` hands the task back unstarted, so the event printer below sees every event
    // from the first attempt; `connect().await` or `spawn()` start it in one call.
    let (client, mut messages, supervisor) = Client::builder(proxy.url())
        .handshake(chain_handshakers!(
            Auth::json_token("demo-token")
                .success(Matcher::json_field("type", "auth_ok"))
                .failure(Matcher::json_field("type", "auth_error")),
            Subscribe::new(ChannelFormat::json_type(), ["BTC-USD", "ETH-USD"]).confirm(subscribed),
        ))
        .extension(AppPong)
        .configure(|c| c.backoff = ExponentialBackoff::fast())
        .build()?;

    let mut events = client.events();
    tokio::spawn(async move {
        while let Ok(event) = events.recv().await {
            eprintln!("[event] {event:?}");
        }
    });
    tokio::spawn(supervisor.run());
    client.ready().await?;

    let run_for = tokio::time::sleep(Duration::from_secs(4));
    tokio::pin!(run_for);
    let mut cut = false;
    let mut ticks = 0;
    loop {
        tokio::select! {
            () = &mut run_for => break,
            msg = messages.recv() => {
                let Some(msg) = msg else { break };
                ticks += 1;
                println!("{msg}");
                if ticks == 8 && !cut {
                    eprintln!("[demo] cutting the connection at the proxy");
                    proxy.cut_all();
                    cut = true;
                }
            }
        }
    }
    let snapshot = client.snapshot();
    eprintln!(
        "[demo] {} ticks, {} reconnect(s), rtt {:?}",
        ticks, snapshot.reconnects, snapshot.counters.rtt
    );
    client.close().await?;
    while messages.recv().await.is_some() {}
    eprintln!("[demo] stream ended: {:?}", messages.end_reason());
    Ok(())
}
