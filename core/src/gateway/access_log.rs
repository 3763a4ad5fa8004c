//! A stage's access log (`access_log = { destination, format }`): where its lines go and the
//! `$context` template they follow, compiled once at config load into literal text and
//! variables. Rendering a line from a request is the pipeline's log phase
//! (`pipeline::log`); writing lines is the proxy's.
//!
//! As API Gateway requires (guide L38947-38967), a format contains `$context.requestId` or
//! `$context.extendedRequestId`, and only `$context` variables are allowed; an unknown
//! variable is a config error. `json` and `clf` name the guide's example formats (L43431-43462).
//!
//! `$context.authorizer.principalId`, `.claims.NAME` (also `.claims['NAME']`), `.NAME` (a
//! Lambda authorizer's context key) and `$context.identity.apiKeyId` (the key's configured
//! name) are compiled into a [`Var`] holding the name, so a line looks the value up in the
//! request's authorizer result without parsing anything. API key values never appear:
//! `$context.identity.apiKey` and `$context.authorizer.usageIdentifierKey` are refused.

use crate::lambda::policy::{authorizer_name, AuthorizerName};

/// The guide's CLF example format (HTTP API, L43431-43462).
pub const CLF: &str = "$context.identity.sourceIp - - [$context.requestTime] \"$context.httpMethod $context.routeKey $context.protocol\" $context.status $context.responseLength $context.requestId $context.extendedRequestId";

/// The guide's JSON example format (HTTP API, L43431-43462).
pub const JSON: &str = "{ \"requestId\":\"$context.requestId\", \"ip\": \"$context.identity.sourceIp\", \"requestTime\":\"$context.requestTime\", \"httpMethod\":\"$context.httpMethod\",\"routeKey\":\"$context.routeKey\", \"status\":\"$context.status\",\"protocol\":\"$context.protocol\", \"responseLength\":\"$context.responseLength\", \"extendedRequestId\":\"$context.extendedRequestId\" }";

/// Where a stage's access log lines go.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Destination {
    Stdout,
    /// A file path, opened for appending (reopened on SIGUSR1).
    File(Box<str>),
}

/// A stage's access log.
#[derive(Clone, Debug, PartialEq)]
pub struct AccessLog {
    pub destination: Destination,
    pub format: Format,
    /// Index of `destination` in the gateway's list of distinct destinations
    /// ([`destinations`]); the proxy keeps one writer per entry.
    pub sink: usize,
}

/// A `$context` variable an access log format may use.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Var {
    RequestId,
    ExtendedRequestId,
    ApiId,
    Stage,
    DomainName,
    DomainPrefix,
    HttpMethod,
    Path,
    ResourcePath,
    RouteKey,
    Protocol,
    Status,
    ResponseLength,
    RequestTime,
    RequestTimeEpoch,
    ResponseLatency,
    IntegrationLatency,
    IntegrationStatus,
    IntegrationError,
    SourceIp,
    UserAgent,
    ErrorMessage,
    ErrorMessageString,
    ErrorResponseType,
    /// `identity.apiKeyId`: the name of the API key the request was counted against.
    ApiKeyId,
    /// `authorizer.principalId`.
    PrincipalId,
    /// `authorizer.claims.NAME`: a JWT authorizer's claim.
    Claim(Box<str>),
    /// `authorizer.NAME`: a key of a Lambda authorizer's context.
    AuthorizerKey(Box<str>),
    /// Known to API Gateway but about things tollgate does not record (the authorizer call's
    /// own latency, status and error, base path mappings): always `-`.
    Unavailable,
}

/// Variable names (after `$context.`) and what they render.
const VARS: &[(&str, Var)] = &[
    ("requestId", Var::RequestId),
    ("extendedRequestId", Var::ExtendedRequestId),
    ("apiId", Var::ApiId),
    ("stage", Var::Stage),
    ("domainName", Var::DomainName),
    ("domainPrefix", Var::DomainPrefix),
    ("httpMethod", Var::HttpMethod),
    ("path", Var::Path),
    ("resourcePath", Var::ResourcePath),
    ("routeKey", Var::RouteKey),
    ("protocol", Var::Protocol),
    ("status", Var::Status),
    ("responseLength", Var::ResponseLength),
    ("requestTime", Var::RequestTime),
    ("requestTimeEpoch", Var::RequestTimeEpoch),
    ("responseLatency", Var::ResponseLatency),
    ("integrationLatency", Var::IntegrationLatency),
    ("integration.latency", Var::IntegrationLatency),
    ("integrationStatus", Var::IntegrationStatus),
    ("integration.integrationStatus", Var::IntegrationStatus),
    ("integration.status", Var::IntegrationStatus),
    ("integration.error", Var::IntegrationError),
    ("integrationErrorMessage", Var::IntegrationError),
    ("identity.sourceIp", Var::SourceIp),
    ("identity.userAgent", Var::UserAgent),
    ("error.message", Var::ErrorMessage),
    ("error.messageString", Var::ErrorMessageString),
    ("error.responseType", Var::ErrorResponseType),
    ("identity.apiKeyId", Var::ApiKeyId),
    ("authorizer.principalId", Var::PrincipalId),
    ("customDomain.basePathMatched", Var::Unavailable),
];

