//! `http_proxy` integration URIs: `${stageVariables.name}` references and their substitution
//! per stage, then `http://host[:port][/path][?query]` parsing. `{param}` references are left
//! to `gateway::PathTemplate`.

use std::net::Ipv6Addr;
use std::ops::Range;

const STAGE_VARIABLES: &str = "stageVariables.";

/// A run of a raw integration URI.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Piece<'a> {
    /// Literal text starting at byte `at` of the URI.
    Text { text: &'a str, at: usize },
    /// `${stageVariables.name}` spanning `span` of the URI.
    Variable { name: &'a str, span: Range<usize> },
}

/// Splits a raw URI into literal text and stage variable references.
pub(crate) fn pieces(uri: &str) -> Result<Vec<Piece<'_>>, (Range<usize>, String)> {
    let mut out = Vec::new();
    let mut pos = 0;
    while let Some(i) = uri[pos..].find("${") {
        let start = pos + i;
        if start > pos {
            out.push(Piece::Text {
                text: &uri[pos..start],
                at: pos,
            });
        }
        let Some(len) = uri[start..].find('}') else {
            return Err((start..uri.len(), "`${` is never closed".to_string()));
        };
        let end = start + len + 1;
        let inner = &uri[start + 2..end - 1];
        let name = inner.strip_prefix(STAGE_VARIABLES).unwrap_or("");
        if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
            return Err((
                start..end,
                format!("`${{{inner}}}`: only `${{stageVariables.NAME}}` can be used in an integration URI"),
            ));
        }
        out.push(Piece::Variable {
            name,
            span: start..end,
        });
        pos = end;
    }
    if pos < uri.len() {
        out.push(Piece::Text {
            text: &uri[pos..],
            at: pos,
        });
    }
    Ok(out)
}

/// The URI with every stage variable replaced by its value in `variables`; `Err(name)` for the
/// first variable that is not defined.
pub(crate) fn substitute<'a>(
    pieces: &[Piece<'a>],
    variables: &[(&str, &str)],
) -> Result<String, &'a str> {
    let mut out = String::new();
    for p in pieces {
        match p {
            Piece::Text { text, .. } => out.push_str(text),
            Piece::Variable { name, .. } => match variables.iter().find(|(n, _)| n == name) {
                Some((_, value)) => out.push_str(value),
                None => return Err(name),
            },
        }
    }
    Ok(out)
}

/// A parsed `http://` or `https://` URI.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct HttpUri<'a> {
    /// `https://`: the backend is reached over TLS (default port 443).
    pub tls: bool,
    /// `host[:port]` as written: the `Host` header sent to the backend.
    pub authority: &'a str,
    /// The host to resolve (IPv6 without brackets).
    pub host: &'a str,
    pub port: u16,
    /// `""` when the URI has no path.
    pub path: &'a str,
    pub query: Option<&'a str>,
}

/// Parses `http[s]://host[:port][/path][?query]`.
pub(crate) fn parse_http(uri: &str) -> Result<HttpUri<'_>, String> {
    if let Some(c) = uri.chars().find(|c| !c.is_ascii_graphic()) {
        return Err(format!(
            "the URI contains {:?}: spaces, control and non-ASCII characters must be percent-encoded",
            c
        ));
    }
    if uri.contains('#') {
        return Err("a URI fragment (`#...`) cannot be sent to a backend".to_string());
    }
    let Some((scheme, rest)) = uri.split_once("://") else {
        return Err(format!(
            "`{uri}` is not an absolute URI: write http://host[:port][/path][?query]"
        ));
    };
    let tls = scheme.eq_ignore_ascii_case("https");
    if !tls && !scheme.eq_ignore_ascii_case("http") {
        return Err(format!(
            "unsupported scheme `{scheme}`: write http://host[:port][/path][?query]"
        ));
    }
    let end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, target) = rest.split_at(end);
    let (host, port) = authority_parts(authority, if tls { 443 } else { 80 })?;
    let (path, query) = match target.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (target, None),
    };
    Ok(HttpUri {
        tls,
        authority,
        host,
        port,
        path,
        query,
    })
}

