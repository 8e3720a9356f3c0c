//! `GET` of a collection: label and field selectors, pages (`limit`/`continue`), and the
//! Table and PartialObjectMetadataList forms.

use axum::http::StatusCode;
use axum::response::Response;
use base64::Engine as _;
use serde_json::{Value, json};
use syncsets_machinery::table::{self, IncludeObject};
use syncsets_store::{FieldMatch, ListPage, ListQuery, MetaField};
use syncsets_types::{FieldSelector, Selector};

use super::Ctx;
use crate::error::{ApiError, ApiResult};
use crate::negotiate::{self, Output};

/// What a `continue` token carries: the first page's resourceVersion and the last key.
#[derive(serde::Serialize, serde::Deserialize)]
struct Token {
    rv: u64,
    ns: String,
    name: String,
}

fn encode_token(t: &Token) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(serde_json::to_vec(t).unwrap_or_default())
}

fn decode_token(s: &str) -> ApiResult<Token> {
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(s)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .ok_or_else(|| ApiError::bad_request("continue key is not valid: incorrect encoded start resourceVersion (version meta.k8s.io/v1)"))
}

/// Field requirements the store evaluates, and the others (kind-specific), evaluated here.
pub(crate) struct Fields {
    pub store: Vec<FieldMatch>,
    pub other: Vec<(&'static [&'static str], bool, String)>,
}

/// Splits a field selector, rejecting fields the kind does not support.
pub(crate) fn fields(ctx: &Ctx) -> ApiResult<Fields> {
    let parsed = FieldSelector::parse(&ctx.query.field_selector)
        .map_err(|e| ApiError::bad_request(e.to_string()))?;
    let mut out = Fields {
        store: Vec::new(),
        other: Vec::new(),
    };
    for r in parsed.requirements {
        let field = match r.field.as_str() {
            "metadata.name" => Some(MetaField::Name),
            "metadata.namespace" => Some(MetaField::Namespace),
            _ => None,
        };
        match field {
            Some(field) => out.store.push(FieldMatch {
                field,
                negated: r.negated,
                value: r.value,
            }),
            None => {
                let path = ctx
                    .kind
                    .strategy
                    .selectable_fields()
                    .iter()
                    .find(|(name, _)| *name == r.field)
                    .map(|(_, path)| *path)
                    .ok_or_else(|| {
                        ApiError::bad_request(format!("field label not supported: {}", r.field))
                    })?;
                out.other.push((path, r.negated, r.value));
            }
        }
    }
    Ok(out)
}

impl Fields {
    /// Whether an object passes the kind-specific field requirements.
    pub fn matches(&self, obj: &Value) -> bool {
        self.other.iter().all(|(path, negated, value)| {
            let actual = path
                .iter()
                .try_fold(obj, |v, k| v.get(*k))
                .map(|v| match v {
                    Value::String(s) => s.clone(),
                    Value::Null => String::new(),
                    other => other.to_string(),
                })
                .unwrap_or_default();
            (actual == *value) != *negated
        })
    }
}

/// The store query of a list request.
pub(crate) fn store_query(ctx: &Ctx, fields: &Fields) -> ApiResult<(ListQuery, Option<u64>)> {
    let labels = Selector::parse(&ctx.query.label_selector)
        .map_err(|e| ApiError::bad_request(format!("unable to parse requirement: {e}")))?;
    let mut q = ListQuery {
        cluster: ctx.info.cluster.clone(),
        resource: ctx.kind.group_resource(),
        namespace: ctx.info.namespace.clone(),
        labels,
        fields: fields.store.clone(),
        limit: ctx.query.limit,
        after: None,
    };
    let mut first_rv = None;
    if !ctx.query.continue_.is_empty() {
        let t = decode_token(&ctx.query.continue_)?;
        q.after = Some((t.ns, t.name));
        first_rv = Some(t.rv);
    }
    Ok((q, first_rv))
}

/// Lists objects.
pub(crate) async fn list(ctx: &Ctx) -> ApiResult<Response> {
    let fields = fields(ctx)?;
    let (q, first_rv) = store_query(ctx, &fields)?;
    let page: ListPage = ctx
        .state
        .store
        .list(&q)
        .await
        .map_err(|e| ApiError::internal("listing objects", &e))?;
    let rv = first_rv.unwrap_or(page.rv);
    let mut list_meta = json!({"resourceVersion": rv.to_string()});
    if page.more
        && let Some(last) = page.items.last()
    {
        list_meta["continue"] = json!(encode_token(&Token {
            rv,
            ns: last.namespace.clone(),
            name: last.name.clone(),
        }));
    }
    // The common case needs no parsing: stored JSON goes out as it is.
    let same_version = ctx.kind.version == ctx.kind.storage_version;
    if ctx.output == Output::Json && fields.other.is_empty() && same_version {
        let mut body = format!(
            "{{\"kind\":{},\"apiVersion\":{},\"metadata\":{},\"items\":[",
            json!(ctx.kind.list_kind),
            json!(ctx.kind.api_version()),
            list_meta
        );
        for (i, item) in page.items.iter().enumerate() {
            if i > 0 {
                body.push(',');
            }
            body.push_str(&item.json);
        }
        body.push_str("]}");
        return Ok(negotiate::respond_raw(
            StatusCode::OK,
            body.into_bytes(),
            "application/json",
        ));
    }
    let items: Vec<Value> = page
        .items
        .iter()
        .map(|raw| raw.parse().map(|s| ctx.served(s.object)))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| ApiError::internal("reading listed objects", &e))?
        .into_iter()
        .filter(|o| fields.matches(o))
        .collect();
    let body = match ctx.output {
        Output::Table => table::render(
            &ctx.kind,
            &items,
            IncludeObject::parse(&ctx.query.include_object)
                .map_err(|e| ApiError::from_machinery(e, &ctx.kind, ""))?,
            list_meta,
            true,
            jiff::Timestamp::now(),
        ),
        Output::Metadata => json!({
            "kind": "PartialObjectMetadataList",
            "apiVersion": "meta.k8s.io/v1",
            "metadata": list_meta,
            "items": items.iter().map(|o| json!({"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": o["metadata"]})).collect::<Vec<_>>(),
        }),
        Output::Json | Output::Yaml => json!({
            "kind": ctx.kind.list_kind,
            "apiVersion": ctx.kind.api_version(),
            "metadata": list_meta,
            "items": items,
        }),
    };
    Ok(negotiate::respond(StatusCode::OK, &body, ctx.output, &[]))
}
