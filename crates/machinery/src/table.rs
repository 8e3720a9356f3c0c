//! `meta.k8s.io/v1` Table rendering for `kubectl get` (`Accept: …;as=Table`).
//! The server renders ages itself: built-in `Age` columns as `duration.HumanDuration`,
//! CRD `date` columns as `duration.ShortHumanDuration`.

use serde_json::{Map, Value, json};

use crate::builtin;
use crate::errors::{Error, Result};
use crate::registry::{ColumnSource, KindInfo, PrinterColumn};

/// What each row carries (`includeObject`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum IncludeObject {
    /// Nothing.
    None,
    /// `PartialObjectMetadata` (the default).
    #[default]
    Metadata,
    /// The whole object.
    Object,
}

impl IncludeObject {
    /// Parses the query value.
    pub fn parse(s: &str) -> Result<Self> {
        match s {
            "" | "Metadata" => Ok(Self::Metadata),
            "None" => Ok(Self::None),
            "Object" => Ok(Self::Object),
            other => Err(Error::BadRequest(format!(
                "unrecognized includeObject value: {other:?}"
            ))),
        }
    }
}

/// Renders objects as a Table. `list_meta` becomes the table's `metadata`.
pub fn render(
    kind: &KindInfo,
    objects: &[Value],
    include: IncludeObject,
    list_meta: Value,
    headers: bool,
    now: jiff::Timestamp,
) -> Value {
    let mut columns = vec![builtin::table_name_column()];
    columns.extend(kind.columns.iter().cloned());
    let definitions: Vec<Value> = if headers {
        columns
            .iter()
            .map(|c| {
                json!({"name": c.name, "type": c.type_, "format": c.format,
                       "description": c.description, "priority": c.priority})
            })
            .collect()
    } else {
        Vec::new()
    };
    let rows: Vec<Value> = objects
        .iter()
        .map(|obj| {
            let cells: Vec<Value> = columns
                .iter()
                .enumerate()
                .map(|(i, c)| {
                    if i == 0 {
                        obj["metadata"]["name"].clone()
                    } else {
                        cell(c, obj, now)
                    }
                })
                .collect();
            let mut row = Map::new();
            row.insert("cells".into(), Value::Array(cells));
            match include {
                IncludeObject::None => {}
                IncludeObject::Metadata => {
                    row.insert(
                        "object".into(),
                        json!({"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1",
                               "metadata": obj["metadata"].clone()}),
                    );
                }
                IncludeObject::Object => {
                    row.insert("object".into(), obj.clone());
                }
            }
            Value::Object(row)
        })
        .collect();
    json!({
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": list_meta,
        "columnDefinitions": definitions,
        "rows": rows,
    })
}

fn created(obj: &Value) -> Option<jiff::Timestamp> {
    obj["metadata"]["creationTimestamp"].as_str()?.parse().ok()
}

fn cell(c: &PrinterColumn, obj: &Value, now: jiff::Timestamp) -> Value {
    match &c.source {
        ColumnSource::Age => match created(obj) {
            Some(t) => Value::String(human_duration(now.duration_since(t).as_secs())),
            None => Value::String("<unknown>".into()),
        },
        ColumnSource::CreatedAt => obj["metadata"]["creationTimestamp"].clone(),
        ColumnSource::Ratio(of, to, absent) => {
            let int =
                |p: &crate::jsonpath::JsonPath| p.select(obj).first().and_then(|v| v.as_i64());
            Value::String(format!(
                "{}/{}",
                int(of).unwrap_or(0),
                int(to).unwrap_or(*absent)
            ))
        }
        ColumnSource::Count(fields) => {
            let n: usize = fields
                .iter()
                .filter_map(|f| obj.get(*f).and_then(Value::as_object))
                .map(Map::len)
                .sum();
            json!(n)
        }
        ColumnSource::JsonPathOr(path, absent) => match json_path_cell(c, path, obj, now) {
            Value::Null => absent.clone(),
            v => v,
        },
        ColumnSource::JsonPath(path) => json_path_cell(c, path, obj, now),
    }
}

/// A JSONPath column's cell, rendered as its type says (null when absent).
fn json_path_cell(
    c: &PrinterColumn,
    path: &crate::jsonpath::JsonPath,
    obj: &Value,
    now: jiff::Timestamp,
) -> Value {
    let found = path.select(obj);
    if found.is_empty() {
        return Value::Null;
    }
    match c.type_.as_str() {
        "integer" => found[0]
            .as_i64()
            .or_else(|| found[0].as_f64().map(|f| f as i64))
            .map_or(Value::Null, Value::from),
        "number" => found[0].as_f64().map_or(Value::Null, Value::from),
        "boolean" => found[0].as_bool().map_or(Value::Null, Value::Bool),
        "date" => match found[0].as_str() {
            Some(s) => match s.parse::<jiff::Timestamp>() {
                Ok(t) => Value::String(short_human_duration(now.duration_since(t).as_secs())),
                Err(_) => Value::String("<invalid>".into()),
            },
            None => Value::Null,
        },
        _ => {
            let parts: Vec<String> = found
                .iter()
                .map(|v| match v {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                })
                .collect();
            Value::String(parts.join(" "))
        }
    }
}

