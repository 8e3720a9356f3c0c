//! Guarantees specific to the SQL backends: Secrets never reach the database in plaintext,
//! and label selectors are answered from the label index rather than by scanning a kind.

use std::sync::Arc;

use base64::Engine as _;
use serde_json::json;
use sqlx::Connection as _;
use syncsets_store::{Keyring, ListQuery, ObjectKey, PostgresStore, SqliteStore, Store};
use syncsets_testkit::TestDb;
use syncsets_types::Selector;

const MARKER: &str = "plaintext-kubeconfig-marker-7f3a";

fn keyring() -> Arc<Keyring> {
    Arc::new(Keyring::new(vec![("k1".into(), vec![9; 32])]).unwrap())
}

/// Writes a Secret whose data, annotations and last-applied configuration carry the marker,
/// updates it and deletes it, so objects and outbox both held it.
async fn churn_secret(store: &dyn Store) {
    let b64 = base64::engine::general_purpose::STANDARD.encode(MARKER);
    let key = ObjectKey::new("", "secrets", "fleet", "admin-kubeconfig");
    let secret = json!({
        "apiVersion": "v1", "kind": "Secret", "type": "Opaque",
        "metadata": {"name": "admin-kubeconfig", "namespace": "fleet",
            "annotations": {"kubectl.kubernetes.io/last-applied-configuration": format!("{{\"stringData\":{{\"kubeconfig\":\"{MARKER}\"}}}}")}},
        "data": {"kubeconfig": b64},
    });
    let created = store.create(&key, &secret, false).await.unwrap();
    let mut changed = created.object.clone();
    changed["data"]["other"] = json!(b64);
    let updated = store.update(&key, &changed, created.rv).await.unwrap();
    store.delete(&key, Some(updated.rv)).await.unwrap();
    // And one that stays.
    let key2 = ObjectKey::new("", "secrets", "fleet", "kept");
    store.create(&key2, &json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "kept", "namespace": "fleet"},
        "data": {"token": base64::engine::general_purpose::STANDARD.encode(MARKER)}}), false).await.unwrap();
}

fn assert_no_marker(haystack: &[u8], what: &str) {
    let b64 = base64::engine::general_purpose::STANDARD.encode(MARKER);
    for needle in [MARKER.as_bytes(), b64.as_bytes()] {
        assert!(
            !haystack.windows(needle.len()).any(|w| w == needle),
            "{what} contains a Secret's plaintext"
        );
    }
}

#[tokio::test]
async fn sqlite_files_hold_no_secret_plaintext() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("db.sqlite").display());
    let store = SqliteStore::open(&url, Some(keyring())).await.unwrap();
    churn_secret(&store).await;
    // The database, its write-ahead log and shared memory, while the store is open.
    let mut files = 0;
    for entry in std::fs::read_dir(dir.path()).unwrap() {
        let path = entry.unwrap().path();
        assert_no_marker(&std::fs::read(&path).unwrap(), &path.display().to_string());
        files += 1;
    }
    assert!(files >= 2, "database and WAL are both checked");
}

