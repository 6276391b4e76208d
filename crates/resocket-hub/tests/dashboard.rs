//! The dashboard in a real headless Chromium, driven over the DevTools protocol: the page loads,
//! connects to the hub and shows a connection count that follows a test client. A screenshot is
//! saved as a test artifact.
//!
//! Chromium comes from Debian's `chromium` package (`scripts/test` installs it); set `CHROMIUM`
//! to use another binary. Without it this test fails: it never passes silently.

mod common;

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use base64::Engine as _;
use common::{guard, TestHub};
use futures_util::{SinkExt, StreamExt};
use resocket_hub::Hub;
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio_tungstenite::tungstenite::Message;

fn chromium() -> PathBuf {
    let path = std::env::var_os("CHROMIUM")
        .map_or_else(|| PathBuf::from("/usr/bin/chromium"), PathBuf::from);
    assert!(
        path.exists(),
        "Chromium not found at {} (install Debian's `chromium` package, or set CHROMIUM)",
        path.display()
    );
    path
}

/// A DevTools protocol session on one page.
struct Cdp {
    ws: common::Ws,
    next_id: u64,
}

impl Cdp {
    /// Sends a command and returns its result, skipping events that arrive meanwhile.
    async fn call(&mut self, method: &str, params: Value) -> Value {
        self.next_id += 1;
        let id = self.next_id;
        let cmd = json!({"id": id, "method": method, "params": params});
        self.ws.send(Message::text(cmd.to_string())).await.unwrap();
        loop {
            let Some(Ok(Message::Text(t))) = self.ws.next().await else {
                panic!("devtools connection lost")
            };
            let v: Value = serde_json::from_str(&t).unwrap();
            if v["id"] == id {
                assert!(v.get("error").is_none(), "{method} failed: {v}");
                return v["result"].clone();
            }
        }
    }

    /// Waits for an event by name.
    async fn event(&mut self, method: &str) -> Value {
        loop {
            let Some(Ok(Message::Text(t))) = self.ws.next().await else {
                panic!("devtools connection lost")
            };
            let v: Value = serde_json::from_str(&t).unwrap();
            if v["method"] == method {
                return v["params"].clone();
            }
        }
    }

    /// Evaluates a JavaScript expression, awaiting it if it is a promise.
    async fn eval(&mut self, expr: &str) -> Value {
        let r = self
            .call(
                "Runtime.evaluate",
                json!({"expression": expr, "awaitPromise": true, "returnByValue": true}),
            )
            .await;
        assert!(r.get("exceptionDetails").is_none(), "{expr} threw: {r}");
        r["result"]["value"].clone()
    }

    /// Resolves once the element's text equals `want`: a MutationObserver, not a polling loop.
    async fn text_becomes(&mut self, id: &str, want: &str) {
        let expr = format!(
            r#"new Promise(resolve => {{
                const el = document.getElementById({id:?});
                const check = () => {{ if (el.textContent === {want:?}) resolve(el.textContent); }};
                new MutationObserver(check).observe(el, {{ childList: true, characterData: true, subtree: true }});
                check();
            }})"#
        );
        assert_eq!(self.eval(&expr).await, want);
    }
}

#[tokio::test]
async fn the_dashboard_shows_live_connection_counts_in_chromium() {
    let chromium = chromium();
    guard(60, async {
        let hub = TestHub::start(
            Hub::builder()
                .allow_anonymous(true)
                .stats_interval(Duration::from_millis(200)),
        )
        .await;
        let tmp = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
        let profile = tmp.join(format!("chromium-profile-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&profile);
        let mut child = tokio::process::Command::new(&chromium)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--remote-debugging-port=0",
                "--window-size=900,660",
            ])
            .arg(format!("--user-data-dir={}", profile.display()))
            .arg("about:blank")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("chromium starts");

        // Chromium prints its DevTools endpoint on stderr.
        let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
        let port: u16 = loop {
            let line = lines
                .next_line()
                .await
                .unwrap()
                .expect("chromium exited before DevTools was up");
            if let Some(rest) = line.strip_prefix("DevTools listening on ws://127.0.0.1:") {
                break rest.split('/').next().unwrap().parse().unwrap();
            }
        };
        // Keep draining stderr so Chromium never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });

        let (_, list) = common::http_get(([127, 0, 0, 1], port).into(), "/json/list").await;
        let targets: Vec<Value> = serde_json::from_str(&list).expect("target list");
        let page = targets
            .iter()
            .find(|t| t["type"] == "page")
            .expect("a page target");
        let (ws, _) =
            tokio_tungstenite::connect_async(page["webSocketDebuggerUrl"].as_str().unwrap())
                .await
                .unwrap();
        let mut cdp = Cdp { ws, next_id: 0 };

        cdp.call("Page.enable", json!({})).await;
        cdp.call("Page.navigate", json!({"url": hub.http("/")}))
            .await;
        cdp.event("Page.loadEventFired").await;

        // The dashboard's own WebSocket is the hub's only connection.
        cdp.text_becomes("status", "live").await;
        cdp.text_becomes("connections", "1").await;
        assert_eq!(hub.hub.connections(), 1);

        let client = hub.raw_anon().await;
        cdp.text_becomes("connections", "2").await;

        let shot = cdp
            .call("Page.captureScreenshot", json!({"format": "png"}))
            .await;
        let png = base64::engine::general_purpose::STANDARD
            .decode(shot["data"].as_str().unwrap())
            .unwrap();
        assert!(png.starts_with(b"\x89PNG"), "a PNG screenshot");
        let artifacts = tmp.parent().unwrap().join("test-artifacts");
        std::fs::create_dir_all(&artifacts).unwrap();
        std::fs::write(artifacts.join("dashboard.png"), &png).unwrap();

        drop(client);
        cdp.text_becomes("connections", "1").await;

        child.kill().await.unwrap();
        let _ = std::fs::remove_dir_all(&profile);
    })
    .await;
}
