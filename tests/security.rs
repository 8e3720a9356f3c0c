//! Security of the served API, with the real binary and kubectl: TLS by default with a
//! kubeconfig that just works, client certificates and bearer tokens, anonymous requests
//! refused (but health), plain HTTP only when asked for and only on loopback.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use base64::Engine as _;
use syncsets_testkit::Process;
use syncsets_types::kubeconfig;

/// A `syncsets serve` process, killed when dropped.
struct Serve {
    _process: Process,
    url: String,
}

fn serve(data: &Path, extra: &[&str]) -> Serve {
    start(data, extra, None, false)
}

/// `serve`, its debug log going to `log` when given.
fn serve_logging(data: &Path, extra: &[&str], log: Option<&Path>) -> Serve {
    start(data, extra, log, false)
}

/// `serve` with or without its controllers.
fn start(data: &Path, extra: &[&str], log: Option<&Path>, controllers: bool) -> Serve {
    let args = Process::serve_args(data, controllers, extra);
    let bin = env!("CARGO_BIN_EXE_syncsets");
    let process = match log {
        Some(path) => Process::logging_to(bin, args, path),
        None => Process::start(bin, args),
    };
    let url = process.url();
    Serve {
        _process: process,
        url,
    }
}

/// curl's `HTTP-version code` for a GET of `url` with `flags`.
fn curl_version(url: &str, flags: &[&str]) -> String {
    let out = Command::new("curl")
        .args([
            "-s",
            "-o",
            "/dev/null",
            "-w",
            "%{http_version} %{http_code}",
        ])
        .args(flags)
        .arg(url)
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// kubectl with a kubeconfig: (success, stdout, stderr).
fn kubectl(kubeconfig: &Path, args: &[&str]) -> (bool, String, String) {
    let out = Command::new("kubectl")
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .args(args)
        .env_remove("KUBECONFIG")
        // On a 401 kubectl asks for a user name on its input: it gets none.
        .stdin(Stdio::null())
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The CA data of a kubeconfig `serve` wrote.
fn ca_data(kubeconfig: &Path) -> String {
    let config = kube::config::Kubeconfig::read_from(kubeconfig).unwrap();
    config.clusters[0]
        .cluster
        .as_ref()
        .and_then(|c| c.certificate_authority_data.clone())
        .unwrap()
}

/// A kubeconfig for `url` trusting `ca` (base64 PEM), as `user`.
fn kubeconfig_with(
    dir: &Path,
    name: &str,
    url: &str,
    ca: &str,
    user: kube::config::AuthInfo,
) -> PathBuf {
    let path = dir.join(name);
    let cluster = kubeconfig::server_with_ca(url, ca);
    std::fs::write(&path, kubeconfig::render("c", cluster, "u", user)).unwrap();
    path
}

#[cfg(unix)]
fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[test]
fn tls_by_default_with_an_admin_kubeconfig_and_nobody_else() {
    let dir = tempfile::tempdir().unwrap();
    let tokens = dir.path().join("tokens.csv");
    std::fs::write(&tokens, "t0ken-alice,alice,1001,\"dev,ops\"\n").unwrap();
    // A kubeconfig left world-readable (by an older version, or by hand) does not stay so
    // once it holds the admin's key.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let old = dir.path().join("kubeconfig");
        std::fs::write(&old, "apiVersion: v1\nkind: Config\n").unwrap();
        std::fs::set_permissions(&old, std::fs::Permissions::from_mode(0o644)).unwrap();
        // Nor do a world-readable data directory and database (SQLite takes an empty file
        // as a new database).
        let db = dir.path().join("syncsets.db");
        std::fs::write(&db, "").unwrap();
        std::fs::set_permissions(&db, std::fs::Permissions::from_mode(0o644)).unwrap();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let server = serve(dir.path(), &["--token-auth-file", tokens.to_str().unwrap()]);
    assert!(
        server.url.starts_with("https://127.0.0.1:"),
        "{}",
        server.url
    );
    let admin = dir.path().join("kubeconfig");
    #[cfg(unix)]
    for private in [
        "kubeconfig",
        "pki/ca.key",
        "pki/ca.crt",
        "pki/server.key",
        "pki/server.crt",
        "pki/admin.key",
        "pki/admin.crt",
        "encryption.keys",
        "syncsets.db",
        "syncsets.db-wal",
        "syncsets.db-shm",
    ] {
        assert_eq!(mode(&dir.path().join(private)), 0o600, "{private}");
    }
    #[cfg(unix)]
    for private in ["", "pki"] {
        assert_eq!(mode(&dir.path().join(private)), 0o700, "{private:?}");
    }

    // The written kubeconfig just works.
    let (ok, out, err) = kubectl(&admin, &["get", "ns"]);
    assert!(ok, "{err}");
    assert!(out.contains("default"), "{out}");

    // HTTP/2 and HTTP/1.1, chosen by ALPN as with kube-apiserver: kubectl speaks HTTP/2
    // (client-go multiplexes its watches over one connection), older clients HTTP/1.1.
    let pki = dir.path().join("pki");
    let tls = [
        "--cacert",
        &pki.join("ca.crt").display().to_string(),
        "--cert",
        &pki.join("admin.crt").display().to_string(),
        "--key",
        &pki.join("admin.key").display().to_string(),
    ]
    .map(String::from);
    let version_over = |http: &str, path: &str| {
        let mut flags: Vec<&str> = tls.iter().map(String::as_str).collect();
        flags.push(http);
        curl_version(&format!("{}{path}", server.url), &flags)
    };
    assert_eq!(version_over("--http2", "/api/v1/namespaces"), "2 200");
    assert_eq!(version_over("--http1.1", "/api/v1/namespaces"), "1.1 200");
    assert_eq!(
        version_over("--http2", "/api/v1/namespaces?watch=true&timeoutSeconds=1"),
        "2 200"
    );
    let h1 = Command::new("kubectl")
        .arg("--kubeconfig")
        .arg(&admin)
        .args(["get", "ns", "default"])
        .env_remove("KUBECONFIG")
        .env("DISABLE_HTTP2", "1")
        .output()
        .unwrap();
    assert!(h1.status.success(), "kubectl over HTTP/1.1: {h1:?}");

    // Without credentials: health and version only (curl: kubectl would ask for a user).
    let curl = |path: &str| {
        let out = Command::new("curl")
            .args(["-s", "-w", " %{http_code}", "--cacert"])
            .arg(dir.path().join("pki/ca.crt"))
            .arg(format!("{}{path}", server.url))
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    assert_eq!(curl("/healthz"), "ok 200");
    assert!(curl("/version").ends_with(" 200"));
    for path in [
        "/api",
        "/api/v1/namespaces",
        "/openapi/v2",
        "/v1/clusters",
        "/clusters/x/api",
    ] {
        assert_eq!(
            curl(path),
            r#"{"apiVersion":"v1","code":401,"kind":"Status","message":"Unauthorized","metadata":{},"reason":"Unauthorized","status":"Failure"} 401"#,
            "{path}"
        );
    }
    let ca = ca_data(&admin);

    // Bearer tokens from the token file; an unknown token is refused, not anonymous.
    let alice = kubeconfig_with(
        dir.path(),
        "alice",
        &server.url,
        &ca,
        kubeconfig::token_user("t0ken-alice"),
    );
    // Authenticated (discovery is open to every authenticated user), but not authorized.
    let (ok, _, err) = kubectl(&alice, &["get", "--raw", "/api"]);
    assert!(ok, "{err}");
    let (ok, _, err) = kubectl(&alice, &["get", "ns"]);
    assert!(
        !ok && err.contains(r#"User "alice" cannot list resource "namespaces""#),
        "{err}"
    );
    let wrong = kubeconfig_with(
        dir.path(),
        "wrong",
        &server.url,
        &ca,
        kubeconfig::token_user("guessed"),
    );
    let (ok, _, err) = kubectl(&wrong, &["get", "--raw", "/healthz"]);
    assert!(!ok && err.contains("Unauthorized"), "{err}");

    // A client certificate from another CA is refused at the handshake.
    let foreign = dir.path().join("foreign");
    std::fs::create_dir(&foreign).unwrap();
    let openssl = |args: &[&str]| {
        let out = Command::new("openssl")
            .current_dir(&foreign)
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    openssl(&[
        "req",
        "-x509",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
        "-keyout",
        "key.pem",
        "-out",
        "cert.pem",
        "-days",
        "1",
        "-subj",
        "/CN=syncsets-admin/O=system:masters",
    ]);
    let b64 = |f: &str| {
        base64::engine::general_purpose::STANDARD.encode(std::fs::read(foreign.join(f)).unwrap())
    };
    let impostor = kubeconfig_with(
        dir.path(),
        "impostor",
        &server.url,
        &ca,
        kubeconfig::certificate_user(&b64("cert.pem"), &b64("key.pem")),
    );
    // Refused by the server at the handshake, not by a later 401/403/500: the server's alert
    // (certificate_unknown, 46), as openssl reads it when it sends nothing itself. kubectl,
    // which writes its request before TLS 1.3 lets the server judge its certificate, sees
    // the alert or the closed connection, depending on which it reads first.
    let handshake = Command::new("openssl")
        .current_dir(&foreign)
        .args([
            "s_client", "-ign_eof", "-cert", "cert.pem", "-key", "key.pem", "-CAfile",
        ])
        .arg(dir.path().join("pki/ca.crt"))
        .arg("-connect")
        .arg(server.url.trim_start_matches("https://"))
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&handshake.stderr);
    assert!(
        !handshake.status.success() && said.contains("alert certificate unknown"),
        "a foreign certificate is refused with an alert: {said}"
    );
    let (ok, _, err) = kubectl(&impostor, &["get", "ns"]);
    assert!(
        !ok && ["Unauthorized", "Forbidden", "InternalError", "(NotFound)"]
            .iter()
            .all(|answer| !err.contains(answer)),
        "a foreign certificate is refused before any HTTP answer: {err}"
    );

    // The server's certificate is checked by clients: one that trusts another CA fails.
    let other_ca = b64("cert.pem");
    let mistrusting = kubeconfig_with(
        dir.path(),
        "mistrusting",
        &server.url,
        &other_ca,
        kubeconfig::token_user("t0ken-alice"),
    );
    let (ok, _, err) = kubectl(&mistrusting, &["get", "--raw", "/healthz"]);
    assert!(!ok && err.contains("certificate"), "{err}");

    // The status command speaks TLS with the kubeconfig too.
    let out = Command::new(env!("CARGO_BIN_EXE_syncsets"))
        .args(["status", "--kubeconfig"])
        .arg(&admin)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("No SyncSets or SelectorSyncSets yet."));
}

#[test]
fn certificates_survive_restarts_and_plain_http_stays_on_loopback() {
    let dir = tempfile::tempdir().unwrap();
    let first = serve(dir.path(), &[]);
    let ca = std::fs::read(dir.path().join("pki/ca.crt")).unwrap();
    let server_cert = std::fs::read(dir.path().join("pki/server.crt")).unwrap();
    drop(first);
    let second = serve(dir.path(), &[]);
    assert_eq!(
        std::fs::read(dir.path().join("pki/ca.crt")).unwrap(),
        ca,
        "the CA is kept"
    );
    assert_eq!(
        std::fs::read(dir.path().join("pki/server.crt")).unwrap(),
        server_cert
    );
    assert!(kubectl(&dir.path().join("kubeconfig"), &["get", "ns"]).0);
    drop(second);

    let out = Command::new(env!("CARGO_BIN_EXE_syncsets"))
        .args([
            "serve",
            "--insecure-http",
            "--listen",
            "0.0.0.0:0",
            "--data-dir",
        ])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("only loopback addresses are allowed"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let plain = serve(dir.path(), &["--insecure-http"]);
    assert!(plain.url.starts_with("http://127.0.0.1:"), "{}", plain.url);
    // HTTP/1.1, or HTTP/2 for a client that opens with its preface (prior knowledge).
    let version_over =
        |flags: &[&str]| curl_version(&format!("{}/api/v1/namespaces", plain.url), flags);
    assert_eq!(version_over(&[]), "1.1 200");
    assert_eq!(version_over(&["--http2-prior-knowledge"]), "2 200");
}

/// Binds `user` to the `edit` role in `namespace`.
fn editor_of(namespace: &str, admin: &Path, user: &str) {
    let binding = format!("{user}-edit");
    let user = format!("--user={user}");
    ok(
        admin,
        &[
            "-n",
            namespace,
            "create",
            "rolebinding",
            &binding,
            "--clusterrole=edit",
            &user,
        ],
    );
}

/// kubectl with a kubeconfig, expecting success; returns stdout.
fn ok(kubeconfig: &Path, args: &[&str]) -> String {
    let (ok, out, err) = kubectl(kubeconfig, args);
    assert!(ok, "kubectl {args:?}: {err}");
    out
}

/// kubectl with a kubeconfig, expecting a refusal; returns stderr.
fn refused(kubeconfig: &Path, args: &[&str]) -> String {
    let (ok, out, err) = kubectl(kubeconfig, args);
    assert!(!ok, "kubectl {args:?} should fail: {out}");
    err
}

#[test]
fn rbac_confines_a_user_to_what_it_was_granted() {
    let dir = tempfile::tempdir().unwrap();
    let tokens = dir.path().join("tokens.csv");
    std::fs::write(&tokens, "t-alice,alice,1\nt-bob,bob,2\n").unwrap();
    let server = serve(dir.path(), &["--token-auth-file", tokens.to_str().unwrap()]);
    let admin = dir.path().join("kubeconfig");
    let ca = ca_data(&admin);
    let alice = kubeconfig_with(
        dir.path(),
        "alice",
        &server.url,
        &ca,
        kubeconfig::token_user("t-alice"),
    );
    let bob = kubeconfig_with(
        dir.path(),
        "bob",
        &server.url,
        &ca,
        kubeconfig::token_user("t-bob"),
    );
    for ns in ["team-a", "team-b"] {
        ok(&admin, &["create", "namespace", ns]);
        ok(
            &admin,
            &[
                "-n",
                ns,
                "create",
                "configmap",
                "settings",
                "--from-literal=k=v",
            ],
        );
        ok(
            &admin,
            &[
                "-n",
                ns,
                "create",
                "secret",
                "generic",
                "creds",
                "--from-literal=password=hunter2",
            ],
        );
    }
    editor_of("team-a", &admin, "alice");
    // The default roles are there, as in Kubernetes.
    let roles = ok(&admin, &["get", "clusterroles"]);
    for role in ["cluster-admin", "admin", "edit", "view", "system:discovery"] {
        assert!(roles.contains(role), "{roles}");
    }

    // In team-a, what edit grants.
    assert!(ok(&alice, &["-n", "team-a", "get", "cm"]).contains("settings"));
    assert!(
        ok(
            &alice,
            &["-n", "team-a", "get", "secret", "creds", "-o", "name"]
        )
        .contains("creds")
    );
    ok(
        &alice,
        &[
            "-n",
            "team-a",
            "create",
            "configmap",
            "mine",
            "--from-literal=a=b",
        ],
    );
    // In team-b nothing: not read, not listed, not watched, no Secret.
    let err = refused(&alice, &["-n", "team-b", "get", "cm", "settings"]);
    assert!(
        err.contains(r#"configmaps "settings" is forbidden: User "alice" cannot get resource "configmaps" in API group "" in the namespace "team-b""#),
        "{err}"
    );
    assert!(refused(&alice, &["-n", "team-b", "get", "cm"]).contains("Forbidden"));
    assert!(
        refused(
            &alice,
            &[
                "-n",
                "team-b",
                "get",
                "cm",
                "--watch",
                "--request-timeout=5s"
            ]
        )
        .contains("forbidden")
    );
    assert!(refused(&alice, &["-n", "team-b", "get", "secret", "creds"]).contains("forbidden"));
    assert!(refused(&alice, &["get", "cm", "-A"]).contains("at the cluster scope"));
    assert!(
        refused(
            &alice,
            &["get", "--raw", "/api/v1/watch/namespaces/team-b/configmaps"]
        )
        .contains("Forbidden")
    );
    // Nor anything for bob, who has no binding.
    assert!(refused(&bob, &["-n", "team-a", "get", "cm"]).contains("forbidden"));

    // Paths and queries read one way by authorization and another by routing: an empty
    // segment (`/apis//v1/…` once reached core Secrets as a discovery path), encoded
    // segments, a repeated fieldSelector (authorized as one name, served as all).
    let data = dir.path();
    let secret_b64 = base64::engine::general_purpose::STANDARD.encode("hunter2");
    for path in [
        "/apis//v1/secrets",
        "/apis//v1/secrets?watch=1&timeoutSeconds=1",
        "/api//v1/namespaces/team-a/secrets",
        "/api/v1/%6Eamespaces/team-a/secrets",
        "/api/v1/namespaces/team-a/%73ecrets",
    ] {
        let (code, body) = curl(&server, data, "t-bob", &[], path);
        assert!(matches!(code, 403 | 404), "{path}: {code} {body}");
        assert!(!body.contains(&secret_b64), "{path}: {body}");
    }
    ok(
        &admin,
        &[
            "-n",
            "team-a",
            "create",
            "role",
            "one-cm",
            "--verb=get,list",
            "--resource=configmaps",
            "--resource-name=mine",
        ],
    );
    ok(
        &admin,
        &[
            "-n",
            "team-a",
            "create",
            "rolebinding",
            "bob-one",
            "--role=one-cm",
            "--user=bob",
        ],
    );
    let one = "/api/v1/namespaces/team-a/configmaps?fieldSelector=metadata.name%3Dmine";
    let (code, body) = curl(&server, data, "t-bob", &[], one);
    assert_eq!(code, 200, "{body}");
    let (code, body) = curl(
        &server,
        data,
        "t-bob",
        &[],
        &format!("{one}&fieldSelector="),
    );
    // The first value counts, for authorization and for the list alike: only "mine".
    assert_eq!(code, 200, "{body}");
    assert!(
        body.contains(r#""name":"mine""#) && !body.contains(r#""name":"settings""#),
        "{body}"
    );
    let (code, _) = curl(
        &server,
        data,
        "t-bob",
        &[],
        "/api/v1/namespaces/team-a/configmaps?fieldSelector=&fieldSelector=metadata.name%3Dmine",
    );
    assert_eq!(code, 403, "the first value counts");

    // Writing ClusterRoles is not enough to write an aggregating one (it would take
    // cluster-admin's rules): that needs full authority, as in Kubernetes.
    ok(
        &admin,
        &[
            "create",
            "clusterrole",
            "role-writer",
            "--verb=create,get",
            "--resource=clusterroles",
        ],
    );
    ok(
        &admin,
        &[
            "create",
            "clusterrolebinding",
            "bob-writes-roles",
            "--clusterrole=role-writer",
            "--user=bob",
        ],
    );
    let plain = dir.path().join("plain-role.yaml");
    std::fs::write(&plain, "apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRole\nmetadata: {name: plain}\nrules: []\n").unwrap();
    ok(&bob, &["create", "-f", plain.to_str().unwrap()]);
    let aggregating = dir.path().join("aggregating-role.yaml");
    std::fs::write(&aggregating, "apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRole\nmetadata: {name: sneaky}\naggregationRule:\n  clusterRoleSelectors:\n  - matchLabels: {kubernetes.io/bootstrapping: rbac-defaults}\nrules: []\n").unwrap();
    let err = refused(&bob, &["create", "-f", aggregating.to_str().unwrap()]);
    assert!(err.contains("not currently held"), "{err}");

    // kubectl auth can-i asks the server (SelfSubjectAccessReview).
    assert_eq!(
        ok(
            &alice,
            &["auth", "can-i", "list", "configmaps", "-n", "team-a"]
        ),
        "yes\n"
    );
    let (allowed, out, _) = kubectl(&alice, &["auth", "can-i", "get", "secrets", "-n", "team-b"]);
    assert!(!allowed && out.starts_with("no"), "{out}");
    assert_eq!(
        ok(&admin, &["auth", "can-i", "delete", "namespaces"]),
        "yes\n"
    );
    let list = ok(&alice, &["auth", "can-i", "--list", "-n", "team-a"]);
    assert!(
        list.contains("configmaps") && list.contains("secrets"),
        "{list}"
    );

    // No escalation: an admin of team-b may grant view there, not cluster-admin.
    ok(
        &admin,
        &[
            "-n",
            "team-b",
            "create",
            "rolebinding",
            "alice-admin",
            "--clusterrole=admin",
            "--user=alice",
        ],
    );
    ok(
        &alice,
        &[
            "-n",
            "team-b",
            "create",
            "rolebinding",
            "bob-view",
            "--clusterrole=view",
            "--user=bob",
        ],
    );
    assert!(ok(&bob, &["-n", "team-b", "get", "cm"]).contains("settings"));
    assert!(
        refused(&bob, &["-n", "team-b", "get", "secrets"]).contains("forbidden"),
        "view has no Secrets"
    );
    let err = refused(
        &alice,
        &[
            "-n",
            "team-b",
            "create",
            "rolebinding",
            "bob-root",
            "--clusterrole=cluster-admin",
            "--user=bob",
        ],
    );
    assert!(
        err.contains("is attempting to grant RBAC permissions not currently held"),
        "{err}"
    );
    let err = refused(
        &alice,
        &[
            "-n",
            "team-b",
            "create",
            "role",
            "wide",
            "--verb=*",
            "--resource=*",
        ],
    );
    assert!(
        err.contains("is attempting to grant RBAC permissions not currently held"),
        "{err}"
    );
    // A refused write stores nothing.
    assert!(
        refused(&admin, &["-n", "team-b", "get", "rolebinding", "bob-root"]).contains("NotFound")
    );
}

/// curl against `server` as `who` (a bearer token, or `admin` for the admin certificate):
/// (HTTP status, response headers and body).
fn curl(server: &Serve, data: &Path, who: &str, args: &[&str], path: &str) -> (u16, String) {
    let pki = data.join("pki");
    let mut cmd = Command::new("curl");
    cmd.args(["-s", "-i", "-w", "\n%{http_code}", "--cacert"])
        .arg(pki.join("ca.crt"));
    if who == "admin" {
        cmd.arg("--cert")
            .arg(pki.join("admin.crt"))
            .arg("--key")
            .arg(pki.join("admin.key"));
    } else {
        cmd.args(["-H", &format!("Authorization: Bearer {who}")]);
    }
    let out = cmd
        .args(args)
        .arg(format!("{}{path}", server.url))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap();
    (code.trim().parse().unwrap_or(0), body.to_string())
}

#[test]
fn limits_keep_one_client_from_starving_the_others() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path();
    let tokens = data.join("tokens.csv");
    std::fs::write(&tokens, "t-bob,bob,1\nt-carol,carol,2\n").unwrap();
    let server = serve(
        data,
        &[
            "--token-auth-file",
            tokens.to_str().unwrap(),
            "--client-qps",
            "1",
            "--client-burst",
            "3",
            "--max-watches-per-client",
            "2",
        ],
    );
    let admin = data.join("kubeconfig");

    // Rate: a burst of 3, then 429 with Retry-After; other clients are not affected.
    for _ in 0..3 {
        assert_eq!(curl(&server, data, "t-bob", &[], "/api").0, 200);
    }
    let (code, throttled) = curl(&server, data, "t-bob", &[], "/api");
    assert_eq!(code, 429, "{throttled}");
    assert!(
        throttled.to_lowercase().contains("retry-after: 1\r\n"),
        "{throttled}"
    );
    assert!(
        throttled.contains(r#""reason":"TooManyRequests""#)
            && throttled.contains(r#""retryAfterSeconds":1"#),
        "{throttled}"
    );
    assert_eq!(curl(&server, data, "t-carol", &[], "/api").0, 200);
    // kubectl waits as Retry-After asks, and gets its answer.
    let ca = ca_data(&admin);
    let bob = kubeconfig_with(
        data,
        "bob",
        &server.url,
        &ca,
        kubeconfig::token_user("t-bob"),
    );
    assert!(ok(&bob, &["get", "--raw", "/api"]).contains("APIVersions"));
    // system:masters is exempt, as API Priority and Fairness exempts it.
    for _ in 0..20 {
        assert_eq!(curl(&server, data, "admin", &[], "/api").0, 200);
    }

    // Watches: at most 2 open per client. Two are open once each has seen an event.
    let watch = || {
        let pki = data.join("pki");
        let mut child = Command::new("curl")
            .args(["-s", "-N", "--cacert"])
            .arg(pki.join("ca.crt"))
            .arg("--cert")
            .arg(pki.join("admin.crt"))
            .arg("--key")
            .arg(pki.join("admin.key"))
            .arg(format!(
                "{}/api/v1/namespaces/default/configmaps?watch=true&timeoutSeconds=120",
                server.url
            ))
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let events = BufReader::new(child.stdout.take().unwrap());
        (child, events)
    };
    let (mut first, mut first_events) = watch();
    let (mut second, mut second_events) = watch();
    let cm = r#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"ping"}}"#;
    let args = [
        "-X",
        "POST",
        "-H",
        "Content-Type: application/json",
        "-d",
        cm,
    ];
    let path = "/api/v1/namespaces/default/configmaps";
    assert_eq!(curl(&server, data, "admin", &args, path).0, 201);
    for events in [&mut first_events, &mut second_events] {
        let mut line = String::new();
        events.read_line(&mut line).unwrap();
        assert!(line.contains(r#""type":"ADDED""#), "{line}");
    }
    let third = "/api/v1/namespaces/default/configmaps?watch=true&timeoutSeconds=1";
    let (code, refused) = curl(&server, data, "admin", &[], third);
    assert_eq!(code, 429, "{refused}");
    assert!(refused.contains("Too many watches"), "{refused}");
    // Another client's watches are counted apart (and its grants decide the rest).
    assert_eq!(curl(&server, data, "t-carol", &[], third).0, 403);
    // A closed watch gives its slot back.
    first.kill().unwrap();
    first.wait().unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let (code, body) = curl(&server, data, "admin", &[], third);
        if code == 200 {
            break;
        }
        assert_eq!(code, 429, "{body}");
        assert!(
            std::time::Instant::now() < deadline,
            "the closed watch's slot never came back"
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    second.kill().unwrap();
    second.wait().unwrap();
}

#[test]
fn a_request_past_its_deadline_gets_504_and_still_completes() {
    use std::io::Write as _;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path();
    let server = serve(data, &["--request-timeout", "2s"]);
    // Another process holds SQLite's write lock, so writes wait.
    let mut lock = Command::new("sqlite3")
        .arg(data.join("syncsets.db"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut sql = lock.stdin.take().unwrap();
    sql.write_all(b"BEGIN IMMEDIATE;\nSELECT 'locked';\n")
        .unwrap();
    let mut line = String::new();
    BufReader::new(lock.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert_eq!(line.trim(), "locked");

    let post = |name: &str, query: &str| {
        let body =
            format!(r#"{{"apiVersion":"v1","kind":"ConfigMap","metadata":{{"name":"{name}"}}}}"#);
        let path = format!("/api/v1/namespaces/default/configmaps{query}");
        let args = [
            "-X",
            "POST",
            "-H",
            "Content-Type: application/json",
            "-d",
            &body,
        ];
        curl(&server, data, "admin", &args, &path)
    };
    // The client's own ?timeout= (kubectl --request-timeout sends it), then the server's.
    for (name, query) in [("asked", "?timeout=1s"), ("server", "")] {
        let (code, body) = post(name, query);
        assert_eq!(code, 504, "{body}");
        assert!(
            body.contains(r#""reason":"Timeout""#)
                && body.contains("request did not complete within the allotted timeout"),
            "{body}"
        );
    }
    // Reads go on meanwhile.
    assert_eq!(
        curl(&server, data, "admin", &[], "/api/v1/namespaces").0,
        200
    );
    sql.write_all(b"COMMIT;\n").unwrap();
    drop(sql);
    lock.wait().unwrap();
    // The handlers ran to completion: a 504 did not cut the writes in half.
    let admin = data.join("kubeconfig");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let (done, names, _) = kubectl(&admin, &["get", "cm", "-o", "name"]);
        if done && names.contains("configmap/asked") && names.contains("configmap/server") {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "writes lost: {names}");
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
}

/// Whether `needle` occurs in any file under `dir`.
fn found_in(dir: &Path, needle: &[u8]) -> Vec<PathBuf> {
    let mut hits = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            hits.extend(found_in(&path, needle));
        } else if std::fs::read(&path)
            .unwrap()
            .windows(needle.len())
            .any(|w| w == needle)
        {
            hits.push(path);
        }
    }
    hits
}

/// Key ids of the sealed values in the SQLite file (objects, then the outbox).
fn sealed_key_ids(db: &Path) -> String {
    let out = Command::new("sqlite3")
        .arg(db)
        .arg(
            "SELECT 'objects', group_concat(DISTINCT CAST(substr(sealed, 3, 2) AS TEXT)) FROM objects WHERE sealed IS NOT NULL; \
             SELECT 'events', group_concat(DISTINCT CAST(substr(sealed, 3, 2) AS TEXT)) FROM events WHERE sealed IS NOT NULL;",
        )
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .replace('\n', " ")
}

#[test]
fn secrets_stay_sealed_at_rest_and_keys_rotate_while_serving() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let log = dir.path().join("serve.log");
    let tokens = dir.path().join("tokens.csv");
    let token = "t0ken-n3ver-in-logs";
    std::fs::write(&tokens, format!("{token},robot,9,system:masters\n")).unwrap();
    let mut server = serve_logging(
        &data,
        &["--token-auth-file", tokens.to_str().unwrap()],
        Some(&log),
    );
    let admin = data.join("kubeconfig");
    let robot = kubeconfig_with(
        dir.path(),
        "robot",
        &server.url,
        &ca_data(&admin),
        kubeconfig::token_user(token),
    );
    let plaintext = "pl41ntext-kubeconfig-credential";
    ok(
        &robot,
        &[
            "create",
            "secret",
            "generic",
            "kubeconfig",
            &format!("--from-literal=kubeconfig={plaintext}"),
        ],
    );
    ok(&robot, &["label", "secret", "kubeconfig", "rotated=no"]);
    let read = |who: &Path| {
        ok(
            who,
            &[
                "get",
                "secret",
                "kubeconfig",
                "-o",
                "jsonpath={.data.kubeconfig}",
            ],
        )
    };
    // The search below does see what is stored in the clear.
    ok(
        &robot,
        &[
            "create",
            "configmap",
            "visible",
            "--from-literal=v=cl34r-marker",
        ],
    );
    let encoded = base64::engine::general_purpose::STANDARD.encode(plaintext);
    assert_eq!(read(&admin), encoded);
    let db = data.join("syncsets.db");
    assert_eq!(sealed_key_ids(&db), "objects|k1 events|k1");

    // Rotate while the server runs, and drop the old key.
    let out = Command::new(env!("CARGO_BIN_EXE_syncsets"))
        .args(["rotate-keys", "--drop-old", "--data-dir"])
        .arg(&data)
        .env("SYNCSETS_LOG", "warn")
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{said}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(said.contains("new key k2"), "{said}");
    assert!(said.contains("dropped keys k1"), "{said}");
    assert_eq!(sealed_key_ids(&db), "objects|k2 events|k2");
    let keys = std::fs::read_to_string(data.join("encryption.keys")).unwrap();
    assert_eq!(keys.lines().count(), 1);
    assert!(keys.starts_with("k2 "));
    #[cfg(unix)]
    assert_eq!(mode(&data.join("encryption.keys")), 0o600);

    // The running server reads and writes with the new key, and so does a restarted one.
    assert_eq!(read(&admin), encoded);
    ok(
        &robot,
        &[
            "label",
            "--overwrite",
            "secret",
            "kubeconfig",
            "rotated=yes",
        ],
    );
    assert_eq!(sealed_key_ids(&db), "objects|k2 events|k2");
    drop(server);
    server = serve_logging(
        &data,
        &["--token-auth-file", tokens.to_str().unwrap()],
        None,
    );
    let admin_now = data.join("kubeconfig");
    assert_eq!(read(&admin_now), encoded);
    drop(server);

    // Nothing at rest holds the plaintext, nor its base64: not the database file, its WAL
    // (the objects and the outbox), nor anything else in the data directory. The debug log
    // holds neither the Secret nor the bearer token.
    for needle in [plaintext, encoded.as_str(), token] {
        assert_eq!(
            found_in(&data, needle.as_bytes()),
            Vec::<PathBuf>::new(),
            "{needle}"
        );
    }
    assert!(!found_in(&data, b"cl34r-marker").is_empty());
    let logged = std::fs::read_to_string(&log).unwrap();
    assert!(logged.contains("DEBUG"), "the log is at debug level");
    for needle in [plaintext, encoded.as_str(), token] {
        assert!(!logged.contains(needle), "{needle} in the log");
    }
}

/// `kubectl apply -f` of a manifest (written to `dir/name`), expecting success.
fn apply(kubeconfig: &Path, dir: &Path, name: &str, yaml: &str) {
    let path = dir.join(name);
    std::fs::write(&path, yaml).unwrap();
    ok(kubeconfig, &["apply", "-f", path.to_str().unwrap()]);
}

/// Registers the hub as one of its own clusters, `hub/local-cluster` (labelled
/// `env=hub`), with the admin's kubeconfig, as Hive's "local-cluster" is.
fn register_the_hub(admin: &Path, dir: &Path) {
    let registration = dir.join("local.json");
    std::fs::write(
        &registration,
        serde_json::json!({"name": "local-cluster", "namespace": "hub",
                           "kubeconfig": std::fs::read_to_string(admin).unwrap(),
                           "labels": {"env": "hub"}})
        .to_string(),
    )
    .unwrap();
    ok(
        admin,
        &[
            "create",
            "--raw",
            "/v1/clusters",
            "-f",
            registration.to_str().unwrap(),
        ],
    );
}

/// Polls `f` until it returns `Some`, for at most `secs` seconds.
fn eventually<T>(secs: u64, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(secs);
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(std::time::Instant::now() < deadline, "timed out: {what}");
        std::thread::sleep(std::time::Duration::from_millis(250));
    }
}

/// The security review's attack, end to end: the hub registered as one of its own clusters
/// (as "local-cluster" is in Hive), and a user with only `edit` in one namespace who writes
/// a kubeconfig holding the hub admin's (public) client certificate with a key of their
/// own, and a SyncSet that would make them cluster-admin. The controllers must never use
/// the admin's TLS identity for it: the set fails, saying why, and nothing is applied.
#[test]
fn a_namespace_editor_never_acts_with_another_clusters_credentials() {
    let dir = tempfile::tempdir().unwrap();
    let tokens = dir.path().join("tokens.csv");
    std::fs::write(&tokens, "t-mallory,mallory,2\n").unwrap();
    let server = start(
        dir.path(),
        &["--token-auth-file", tokens.to_str().unwrap()],
        None,
        true,
    );
    let admin = dir.path().join("kubeconfig");
    let admin_text = std::fs::read_to_string(&admin).unwrap();
    let ca = ca_data(&admin);
    let mallory = kubeconfig_with(
        dir.path(),
        "mallory",
        &server.url,
        &ca,
        kubeconfig::token_user("t-mallory"),
    );

    // The hub manages itself, and an admin set proves its client is up (and cached).
    register_the_hub(&admin, dir.path());
    apply(
        &admin,
        dir.path(),
        "baseline.yaml",
        "apiVersion: hive.openshift.io/v1\nkind: SelectorSyncSet\nmetadata:\n  name: hub-baseline\nspec:\n  clusterDeploymentSelector:\n    matchLabels:\n      env: hub\n  resources:\n  - apiVersion: v1\n    kind: ConfigMap\n    metadata:\n      name: hub-marker\n      namespace: default\n    data:\n      applied: \"yes\"\n",
    );
    eventually(60, "the admin set applied to the hub", || {
        kubectl(&admin, &["-n", "default", "get", "cm", "hub-marker"])
            .0
            .then_some(())
    });

    ok(&admin, &["create", "namespace", "team-a"]);
    editor_of("team-a", &admin, "mallory");

    // The admin's certificate (public) with a key of mallory's own.
    let cert = admin_text
        .lines()
        .find_map(|l| l.trim().strip_prefix("client-certificate-data: "))
        .unwrap()
        .to_string();
    let key = Command::new("openssl")
        .args([
            "genpkey",
            "-algorithm",
            "EC",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
        ])
        .output()
        .unwrap();
    assert!(key.status.success());
    let key = base64::engine::general_purpose::STANDARD.encode(&key.stdout);
    let forged = kubeconfig_with(
        dir.path(),
        "forged",
        &server.url,
        &ca,
        kubeconfig::certificate_user(&cert, &key),
    );
    ok(
        &mallory,
        &[
            "-n",
            "team-a",
            "create",
            "secret",
            "generic",
            "mine-kubeconfig",
            &format!("--from-file=kubeconfig={}", forged.display()),
        ],
    );
    apply(
        &mallory,
        dir.path(),
        "attack.yaml",
        "apiVersion: hive.openshift.io/v1\nkind: ClusterDeployment\nmetadata:\n  name: mine\n  namespace: team-a\nspec:\n  baseDomain: example.com\n  clusterName: mine\n  installed: true\n  platform: {}\n  clusterMetadata:\n    clusterID: mine\n    infraID: mine\n    adminKubeconfigSecretRef:\n      name: mine-kubeconfig\n---\napiVersion: hive.openshift.io/v1\nkind: SyncSet\nmetadata:\n  name: escalate\n  namespace: team-a\nspec:\n  clusterDeploymentRefs:\n  - name: mine\n  resources:\n  - apiVersion: rbac.authorization.k8s.io/v1\n    kind: ClusterRoleBinding\n    metadata:\n      name: mallory-is-admin\n    roleRef:\n      apiGroup: rbac.authorization.k8s.io\n      kind: ClusterRole\n      name: cluster-admin\n    subjects:\n    - apiGroup: rbac.authorization.k8s.io\n      kind: User\n      name: mallory\n",
    );

    // The set fails, and says why.
    let failure = eventually(90, "the hijacking SyncSet's result", || {
        let (found, out, _) = kubectl(
            &admin,
            &[
                "-n",
                "team-a",
                "get",
                "csync",
                "mine",
                "-o",
                "jsonpath={.status.syncSets[?(@.name==\"escalate\")].result} {.status.syncSets[?(@.name==\"escalate\")].failureMessage}",
            ],
        );
        (found && !out.trim().is_empty()).then_some(out)
    });
    assert_eq!(
        failure,
        "Failure the kubeconfig's client-key-data does not belong to its client-certificate-data"
    );
    // Nothing was applied, and mallory is still only an editor of team-a.
    let err = refused(&admin, &["get", "clusterrolebinding", "mallory-is-admin"]);
    assert!(err.contains("NotFound"), "{err}");
    let err = refused(&mallory, &["get", "secrets", "-A"]);
    assert!(
        err.contains(r#"User "mallory" cannot list resource "secrets""#),
        "{err}"
    );
    // The hub's own cluster is still synced with its own credentials.
    let (_, out, _) = kubectl(
        &admin,
        &[
            "-n",
            "hub",
            "get",
            "csync",
            "local-cluster",
            "-o",
            "jsonpath={.status.selectorSyncSets[*].result}",
        ],
    );
    assert_eq!(out, "Success");
}

/// Logs: `--log-format text` (no colour codes in a file) or `json` (one object a line),
/// and one line per API request (target `syncsets_api::request`) saying who asked what and
/// the answer — never the credential.
#[test]
fn logs_have_a_line_per_request_as_text_or_json_and_no_colours_in_files() {
    for format in ["text", "json"] {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let log = dir.path().join("serve.log");
        let tokens = dir.path().join("tokens.csv");
        let token = "t0ken-0f-al1ce";
        std::fs::write(&tokens, format!("{token},alice,7,system:masters\n")).unwrap();
        let server = serve_logging(
            &data,
            &[
                "--token-auth-file",
                tokens.to_str().unwrap(),
                "--log-format",
                format,
            ],
            Some(&log),
        );
        let listed = Command::new("curl")
            .args(["-s", "-o", "/dev/null", "-w", "%{http_code}", "--cacert"])
            .arg(data.join("pki/ca.crt"))
            .args(["-H", &format!("Authorization: Bearer {token}")])
            .arg(format!(
                "{}/api/v1/namespaces/default/configmaps",
                server.url
            ))
            .output()
            .unwrap();
        assert_eq!(String::from_utf8_lossy(&listed.stdout), "200");
        let line = eventually(10, "the request's log line", || {
            let logged = std::fs::read_to_string(&log).unwrap();
            logged
                .lines()
                .find(|l| l.contains("syncsets_api::request") && l.contains("alice"))
                .map(str::to_string)
        });
        let logged = std::fs::read_to_string(&log).unwrap();
        assert!(!logged.contains(token), "{format}: the token is in the log");
        assert!(
            !logged.contains('\u{1b}'),
            "{format}: colour codes in a file"
        );
        match format {
            "json" => {
                for l in logged.lines() {
                    serde_json::from_str::<serde_json::Value>(l)
                        .unwrap_or_else(|e| panic!("not JSON ({e}): {l}"));
                }
                let v: serde_json::Value = serde_json::from_str(&line).unwrap();
                let f = &v["fields"];
                assert_eq!(v["target"], "syncsets_api::request", "{line}");
                assert_eq!(
                    (
                        &f["user"],
                        &f["verb"],
                        &f["resource"],
                        &f["namespace"],
                        &f["code"]
                    ),
                    (
                        &serde_json::json!("alice"),
                        &serde_json::json!("list"),
                        &serde_json::json!("configmaps"),
                        &serde_json::json!("default"),
                        &serde_json::json!(200)
                    ),
                    "{line}"
                );
                assert!(f["latency_ms"].is_number(), "{line}");
                // curl negotiates HTTP/2 over TLS.
                assert_eq!(f["protocol"], "HTTP/2.0", "{line}");
            }
            _ => {
                for field in [
                    "user=\"alice\"",
                    "verb=list",
                    "resource=configmaps",
                    "namespace=default",
                    "code=200",
                    "protocol=HTTP/2.0",
                ] {
                    assert!(line.contains(field), "{field} in {line}");
                }
            }
        }
    }
}

/// A client that completes the TLS handshake and then sends nothing is closed after the
/// header timeout (it held its connection forever before).
#[test]
fn a_silent_client_after_the_tls_handshake_is_closed() {
    let dir = tempfile::tempdir().unwrap();
    let server = serve(dir.path(), &["--header-timeout", "2s"]);
    let authority = server.url.trim_start_matches("https://").to_string();
    // HTTP/1.1 (no ALPN) and HTTP/2 (ALPN h2, where the server waits for the preface).
    for alpn in ["http/1.1", "h2"] {
        let mut client = Command::new("openssl")
            .args(["s_client", "-quiet", "-alpn", alpn, "-connect", &authority])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        eventually(
            10,
            &format!("the server to close a silent {alpn} client"),
            || client.try_wait().unwrap(),
        );
    }
    // Silent before the handshake too: closed after the header timeout (the handshake had
    // a fixed 10 s of its own before).
    let silent = std::time::Instant::now();
    assert!(
        closed_within(&authority, 6),
        "a client that never says hello"
    );
    assert!(silent.elapsed() >= std::time::Duration::from_secs(1));

    // A connection holds its place at the gate from its first moment, handshake included:
    // with two per address, two silent clients leave no room for a third, which is closed
    // at once; once they are gone, clients are served again.
    let dir = tempfile::tempdir().unwrap();
    let server = serve(
        dir.path(),
        &[
            "--header-timeout",
            "30s",
            "--max-connections-per-address",
            "2",
        ],
    );
    let authority = server.url.trim_start_matches("https://").to_string();
    let holders: Vec<std::net::TcpStream> = (0..2)
        .map(|_| std::net::TcpStream::connect(&authority).unwrap())
        .collect();
    std::thread::sleep(std::time::Duration::from_millis(300));
    assert!(
        closed_within(&authority, 2),
        "a third connection while two handshake"
    );
    drop(holders);
    let pki = dir.path().join("pki");
    let served = eventually(10, "a client served once the silent ones left", || {
        let answer = curl_version(
            &format!("{}/version", server.url),
            &["--cacert", pki.join("ca.crt").to_str().unwrap()],
        );
        answer.ends_with(" 200").then_some(answer)
    });
    assert!(served.ends_with(" 200"));
}

/// Whether a TCP connection to `authority` that sends nothing is closed by the server
/// within `seconds`.
fn closed_within(authority: &str, seconds: u64) -> bool {
    use std::io::Read as _;
    let mut stream = std::net::TcpStream::connect(authority).unwrap();
    stream
        .set_read_timeout(Some(std::time::Duration::from_secs(seconds)))
        .unwrap();
    match stream.read(&mut [0u8; 64]) {
        Ok(0) => true,
        Ok(_) => false,
        Err(e) => e.kind() == std::io::ErrorKind::ConnectionReset,
    }
}

/// `/metrics`: Prometheus' text format with kube-apiserver's request metrics, read with
/// `get` on the non-resource URL (the `system:monitoring` group, as in Kubernetes; and
/// cluster-admin), refused to everyone else; promtool's checks pass; a watch is counted as
/// long-running while it streams.
#[test]
fn metrics_are_served_to_monitoring_and_nobody_else() {
    let dir = tempfile::tempdir().unwrap();
    let tokens = dir.path().join("tokens.csv");
    std::fs::write(
        &tokens,
        "t0ken-pr0m,prometheus,10,system:monitoring\nt0ken-b0b,bob,11\n",
    )
    .unwrap();
    let server = serve(dir.path(), &["--token-auth-file", tokens.to_str().unwrap()]);
    let ca = dir.path().join("pki/ca.crt");
    let scrape = |token: Option<&str>| {
        let mut curl = Command::new("curl");
        curl.args(["-s", "-w", "\n%{http_code}", "--cacert"])
            .arg(&ca);
        if let Some(token) = token {
            curl.args(["-H", &format!("Authorization: Bearer {token}")]);
        }
        let out = curl
            .arg(format!("{}/metrics", server.url))
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let (body, code) = text.rsplit_once('\n').unwrap();
        (body.to_string(), code.to_string())
    };
    let admin = dir.path().join("kubeconfig");
    let (ok, _, err) = kubectl(&admin, &["get", "ns"]);
    assert!(ok, "{err}");
    let mut watch = Command::new("kubectl")
        .arg("--kubeconfig")
        .arg(&admin)
        .args(["get", "configmaps", "--watch"])
        .env_remove("KUBECONFIG")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let line = |body: &str, name: &str, labels: &[&str]| {
        body.lines()
            .find(|l| l.starts_with(&format!("{name}{{")) && labels.iter().all(|x| l.contains(x)))
            .map(str::to_string)
    };
    let body = eventually(10, "the watch counted as long-running", || {
        let (body, code) = scrape(Some("t0ken-pr0m"));
        assert_eq!(code, "200", "{body}");
        line(
            &body,
            "apiserver_longrunning_requests",
            &[r#"verb="WATCH""#, r#"resource="configmaps""#],
        )
        .filter(|l| l.ends_with(" 1"))
        .map(|_| body)
    });
    let listed = line(
        &body,
        "apiserver_request_total",
        &[
            r#"verb="LIST""#,
            r#"resource="namespaces""#,
            r#"scope="cluster""#,
            r#"code="200""#,
        ],
    );
    assert!(listed.is_some(), "{body}");
    assert!(
        line(
            &body,
            "apiserver_request_duration_seconds_bucket",
            &[
                r#"verb="LIST""#,
                r#"resource="namespaces""#,
                r#"le="0.005""#
            ],
        )
        .is_some(),
        "{body}"
    );
    assert!(
        body.contains("# TYPE apiserver_request_total counter"),
        "{body}"
    );
    watch.kill().unwrap();
    watch.wait().unwrap();
    // The watch has ended: counted no longer.
    eventually(10, "the ended watch no longer counted", || {
        let (body, _) = scrape(Some("t0ken-pr0m"));
        line(
            &body,
            "apiserver_longrunning_requests",
            &[r#"verb="WATCH""#, r#"resource="configmaps""#],
        )
        .filter(|l| l.ends_with(" 0"))
    });

    // Cluster-admin may; a user without the grant and an anonymous client may not.
    let (ok, out, err) = kubectl(&admin, &["get", "--raw", "/metrics"]);
    assert!(ok && out.contains("apiserver_request_total"), "{err}");
    let (body, code) = scrape(Some("t0ken-b0b"));
    assert_eq!(code, "403", "{body}");
    assert!(
        body.contains(r#"forbidden: User \"bob\" cannot get path \"/metrics\""#),
        "{body}"
    );
    let (body, code) = scrape(None);
    assert!(code == "401" || code == "403", "{code}: {body}");

    // promtool's own checks of the exposition.
    syncsets_testkit::promtool_accepts(&scrape(Some("t0ken-pr0m")).0);
}

/// `syncsets plan <args>` with a kubeconfig: (success, stdout + stderr).
fn plan_as(kubeconfig: &Path, args: &[&str]) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_syncsets"))
        .arg("plan")
        .args(args)
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .env("SYNCSETS_LOG", "warn")
        .output()
        .unwrap();
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

/// A hub with its controllers in `dir` and one token user `user` (token `t-USER`): the
/// server, the admin's kubeconfig and the user's.
fn hub_with_user(dir: &Path, user: &str) -> (Serve, PathBuf, PathBuf) {
    let tokens = dir.join("tokens.csv");
    std::fs::write(&tokens, format!("t-{user},{user},3\n")).unwrap();
    let server = start(
        dir,
        &["--token-auth-file", tokens.to_str().unwrap()],
        None,
        true,
    );
    let admin = dir.join("kubeconfig");
    let kubeconfig = kubeconfig_with(
        dir,
        user,
        &server.url,
        &ca_data(&admin),
        kubeconfig::token_user(&format!("t-{user}")),
    );
    (server, admin, kubeconfig)
}

/// `syncsets plan` reads the hub with the user's own credentials: a user who may read a
/// namespace's clusters and sets but not their kubeconfig Secrets cannot ask those
/// clusters anything (and is told why); one who may not list clusters across namespaces
/// cannot plan a SelectorSyncSet; the admin plans both. The Secret a set copies shows in
/// a plan by its field paths, never its data.
#[test]
fn plan_asks_only_the_clusters_whose_credentials_the_user_may_read() {
    let dir = tempfile::tempdir().unwrap();
    let (_server, admin, bob) = hub_with_user(dir.path(), "bob");
    register_the_hub(&admin, dir.path());
    ok(
        &admin,
        &[
            "-n",
            "hub",
            "create",
            "secret",
            "generic",
            "db-password",
            "--from-literal=password=hunter2-planned",
        ],
    );
    let set = |value: &str| {
        format!(
            "apiVersion: hive.openshift.io/v1\nkind: SyncSet\nmetadata:\n  name: marker\n  namespace: hub\nspec:\n  clusterDeploymentRefs:\n  - name: local-cluster\n  resources:\n  - apiVersion: v1\n    kind: ConfigMap\n    metadata:\n      name: marker\n      namespace: default\n    data:\n      value: \"{value}\"\n  secretMappings:\n  - sourceRef:\n      name: db-password\n    targetRef:\n      name: db-password-copy\n      namespace: default\n"
        )
    };
    apply(&admin, dir.path(), "marker.yaml", &set("1"));
    eventually(60, "the set applied", || {
        kubectl(
            &admin,
            &["-n", "default", "get", "secret", "db-password-copy"],
        )
        .0
        .then_some(())
    });
    // The admin: the applied set changes nothing; a new value changes one field.
    let (done, out) = plan_as(&admin, &["ss/hub/marker"]);
    assert!(done && out.contains("1 cluster:  no change\n"), "{out}");
    let changed = dir.path().join("marker-2.yaml");
    std::fs::write(&changed, set("2")).unwrap();
    let (done, out) = plan_as(&admin, &["-f", changed.to_str().unwrap()]);
    assert!(
        done && out.contains("1 cluster:  change ConfigMap default/marker: .data.value\n"),
        "{out}"
    );
    // A change of the copied Secret (its copy drifted) is named by its field, never shown.
    ok(
        &admin,
        &[
            "-n",
            "default",
            "patch",
            "secret",
            "db-password-copy",
            "-p",
            r#"{"stringData":{"password":"hunter3-drifted"}}"#,
        ],
    );
    for output in ["text", "json", "yaml"] {
        let (done, out) = plan_as(&admin, &["ss/hub/marker", "-o", output, "--detail"]);
        assert!(done && out.contains(".data.password"), "{out}");
        assert!(!out.contains("hunter"), "{out}");
        assert!(!out.contains("aHVudGVy"), "base64 of the data: {out}");
    }

    // Bob may read the namespace's clusters, their ClusterSyncs and sets, not its Secrets.
    apply(
        &admin,
        dir.path(),
        "bob.yaml",
        "apiVersion: rbac.authorization.k8s.io/v1\nkind: Role\nmetadata:\n  name: fleet-reader\n  namespace: hub\nrules:\n- apiGroups: [hive.openshift.io]\n  resources: [clusterdeployments, syncsets]\n  verbs: [get, list]\n- apiGroups: [hiveinternal.openshift.io]\n  resources: [clustersyncs]\n  verbs: [get, list]\n---\napiVersion: rbac.authorization.k8s.io/v1\nkind: RoleBinding\nmetadata:\n  name: bob-fleet-reader\n  namespace: hub\nroleRef:\n  apiGroup: rbac.authorization.k8s.io\n  kind: Role\n  name: fleet-reader\nsubjects:\n- apiGroup: rbac.authorization.k8s.io\n  kind: User\n  name: bob\n",
    );
    // Without the Secret the set copies, there is nothing to plan with.
    let (done, out) = plan_as(&bob, &["ss/hub/marker"]);
    assert!(
        !done
            && out.contains("reading Secret hub/db-password, which the set copies")
            && out.contains("forbidden"),
        "{out}"
    );
    // With it (and only it), the cluster's kubeconfig Secret is still not his to use.
    apply(
        &admin,
        dir.path(),
        "bob-secret.yaml",
        "apiVersion: rbac.authorization.k8s.io/v1\nkind: Role\nmetadata:\n  name: copied-secret-reader\n  namespace: hub\nrules:\n- apiGroups: [\"\"]\n  resources: [secrets]\n  resourceNames: [db-password]\n  verbs: [get]\n---\napiVersion: rbac.authorization.k8s.io/v1\nkind: RoleBinding\nmetadata:\n  name: bob-copied-secret-reader\n  namespace: hub\nroleRef:\n  apiGroup: rbac.authorization.k8s.io\n  kind: Role\n  name: copied-secret-reader\nsubjects:\n- apiGroup: rbac.authorization.k8s.io\n  kind: User\n  name: bob\n",
    );
    let (done, out) = plan_as(&bob, &["ss/hub/marker", "--detail"]);
    assert!(
        done && out.contains("1 cluster:  could not be asked: no usable kubeconfig\n"),
        "{out}"
    );
    assert!(out.contains("forbidden"), "{out}");
    assert!(!out.contains("hunter"), "{out}");
    let (done, out) = plan_as(&bob, &["-f", changed.to_str().unwrap()]);
    assert!(
        !done && out.contains("forbidden"),
        "a dry-run update needs update: {out}"
    );
    let sss = dir.path().join("sss.yaml");
    std::fs::write(
        &sss,
        "apiVersion: hive.openshift.io/v1\nkind: SelectorSyncSet\nmetadata:\n  name: everywhere\nspec:\n  clusterDeploymentSelector:\n    matchLabels:\n      env: hub\n",
    )
    .unwrap();
    let (done, out) = plan_as(&bob, &["-f", sss.to_str().unwrap()]);
    assert!(!done && out.contains("forbidden"), "{out}");
}

/// A user bound in one namespace may not read RolloutPolicies (cluster-scoped), yet
/// `syncsets rollout status` tells them where their SyncSet's rollout is, from the set's
/// own status.
#[test]
fn a_namespace_editor_follows_a_rollout_without_reading_rollout_policies() {
    let dir = tempfile::tempdir().unwrap();
    let (_server, admin, alice) = hub_with_user(dir.path(), "alice");
    ok(&admin, &["create", "namespace", "team-a"]);
    editor_of("team-a", &admin, "alice");
    let policy = dir.path().join("policy.yaml");
    std::fs::write(
        &policy,
        "apiVersion: syncsets.io/v1alpha1\nkind: RolloutPolicy\nmetadata: {name: careful}\n\
         spec:\n  selector: {matchLabels: {rollout: careful}}\n  strategy: {type: Progressive, progressive: {maxConcurrency: 1}}\n",
    )
    .unwrap();
    ok(&admin, &["apply", "-f", policy.to_str().unwrap()]);
    let set = dir.path().join("set.yaml");
    std::fs::write(
        &set,
        "apiVersion: hive.openshift.io/v1\nkind: SyncSet\nmetadata: {name: quota, namespace: team-a, labels: {rollout: careful}}\n\
         spec:\n  clusterDeploymentRefs: []\n  resources:\n  - {apiVersion: v1, kind: ConfigMap, metadata: {name: q, namespace: default}}\n",
    )
    .unwrap();
    ok(&alice, &["apply", "-f", set.to_str().unwrap()]);
    refused(&alice, &["get", "rolloutpolicies"]);
    let started = std::time::Instant::now();
    let out = loop {
        let out = Command::new(env!("CARGO_BIN_EXE_syncsets"))
            .args([
                "rollout",
                "status",
                "ss/team-a/quota",
                "--watch=false",
                "--kubeconfig",
            ])
            .arg(&alice)
            .env("SYNCSETS_LOG", "warn")
            .output()
            .unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        if text.contains(": Complete, wave") {
            assert!(out.status.success(), "{text}");
            break text;
        }
        assert!(
            started.elapsed() < std::time::Duration::from_secs(30),
            "{text}"
        );
        std::thread::sleep(std::time::Duration::from_millis(300));
    };
    assert!(
        out.contains("revision 1 under RolloutPolicy careful: Complete"),
        "{out}"
    );
}