/// What a PostgreSQL database holds: a data-only dump (live rows), and the raw pages of
/// every table, TOAST table and index (dead row versions too, as they sit on disk until
/// vacuumed).
async fn postgres_contents(url: &str) -> (Vec<u8>, Vec<u8>) {
    let out = std::process::Command::new("pg_dump")
        .args(["--data-only", url])
        .output()
        .expect("pg_dump runs");
    assert!(
        out.status.success(),
        "pg_dump: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.stdout.len() > 100, "the dump has the tables");
    let mut c = sqlx::PgConnection::connect(url).await.unwrap();
    sqlx::query("CREATE EXTENSION IF NOT EXISTS pageinspect")
        .execute(&mut c)
        .await
        .unwrap();
    let relations: Vec<(String, i64)> = sqlx::query_as(
        "SELECT c.oid::regclass::text, pg_relation_size(c.oid) / current_setting('block_size')::bigint
         FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
         WHERE n.nspname NOT IN ('pg_catalog', 'information_schema') AND c.relkind IN ('r', 't', 'i')",
    )
    .fetch_all(&mut c)
    .await
    .unwrap();
    assert!(relations.iter().any(|(_, blocks)| *blocks > 0));
    let mut pages = Vec::new();
    for (relation, blocks) in relations {
        for block in 0..blocks {
            let page: Vec<u8> = sqlx::query_scalar("SELECT get_raw_page($1, $2::int)")
                .bind(&relation)
                .bind(block)
                .fetch_one(&mut c)
                .await
                .unwrap();
            pages.extend(page);
        }
    }
    (out.stdout, pages)
}

fn holds_marker(haystack: &[u8]) -> bool {
    let b64 = base64::engine::general_purpose::STANDARD.encode(MARKER);
    [MARKER.as_bytes(), b64.as_bytes()]
        .iter()
        .any(|needle| haystack.windows(needle.len()).any(|w| w == *needle))
}

#[tokio::test]
async fn postgres_holds_no_secret_plaintext_in_rows_or_pages() {
    let Some(db) = TestDb::create().await else {
        return;
    };
    let store = PostgresStore::open(&db.url, Some(keyring())).await.unwrap();
    churn_secret(&store).await;
    let (dump, pages) = postgres_contents(&db.url).await;
    assert_no_marker(&dump, "the PostgreSQL dump");
    assert_no_marker(&pages, "the PostgreSQL pages (dead rows included)");
    // The check sees plaintext where there is some: the same marker in a ConfigMap (not
    // sealed), written and deleted.
    let key = ObjectKey::new("", "configmaps", "fleet", "plain");
    let cm = json!({"apiVersion": "v1", "kind": "ConfigMap",
                    "metadata": {"name": "plain", "namespace": "fleet"}, "data": {"k": MARKER}});
    let created = store.create(&key, &cm, false).await.unwrap();
    store.delete(&key, Some(created.rv)).await.unwrap();
    let (dump, pages) = postgres_contents(&db.url).await;
    assert!(
        holds_marker(&dump) && holds_marker(&pages),
        "positive control"
    );
    db.drop_db().await;
}

fn selector_query(sel: &str) -> ListQuery {
    ListQuery {
        cluster: String::new(),
        resource: "configmaps".into(),
        labels: Selector::parse(sel).unwrap(),
        limit: Some(500),
        ..Default::default()
    }
}

#[tokio::test]
async fn sqlite_selectors_use_the_label_index() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("db.sqlite").display());
    let store = SqliteStore::open(&url, None).await.unwrap();
    for sel in ["app=web", "app in (a,b)", "app", "app=web,!legacy", "n>3"] {
        let plan = store.explain_list(&selector_query(sel)).await.unwrap();
        assert!(
            plan.contains("labels_selector"),
            "{sel}: plan does not use the label index:\n{plan}"
        );
        assert!(
            !plan
                .lines()
                .any(|l| l.starts_with("SCAN o") || l.contains("USING INDEX objects_key")),
            "{sel}: plan scans the kind:\n{plan}"
        );
    }
}

#[tokio::test]
async fn postgres_selectors_use_the_gin_index() {
    let Some(db) = TestDb::create().await else {
        return;
    };
    let store = PostgresStore::open(&db.url, None).await.unwrap();
    // 20,000 objects of ~1 KiB, 1% labelled app=web, loaded directly for speed.
    let pool = sqlx::PgPool::connect(&db.url).await.unwrap();
    sqlx::query(
        "INSERT INTO objects (cluster, resource, namespace, name, rv, labels, data) \
         SELECT '', 'configmaps', 'ns', 'cm-' || i, i, \
                CASE WHEN i % 100 = 0 THEN '{\"app\":\"web\"}'::jsonb ELSE jsonb_build_object('app', 'other-' || (i % 7)) END, jsonb_build_object('apiVersion', 'v1', 'kind', 'ConfigMap', 'metadata', jsonb_build_object('name', 'cm-' || i, 'namespace', 'ns'), 'data', jsonb_build_object('x', repeat('x', 1000))) \
         FROM generate_series(1, 20000) AS i",
    )
    .execute(&pool)
    .await
    .unwrap();
    sqlx::query("ANALYZE objects").execute(&pool).await.unwrap();
    for sel in ["app=web", "app in (web,nope)", "app=web,!legacy"] {
        let plan = store.explain_list(&selector_query(sel)).await.unwrap();
        assert!(
            plan.contains("objects_labels"),
            "{sel}: plan does not use the GIN index:\n{plan}"
        );
    }
    let page = store.list(&selector_query("app=web")).await.unwrap();
    assert_eq!(page.items.len(), 200);
    pool.close().await;
    db.drop_db().await;
}