/// `duration.HumanDuration`: `45s`, `3m12s`, `5h`, `2d3h`, `400d`, `3y20d`.
pub fn human_duration(secs: i64) -> String {
    if secs < -1 {
        return "<invalid>".into();
    }
    if secs < 0 {
        return "0s".into();
    }
    if secs < 120 {
        return format!("{secs}s");
    }
    let minutes = secs / 60;
    if minutes < 10 {
        let s = secs % 60;
        return if s == 0 {
            format!("{minutes}m")
        } else {
            format!("{minutes}m{s}s")
        };
    }
    if minutes < 180 {
        return format!("{minutes}m");
    }
    let hours = secs / 3600;
    if hours < 8 {
        let m = minutes % 60;
        return if m == 0 {
            format!("{hours}h")
        } else {
            format!("{hours}h{m}m")
        };
    }
    if hours < 48 {
        return format!("{hours}h");
    }
    if hours < 24 * 8 {
        let h = hours % 24;
        return if h == 0 {
            format!("{}d", hours / 24)
        } else {
            format!("{}d{h}h", hours / 24)
        };
    }
    if hours < 24 * 365 * 2 {
        return format!("{}d", hours / 24);
    }
    if hours < 24 * 365 * 8 {
        let dy = (hours / 24) % 365;
        return if dy == 0 {
            format!("{}y", hours / 24 / 365)
        } else {
            format!("{}y{dy}d", hours / 24 / 365)
        };
    }
    format!("{}y", hours / 24 / 365)
}

/// `duration.ShortHumanDuration`: `5s`, `12m`, `3h`, `45d`, `2y`.
pub fn short_human_duration(secs: i64) -> String {
    if secs < -1 {
        "<invalid>".into()
    } else if secs < 0 {
        "0s".into()
    } else if secs < 60 {
        format!("{secs}s")
    } else if secs < 3600 {
        format!("{}m", secs / 60)
    } else if secs < 86400 {
        format!("{}h", secs / 3600)
    } else if secs < 86400 * 365 {
        format!("{}d", secs / 86400)
    } else {
        format!("{}y", secs / 86400 / 365)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::Registry;

    #[test]
    fn durations() {
        assert_eq!(human_duration(45), "45s");
        assert_eq!(human_duration(192), "3m12s");
        assert_eq!(human_duration(180), "3m");
        assert_eq!(human_duration(5 * 3600), "5h");
        assert_eq!(human_duration(51 * 3600), "2d3h");
        assert_eq!(human_duration(400 * 86400), "400d");
        assert_eq!(human_duration(3 * 365 * 86400 + 20 * 86400), "3y20d");
        assert_eq!(short_human_duration(12 * 60 + 5), "12m");
        assert_eq!(short_human_duration(-5), "<invalid>");
    }

    #[test]
    fn renders_builtin_and_crd_tables() {
        let r = Registry::new();
        let now: jiff::Timestamp = "2024-01-01T01:00:00Z".parse().unwrap();
        let cm = r.kinds("").get("", "v1", "configmaps").unwrap().clone();
        let obj = json!({"metadata": {"name": "a", "creationTimestamp": "2024-01-01T00:00:00Z"}, "data": {"x": "1", "y": "2"}, "binaryData": {"z": ""}});
        let t = render(
            &cm,
            &[obj],
            IncludeObject::Metadata,
            json!({"resourceVersion": "5"}),
            true,
            now,
        );
        assert_eq!(t["columnDefinitions"][0]["format"], "name");
        assert_eq!(t["rows"][0]["cells"], json!(["a", 3, "60m"]));
        assert_eq!(t["rows"][0]["object"]["kind"], "PartialObjectMetadata");
        let cs = r
            .kinds("")
            .get("hiveinternal.openshift.io", "v1alpha1", "clustersyncs")
            .unwrap()
            .clone();
        let sync = json!({"metadata": {"name": "c"}, "status": {"controlledByReplica": 2, "conditions": [{"type": "Failed", "status": "False", "reason": "Success", "message": "All SyncSets applied"}]}});
        let t = render(&cs, &[sync], IncludeObject::None, json!({}), true, now);
        assert_eq!(
            t["rows"][0]["cells"],
            json!(["c", "Success", "2", "All SyncSets applied"])
        );
        assert_eq!(t["columnDefinitions"][3]["priority"], 1);
        assert!(t["rows"][0].get("object").is_none());
        let ss = r
            .kinds("")
            .get("hive.openshift.io", "v1", "syncsets")
            .unwrap()
            .clone();
        let t = render(
            &ss,
            &[json!({"metadata": {"name": "s", "creationTimestamp": "2023-12-31T01:00:00Z"}})],
            IncludeObject::Metadata,
            json!({}),
            false,
            now,
        );
        assert_eq!(
            t["rows"][0]["cells"],
            json!(["s", null, null, null, null, null, null, null, null, "1d"])
        );
        assert_eq!(t["columnDefinitions"], json!([]));
        // The rollout summary syncsets adds to Hive's sets.
        let summarised = json!({"metadata": {"name": "s", "creationTimestamp": "2023-12-31T01:00:00Z"},
            "status": {"clusters": 3, "inSync": 1, "failing": 2, "failingClusters": ["fleet/a", "fleet/b"],
                       "healthy": 1, "degraded": 0, "rolloutPhase": "Halted", "rolloutWave": "1/4"}});
        let t = render(
            &ss,
            &[summarised],
            IncludeObject::None,
            json!({}),
            true,
            now,
        );
        assert_eq!(
            t["rows"][0]["cells"],
            json!(["s", 3, 1, 2, 1, 0, "fleet/a fleet/b", "Halted", "1/4", "1d"])
        );
        for wide in 4..=8 {
            assert_eq!(t["columnDefinitions"][wide]["priority"], 1);
        }
    }
}
