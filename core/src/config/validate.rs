//! Checks of single values: names (APIs, stages, stage variables, hosts, domains), mapping
//! paths, mock headers. Each returns the value to keep (normalized where that matters) or a
//! plain reason; the callers attach the position.

use std::net::Ipv6Addr;

/// Longest API name.
pub(crate) const MAX_API_NAME: usize = 128;
/// Stage names: `[A-Za-z0-9_-]{1,128}` (API Gateway).
pub(crate) const MAX_STAGE_NAME: usize = 128;
/// Stage variables per stage, name and value length (API Gateway quotas).
pub(crate) const MAX_STAGE_VARIABLES: usize = 100;
pub(crate) const MAX_VARIABLE_NAME: usize = 64;
pub(crate) const MAX_VARIABLE_VALUE: usize = 512;
/// Longest base path mapping (API Gateway quota).
pub(crate) const MAX_MAPPING_PATH: usize = 300;
/// Longest host name (DNS).
const MAX_HOST: usize = 253;

pub(crate) fn api_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("an API name cannot be empty".to_string());
    }
    if name.chars().count() > MAX_API_NAME {
        return Err(format!("an API name has at most {MAX_API_NAME} characters"));
    }
    if name.chars().any(char::is_control) {
        return Err("an API name cannot contain control characters".to_string());
    }
    Ok(())
}

/// `$default` is checked by the caller (it depends on the protocol).
pub(crate) fn stage_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= MAX_STAGE_NAME
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "invalid stage name `{name}`: use 1 to {MAX_STAGE_NAME} of A-Z a-z 0-9 _ - (or `$default` in an http API)"
        ))
    }
}

pub(crate) fn variable_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= MAX_VARIABLE_NAME
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "invalid stage variable name `{name}`: use 1 to {MAX_VARIABLE_NAME} of A-Z a-z 0-9 _"
        ))
    }
}

pub(crate) fn variable_value(value: &str) -> Result<(), String> {
    if value.chars().count() > MAX_VARIABLE_VALUE {
        Err(format!(
            "a stage variable value has at most {MAX_VARIABLE_VALUE} characters"
        ))
    } else {
        Ok(())
    }
}

/// A name in an API's `hosts`: a DNS name or IP literal without port; returned lowercase,
/// without a trailing dot (the form `Gateway::resolve` compares with).
pub(crate) fn host_name(host: &str) -> Result<String, String> {
    let lower = host.trim_end_matches('.').to_ascii_lowercase();
    if let Some(inner) = lower.strip_prefix('[') {
        return match inner.strip_suffix(']').map(str::parse::<Ipv6Addr>) {
            Some(Ok(_)) => Ok(lower),
            _ => Err(format!("`{host}` is not a valid [IPv6] literal")),
        };
    }
    if lower.contains(':') {
        return Err(format!(
            "write the host without a port (`{}`): any listener port reaches it",
            lower.split(':').next().unwrap_or("")
        ));
    }
    dns_name(&lower).map_err(|reason| format!("invalid host `{host}`: {reason}"))?;
    Ok(lower)
}

/// A custom domain name: a DNS name, or `*.` + a DNS name. Returned lowercase.
pub(crate) fn domain_name(name: &str) -> Result<String, String> {
    let lower = name.trim_end_matches('.').to_ascii_lowercase();
    if lower.contains(':') {
        return Err("write the domain name without a port".to_string());
    }
    let base = lower.strip_prefix("*.").unwrap_or(&lower);
    if base.contains('*') {
        return Err(format!(
            "invalid domain name `{name}`: a wildcard is only allowed as the whole first label (`*.example.com`)"
        ));
    }
    dns_name(base).map_err(|reason| format!("invalid domain name `{name}`: {reason}"))?;
    Ok(lower)
}

fn dns_name(name: &str) -> Result<(), &'static str> {
    if name.is_empty() {
        return Err("it is empty");
    }
    if name.len() > MAX_HOST {
        return Err("longer than 253 characters");
    }
    for label in name.split('.') {
        if label.is_empty() || label.len() > 63 {
            return Err("each dot-separated label has 1 to 63 characters");
        }
        if !label
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return Err("use only letters, digits, `-`, `_` and dots");
        }
    }
    Ok(())
}

