//! One RolloutPolicy per set: a write that would leave a SyncSet or SelectorSyncSet selected
//! by two RolloutPolicies — a policy whose selector takes a set another governs, or a set
//! whose labels two policies select — is refused (422, naming both), since which waves and
//! gates apply would otherwise be a matter of names. The controllers, for a pair stored
//! before (or written concurrently), follow the first policy by name.

use serde_json::Value;
use syncsets_machinery::FieldError;
use syncsets_types::{LabelSelector, Selector};

use crate::error::{ApiError, ApiResult};
use crate::handlers::Ctx;

const POLICIES: &str = "rolloutpolicies.syncsets.io";
const SETS: [(&str, &str); 2] = [
    ("syncsets.hive.openshift.io", "SyncSet"),
    ("selectorsyncsets.hive.openshift.io", "SelectorSyncSet"),
];

/// Checks a write of a RolloutPolicy, SyncSet or SelectorSyncSet (`new`, as it would be
/// stored) for a set governed twice.
pub(crate) async fn check(ctx: &Ctx, new: &Value) -> ApiResult<()> {
    let name = new["metadata"]["name"].as_str().unwrap_or_default();
    let errors = match (ctx.kind.group.as_str(), ctx.kind.kind.as_str()) {
        ("syncsets.io", "RolloutPolicy") => {
            let Some(mine) = selector(&new["spec"]["selector"]) else {
                return Ok(()); // validation says what is wrong with it
            };
            let others: Vec<(String, Selector)> = policies(ctx)
                .await?
                .into_iter()
                .filter(|(n, _)| n != name)
                .collect();
            let mut errors = Vec::new();
            for (resource, kind) in SETS {
                for set in list(ctx, resource).await? {
                    let labels = syncsets_store::labels_of(&set);
                    if !mine.matches(&labels) {
                        continue;
                    }
                    if let Some((other, _)) = others.iter().find(|(_, s)| s.matches(&labels)) {
                        errors.push(FieldError::invalid(
                            "spec.selector",
                            new["spec"]["selector"].clone(),
                            format!(
                                "selects {kind} {}, which RolloutPolicy {other} governs: a set \
                                 follows one policy",
                                display(&set)
                            ),
                        ));
                    }
                }
            }
            errors
        }
        ("hive.openshift.io", "SyncSet" | "SelectorSyncSet") => {
            let labels = syncsets_store::labels_of(new);
            let governing: Vec<String> = policies(ctx)
                .await?
                .into_iter()
                .filter(|(_, s)| s.matches(&labels))
                .map(|(n, _)| n)
                .collect();
            if governing.len() < 2 {
                return Ok(());
            }
            vec![FieldError::invalid(
                "metadata.labels",
                serde_json::to_value(&labels).unwrap_or_default(),
                format!(
                    "selected by RolloutPolicies {}: a set follows one policy",
                    governing.join(" and ")
                ),
            )]
        }
        _ => return Ok(()),
    };
    if errors.is_empty() {
        return Ok(());
    }
    Err(ApiError::invalid(
        &ctx.kind.qualified_kind(),
        &ctx.kind.group,
        &ctx.kind.kind,
        name,
        &errors,
    ))
}

fn selector(v: &Value) -> Option<Selector> {
    let parsed: LabelSelector = serde_json::from_value(v.clone()).ok()?;
    Selector::from_label_selector(Some(&parsed)).ok()
}

fn display(set: &Value) -> String {
    let meta = &set["metadata"];
    match meta["namespace"].as_str() {
        Some(ns) if !ns.is_empty() => format!("{ns}/{}", meta["name"].as_str().unwrap_or_default()),
        _ => meta["name"].as_str().unwrap_or_default().to_string(),
    }
}

async fn policies(ctx: &Ctx) -> ApiResult<Vec<(String, Selector)>> {
    Ok(list(ctx, POLICIES)
        .await?
        .into_iter()
        .filter_map(|p| {
            let name = p["metadata"]["name"].as_str()?.to_string();
            Some((name, selector(&p["spec"]["selector"])?))
        })
        .collect())
}

async fn list(ctx: &Ctx, resource: &str) -> ApiResult<Vec<Value>> {
    crate::attach::stored(
        ctx,
        resource,
        None,
        "reading the rollout policies a write concerns",
    )
    .await
}
