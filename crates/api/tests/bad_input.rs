//! A corpus of bad input, sent byte for byte (no client library normalises the paths):
//! malformed JSON and YAML, huge and deeply nested bodies, invalid names, invalid
//! selectors, SQL metacharacters in selectors and names, wrong content types, path tricks,
//! bad query parameters and patches. Every answer must be a 4xx Kubernetes Status (a read
//! may also succeed), never a 5xx, nothing may panic, and nothing may be written.

mod common;

use std::io::{Read as _, Write as _};
use std::sync::atomic::{AtomicUsize, Ordering};

use common::TestApp;
use serde_json::{Value, json};

static PANICS: AtomicUsize = AtomicUsize::new(0);

const NS: &str = "/api/v1/namespaces/corpus";
const CM: &str = "/api/v1/namespaces/corpus/configmaps";
const SS: &str = "/apis/hive.openshift.io/v1/namespaces/corpus/syncsets";

/// One request of the corpus.
struct Case {
    method: &'static str,
    target: String,
    content_type: Option<&'static str>,
    body: Vec<u8>,
}

fn case(method: &'static str, target: impl Into<String>) -> Case {
    Case {
        method,
        target: target.into(),
        content_type: None,
        body: Vec::new(),
    }
}

fn with(
    method: &'static str,
    target: impl Into<String>,
    ct: &'static str,
    body: impl Into<Vec<u8>>,
) -> Case {
    Case {
        method,
        target: target.into(),
        content_type: Some(ct),
        body: body.into(),
    }
}

fn json_case(method: &'static str, target: impl Into<String>, body: &Value) -> Case {
    with(method, target, "application/json", body.to_string())
}

/// Sends a request as raw bytes (with a bearer token when given); (status, body).
fn send(base: &str, token: Option<&str>, c: &Case) -> (u16, Vec<u8>) {
    let addr = base.trim_start_matches("http://");
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(std::time::Duration::from_secs(60)))
        .unwrap();
    let mut head = format!(
        "{} {} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n",
        c.method,
        c.target,
        c.body.len()
    );
    if let Some(token) = token {
        head.push_str(&format!("Authorization: Bearer {token}\r\n"));
    }
    if let Some(ct) = c.content_type {
        head.push_str(&format!("Content-Type: {ct}\r\n"));
    }
    head.push_str("\r\n");
    // The server may answer (413) before reading a huge body, and close.
    let _ = stream
        .write_all(head.as_bytes())
        .and_then(|()| stream.write_all(&c.body));
    let mut raw = Vec::new();
    let _ = stream.read_to_end(&mut raw);
    let text_end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("no response to {} {}: {raw:?}", c.method, short(&c.target)));
    let head = String::from_utf8_lossy(&raw[..text_end]).into_owned();
    let status: u16 = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("bad status line {head:?}"));
    let mut body = raw[text_end + 4..].to_vec();
    if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        body = unchunk(&body);
    }
    (status, body)
}

fn unchunk(mut raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let Some(eol) = raw.windows(2).position(|w| w == b"\r\n") else {
            return out;
        };
        let size = usize::from_str_radix(std::str::from_utf8(&raw[..eol]).unwrap().trim(), 16)
            .unwrap_or(0);
        if size == 0 {
            return out;
        }
        out.extend_from_slice(&raw[eol + 2..eol + 2 + size]);
        raw = &raw[eol + 2 + size + 2..];
    }
}

fn short(s: &str) -> String {
    s.chars().take(120).collect()
}

fn nested(depth: usize) -> String {
    format!(
        r#"{{"apiVersion":"v1","kind":"ConfigMap","metadata":{{"name":"deep"}},"x":{}{}}}"#,
        "[".repeat(depth),
        "]".repeat(depth)
    )
}

fn cm_named(name: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}})
}

