//! Group, version, kind and resource identifiers.

use std::fmt;

/// An API group and version, e.g. `hive.openshift.io/v1` or the core `v1`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct GroupVersion {
    /// The group; empty for the core group.
    pub group: String,
    /// The version.
    pub version: String,
}

impl GroupVersion {
    /// Builds a group-version.
    pub fn new(group: impl Into<String>, version: impl Into<String>) -> Self {
        Self {
            group: group.into(),
            version: version.into(),
        }
    }

    /// Parses an `apiVersion` string (`v1`, `group/version`).
    pub fn parse(api_version: &str) -> Option<Self> {
        match api_version.split_once('/') {
            None if !api_version.is_empty() => Some(Self::new("", api_version)),
            Some((g, v)) if !g.is_empty() && !v.is_empty() && !v.contains('/') => {
                Some(Self::new(g, v))
            }
            _ => None,
        }
    }

    /// The `apiVersion` string.
    pub fn api_version(&self) -> String {
        self.to_string()
    }
}

impl fmt::Display for GroupVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.group.is_empty() {
            f.write_str(&self.version)
        } else {
            write!(f, "{}/{}", self.group, self.version)
        }
    }
}

/// A kind within a group-version.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct GroupVersionKind {
    /// The group.
    pub group: String,
    /// The version.
    pub version: String,
    /// The kind, e.g. `ConfigMap`.
    pub kind: String,
}

impl GroupVersionKind {
    /// Builds a GVK.
    pub fn new(group: &str, version: &str, kind: &str) -> Self {
        Self {
            group: group.into(),
            version: version.into(),
            kind: kind.into(),
        }
    }

    /// The `apiVersion` string of this kind.
    pub fn api_version(&self) -> String {
        GroupVersion::new(&*self.group, &*self.version).to_string()
    }
}

impl fmt::Display for GroupVersionKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}, Kind={}", self.api_version(), self.kind)
    }
}

/// A resource (plural name) within a group-version, as in URL paths.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct GroupVersionResource {
    /// The group.
    pub group: String,
    /// The version.
    pub version: String,
    /// The plural resource name, e.g. `configmaps`.
    pub resource: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_api_versions() {
        assert_eq!(GroupVersion::parse("v1"), Some(GroupVersion::new("", "v1")));
        assert_eq!(
            GroupVersion::parse("hive.openshift.io/v1"),
            Some(GroupVersion::new("hive.openshift.io", "v1"))
        );
        assert_eq!(GroupVersion::parse("a/b/c"), None);
        assert_eq!(GroupVersion::parse("/v1"), None);
        assert_eq!(GroupVersion::parse(""), None);
    }
}
