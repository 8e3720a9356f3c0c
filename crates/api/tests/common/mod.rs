//! `TestApp`: the API server on port 0 over a chosen backend, and a small HTTP client.

#![allow(
    dead_code,
    reason = "each test binary uses a different part of the harness"
)]

use std::sync::Arc;

use reqwest::header::{CONTENT_TYPE, HeaderMap};
use reqwest::{Method, StatusCode};
use serde_json::Value;
use syncsets_api::AppState;
use syncsets_testkit::{Backend, Builder, TestServer};

/// A running server and a client for it.
pub struct TestApp {
    /// `http://127.0.0.1:PORT`
    pub base: String,
    /// The server's state (store, registry).
    pub state: Arc<AppState>,
    client: reqwest::Client,
    /// The bearer token every request carries (servers with authentication).
    pub token: Option<String>,
    server: TestServer,
}

/// A response.
#[derive(Debug)]
pub struct Reply {
    /// Status code.
    pub status: StatusCode,
    /// Body as JSON (`Null` if it is not JSON).
    pub body: Value,
    /// Headers.
    pub headers: HeaderMap,
    /// Raw body.
    pub bytes: Vec<u8>,
}

impl TestApp {
    /// Starts a server as `builder` says (`None`: its backend is unavailable outside CI).
    async fn start(builder: Builder) -> Option<Self> {
        let server = builder
            .bookmark_interval(std::time::Duration::from_millis(300))
            // Initial states of a few objects take several reads.
            .initial_events_page(2)
            .start()
            .await?;
        Some(Self {
            base: server.base.clone(),
            state: server.state.clone(),
            client: reqwest::Client::new(),
            token: server.token.clone(),
            server,
        })
    }

    /// Over a temporary SQLite file.
    pub async fn sqlite() -> Self {
        Self::start(TestServer::builder()).await.expect("SQLite")
    }

    /// Over a fresh PostgreSQL database (None when skipped outside CI).
    pub async fn postgres() -> Option<Self> {
        Self::start(TestServer::builder().backend(Backend::Postgres)).await
    }

    /// Over a temporary SQLite file, with authentication, called as `token_line`'s user
    /// (a `--token-auth-file` line, whose first field is the token).
    pub async fn sqlite_as(token_line: &str) -> Self {
        Self::start(TestServer::builder().token_auth(token_line))
            .await
            .expect("SQLite")
    }

    /// Over the in-memory store.
    pub async fn memory() -> Self {
        Self::start(TestServer::builder().backend(Backend::Memory))
            .await
            .expect("the memory store")
    }

    /// Stops the server and drops its database.
    pub async fn stop(self) {
        self.server.stop().await;
    }

    /// A request with optional body and content type.
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
        content_type: &str,
        accept: Option<&str>,
    ) -> Reply {
        let mut req = self.client.request(method, format!("{}{path}", self.base));
        if let Some(token) = &self.token {
            req = req.bearer_auth(token);
        }
        if let Some(b) = body {
            req = req.header(CONTENT_TYPE, content_type).body(b);
        }
        if let Some(a) = accept {
            req = req.header("Accept", a);
        }
        let res = req.send().await.unwrap();
        let status = res.status();
        let headers = res.headers().clone();
        let bytes = res.bytes().await.unwrap().to_vec();
        let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        Reply {
            status,
            body,
            headers,
            bytes,
        }
    }

    /// GET.
    pub async fn get(&self, path: &str) -> Reply {
        self.send(Method::GET, path, None, "", None).await
    }

    /// POST JSON.
    pub async fn post(&self, path: &str, body: &Value) -> Reply {
        self.send(
            Method::POST,
            path,
            Some(body.to_string().into_bytes()),
            "application/json",
            None,
        )
        .await
    }

    /// PUT JSON.
    pub async fn put(&self, path: &str, body: &Value) -> Reply {
        self.send(
            Method::PUT,
            path,
            Some(body.to_string().into_bytes()),
            "application/json",
            None,
        )
        .await
    }

    /// PATCH with a patch content type.
    pub async fn patch(&self, path: &str, content_type: &str, body: &str) -> Reply {
        self.send(
            Method::PATCH,
            path,
            Some(body.as_bytes().to_vec()),
            content_type,
            None,
        )
        .await
    }

    /// DELETE.
    pub async fn delete(&self, path: &str) -> Reply {
        self.send(Method::DELETE, path, None, "", None).await
    }
}

/// A watch stream being read.
pub struct WatchStream {
    res: reqwest::Response,
    buf: Vec<u8>,
}

impl WatchStream {
    /// Reads a watch response.
    pub fn from_response(res: reqwest::Response) -> Self {
        assert_eq!(res.status(), StatusCode::OK);
        Self {
            res,
            buf: Vec::new(),
        }
    }

    /// The next watch event, or None when the stream ended or nothing came within 5 s.
    pub async fn next(&mut self) -> Option<Value> {
        self.next_within(std::time::Duration::from_secs(5)).await
    }

    /// The next watch event within `timeout`.
    pub async fn next_within(&mut self, timeout: std::time::Duration) -> Option<Value> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if let Some(i) = self.buf.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = self.buf.drain(..=i).collect();
                return Some(serde_json::from_slice(&line).expect("a watch event is JSON"));
            }
            let chunk = tokio::time::timeout_at(deadline, self.res.chunk())
                .await
                .ok()?;
            self.buf.extend_from_slice(&chunk.ok()??);
        }
    }

    /// The next event that is not a BOOKMARK.
    pub async fn next_change(&mut self) -> Option<Value> {
        loop {
            let e = self.next().await?;
            if e["type"] != "BOOKMARK" {
                return Some(e);
            }
        }
    }
}

impl TestApp {
    /// Starts a watch (`path` carries the query, `watch=true` included); panics unless 200.
    pub async fn watch(&self, path: &str) -> WatchStream {
        let res = self
            .client
            .get(format!("{}{path}", self.base))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::OK, "watch {path}");
        WatchStream::from_response(res)
    }
}

/// Declares one test per backend for each listed async test function taking `&TestApp`.
#[macro_export]
macro_rules! per_backend {
    ($($test:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test]
                async fn $test() {
                    let app = $crate::common::TestApp::sqlite().await;
                    super::$test(&app).await;
                    app.stop().await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test]
                async fn $test() {
                    let Some(app) = $crate::common::TestApp::postgres().await else { return };
                    super::$test(&app).await;
                    app.stop().await;
                }
            )*
        }
        mod memory {
            $(
                #[tokio::test]
                async fn $test() {
                    let app = $crate::common::TestApp::memory().await;
                    super::$test(&app).await;
                    app.stop().await;
                }
            )*
        }
    };
}