/// The corpus.
fn corpus() -> Vec<Case> {
    let mut c = vec![
        // Malformed JSON.
        with("POST", CM, "application/json", "{"),
        with("POST", CM, "application/json", r#"{"apiVersion":"#),
        with("POST", CM, "application/json", "[]"),
        with("POST", CM, "application/json", "null"),
        with("POST", CM, "application/json", "\"a string\""),
        with("POST", CM, "application/json", "12345"),
        with("POST", CM, "application/json", ""),
        with(
            "POST",
            CM,
            "application/json",
            b"{\"kind\":\"\xff\xfe\"}".to_vec(),
        ),
        with(
            "POST",
            CM,
            "application/json",
            r#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"x"}} trailing"#,
        ),
        with(
            "POST",
            CM,
            "application/json",
            r#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"x"},"data":{"a":1e999}}"#,
        ),
        with(
            "POST",
            CM,
            "application/json",
            r#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"x","name":"y"},"data":{"a":"\ud800"}}"#,
        ),
        with("POST", CM, "application/json", "\u{feff}{}"),
        // Malformed and hostile YAML.
        with("POST", CM, "application/yaml", ": : :\n\t- ["),
        with(
            "POST",
            CM,
            "application/yaml",
            "apiVersion: v1\nkind: ConfigMap\nmetadata: [name, x]\n",
        ),
        with(
            "POST",
            CM,
            "application/yaml",
            "a: &a [\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\"]\nb: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]\nc: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]\nd: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]\ne: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]\nf: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e]\ng: &g [*f,*f,*f,*f,*f,*f,*f,*f,*f]\nh: &h [*g,*g,*g,*g,*g,*g,*g,*g,*g]\ni: &i [*h,*h,*h,*h,*h,*h,*h,*h,*h]\n",
        ),
        with(
            "POST",
            CM,
            "application/yaml",
            "---\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\n---\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: b}\n",
        ),
        with("POST", CM, "application/yaml", "!!binary aGVsbG8=\n"),
        // Huge and deeply nested bodies.
        with(
            "POST",
            CM,
            "application/json",
            format!(
                r#"{{"apiVersion":"v1","kind":"ConfigMap","metadata":{{"name":"huge"}},"data":{{"a":"{}"}}}}"#,
                "x".repeat(4 << 20)
            ),
        ),
        with("POST", CM, "application/json", nested(100_000)),
        with("POST", CM, "application/json", nested(1_000)),
        with(
            "POST",
            CM,
            "application/yaml",
            format!(
                "apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: deep}}\nx: {}{}\n",
                "[".repeat(100_000),
                "]".repeat(100_000)
            ),
        ),
        with(
            "POST",
            CM,
            "application/json",
            format!(
                r#"{{"apiVersion":"v1","kind":"ConfigMap","metadata":{{"name":"big-annotations","annotations":{{"a":"{}"}}}}}}"#,
                "x".repeat(300 << 10)
            ),
        ),
        // Labels and annotations that are not maps of strings.
        json_case(
            "POST",
            CM,
            &json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x", "annotations": "a=b"}}),
        ),
        json_case(
            "POST",
            CM,
            &json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x", "labels": ["a"]}}),
        ),
        json_case(
            "POST",
            CM,
            &json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x", "annotations": {"a": {"b": "c"}}}}),
        ),
        // Invalid names.
        json_case("POST", CM, &cm_named("UPPER")),
        json_case("POST", CM, &cm_named("a_b")),
        json_case("POST", CM, &cm_named("-a")),
        json_case("POST", CM, &cm_named("..")),
        json_case("POST", CM, &cm_named("a/b")),
        json_case("POST", CM, &cm_named("")),
        json_case("POST", CM, &cm_named("a\u{0}b")),
        json_case("POST", CM, &cm_named("ünïcödé")),
        json_case("POST", CM, &cm_named(&"a".repeat(300))),
        json_case("POST", CM, &cm_named("x'; DROP TABLE objects; --")),
        json_case(
            "POST",
            "/api/v1/namespaces",
            &json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "Bad_NS"}}),
        ),
        json_case(
            "POST",
            CM,
            &json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"generateName": "BAD_"}}),
        ),
        json_case("PUT", format!("{CM}/Bad_Name"), &cm_named("Bad_Name")),
        json_case("PUT", format!("{CM}/cm"), &cm_named("other")),
        // Objects that do not fit where they are sent.
        json_case(
            "POST",
            CM,
            &json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "x"}}),
        ),
        json_case(
            "POST",
            CM,
            &json!({"apiVersion": "v2", "kind": "ConfigMap", "metadata": {"name": "x"}}),
        ),
        json_case(
            "POST",
            CM,
            &json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x", "namespace": "elsewhere"}}),
        ),
        json_case(
            "POST",
            CM,
            &json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": ["x"]}),
        ),
        json_case(
            "POST",
            CM,
            &json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x", "labels": {"bad key!": "v"}}}),
        ),
        json_case(
            "POST",
            CM,
            &json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x", "labels": {"k": "v'; --"}}}),
        ),
        json_case(
            "POST",
            CM,
            &json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x"}, "data": ["a"]}),
        ),
        json_case(
            "POST",
            CM,
            &json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x"}, "data": {"a": 1}}),
        ),
        json_case(
            "POST",
            CM,
            &json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x"}, "data": {"bad key/": "v"}}),
        ),
        json_case(
            "POST",
            "/api/v1/namespaces/missing/configmaps",
            &cm_named("x"),
        ),
        json_case(
            "POST",
            SS,
            &json!({"apiVersion": "hive.openshift.io/v1", "kind": "SyncSet", "metadata": {"name": "x"}, "spec": {"clusterDeploymentRefs": "not-a-list"}}),
        ),
        json_case(
            "POST",
            SS,
            &json!({"apiVersion": "hive.openshift.io/v1", "kind": "SyncSet", "metadata": {"name": "x"}, "spec": {"resourceApplyMode": "Bogus", "clusterDeploymentRefs": []}}),
        ),
        json_case(
            "POST",
            "/apis/apiextensions.k8s.io/v1/customresourcedefinitions",
            &json!({"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition", "metadata": {"name": "wrong"}, "spec": {}}),
        ),
        json_case(
            "POST",
            "/apis/rbac.authorization.k8s.io/v1/clusterroles",
            &json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole", "metadata": {"name": "x"}, "rules": [{"verbs": []}]}),
        ),
        // Invalid selectors, SQL metacharacters in them.
        case("GET", format!("{CM}?labelSelector=a%20in%20(")),
        case("GET", format!("{CM}?labelSelector=a!")),
        case("GET", format!("{CM}?labelSelector=%3Dx")),
        case("GET", format!("{CM}?labelSelector=a%3D%3Db%3D%3Dc")),
        case(
            "GET",
            format!("{CM}?labelSelector=a%3D'%3B%20DROP%20TABLE%20objects%3B--"),
        ),
        case(
            "GET",
            format!("{CM}?labelSelector=x%20in%20('a')%2C%20y%20notin%20(b)%20%3B"),
        ),
        case("GET", format!("{CM}?labelSelector=a%25%3D_")),
        case("GET", format!("{CM}?labelSelector={}", "a".repeat(10_000))),
        case(
            "GET",
            format!("{CM}?fieldSelector=metadata.name%3D'%20OR%201%3D1%20--"),
        ),
        case("GET", format!("{CM}?fieldSelector=spec.bogus%3Dx")),
        case("GET", format!("{CM}?fieldSelector=metadata.name")),
        case("GET", format!("{CM}?fieldSelector=metadata.name%3D%00")),
        case("GET", format!("{CM}?labelSelector=a%3D%00")),
        case("GET", "/api/v1/namespaces/%00/configmaps".to_string()),
        case("DELETE", format!("{CM}?labelSelector=a%20in%20(")),
        // Names with SQL metacharacters in paths.
        case("GET", format!("{CM}/a'%3B--")),
        case("GET", format!("{CM}/%25")),
        case("GET", format!("{CM}/_")),
        case("DELETE", format!("{CM}/x'%20OR%20'1'%3D'1")),
        json_case(
            "PUT",
            format!("{CM}/x'%20OR%20'1'%3D'1"),
            &cm_named("x' OR '1'='1"),
        ),
        // Wrong content types.
        with("POST", CM, "text/plain", cm_named("x").to_string()),
        with("POST", CM, "application/xml", "<ConfigMap/>"),
        // Kubernetes ignores the charset; a body really in UTF-16 is not JSON.
        with(
            "POST",
            CM,
            "application/json; charset=utf-16",
            cm_named("x")
                .to_string()
                .encode_utf16()
                .flat_map(u16::to_le_bytes)
                .collect::<Vec<u8>>(),
        ),
        // (No Content-Type at all is JSON to Kubernetes: not bad input.)
        with(
            "PATCH",
            format!("{CM}/cm"),
            "application/json",
            r#"{"data":{"a":"b"}}"#,
        ),
        with(
            "PATCH",
            format!("{CM}/cm"),
            "text/plain",
            r#"{"data":{"a":"b"}}"#,
        ),
        with(
            "PUT",
            format!("{CM}/cm"),
            "application/merge-patch+json",
            r#"{"data":{"a":"b"}}"#,
        ),
        with(
            "POST",
            CM,
            "application/vnd.kubernetes.protobuf",
            "\u{0}\u{1}garbage",
        ),
        // Path tricks.
        case("GET", "/api/v1/namespaces/../../etc/passwd"),
        case("GET", "/api/v1/namespaces/%2e%2e/configmaps"),
        case(
            "GET",
            "/api/v1/namespaces/corpus/configmaps/..%2f..%2fsecrets",
        ),
        case("GET", "//api//v1//namespaces"),
        case("GET", "/api/v1/namespaces/corpus/configmaps/%00"),
        case("GET", "/clusters/../api/v1/namespaces"),
        case("GET", "/clusters/%2F/api/v1/namespaces"),
        case("GET", "/clusters/UPPER/api/v1/namespaces"),
        case("GET", format!("/api/v1/namespaces/{}", "a/".repeat(2_000))),
        case("GET", "/apis/hive.openshift.io/v1/../../../api/v1/secrets"),
        case(
            "GET",
            "/api/v1/namespaces/corpus/configmaps/cm/status/extra/segments",
        ),
        case("GET", "/apis/nope.example.com/v1/widgets"),
        case("GET", "/api/v9/pods"),
        case("GET", "/%ZZ"),
        json_case(
            "POST",
            "/api/v1/namespaces/corpus/configmaps/cm",
            &cm_named("cm"),
        ),
        json_case(
            "POST",
            "/api/v1/namespaces/corpus/configmaps/cm/status",
            &cm_named("cm"),
        ),
        case("DELETE", "/api/v1"),
        case("DELETE", "/apis"),
        case("TRACE", CM),
        case("BREW", CM),
        // Bad query parameters.
        case("GET", format!("{CM}?limit=-1")),
        case("GET", format!("{CM}?limit=abc")),
        case("GET", format!("{CM}?limit=99999999999999999999999")),
        case("GET", format!("{CM}?continue=garbage")),
        case("GET", format!("{CM}?continue=eyJydiI6LTF9")),
        case("GET", format!("{CM}?resourceVersion=abc")),
        case("GET", format!("{CM}?resourceVersion=-5")),
        case(
            "GET",
            format!("{CM}?resourceVersionMatch=Bogus&resourceVersion=1"),
        ),
        case("GET", format!("{CM}?watch=maybe")),
        case("GET", format!("{CM}?watch=true&timeoutSeconds=-5")),
        case("GET", format!("{CM}?watch=true&resourceVersion=abc")),
        json_case("POST", format!("{CM}?dryRun=Bogus"), &cm_named("x")),
        json_case(
            "POST",
            format!("{CM}?fieldValidation=Bogus"),
            &cm_named("x"),
        ),
        json_case(
            "POST",
            format!("{CM}?fieldManager={}", "m".repeat(200)),
            &cm_named("x"),
        ),
        json_case(
            "POST",
            format!("{CM}?fieldValidation=Strict"),
            &json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x"}, "unknownField": 1}),
        ),
        // Patches.
        with(
            "PATCH",
            format!("{CM}/cm"),
            "application/json-patch+json",
            "not json",
        ),
        with(
            "PATCH",
            format!("{CM}/cm"),
            "application/json-patch+json",
            r#"[{"op":"bogus","path":"/data"}]"#,
        ),
        with(
            "PATCH",
            format!("{CM}/cm"),
            "application/json-patch+json",
            r#"[{"op":"remove","path":"/nowhere/at/all"}]"#,
        ),
        with(
            "PATCH",
            format!("{CM}/cm"),
            "application/json-patch+json",
            r#"[{"op":"test","path":"/data/a","value":"not this"},{"op":"add","path":"/data/b","value":"x"}]"#,
        ),
        with(
            "PATCH",
            format!("{CM}/cm"),
            "application/json-patch+json",
            r#"[{"op":"replace","path":"/metadata/name","value":"renamed"}]"#,
        ),
        with(
            "PATCH",
            format!("{CM}/cm"),
            "application/json-patch+json",
            r#"[{"op":"add","path":"/data/~2","value":"x"}]"#,
        ),
        with(
            "PATCH",
            format!("{CM}/cm"),
            "application/json-patch+json",
            format!(
                "[{}]",
                vec![r#"{"op":"add","path":"/data/k","value":"v"}"#; 20_000].join(",")
            ),
        ),
        with(
            "PATCH",
            format!("{CM}/cm"),
            "application/merge-patch+json",
            "[1,2]",
        ),
        with(
            "PATCH",
            format!("{CM}/cm"),
            "application/merge-patch+json",
            r#"{"data":{"a":{"nested":"object"}}}"#,
        ),
        with(
            "PATCH",
            format!("{CM}/cm"),
            "application/merge-patch+json",
            r#"{"metadata":{"resourceVersion":"1"},"data":{"a":"stale"}}"#,
        ),
        with(
            "PATCH",
            format!("{CM}/cm"),
            "application/strategic-merge-patch+json",
            r#"{"$patch":"bogus"}"#,
        ),
        with(
            "PATCH",
            format!("{CM}/cm"),
            "application/strategic-merge-patch+json",
            r#"{"data":{"$retainKeys":"nope"}}"#,
        ),
        with(
            "PATCH",
            format!("{CM}/cm"),
            "application/apply-patch+yaml",
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: cm}\n",
        ),
        with(
            "PATCH",
            format!("{CM}/cm?fieldManager=m"),
            "application/apply-patch+yaml",
            ": :\n",
        ),
        with(
            "PATCH",
            format!("{CM}/cm?fieldManager=m"),
            "application/apply-patch+yaml",
            "apiVersion: v1\nkind: Secret\nmetadata: {name: cm}\n",
        ),
        with(
            "PATCH",
            format!("{CM}/cm?fieldManager=m"),
            "application/apply-patch+yaml",
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: other}\n",
        ),
        with(
            "PATCH",
            format!("{CM}/missing"),
            "application/merge-patch+json",
            r#"{"data":{"a":"b"}}"#,
        ),
        // Updates and deletes that cannot apply.
        json_case(
            "PUT",
            format!("{CM}/cm"),
            &json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cm", "resourceVersion": "1"}}),
        ),
        json_case(
            "PUT",
            format!("{CM}/cm"),
            &json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cm", "resourceVersion": "not-a-number"}}),
        ),
        json_case(
            "DELETE",
            format!("{CM}/cm"),
            &json!({"kind": "DeleteOptions", "apiVersion": "v1", "preconditions": {"uid": "not-the-uid"}}),
        ),
        json_case(
            "DELETE",
            format!("{CM}/cm"),
            &json!({"kind": "DeleteOptions", "apiVersion": "v1", "propagationPolicy": "Bogus"}),
        ),
        with(
            "DELETE",
            format!("{CM}/cm"),
            "application/json",
            "{ not json",
        ),
        json_case("DELETE", format!("{CM}/cm?dryRun=Bogus"), &json!({})),
        json_case(
            "DELETE",
            format!("{CM}/cm"),
            &json!({"kind": "DeleteOptions", "apiVersion": "v1", "dryRun": ["Bogus"]}),
        ),
        json_case(
            "DELETE",
            format!("{CM}/cm"),
            &json!({"kind": "DeleteOptions", "apiVersion": "v1", "dryRun": "All"}),
        ),
        case("DELETE", format!("{CM}/cm?gracePeriodSeconds=abc")),
    ];
    // The namespace itself, under tricks.
    c.push(json_case(
        "PUT",
        NS,
        &json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "other"}}),
    ));
    c
}