/// The PostgreSQL watermark never passes a version whose transaction is still open, even
/// when that transaction holds the newest id (which a snapshot's running list omits).
#[tokio::test]
async fn postgres_watermark_waits_for_the_newest_open_transaction() {
    let Some(db) = TestDb::create().await else {
        return;
    };
    let store = Arc::new(PostgresStore::open(&db.url, None).await.unwrap());
    let before = store.watermark().await.unwrap();
    let mut writer = sqlx::PgConnection::connect(&db.url).await.unwrap();
    sqlx::query("BEGIN").execute(&mut writer).await.unwrap();
    let rv: i64 = sqlx::query_scalar("SELECT syncsets_next_rv()")
        .fetch_one(&mut writer)
        .await
        .unwrap();
    let settling = tokio::spawn({
        let store = store.clone();
        async move { store.watermark().await.unwrap() }
    });
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    // While the transaction is open the watermark either waits or stays below it...
    let answered_early = settling.is_finished();
    let settling = if answered_early {
        let early = settling.await.unwrap();
        assert!(
            early < rv as u64,
            "the watermark passed an open transaction's version"
        );
        None
    } else {
        Some(settling)
    };
    sqlx::query("COMMIT").execute(&mut writer).await.unwrap();
    // ...and a call that waited answers once it commits, at or past its version.
    if let Some(settling) = settling {
        let settled = tokio::time::timeout(std::time::Duration::from_secs(5), settling)
            .await
            .expect("the waiting watermark answers once the transaction commits")
            .unwrap();
        assert!(settled >= rv as u64, "{settled} < {rv}");
    }
    let store2 = store.clone();
    let after = tokio::time::timeout(std::time::Duration::from_secs(5), async move {
        store2.watermark().await.unwrap()
    })
    .await
    .unwrap();
    assert!(after >= rv as u64 && rv as u64 > before);
    db.drop_db().await;
}

/// A rotation as `syncsets rotate-keys` does it, on one store: a new key first in the file,
/// every sealed value (objects and outbox) moved to it, the old key no longer needed.
async fn keys_rotate(store: &dyn Store, file: &std::path::Path) {
    churn_secret(store).await;
    let before = store.sealed_keys().await.unwrap();
    assert_eq!(before.keys().collect::<Vec<_>>(), ["k1"]);
    let total: u64 = before.values().sum();
    assert!(
        total >= 4,
        "objects and outbox both hold sealed values: {before:?}"
    );

    assert_eq!(Keyring::add_primary(file).unwrap(), "k2");
    let done = store.reseal().await.unwrap();
    assert_eq!(done.objects, 1, "the Secret that stays");
    assert_eq!(done.objects + done.events, total);
    assert_eq!(
        store.sealed_keys().await.unwrap(),
        [("k2".to_string(), total)].into()
    );
    assert_eq!(store.reseal().await.unwrap().objects, 0, "nothing left");

    // Without the old key, everything still opens.
    Keyring::retain(file, &[]).unwrap();
    let key = ObjectKey::new("", "secrets", "fleet", "kept");
    let kept = store.get(&key).await.unwrap().unwrap();
    let b64 = base64::engine::general_purpose::STANDARD.encode(MARKER);
    assert_eq!(kept.object["data"]["token"], json!(b64));
    let events = store.events_after(0, 100).await.unwrap();
    assert!(events.iter().any(|e| e.key.resource == "secrets"));
    let only_new = Keyring::load(file).unwrap();
    assert_eq!(only_new.ids(), ["k2"]);
}

fn key_file(dir: &std::path::Path) -> (std::path::PathBuf, Arc<Keyring>) {
    let file = dir.join("encryption.keys");
    let ring = Arc::new(Keyring::load_or_create(&file).unwrap());
    (file, ring)
}

#[tokio::test]
async fn sqlite_keys_rotate() {
    let dir = tempfile::tempdir().unwrap();
    let (file, ring) = key_file(dir.path());
    let url = format!("sqlite://{}", dir.path().join("db.sqlite").display());
    let store = SqliteStore::open(&url, Some(ring)).await.unwrap();
    keys_rotate(&store, &file).await;
}

#[tokio::test]
async fn postgres_keys_rotate() {
    let Some(db) = TestDb::create().await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let (file, ring) = key_file(dir.path());
    let store = PostgresStore::open(&db.url, Some(ring)).await.unwrap();
    keys_rotate(&store, &file).await;
    db.drop_db().await;
}