fn authority_parts(authority: &str, default_port: u16) -> Result<(&str, u16), String> {
    if authority.is_empty() {
        return Err("the URI has no host".to_string());
    }
    if authority.contains('@') {
        return Err("user info (`user@host`) is not supported in integration URIs".to_string());
    }
    if authority.contains(['{', '}']) {
        return Err(
            "path parameters can only be used in the URI path and query, not the host".to_string(),
        );
    }
    let (host, port) = if let Some(bracketed) = authority.strip_prefix('[') {
        let Some((inner, after)) = bracketed.split_once(']') else {
            return Err(format!("`{authority}`: `[` without `]`"));
        };
        if inner.parse::<Ipv6Addr>().is_err() {
            return Err(format!("`[{inner}]` is not an IPv6 address"));
        }
        let port = match after {
            "" => None,
            p => match p.strip_prefix(':') {
                Some(p) => Some(p),
                None => return Err(format!("unexpected `{after}` after `[{inner}]`")),
            },
        };
        (inner, port)
    } else if authority.matches(':').count() > 1 {
        return Err(format!(
            "invalid host in `{authority}` (write IPv6 addresses in brackets: http://[::1]:9000)"
        ));
    } else {
        match authority.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (authority, None),
        }
    };
    if host.is_empty() {
        return Err("the URI has no host".to_string());
    }
    if !authority.starts_with('[')
        && !host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-' || b == b'_')
    {
        return Err(format!(
            "invalid host `{host}` (write IPv6 addresses in brackets: http://[::1]:9000)"
        ));
    }
    let port = match port {
        None => default_port,
        Some(p) => match p.parse::<u16>() {
            Ok(n) if n > 0 && p.bytes().all(|b| b.is_ascii_digit()) => n,
            _ => return Err(format!("invalid port `{p}`: expected 1 to 65535")),
        },
    };
    Ok((host, port))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_stage_variables() {
        let uri = "http://${stageVariables.host}:${stageVariables.port}/a?x=${stageVariables.q}";
        let p = pieces(uri).unwrap();
        assert_eq!(p.len(), 6);
        assert_eq!(
            p[0],
            Piece::Text {
                text: "http://",
                at: 0
            }
        );
        assert_eq!(
            p[1],
            Piece::Variable {
                name: "host",
                span: 7..29
            }
        );
        let vars = [("host", "10.0.0.1"), ("port", "81"), ("q", "1")];
        assert_eq!(substitute(&p, &vars).unwrap(), "http://10.0.0.1:81/a?x=1");
        assert_eq!(substitute(&p, &vars[..2]), Err("q"));
    }

    #[test]
    fn refuses_other_dollar_references() {
        assert!(pieces("http://${stageVariables}/").is_err());
        let (span, reason) = pieces("http://x/${context.path}").unwrap_err();
        assert_eq!(span, 9..24);
        assert!(reason.contains("stageVariables.NAME"), "{reason}");
        assert!(pieces("http://x/${stageVariables.a").is_err());
        assert_eq!(
            pieces("http://x/$a").unwrap(),
            vec![Piece::Text {
                text: "http://x/$a",
                at: 0
            }]
        );
    }

    #[test]
    fn parses_http_uris() {
        let u = parse_http("http://127.0.0.1:9000/pets/{id}?a=1").unwrap();
        assert_eq!(
            u,
            HttpUri {
                tls: false,
                authority: "127.0.0.1:9000",
                host: "127.0.0.1",
                port: 9000,
                path: "/pets/{id}",
                query: Some("a=1"),
            }
        );
        let u = parse_http("https://backend.internal/x").unwrap();
        assert_eq!((u.tls, u.host, u.port), (true, "backend.internal", 443));
        let u = parse_http("HTTP://backend.internal").unwrap();
        assert_eq!(
            (u.host, u.port, u.path, u.query),
            ("backend.internal", 80, "", None)
        );
        let u = parse_http("http://[::1]:8080?x").unwrap();
        assert_eq!(
            (u.authority, u.host, u.port, u.path),
            ("[::1]:8080", "::1", 8080, "")
        );
    }

    #[test]
    fn refuses_bad_uris() {
        for (uri, want) in [
            ("ftp://x/", "unsupported scheme"),
            ("x/y", "not an absolute URI"),
            ("http:///p", "no host"),
            ("http://u@x/", "user info"),
            ("http://x:0/", "invalid port"),
            ("http://x:99999/", "invalid port"),
            ("http://x:/", "invalid port"),
            ("http://{h}/", "not the host"),
            ("http://x/a b", "percent-encoded"),
            ("http://x/a#f", "fragment"),
            ("http://::1/", "brackets"),
            ("http://[zz]/", "IPv6"),
        ] {
            match parse_http(uri) {
                Ok(u) => panic!("{uri} parsed: {u:?}"),
                Err(e) => assert!(e.contains(want), "{uri}: {e}"),
            }
        }
    }
}