/// One piece of a compiled format.
#[derive(Clone, Debug, PartialEq)]
pub enum Piece {
    Text(Box<str>),
    Var(Var),
}

/// A compiled access log format.
#[derive(Clone, Debug, PartialEq)]
pub struct Format {
    pieces: Vec<Piece>,
    /// The format is JSON (starts with `{`): values are JSON-escaped.
    json: bool,
    /// Some variable needs the `Host` / `User-Agent` header copied for the log phase.
    needs_host: bool,
    needs_user_agent: bool,
}

/// Why a format was refused, at a byte range of the format text.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FormatError {
    pub at: std::ops::Range<usize>,
    pub message: String,
}

impl Format {
    /// `json`, `clf`, or a `$context` template.
    pub fn compile(text: &str) -> Result<Format, FormatError> {
        match text {
            "json" => Format::template(JSON),
            "clf" => Format::template(CLF),
            _ => Format::template(text),
        }
    }

    fn template(text: &str) -> Result<Format, FormatError> {
        const PREFIX: &str = "$context.";
        let mut pieces = Vec::new();
        let mut literal = String::new();
        let mut has_id = false;
        let bytes = text.as_bytes();
        let mut i = 0;
        while i < bytes.len() {
            let Some(off) = text[i..].find('$') else {
                literal.push_str(&text[i..]);
                break;
            };
            literal.push_str(&text[i..i + off]);
            let at = i + off;
            let rest = &text[at..];
            // `$` not followed by a name is plain text.
            let name_len = rest[1..]
                .bytes()
                .take_while(|b| b.is_ascii_alphanumeric() || *b == b'_' || *b == b'.')
                .count();
            if name_len == 0 {
                literal.push('$');
                i = at + 1;
                continue;
            }
            let mut word = rest[1..1 + name_len].trim_end_matches('.');
            // `$context.authorizer.claims['custom:role']` (claim names with other characters).
            if word == "context.authorizer.claims" {
                let after = &rest[1 + word.len()..];
                if let Some(close) = after.strip_prefix("['").and_then(|a| a.find("']")) {
                    word = &rest[1..1 + word.len() + 2 + close + 2];
                }
            }
            let end = at + 1 + word.len();
            if !rest.starts_with(PREFIX) || word.len() < PREFIX.len() {
                return Err(FormatError {
                    at: at..end,
                    message: format!(
                        "`${word}` is not allowed in an access log format: only `$context` variables are (such as `$context.requestId`)"
                    ),
                });
            }
            let name = &word[PREFIX.len() - 1..];
            let var = lookup(name).ok_or_else(|| FormatError {
                at: at..end,
                message: unknown_message(name),
            })?;
            has_id |= matches!(var, Var::RequestId | Var::ExtendedRequestId);
            if !literal.is_empty() {
                pieces.push(Piece::Text(std::mem::take(&mut literal).into()));
            }
            pieces.push(Piece::Var(var));
            i = end;
        }
        if !literal.is_empty() {
            pieces.push(Piece::Text(literal.into()));
        }
        if !has_id {
            return Err(FormatError {
                at: 0..text.len(),
                message: "an access log format must contain `$context.requestId` or `$context.extendedRequestId`".to_string(),
            });
        }
        let uses = |v: Var| pieces.contains(&Piece::Var(v));
        Ok(Format {
            json: text.trim_start().starts_with('{'),
            needs_host: uses(Var::DomainName) || uses(Var::DomainPrefix),
            needs_user_agent: uses(Var::UserAgent),
            pieces,
        })
    }

    pub fn pieces(&self) -> &[Piece] {
        &self.pieces
    }

    /// Values are JSON-escaped (the format is a JSON object).
    pub fn json(&self) -> bool {
        self.json
    }

    /// The log phase needs the request's `Host` header.
    pub fn needs_host(&self) -> bool {
        self.needs_host
    }

    /// The log phase needs the request's `User-Agent` header.
    pub fn needs_user_agent(&self) -> bool {
        self.needs_user_agent
    }
}

fn lookup(name: &str) -> Option<Var> {
    if let Some((_, v)) = VARS.iter().find(|(n, _)| *n == name) {
        return Some(v.clone());
    }
    let rest = name.strip_prefix("authorizer.")?;
    Some(match authorizer_name(rest)? {
        AuthorizerName::PrincipalId => Var::PrincipalId,
        AuthorizerName::Claim(c) => Var::Claim(c.into()),
        AuthorizerName::Key(k) => Var::AuthorizerKey(k.into()),
        AuthorizerName::NoValue => Var::Unavailable,
        AuthorizerName::ApiKeyValue => return None,
    })
}

