//! The dashboard in a real headless Chromium, driven over the DevTools protocol: the page loads,
//! connects to the hub and shows a connection count that follows a test client, and on a
//! cluster it lists every node. Screenshots are saved as test artifacts.
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
use resocket_testkit::RedisServer;
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

/// A headless Chromium with one page open on a DevTools session.
struct Browser {
    child: tokio::process::Child,
    profile: PathBuf,
    cdp: Cdp,
}

impl Browser {
    /// Starts Chromium, loads `url` and waits for the page's load event.
    async fn open(url: &str) -> Browser {
        let chromium = chromium();
        let tmp = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
        // One profile per test: tests of this file run in parallel.
        let profile = tmp.join(format!(
            "chromium-profile-{}-{}",
            std::process::id(),
            fastrand::u64(..)
        ));
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
                "--window-size=900,760",
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
        cdp.call("Page.navigate", json!({ "url": url })).await;
        cdp.event("Page.loadEventFired").await;
        Browser {
            child,
            profile,
            cdp,
        }
    }

    /// Saves a screenshot of the page as the test artifact `name`.
    async fn screenshot(&mut self, name: &str) {
        let shot = self
            .cdp
            .call("Page.captureScreenshot", json!({"format": "png"}))
            .await;
        let png = base64::engine::general_purpose::STANDARD
            .decode(shot["data"].as_str().unwrap())
            .unwrap();
        assert!(png.starts_with(b"\x89PNG"), "a PNG screenshot");
        let tmp = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
        let artifacts = tmp.parent().unwrap().join("test-artifacts");
        std::fs::create_dir_all(&artifacts).unwrap();
        std::fs::write(artifacts.join(name), &png).unwrap();
    }

    async fn close(mut self) {
        self.child.kill().await.unwrap();
        let _ = std::fs::remove_dir_all(&self.profile);
    }
}

#[tokio::test]
async fn the_dashboard_shows_live_connection_counts_in_chromium() {
    chromium();
    guard(60, async {
        let hub = TestHub::start(
            Hub::builder()
                .allow_anonymous(true)
                .stats_interval(Duration::from_millis(200)),
        )
        .await;
        let mut browser = Browser::open(&hub.http("/")).await;
        let cdp = &mut browser.cdp;

        // The dashboard's own WebSocket is the hub's only connection.
        cdp.text_becomes("status", "live").await;
        cdp.text_becomes("connections", "1").await;
        assert_eq!(hub.hub.connections(), 1);
        cdp.text_becomes("engine", "memory").await;
        cdp.text_becomes("node-count", "1").await;

        let client = hub.raw_anon().await;
        cdp.text_becomes("connections", "2").await;
        browser.screenshot("dashboard.png").await;

        drop(client);
        browser.cdp.text_becomes("connections", "1").await;
        browser.close().await;
    })
    .await;
}

#[tokio::test]
async fn the_dashboard_lists_every_node_on_one_redis_in_chromium() {
    chromium();
    let server = RedisServer::start().expect("redis-server (scripts/deps/redis.sh)");
    guard(60, async {
        let node = |id: &'static str| {
            TestHub::start(
                Hub::builder()
                    .allow_anonymous(true)
                    .node_id(id)
                    .stats_interval(Duration::from_millis(200))
                    .redis(server.url()),
            )
        };
        let (a, _b) = (node("node-a").await, node("node-b").await);
        let mut browser = Browser::open(&a.http("/")).await;
        let cdp = &mut browser.cdp;
        cdp.text_becomes("status", "live").await;
        cdp.text_becomes("node", "node-a").await;
        cdp.text_becomes("engine", "redis").await;
        cdp.text_becomes("node-count", "2").await;

        let rows = cdp
            .eval(
                r##"[...document.querySelectorAll("#nodes tbody tr")].map(tr =>
                    [...tr.cells].map(td => td.textContent))"##,
            )
            .await;
        let rows = rows.as_array().expect("rows");
        let ids: Vec<&str> = rows.iter().map(|r| r[0].as_str().unwrap()).collect();
        assert_eq!(ids, ["node-a", "node-b"], "{rows:?}");
        for row in rows {
            assert_eq!(row[1], "redis", "{row}");
            // The Redis round trip is shown in µs or ms once the node has timed a call.
            let rtt = row[3].as_str().unwrap();
            assert!(
                rtt == "–" || rtt.ends_with("µs") || rtt.ends_with("ms"),
                "{row}"
            );
            assert!(row[5].as_str().unwrap().ends_with("s ago"), "{row}");
        }
        browser.screenshot("dashboard-nodes.png").await;
        browser.close().await;
    })
    .await;
}
