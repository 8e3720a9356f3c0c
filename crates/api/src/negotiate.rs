//! Content negotiation: what to answer in (`Accept`) and how bodies are encoded
//! (`Content-Type`).

use axum::body::Body;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::Response;
use serde_json::Value;

use crate::error::{ApiError, ApiResult};

/// The representation a client asked for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Output {
    /// JSON.
    Json,
    /// YAML.
    Yaml,
    /// `meta.k8s.io/v1` Table.
    Table,
    /// `PartialObjectMetadata` / `PartialObjectMetadataList`.
    Metadata,
}

struct MediaType<'a> {
    essence: &'a str,
    params: Vec<(&'a str, &'a str)>,
}

fn parse_media(s: &str) -> MediaType<'_> {
    let mut parts = s.split(';').map(str::trim);
    let essence = parts.next().unwrap_or_default();
    let params = parts
        .filter_map(|p| p.split_once('='))
        .map(|(k, v)| (k.trim(), v.trim()))
        .collect();
    MediaType { essence, params }
}

impl MediaType<'_> {
    fn param(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| *v)
    }
}

/// Chooses the response representation from `Accept`, in the client's order of preference.
pub fn output(headers: &HeaderMap) -> ApiResult<Output> {
    let Some(accept) = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()) else {
        return Ok(Output::Json);
    };
    if accept.trim().is_empty() {
        return Ok(Output::Json);
    }
    for entry in accept.split(',') {
        let m = parse_media(entry);
        let json = matches!(m.essence, "application/json" | "application/*" | "*/*");
        match m.param("as") {
            Some(kind) => {
                let meta_group = m.param("g") == Some("meta.k8s.io");
                let version_ok = matches!(m.param("v"), Some("v1" | "v1beta1"));
                if !(json && meta_group && version_ok) {
                    continue;
                }
                match kind {
                    "Table" => return Ok(Output::Table),
                    "PartialObjectMetadata" | "PartialObjectMetadataList" => {
                        return Ok(Output::Metadata);
                    }
                    _ => continue,
                }
            }
            None if json => return Ok(Output::Json),
            None if matches!(m.essence, "application/yaml" | "text/yaml") => {
                return Ok(Output::Yaml);
            }
            None => continue,
        }
    }
    Err(ApiError::not_acceptable(format!(
        "only the following media types are accepted: application/json, application/yaml, application/json;as=Table;v=v1;g=meta.k8s.io (requested {accept:?})"
    )))
}

/// How a request body is encoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BodyFormat {
    /// JSON.
    Json,
    /// YAML.
    Yaml,
    /// Kubernetes protobuf (built-in kinds, from typed clients).
    Protobuf,
}

/// The body format of a create or update (`Content-Type`, JSON when absent).
pub fn body_format(headers: &HeaderMap) -> ApiResult<BodyFormat> {
    let ct = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    match parse_media(ct).essence {
        "" | "application/json" => Ok(BodyFormat::Json),
        "application/yaml" | "application/x-yaml" | "text/yaml" => Ok(BodyFormat::Yaml),
        syncsets_machinery::protobuf::MEDIA_TYPE => Ok(BodyFormat::Protobuf),
        _ => Err(ApiError::unsupported_media_type(&[
            "application/json",
            "application/yaml",
            syncsets_machinery::protobuf::MEDIA_TYPE,
        ])),
    }
}

/// The media type of a PATCH (`Content-Type` without parameters).
pub fn patch_type(headers: &HeaderMap) -> String {
    let ct = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    parse_media(ct).essence.to_ascii_lowercase()
}

/// Writes already-encoded bytes.
pub fn respond_raw(code: StatusCode, body: Vec<u8>, content_type: &'static str) -> Response {
    let mut res = Response::new(Body::from(body));
    *res.status_mut() = code;
    res.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    res
}

/// Writes a value in the negotiated representation, with `Warning` headers.
pub fn respond(code: StatusCode, value: &Value, output: Output, warnings: &[String]) -> Response {
    let (body, content_type) = match output {
        Output::Yaml => (
            serde_norway::to_string(value)
                .unwrap_or_default()
                .into_bytes(),
            "application/yaml",
        ),
        _ => (
            serde_json::to_vec(value).unwrap_or_default(),
            "application/json",
        ),
    };
    let mut res = Response::new(Body::from(body));
    *res.status_mut() = code;
    res.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    for w in warnings {
        let quoted = format!("299 - \"{}\"", w.replace('\\', "\\\\").replace('"', "\\\""));
        if let Ok(v) = HeaderValue::from_str(&quoted) {
            res.headers_mut().append(header::WARNING, v);
        }
    }
    res
}

#[cfg(test)]
mod tests {
    use super::*;

    fn accept(v: &str) -> ApiResult<Output> {
        let mut h = HeaderMap::new();
        h.insert(header::ACCEPT, HeaderValue::from_str(v).unwrap());
        output(&h)
    }

    #[test]
    fn negotiates_like_kubectl_expects() {
        assert_eq!(
            accept("application/json;as=Table;v=v1;g=meta.k8s.io,application/json;as=Table;v=v1beta1;g=meta.k8s.io,application/json").unwrap(),
            Output::Table
        );
        assert_eq!(
            accept("application/vnd.kubernetes.protobuf,application/json").unwrap(),
            Output::Json
        );
        assert_eq!(
            accept(
                "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1,application/json"
            )
            .unwrap(),
            Output::Metadata
        );
        assert_eq!(
            accept("application/json;as=Table;v=v2;g=meta.k8s.io,application/yaml").unwrap(),
            Output::Yaml
        );
        assert_eq!(accept("*/*").unwrap(), Output::Json);
        assert!(accept("text/html").is_err());
    }
}