fn unknown_message(name: &str) -> String {
    if name == "identity.apiKey" || name == "authorizer.usageIdentifierKey" {
        return format!("`$context.{name}` is not allowed in access logs: API key values never appear in logs (use `$context.identity.apiKeyId`)");
    }
    format!("unknown access log variable `$context.{name}`")
}

/// The variable names a format may use (after `$context.`), for suggestions.
pub fn variable_names() -> impl Iterator<Item = &'static str> {
    VARS.iter().map(|(n, _)| *n)
}

/// The distinct destinations of every stage's access log, in order of first use, with each
/// stage's `sink` set to its destination's index.
pub fn destinations(gw: &mut super::Gateway) -> Vec<Destination> {
    let mut out: Vec<Destination> = Vec::new();
    for api in &mut gw.apis {
        for stage in &mut api.stages {
            if let Some(log) = stage.access_log.as_deref_mut() {
                log.sink = match out.iter().position(|d| *d == log.destination) {
                    Some(i) => i,
                    None => {
                        out.push(log.destination.clone());
                        out.len() - 1
                    }
                };
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn named_formats_compile() {
        let j = Format::compile("json").expect("json");
        assert!(j.json());
        assert!(!j.needs_user_agent());
        let c = Format::compile("clf").expect("clf");
        assert!(!c.json());
        assert_eq!(c.pieces()[0], Piece::Var(Var::SourceIp));
        assert_eq!(c.pieces()[1], Piece::Text(" - - [".into()));
    }

    #[test]
    fn template_pieces() {
        let f = Format::compile("id=$context.requestId ua=$context.identity.userAgent. $x $")
            .expect_err("$x is not $context");
        assert_eq!(f.at, 54..56);
        let f = Format::compile("id=$context.requestId ua=$context.identity.userAgent. $ 5$")
            .expect("valid");
        assert_eq!(
            f.pieces(),
            &[
                Piece::Text("id=".into()),
                Piece::Var(Var::RequestId),
                Piece::Text(" ua=".into()),
                Piece::Var(Var::UserAgent),
                Piece::Text(". $ 5$".into()),
            ]
        );
        assert!(f.needs_user_agent());
        assert!(!f.needs_host());
        let f = Format::compile("$context.extendedRequestId $context.authorizer.claims.sub")
            .expect("valid");
        assert_eq!(f.pieces()[2], Piece::Var(Var::Claim("sub".into())));
    }

    #[test]
    fn authorizer_and_api_key_variables_compile_into_lookups() {
        let f = Format::compile(
            "$context.requestId p=$context.authorizer.principalId c=$context.authorizer.claims.email \
             r=$context.authorizer.claims['custom:role'] k=$context.authorizer.tenant. \
             id=$context.identity.apiKeyId e=$context.authorizer.error n=$context.authorizer.claims \
             s=$context.authorizer.status",
        )
        .expect("valid");
        let vars: Vec<&Var> = f
            .pieces()
            .iter()
            .filter_map(|p| match p {
                Piece::Var(v) => Some(v),
                Piece::Text(_) => None,
            })
            .collect();
        assert_eq!(
            vars,
            [
                &Var::RequestId,
                &Var::PrincipalId,
                &Var::Claim("email".into()),
                &Var::Claim("custom:role".into()),
                &Var::AuthorizerKey("tenant".into()),
                &Var::ApiKeyId,
                &Var::Unavailable,
                &Var::Unavailable,
                &Var::Unavailable,
            ]
        );
        // The text after a quoted claim goes on as text.
        assert_eq!(f.pieces()[7], Piece::Text(" k=".into()));
        assert_eq!(f.pieces()[9], Piece::Text(". id=".into()));
        // An unclosed quote: the name stops at `claims`, which has no value.
        let f = Format::compile("$context.requestId $context.authorizer.claims['x").expect("ok");
        assert_eq!(f.pieces()[2], Piece::Var(Var::Unavailable));
        assert_eq!(f.pieces()[3], Piece::Text("['x".into()));
    }

    #[test]
    fn refusals() {
        let e = Format::compile("$context.status").expect_err("no id");
        assert!(e.message.contains("requestId"), "{}", e.message);
        let e = Format::compile("$context.requestId $context.statuss").expect_err("unknown");
        assert_eq!(e.at, 19..35);
        assert!(e.message.contains("`$context.statuss`"), "{}", e.message);
        let e = Format::compile("$context.requestId $context.identity.apiKey").expect_err("key");
        assert!(e.message.contains("never appear"), "{}", e.message);
        let e = Format::compile("$context.requestId $context.authorizer.usageIdentifierKey")
            .expect_err("key");
        assert!(e.message.contains("never appear"), "{}", e.message);
        let e = Format::compile("$context.requestId $context.authorizer.").expect_err("empty");
        assert!(e.message.contains("unknown"), "{}", e.message);
        let e = Format::compile("$context.requestId $stageVariables.a").expect_err("not ctx");
        assert_eq!(e.at, 19..36);
        let e = Format::compile("$context.requestId $context.").expect_err("empty name");
        assert_eq!(e.at, 19..27);
    }
}
