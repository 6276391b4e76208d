//! Extensions: logging on any text, inbound filters, status viewers, sending from a hook.

use std::time::Duration;

use resocket::{
    extension::{
        AdvancedStatusViewer, Extension, ExtensionContext, LoggingExtension, StatusViewer, Verdict,
    },
    retry::ExponentialBackoff,
    Client, Message,
};
use resocket_testkit::{within, Behavior, TestServer};

#[tokio::test]
async fn logging_extension_survives_cjk_and_emoji() {
    within(20, "logging", async {
        let server = TestServer::start(Behavior::Echo).await;
        let logging = LoggingExtension::new()
            .prefix("feed")
            .max_payload(5)
            .log_payloads(true)
            .level(tracing::Level::INFO);
        assert_eq!(logging.render(&Message::text("価格🚀データ")), "価…");
        let (client, mut messages) = Client::builder(server.url())
            .extension(logging)
            .spawn()
            .unwrap();
        for text in ["価格🚀データ", "🚀🚀🚀", "ascii only", "é"] {
            client.send(Message::text(text)).await.unwrap();
            assert_eq!(messages.recv().await.unwrap(), Message::text(text));
        }
    })
    .await;
}

struct DropNoise;

impl Extension for DropNoise {
    fn on_message_in(&self, msg: &Message, _ctx: &ExtensionContext) -> Verdict {
        match msg.to_text() {
            Ok(t) if t.starts_with("noise") => Verdict::Drop,
            Ok("shout") => Verdict::Replace(Message::text("SHOUT")),
            _ => Verdict::Keep,
        }
    }
}

#[tokio::test]
async fn inbound_filter_drops_and_replaces() {
    within(20, "filter", async {
        let server = TestServer::start(Behavior::Echo).await;
        let (client, mut messages) = Client::builder(server.url())
            .extension(DropNoise)
            .spawn()
            .unwrap();
        for text in ["noise 1", "keep", "noise 2", "shout", "end"] {
            client.send(Message::text(text)).await.unwrap();
        }
        assert_eq!(messages.recv().await.unwrap(), Message::text("keep"));
        assert_eq!(messages.recv().await.unwrap(), Message::text("SHOUT"));
        assert_eq!(messages.recv().await.unwrap(), Message::text("end"));
    })
    .await;
}

struct AppPong;

impl Extension for AppPong {
    fn on_message_in(&self, msg: &Message, ctx: &ExtensionContext) -> Verdict {
        if msg.to_text().ok() == Some("ping") {
            ctx.try_send(Message::text("pong"))
                .expect("room in the queue");
            return Verdict::Drop;
        }
        Verdict::Keep
    }
}

#[tokio::test]
async fn an_extension_can_answer_through_its_context() {
    within(20, "app pong", async {
        let mut server = TestServer::start(Behavior::Silent).await;
        let (client, _messages) = Client::builder(server.url())
            .extension(AppPong)
            .spawn()
            .unwrap();
        client.ready().await.unwrap();
        server.wait_connected().await;
        server.send_all(Message::text("ping"));
        assert_eq!(server.next_message().await.1, Message::text("pong"));
    })
    .await;
}

#[tokio::test]
async fn status_viewers_keep_reporting_after_registration() {
    within(20, "status viewer", async {
        let mut server = TestServer::start(Behavior::Silent).await;
        let viewer = StatusViewer::new();
        let advanced = AdvancedStatusViewer::new(4);
        let (client, _messages) = Client::builder(server.url())
            .extension(viewer.clone())
            .extension(advanced.clone())
            .configure(|c| {
                c.backoff =
                    ExponentialBackoff::new(Duration::from_millis(10), Duration::from_millis(50))
            })
            .spawn()
            .unwrap();
        client.ready().await.unwrap();
        assert!(viewer.is_connected());
        assert_eq!(viewer.status().connections, 1);
        server.wait_connected().await;
        server.close_all(1012, "restart");
        server.wait_connected().await;
        client.ready().await.unwrap();
        let status = advanced.status();
        assert_eq!((status.connections, status.reconnects), (2, 1));
        assert!(status.uptime().is_some());
        assert!(status.last_error.unwrap().contains("1012"));
        let history = advanced.history();
        assert_eq!(history.len(), 4, "history is bounded");
        assert!(history.last().unwrap().state.is_ready());
        assert_eq!(viewer.status().reconnects, 1);
    })
    .await;
}
