//! Name and label validation with the rules and messages of Kubernetes
//! (`k8s.io/apimachinery/pkg/util/validation`), so clients see familiar errors.

const DNS1123_LABEL_FMT: &str = "[a-z0-9]([-a-z0-9]*[a-z0-9])?";
const DNS1035_LABEL_FMT: &str = "[a-z]([-a-z0-9]*[a-z0-9])?";
const DNS1123_SUBDOMAIN_FMT: &str =
    "[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*";
const QUALIFIED_NAME_FMT: &str = "([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]";
const LABEL_VALUE_FMT: &str = "(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?";

fn too_long(max: usize) -> String {
    format!("must be no more than {max} characters")
}

fn is_alnum_lower(c: u8) -> bool {
    c.is_ascii_lowercase() || c.is_ascii_digit()
}

fn is_dns1123_label(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && is_alnum_lower(b[0])
        && is_alnum_lower(b[b.len() - 1])
        && b.iter().all(|&c| is_alnum_lower(c) || c == b'-')
}

fn is_qualified_name_part(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b[0].is_ascii_alphanumeric()
        && b[b.len() - 1].is_ascii_alphanumeric()
        && b.iter()
            .all(|&c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))
}

/// An RFC 1123 label (namespace names): at most 63 characters of `[a-z0-9-]`.
pub fn validate_dns1123_label(s: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if s.len() > 63 {
        errs.push(too_long(63));
    }
    if !is_dns1123_label(s) {
        errs.push(format!(
            "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', \
             and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', \
             regex used for validation is '{DNS1123_LABEL_FMT}')"
        ));
    }
    errs
}

/// An RFC 1035 label (Service names): at most 63 characters of `[a-z0-9-]`, starting
/// with a letter.
pub fn validate_dns1035_label(s: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if s.len() > 63 {
        errs.push(too_long(63));
    }
    if !(is_dns1123_label(s) && s.as_bytes()[0].is_ascii_lowercase()) {
        errs.push(format!(
            "a DNS-1035 label must consist of lower case alphanumeric characters or '-', start \
             with an alphabetic character, and end with an alphanumeric character (e.g. \
             'my-name',  or 'abc-123', regex used for validation is '{DNS1035_LABEL_FMT}')"
        ));
    }
    errs
}

/// An RFC 1123 subdomain (most object names): at most 253 characters, dot-separated labels.
pub fn validate_dns1123_subdomain(s: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if s.len() > 253 {
        errs.push(too_long(253));
    }
    if s.is_empty() || !s.split('.').all(is_dns1123_label) {
        errs.push(format!(
            "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' \
             or '.', and must start and end with an alphanumeric character (e.g. 'example.com', \
             regex used for validation is '{DNS1123_SUBDOMAIN_FMT}')"
        ));
    }
    errs
}

/// A name that can appear as one path segment of a URL.
pub fn validate_path_segment(s: &str) -> Vec<String> {
    if s == "." || s == ".." {
        return vec![format!("may not be '{s}'")];
    }
    let mut errs = Vec::new();
    for bad in ["/", "%"] {
        if s.contains(bad) {
            errs.push(format!("may not contain '{bad}'"));
        }
    }
    errs
}

/// A qualified name such as a label or annotation key: `[prefix/]name`, where the prefix is
/// a DNS subdomain and the name at most 63 characters of `[A-Za-z0-9._-]`.
pub fn validate_qualified_name(s: &str) -> Vec<String> {
    let mut errs = Vec::new();
    let parts: Vec<&str> = s.split('/').collect();
    let name = match parts.as_slice() {
        [name] => *name,
        [prefix, name] => {
            if prefix.is_empty() {
                errs.push("prefix part must be non-empty".to_string());
            } else {
                for msg in validate_dns1123_subdomain(prefix) {
                    errs.push(format!("prefix part {msg}"));
                }
            }
            name
        }
        _ => {
            return vec![format!(
                "a qualified name must consist of alphanumeric characters, '-', '_' or '.', and must \
                 start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or \
                 '123-abc', regex used for validation is '{QUALIFIED_NAME_FMT}') with an optional \
                 DNS subdomain prefix and '/' (e.g. 'example.com/MyName')"
            )];
        }
    };
    if name.is_empty() {
        errs.push("name part must be non-empty".to_string());
    } else if name.len() > 63 {
        errs.push(format!("name part {}", too_long(63)));
    }
    if !name.is_empty() && !is_qualified_name_part(name) {
        errs.push(format!(
            "name part must consist of alphanumeric characters, '-', '_' or '.', and must start and \
             end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex \
             used for validation is '{QUALIFIED_NAME_FMT}')"
        ));
    }
    errs
}