/// A base path mapping: `""` (the `(none)` mapping), `v1` or `orders/v1`.
pub(crate) fn mapping_path(path: &str) -> Result<(), String> {
    if path.len() > MAX_MAPPING_PATH {
        return Err(format!(
            "a mapping path has at most {MAX_MAPPING_PATH} characters"
        ));
    }
    if let Some(c) = path.chars().find(|c| !mapping_char(*c)) {
        return Err(format!(
            "invalid character `{c}` in mapping path `{path}` (allowed: A-Z a-z 0-9 $ - _ . + ! * ' ( ) /)"
        ));
    }
    if path.starts_with('/') || path.ends_with('/') {
        return Err(format!(
            "mapping path `{path}` must not start or end with `/` (write `v1` or `orders/v1`)"
        ));
    }
    if path.contains("//") {
        return Err(format!("mapping path `{path}` has an empty segment (`//`)"));
    }
    Ok(())
}

fn mapping_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || "$-_.+!*'()/".contains(c)
}

/// A mock response header name and value.
pub(crate) fn mock_header_name(name: &str) -> Result<(), String> {
    if name.is_empty() || !name.bytes().all(is_token_byte) {
        return Err(format!("`{name}` is not a valid header name"));
    }
    let computed = ["content-length", "transfer-encoding", "connection"];
    if computed.iter().any(|h| name.eq_ignore_ascii_case(h)) {
        return Err(format!(
            "`{name}` cannot be set on a mock response: the gateway writes it"
        ));
    }
    Ok(())
}

pub(crate) fn mock_header_value(value: &str) -> Result<(), String> {
    if value.chars().any(|c| c.is_control() && c != '\t') {
        Err("a header value cannot contain line breaks or control characters".to_string())
    } else {
        Ok(())
    }
}

/// RFC 9110 `tchar`.
fn is_token_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stage_and_variable_names() {
        assert!(stage_name("prod").is_ok());
        assert!(stage_name("Prod_2-b").is_ok());
        assert!(stage_name("").is_err());
        assert!(stage_name("$default").is_err());
        assert!(stage_name(&"a".repeat(129)).is_err());
        assert!(variable_name("backend_1").is_ok());
        assert!(variable_name("back-end").is_err());
        assert!(variable_name(&"v".repeat(65)).is_err());
        assert!(variable_value(&"x".repeat(512)).is_ok());
        assert!(variable_value(&"x".repeat(513)).is_err());
    }

    #[test]
    fn hosts_and_domains_are_normalized() {
        assert_eq!(
            host_name("API.Example.com.").as_deref(),
            Ok("api.example.com")
        );
        assert_eq!(host_name("[::1]").as_deref(), Ok("[::1]"));
        assert!(host_name("api.example.com:8080").is_err());
        assert!(host_name("bad host").is_err());
        assert_eq!(domain_name("*.Example.com").as_deref(), Ok("*.example.com"));
        assert!(domain_name("a.*.example.com").is_err());
        assert!(domain_name("*example.com").is_err());
        assert!(domain_name("a..b").is_err());
    }

    #[test]
    fn mapping_paths() {
        assert!(mapping_path("").is_ok());
        assert!(mapping_path("v1").is_ok());
        assert!(mapping_path("orders/v1").is_ok());
        assert!(mapping_path("a$-_.+!*'()b").is_ok());
        assert!(mapping_path("/v1").is_err());
        assert!(mapping_path("v1/").is_err());
        assert!(mapping_path("a//b").is_err());
        assert!(mapping_path("v1?x").is_err());
        assert!(mapping_path(&"a".repeat(301)).is_err());
    }

    #[test]
    fn mock_headers() {
        assert!(mock_header_name("content-type").is_ok());
        assert!(mock_header_name("Content-Length").is_err());
        assert!(mock_header_name("bad name").is_err());
        assert!(mock_header_value("a\tb").is_ok());
        assert!(mock_header_value("a\r\nb: c").is_err());
    }
}