async fn corpus_changes_nothing(app: &TestApp) {
    std::panic::set_hook(Box::new(|info| {
        PANICS.fetch_add(1, Ordering::SeqCst);
        eprintln!("panic: {info}");
    }));
    let created = app
        .post(
            "/api/v1/namespaces",
            &json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "corpus"}}),
        )
        .await;
    assert_eq!(created.status.as_u16(), 201, "{}", created.body);
    let created = app.post(CM, &json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cm"}, "data": {"a": "1"}})).await;
    assert_eq!(created.status.as_u16(), 201, "{}", created.body);
    let before = app.state.store.watermark().await.unwrap();
    let objects_before = app.get(CM).await.body["items"].clone();

    let base = app.base.clone();
    let token = app.token.clone();
    let cases = corpus();
    let n = cases.len();
    let results = tokio::task::spawn_blocking(move || {
        cases
            .iter()
            .enumerate()
            .map(|(i, c)| {
                let (status, body) = send(&base, token.as_deref(), c);
                (
                    format!(
                        "#{i} {} {} ({:?}, {} bytes)",
                        c.method,
                        short(&c.target),
                        c.content_type,
                        c.body.len()
                    ),
                    status,
                    body,
                )
            })
            .collect::<Vec<_>>()
    })
    .await
    .unwrap();

    let mut failures = Vec::new();
    for (what, status, body) in &results {
        let status_object: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
        let refused = (400..500).contains(status);
        let is_status = status_object["kind"] == "Status"
            && status_object["code"] == json!(status)
            && status_object["message"]
                .as_str()
                .is_some_and(|m| !m.is_empty());
        let read = what.split_whitespace().nth(1) == Some("GET");
        if *status >= 500 {
            failures.push(format!(
                "{what}: {status} {}",
                String::from_utf8_lossy(body)
            ));
        } else if refused && !is_status {
            failures.push(format!(
                "{what}: {status} without a Status: {}",
                String::from_utf8_lossy(&body[..body.len().min(300)])
            ));
        } else if !refused && !read {
            failures.push(format!(
                "{what}: accepted ({status}) {}",
                String::from_utf8_lossy(&body[..body.len().min(300)])
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {n} cases failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
    assert_eq!(PANICS.load(Ordering::SeqCst), 0, "handlers panicked");
    // The corpus reaches every layer: parsing, routing, admission, patching, storage.
    let codes: std::collections::BTreeSet<u16> = results.iter().map(|r| r.1).collect();
    for code in [400, 404, 405, 409, 413, 415, 422] {
        assert!(codes.contains(&code), "no case answered {code}: {codes:?}");
    }
    // No write, whole or partial.
    assert_eq!(app.state.store.watermark().await.unwrap(), before);
    assert_eq!(app.get(CM).await.body["items"], objects_before);
    assert_eq!(app.get("/healthz").await.status.as_u16(), 200);
}

per_backend!(corpus_changes_nothing);

/// The corpus through authentication, limits and RBAC too (as a member of system:masters,
/// so that every request reaches its handler).
#[tokio::test]
async fn corpus_changes_nothing_with_authorization() {
    let app = TestApp::sqlite_as("t-root,root,1,system:masters").await;
    let base = app.base.clone();
    let anonymous = tokio::task::spawn_blocking(move || send(&base, None, &case("GET", CM)).0);
    assert_eq!(anonymous.await.unwrap(), 401, "authentication is on");
    corpus_changes_nothing(&app).await;
    app.stop().await;
}