/// A label key; the first problem found, as selectors report one message.
pub fn validate_label_key(s: &str) -> Result<(), String> {
    match validate_qualified_name(s).into_iter().next() {
        Some(msg) => Err(msg),
        None => Ok(()),
    }
}

/// A label value: empty, or at most 63 characters of `[A-Za-z0-9._-]` starting and ending
/// with an alphanumeric character.
pub fn validate_label_value(s: &str) -> Result<(), String> {
    if s.len() > 63 {
        return Err(too_long(63));
    }
    if !s.is_empty() && !is_qualified_name_part(s) {
        return Err(format!(
            "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' \
             or '.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or \
             'my_value',  or '12345', regex used for validation is '{LABEL_VALUE_FMT}')"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subdomains() {
        assert!(validate_dns1123_subdomain("a.b-c.d1").is_empty());
        assert!(!validate_dns1123_subdomain("Foo").is_empty());
        assert!(!validate_dns1123_subdomain("a..b").is_empty());
        assert!(!validate_dns1123_subdomain("-a").is_empty());
        assert!(!validate_dns1123_subdomain("").is_empty());
        assert!(!validate_dns1123_subdomain(&"a".repeat(254)).is_empty());
        assert!(validate_dns1123_subdomain(&"a".repeat(63)).is_empty());
    }

    #[test]
    fn labels() {
        assert!(validate_dns1123_label("team-a").is_empty());
        assert!(!validate_dns1123_label("team.a").is_empty());
        assert!(!validate_dns1123_label(&"a".repeat(64)).is_empty());
    }

    #[test]
    fn dns1035_labels() {
        assert!(validate_dns1035_label("web-1").is_empty());
        assert!(!validate_dns1035_label("1web").is_empty());
        assert!(!validate_dns1035_label("web-").is_empty());
        assert!(!validate_dns1035_label("web.a").is_empty());
        assert!(!validate_dns1035_label("").is_empty());
        assert!(!validate_dns1035_label(&"a".repeat(64)).is_empty());
    }

    #[test]
    fn qualified_names() {
        assert!(validate_qualified_name("hive.openshift.io/managed").is_empty());
        assert!(validate_qualified_name("App_1.x").is_empty());
        assert!(!validate_qualified_name("a/b/c").is_empty());
        assert!(!validate_qualified_name("/a").is_empty());
        assert!(!validate_qualified_name("Bad_Prefix/a").is_empty());
        assert!(!validate_qualified_name("a/").is_empty());
        assert!(!validate_qualified_name("a b").is_empty());
        assert!(!validate_qualified_name(&"a".repeat(64)).is_empty());
    }

    #[test]
    fn label_values() {
        assert!(validate_label_value("").is_ok());
        assert!(validate_label_value("v1.2_x-y").is_ok());
        assert!(validate_label_value("-x").is_err());
        assert!(validate_label_value("x'").is_err());
        assert!(validate_label_value(&"v".repeat(64)).is_err());
    }

    #[test]
    fn path_segments() {
        assert!(validate_path_segment("ok").is_empty());
        assert!(!validate_path_segment("..").is_empty());
        assert!(!validate_path_segment("a/b").is_empty());
        assert!(!validate_path_segment("a%2f").is_empty());
    }
}
