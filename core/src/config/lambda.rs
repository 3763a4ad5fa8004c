//! Config for Lambda (issue 17): `aws_proxy` integration targets (per stage, stage variables
//! substituted in the URI), `[[apis.authorizers]]` (TOKEN / REQUEST Lambda authorizers with
//! identity sources, validation regex, cache TTL and size, payload version, simple responses,
//! timeout), `binary_media_types`, route `authorizer` references, and `[server] region` /
//! `account_id`. Self-contained: called from `compile`.

use super::compile::{proxy_timeout, Upstreams, MIN_TIMEOUT_MS};
use super::diagnostics::{Diagnostics, Spanned};
use super::model::{self, Text};
use super::uri::{self, Piece};
use crate::gateway::{Protocol, Target};
use crate::lambda::jwt::JwtConfig;
use crate::lambda::{
    Authorizer, AuthorizerKind, ContextVariable, IdentitySource, JwksSource, JwtSettings,
    LambdaTarget, PayloadVersion,
};
use std::ops::RangeInclusive;
use std::time::Duration;

/// API Gateway's authorizer cache TTL: default 300 s, at most 3600 s (L13819-13860).
const DEFAULT_TTL_SECONDS: i64 = 300;
const MAX_TTL_SECONDS: i64 = 3600;
/// Authorizer timeout: API Gateway waits 10 s (L52207-52211).
const DEFAULT_AUTHORIZER_TIMEOUT_MS: i64 = 10_000;
const DEFAULT_CACHE_ENTRIES: i64 = 10_000;
const MAX_CACHE_ENTRIES: i64 = 1_000_000;
/// Authorizers per API (L52172).
const MAX_AUTHORIZERS: usize = 10;
/// Audiences per JWT authorizer (L52177-52205).
const MAX_AUDIENCES: usize = 50;

/// `[server] region` and `account_id` (defaults: `local`, `000000000000`); a value that is
/// not a region name / not 12 digits is reported.
pub(super) fn account(s: &model::Server, d: &mut Diagnostics<'_>) -> crate::lambda::Account {
    let mut account = crate::lambda::Account::default();
    if let Some(r) = &s.region {
        match crate::lambda::Account::check_region(&r.value) {
            Ok(()) => account.region = r.value.as_str().into(),
            Err(e) => d.error(r.span.clone(), e),
        }
    }
    if let Some(a) = &s.account_id {
        match crate::lambda::Account::check_account_id(&a.value) {
            Ok(()) => account.account_id = a.value.as_str().into(),
            Err(e) => d.error(a.span.clone(), e),
        }
    }
    account
}

fn payload_version(
    v: Option<&Text>,
    protocol: Protocol,
    d: &mut Diagnostics<'_>,
) -> Option<PayloadVersion> {
    let default = match protocol {
        Protocol::Rest => PayloadVersion::V1,
        Protocol::Http => PayloadVersion::V2,
    };
    let Some(v) = v else { return Some(default) };
    match (v.value.as_str(), protocol) {
        ("1.0", _) => Some(PayloadVersion::V1),
        ("2.0", Protocol::Http) => Some(PayloadVersion::V2),
        ("2.0", Protocol::Rest) => {
            d.error(
                v.span.clone(),
                "payload format 2.0 is only for http APIs: REST APIs use \"1.0\"",
            );
            None
        }
        (other, _) => {
            d.error(
                v.span.clone(),
                format!("unknown payload_format_version `{other}`, expected \"1.0\" or \"2.0\""),
            );
            None
        }
    }
}

/// `https://` endpoints (functions, JWKS) are verified against the web's root CAs, with the
/// URI's host as SNI, like `http_proxy` backends without `ca_file`.
fn backend_tls(u: &uri::HttpUri<'_>) -> Option<crate::tls::BackendTls> {
    u.tls.then(|| crate::tls::BackendTls {
        server_name: u.host.to_ascii_lowercase().into(),
        ca: None,
    })
}

/// The Invoke API URI's parts: (upstream, path with query).
fn invoke_uri(text: &str, upstreams: &mut Upstreams) -> Result<(u32, Box<str>), String> {
    let u = uri::parse_http(text)?;
    if !u.path.starts_with('/') {
        return Err(
            "the URI has no path: write http://host:port/2015-03-31/functions/NAME/invocations"
                .to_string(),
        );
    }
    let upstream = upstreams.index(u.host, u.port, u.authority, backend_tls(&u))?;
    let path = match u.query {
        Some(q) => format!("{}?{q}", u.path),
        None => u.path.to_string(),
    };
    Ok((upstream, path.into()))
}

/// One `aws_proxy` target per stage (same order as `stages`); empty after an error.
pub(super) fn targets(
    uri: Option<&Text>,
    version: Option<&Text>,
    timeout_ms: Option<&Spanned<i64>>,
    protocol: Protocol,
    stages: &[model::Stage],
    upstreams: &mut Upstreams,
    d: &mut Diagnostics<'_>,
) -> Vec<Target> {
    let version = payload_version(version, protocol, d);
    let timeout = proxy_timeout(timeout_ms, protocol, d);
    let Some(uri) = uri else { return Vec::new() };
    let pieces = match uri::pieces(&uri.value) {
        Ok(p) => p,
        Err((range, reason)) => {
            d.error(d.inside(uri, range), reason);
            return Vec::new();
        }
    };
    let mut out = Vec::with_capacity(stages.len());
    let mut ok = true;
    for s in stages {
        let variables: Vec<(&str, &str)> = s
            .variables
            .iter()
            .map(|(k, v)| (k.value.as_str(), v.value.as_str()))
            .collect();
        let text = match uri::substitute(&pieces, &variables) {
            Ok(t) => t,
            Err(name) => {
                let stage = s.name.as_ref().map_or("", |n| n.value.as_str());
                let span = pieces.iter().find_map(|p| match p {
                    Piece::Variable { name: n, span } if *n == name => Some(span.clone()),
                    _ => None,
                });
                let at = span.map_or(uri.span.clone(), |r| d.inside(uri, r));
                d.error(
                    at,
                    format!("stage `{stage}` does not define the stage variable `{name}`"),
                );
                ok = false;
                continue;
            }
        };
        match invoke_uri(&text, upstreams) {
            Ok((upstream, path)) => {
                if let Some(version) = version {
                    out.push(Target::Lambda(LambdaTarget {
                        upstream,
                        path,
                        version,
                        timeout,
                    }));
                }
            }
            Err(reason) => {
                d.error(uri.span.clone(), reason);
                return Vec::new();
            }
        }
    }
    if !ok || version.is_none() {
        return Vec::new();
    }
    out
}

/// `binary_media_types`: `type/subtype`, `type/*` or `*/*`.
pub(super) fn binary_media_types(types: &[Text], d: &mut Diagnostics<'_>) -> Vec<Box<str>> {
    let token = |s: &str| {
        !s.is_empty()
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
    };
    let mut out = Vec::with_capacity(types.len());
    for t in types {
        match t.value.split_once('/') {
            Some((a, b)) if token(a) && token(b) => out.push(t.value.as_str().into()),
            _ => d.error(
                t.span.clone(),
                format!(
                    "`{}` is not a media type: write type/subtype (e.g. image/png, image/*, */*)",
                    t.value
                ),
            ),
        }
    }
    out
}

/// An identity source in the API's syntax: REST `method.request.header.X`,
/// `method.request.querystring.X`, `stageVariables.X`, `context.X`; HTTP APIs
/// `$request.header.X`, `$request.querystring.X`, `$stageVariables.X`, `$context.X`.
fn identity_source(text: &str, protocol: Protocol) -> Result<IdentitySource, String> {
    let (header, query, stage, context) = match protocol {
        Protocol::Rest => (
            "method.request.header.",
            "method.request.querystring.",
            "stageVariables.",
            "context.",
        ),
        Protocol::Http => (
            "$request.header.",
            "$request.querystring.",
            "$stageVariables.",
            "$context.",
        ),
    };
    let named = |rest: &str| -> Result<Box<str>, String> {
        if rest.is_empty() || rest.bytes().any(|b| b <= b' ' || b == 0x7f) {
            Err(format!("identity source `{text}` has no valid name"))
        } else {
            Ok(rest.into())
        }
    };
    if let Some(rest) = text.strip_prefix(header) {
        return named(rest).map(IdentitySource::Header);
    }
    if let Some(rest) = text.strip_prefix(query) {
        return named(rest).map(IdentitySource::Query);
    }
    if let Some(rest) = text.strip_prefix(stage) {
        return named(rest).map(IdentitySource::StageVariable);
    }
    if let Some(rest) = text.strip_prefix(context) {
        return ContextVariable::ALL
            .iter()
            .find(|(n, _)| *n == rest)
            .map(|(_, v)| IdentitySource::Context(*v))
            .ok_or_else(|| {
                let names: Vec<String> = ContextVariable::ALL
                    .iter()
                    .map(|(n, _)| format!("`{context}{n}`"))
                    .collect();
                format!(
                    "unsupported context identity source `{text}`: use one of {}",
                    names.join(", ")
                )
            });
    }
    Err(format!(
        "unknown identity source `{text}`: write {header}NAME, {query}NAME, {stage}NAME or {context}NAME"
    ))
}

/// The API's authorizers; `next_id` numbers them across the gateway. Entries with an error
/// are reported and left out.
pub(super) fn authorizers(
    entries: &[model::Authorizer],
    protocol: Protocol,
    next_id: &mut u32,
    upstreams: &mut Upstreams,
    d: &mut Diagnostics<'_>,
) -> Vec<Authorizer> {
    if let Some(a) = entries.get(MAX_AUTHORIZERS) {
        d.error(
            a.span.clone(),
            format!("an API has at most {MAX_AUTHORIZERS} authorizers"),
        );
    }
    let mut out: Vec<Authorizer> = Vec::with_capacity(entries.len());
    for i in 0..entries.len() {
        if let Some(a) = authorizer(entries, i, protocol, *next_id, upstreams, d) {
            out.push(a);
            *next_id += 1;
        }
    }
    out
}

/// Entry `i` of the API's authorizers, numbered `id`; `None` (reported) when it has an error.
fn authorizer(
    entries: &[model::Authorizer],
    i: usize,
    protocol: Protocol,
    id: u32,
    upstreams: &mut Upstreams,
    d: &mut Diagnostics<'_>,
) -> Option<Authorizer> {
    let a = &entries[i];
    let mut ok = unique_name(entries, i, d);
    let mut sources = Vec::new();
    let kind = authorizer_kind(a, protocol, d);
    if kind == Some(AuthorizerKind::Jwt) && a.identity_sources.is_none() {
        sources.push(IdentitySource::Header("Authorization".into()));
    }
    if kind == Some(AuthorizerKind::Token) && protocol == Protocol::Http {
        if let Some(k) = &a.kind {
            d.error(
                k.span.clone(),
                "http APIs have no TOKEN authorizers: use `request` with an identity source",
            );
        }
        ok = false;
    }
    let version = payload_version(a.payload_format_version.as_ref(), protocol, d);
    let simple = a.simple_responses.as_ref().is_some_and(|s| s.value);
    ok &= simple_responses_ok(a, version, d);
    let sources_ok = identity_sources(a, protocol, &mut sources, d);
    ok &= sources_ok;
    let ttl = ttl_seconds(a, &mut ok, d);
    ok &= source_count(a, kind, ttl, sources_ok, &mut sources, d);
    let validation = validation_regex(a, kind, &mut ok, d);
    let cache_entries = bounded(
        a.cache_entries.as_ref(),
        "cache_entries",
        1..=MAX_CACHE_ENTRIES,
        DEFAULT_CACHE_ENTRIES,
        &mut ok,
        d,
    );
    let timeout = bounded(
        a.timeout_ms.as_ref(),
        "timeout_ms",
        MIN_TIMEOUT_MS..=DEFAULT_AUTHORIZER_TIMEOUT_MS,
        DEFAULT_AUTHORIZER_TIMEOUT_MS,
        &mut ok,
        d,
    );
    let target = authorizer_target(a, kind, upstreams, d);
    let jwt = jwt_or_stray_keys(a, kind, &mut ok, upstreams, d);
    let (Some(name), Some(kind), Some(version), Some((upstream, path)), true) =
        (&a.name, kind, version, target, ok)
    else {
        return None;
    };
    Some(Authorizer {
        name: name.value.as_str().into(),
        id,
        kind,
        upstream,
        path,
        identity_sources: sources,
        validation,
        ttl: Duration::from_secs(ttl.unsigned_abs()),
        cache_entries: cache_entries.unsigned_abs() as usize,
        version,
        simple_responses: simple,
        timeout: Duration::from_millis(timeout.unsigned_abs()),
        jwt,
    })
}

/// Whether `simple_responses` is allowed: only with payload version 2.0 (else reported).
fn simple_responses_ok(
    a: &model::Authorizer,
    version: Option<PayloadVersion>,
    d: &mut Diagnostics<'_>,
) -> bool {
    let mut ok = true;
    if let Some(s) = &a.simple_responses {
        if s.value && version != Some(PayloadVersion::V2) {
            d.error(
                s.span.clone(),
                "simple responses need payload_format_version = \"2.0\" (http APIs)",
            );
            ok = false;
        }
    }
    ok
}

/// Whether entry `i`'s name is not taken by an earlier authorizer of the API (else reported).
fn unique_name(entries: &[model::Authorizer], i: usize, d: &mut Diagnostics<'_>) -> bool {
    let a = &entries[i];
    let mut ok = true;
    if let Some(n) = &a.name {
        if entries[..i]
            .iter()
            .any(|b| b.name.as_ref().is_some_and(|m| m.value == n.value))
        {
            d.error(
                n.span.clone(),
                format!("another authorizer of this API is named `{}`", n.value),
            );
            ok = false;
        }
    }
    ok
}

/// The authorizer's `type`: `token`, `request` or (http APIs only) `jwt`; others are reported.
fn authorizer_kind(
    a: &model::Authorizer,
    protocol: Protocol,
    d: &mut Diagnostics<'_>,
) -> Option<AuthorizerKind> {
    a.kind.as_ref().and_then(|k| match k.value.as_str() {
        "token" => Some(AuthorizerKind::Token),
        "request" => Some(AuthorizerKind::Request),
        "jwt" if protocol == Protocol::Http => Some(AuthorizerKind::Jwt),
        "jwt" => {
            d.error(
                k.span.clone(),
                "JWT authorizers are only for http APIs: use a `token` or `request` Lambda authorizer",
            );
            None
        }
        other => {
            d.error(
                k.span.clone(),
                format!(
                    "unknown authorizer type `{other}`, expected `token`, `request` or `jwt`"
                ),
            );
            None
        }
    })
}

/// Appends the parsed `identity_sources` to `sources`; false when one was refused (reported).
fn identity_sources(
    a: &model::Authorizer,
    protocol: Protocol,
    sources: &mut Vec<IdentitySource>,
    d: &mut Diagnostics<'_>,
) -> bool {
    let mut sources_ok = true;
    if let Some(list) = &a.identity_sources {
        for s in &list.value {
            match identity_source(&s.value, protocol) {
                Ok(src) => sources.push(src),
                Err(reason) => {
                    d.error(s.span.clone(), reason);
                    sources_ok = false;
                }
            }
        }
    }
    sources_ok
}

/// The cache `ttl_seconds` (0..=MAX_TTL_SECONDS, default 300); out of range clears `*ok`.
fn ttl_seconds(a: &model::Authorizer, ok: &mut bool, d: &mut Diagnostics<'_>) -> i64 {
    match &a.ttl_seconds {
        None => DEFAULT_TTL_SECONDS,
        Some(t) if (0..=MAX_TTL_SECONDS).contains(&t.value) => t.value,
        Some(t) => {
            d.error(
                t.span.clone(),
                format!("`ttl_seconds` must be between 0 (no cache) and {MAX_TTL_SECONDS}"),
            );
            *ok = false;
            0
        }
    }
}

/// Checks the number and kind of identity sources for the authorizer type (a token source
/// defaults to the Authorization header); false when refused (reported).
fn source_count(
    a: &model::Authorizer,
    kind: Option<AuthorizerKind>,
    ttl: i64,
    sources_ok: bool,
    sources: &mut Vec<IdentitySource>,
    d: &mut Diagnostics<'_>,
) -> bool {
    let mut ok = true;
    // Where an identity-source mistake is reported: the list, else the authorizer.
    let at = a.identity_sources.as_ref().map_or(&a.span, |l| &l.span);
    match kind {
        // A refused identity source was reported already.
        _ if !sources_ok => {}
        Some(AuthorizerKind::Token) if sources.len() != 1 => {
            if a.identity_sources.is_none() {
                // The token source defaults to the Authorization header.
                sources.push(IdentitySource::Header("Authorization".into()));
            } else {
                d.error(
                    at.clone(),
                    "a token authorizer has exactly one identity source: the token header",
                );
                ok = false;
            }
        }
        Some(AuthorizerKind::Token) if !matches!(sources[0], IdentitySource::Header(_)) => {
            d.error(
                at.clone(),
                "a token authorizer's identity source is a header (method.request.header.NAME)",
            );
            ok = false;
        }
        Some(AuthorizerKind::Jwt) if sources.len() != 1 => {
            d.error(
                at.clone(),
                "a jwt authorizer has exactly one identity source: the token",
            );
            ok = false;
        }
        Some(AuthorizerKind::Request) if sources.is_empty() && ttl > 0 => {
            d.error(
                at.clone(),
                "a cached request authorizer needs at least one identity source (the cache key), or ttl_seconds = 0",
            );
            ok = false;
        }
        _ => {}
    }
    ok
}

/// A token authorizer's compiled `validation_regex`; a bad or misplaced one clears `*ok`.
fn validation_regex(
    a: &model::Authorizer,
    kind: Option<AuthorizerKind>,
    ok: &mut bool,
    d: &mut Diagnostics<'_>,
) -> Option<regex::Regex> {
    match &a.validation_regex {
        None => None,
        Some(r) if kind == Some(AuthorizerKind::Token) => match regex::Regex::new(&r.value) {
            Ok(re) => Some(re),
            Err(e) => {
                let msg = e.to_string();
                let line = msg.lines().last().unwrap_or("invalid").trim().to_string();
                d.error(r.span.clone(), format!("invalid validation_regex: {line}"));
                *ok = false;
                None
            }
        },
        Some(r) => {
            d.error(
                r.span.clone(),
                "validation_regex is only for token authorizers",
            );
            *ok = false;
            None
        }
    }
}

/// The Lambda function's (upstream, path) from `uri`; a jwt authorizer has none (`(0, "")`).
fn authorizer_target(
    a: &model::Authorizer,
    kind: Option<AuthorizerKind>,
    upstreams: &mut Upstreams,
    d: &mut Diagnostics<'_>,
) -> Option<(u32, Box<str>)> {
    match (&a.uri, kind) {
        (Some(u), Some(AuthorizerKind::Jwt)) => {
            d.error(
                u.span.clone(),
                "a jwt authorizer has no `uri`: give `jwks_uri` or `jwks_file`",
            );
            None
        }
        (None, Some(AuthorizerKind::Jwt)) => Some((0, Box::<str>::from(""))),
        (Some(u), _) => match invoke_uri(&u.value, upstreams) {
            Ok(t) => Some(t),
            Err(reason) => {
                d.error(u.span.clone(), reason);
                None
            }
        },
        (None, _) => {
            d.error(a.span.clone(), "missing key `uri` in [[apis.authorizers]]");
            None
        }
    }
}

/// A jwt authorizer's settings; on other types the jwt-only keys are reported. Clears `*ok` on error.
fn jwt_or_stray_keys(
    a: &model::Authorizer,
    kind: Option<AuthorizerKind>,
    ok: &mut bool,
    upstreams: &mut Upstreams,
    d: &mut Diagnostics<'_>,
) -> Option<Box<JwtSettings>> {
    match kind {
        Some(AuthorizerKind::Jwt) => {
            let j = jwt_settings(a, upstreams, d);
            if j.is_none() {
                *ok = false;
            }
            j
        }
        _ => {
            for (key, at) in [
                ("issuer", a.issuer.as_ref().map(|t| &t.span)),
                ("audiences", a.audiences.as_ref().map(|t| &t.span)),
                ("jwks_uri", a.jwks_uri.as_ref().map(|t| &t.span)),
                ("jwks_file", a.jwks_file.as_ref().map(|t| &t.span)),
            ] {
                if let Some(at) = at {
                    d.error(at.clone(), format!("`{key}` is only for jwt authorizers"));
                    *ok = false;
                }
            }
            None
        }
    }
}

/// A JWT authorizer's issuer, audiences and keys (a `jwks_file` is read now).
fn jwt_settings(
    a: &model::Authorizer,
    upstreams: &mut Upstreams,
    d: &mut Diagnostics<'_>,
) -> Option<Box<JwtSettings>> {
    let mut ok = true;
    let issuer = jwt_issuer(a, d);
    let audiences = jwt_audiences(a, &mut ok, d);
    let source = jwks_source(a, upstreams, d);
    let refresh = bounded(
        a.jwks_refresh_seconds.as_ref(),
        "jwks_refresh_seconds",
        60..=86_400,
        7200,
        &mut ok,
        d,
    );
    let cooldown = bounded(
        a.jwks_cooldown_ms.as_ref(),
        "jwks_cooldown_ms",
        100..=3_600_000,
        10_000,
        &mut ok,
        d,
    );
    let (Some(issuer), Some(source), true) = (issuer, source, ok) else {
        return None;
    };
    Some(Box::new(JwtSettings {
        config: JwtConfig { issuer, audiences },
        source,
        refresh: Duration::from_secs(refresh.unsigned_abs()),
        cooldown: Duration::from_millis(cooldown.unsigned_abs()),
    }))
}

/// A jwt authorizer's `issuer`: reported when missing or empty.
fn jwt_issuer(a: &model::Authorizer, d: &mut Diagnostics<'_>) -> Option<Box<str>> {
    match &a.issuer {
        Some(i) if !i.value.is_empty() => Some(i.value.as_str().into()),
        Some(i) => {
            d.error(i.span.clone(), "`issuer` is empty");
            None
        }
        None => {
            d.error(a.span.clone(), "missing key `issuer` in a jwt authorizer");
            None
        }
    }
}

/// A jwt authorizer's `audiences` (1 to MAX_AUDIENCES); a mistake is reported and clears `*ok`.
fn jwt_audiences(a: &model::Authorizer, ok: &mut bool, d: &mut Diagnostics<'_>) -> Vec<Box<str>> {
    let audiences: Vec<Box<str>> = a
        .audiences
        .as_ref()
        .map(|l| l.value.iter().map(|t| t.value.as_str().into()).collect())
        .unwrap_or_default();
    match &a.audiences {
        None => {
            d.error(
                a.span.clone(),
                "missing key `audiences` in a jwt authorizer",
            );
            *ok = false;
        }
        Some(l) if l.value.is_empty() || l.value.len() > MAX_AUDIENCES => {
            d.error(
                l.span.clone(),
                format!("`audiences` has 1 to {MAX_AUDIENCES} entries"),
            );
            *ok = false;
        }
        Some(_) => {}
    }
    audiences
}

/// Where a jwt authorizer's keys come from: `jwks_uri` (an upstream) or `jwks_file` (read now).
fn jwks_source(
    a: &model::Authorizer,
    upstreams: &mut Upstreams,
    d: &mut Diagnostics<'_>,
) -> Option<JwksSource> {
    match (&a.jwks_uri, &a.jwks_file) {
        (Some(u), None) => match uri::parse_http(&u.value).and_then(|p| {
            let upstream = upstreams.index(p.host, p.port, p.authority, backend_tls(&p))?;
            let path = match (p.path, p.query) {
                ("", _) => "/".to_string(),
                (path, Some(q)) => format!("{path}?{q}"),
                (path, None) => path.to_string(),
            };
            Ok(JwksSource::Uri {
                upstream,
                path: path.into(),
            })
        }) {
            Ok(s) => Some(s),
            Err(reason) => {
                d.error(u.span.clone(), reason);
                None
            }
        },
        (None, Some(f)) => {
            let read = std::fs::read(&f.value)
                .map_err(|e| format!("cannot read the JWKS file `{}`: {e}", f.value))
                .and_then(|bytes| crate::lambda::jwt::parse_jwks(&bytes));
            match read {
                Ok(keys) => Some(JwksSource::File(keys)),
                Err(reason) => {
                    d.error(f.span.clone(), reason);
                    None
                }
            }
        }
        (Some(u), Some(_)) => {
            d.error(u.span.clone(), "give `jwks_uri` or `jwks_file`, not both");
            None
        }
        (None, None) => {
            d.error(
                a.span.clone(),
                "a jwt authorizer needs `jwks_uri` or `jwks_file` (the issuer's public keys)",
            );
            None
        }
    }
}

/// An optional integer key: `default` when absent, the value when within `range`; otherwise it
/// is reported (`` `key` must be between LO and HI ``), `*ok` is cleared (the entry is refused)
/// and `default` is returned.
fn bounded(
    v: Option<&Spanned<i64>>,
    key: &str,
    range: RangeInclusive<i64>,
    default: i64,
    ok: &mut bool,
    d: &mut Diagnostics<'_>,
) -> i64 {
    let Some(v) = v else { return default };
    if range.contains(&v.value) {
        return v.value;
    }
    d.error(
        v.span.clone(),
        format!(
            "`{key}` must be between {} and {}",
            range.start(),
            range.end()
        ),
    );
    *ok = false;
    default
}

/// The index of the authorizer a route names (reported when unknown).
pub(super) fn route_authorizer(
    name: Option<&Text>,
    entries: &[model::Authorizer],
    compiled: &[Authorizer],
    d: &mut Diagnostics<'_>,
) -> Option<u32> {
    let name = name?;
    if let Some(i) = compiled.iter().position(|a| *a.name == name.value) {
        return u32::try_from(i).ok();
    }
    // Defined but refused (reported there): no second error.
    if !entries
        .iter()
        .any(|a| a.name.as_ref().is_some_and(|n| n.value == name.value))
    {
        let known: Vec<String> = entries
            .iter()
            .filter_map(|a| a.name.as_ref().map(|n| format!("`{}`", n.value)))
            .collect();
        let hint = if known.is_empty() {
            "the API has no [[apis.authorizers]]".to_string()
        } else {
            format!("the API's authorizers are {}", known.join(", "))
        };
        d.error(
            name.span.clone(),
            format!("unknown authorizer `{}`: {hint}", name.value),
        );
    }
    None
}

#[cfg(test)]
mod tests {
    use crate::config::load_str;
    use crate::gateway::Target;
    use crate::lambda::{AuthorizerKind, IdentitySource, PayloadVersion};
    use std::time::Duration;

    fn config(api: &str) -> String {
        format!(
            "[[listeners]]\naddress = \"127.0.0.1\"\nport = 8080\n\n[[apis]]\nname = \"a\"\n{api}"
        )
    }

    /// The messages of the errors `api` gives.
    fn errors(api: &str) -> Vec<String> {
        match load_str("t.toml", &config(api)) {
            Ok(_) => Vec::new(),
            Err(e) => e.into_iter().map(|e| e.message).collect(),
        }
    }

    const FN: &str = "http://127.0.0.1:9001/2015-03-31/functions/f/invocations";

    #[test]
    fn region_and_account_id() {
        let api = "protocol = \"rest\"\n  [[apis.stages]]\n  name = \"prod\"\n";
        let gw = load_str("t.toml", &config(api)).expect("defaults");
        assert_eq!(&*gw.apis[0].account.region, "local");
        assert_eq!(&*gw.apis[0].account.account_id, "000000000000");
        let text = format!(
            "[server]\nregion = \"eu-west-2\"\naccount_id = \"123456789012\"\n{}",
            config(api)
        );
        let gw = load_str("t.toml", &text).expect("valid");
        assert_eq!(&*gw.apis[0].account.region, "eu-west-2");
        assert_eq!(&*gw.apis[0].account.account_id, "123456789012");
        assert_eq!(gw.settings.account, gw.apis[0].account);
        for (region, account, wrong) in [
            ("us-east-1", "12345678901", "12 digits"),
            ("us-east-1", "1234567890123", "12 digits"),
            ("us-east-1", "12345678901a", "12 digits"),
            ("US-EAST-1", "123456789012", "region"),
            ("", "123456789012", "region"),
            ("us east", "123456789012", "region"),
            ("us-east-", "123456789012", "region"),
            ("1us", "123456789012", "region"),
        ] {
            let text = format!(
                "[server]\nregion = \"{region}\"\naccount_id = \"{account}\"\n{}",
                config(api)
            );
            match load_str("t.toml", &text) {
                Ok(_) => panic!("{region} {account} accepted"),
                Err(e) => assert!(
                    e.iter().any(|e| e.message.contains(wrong)),
                    "{region} {account}: {:?}",
                    e.iter().map(|e| &e.message).collect::<Vec<_>>()
                ),
            }
        }
    }

    #[test]
    fn aws_proxy_targets_per_stage() {
        let text = config(
            r#"protocol = "http"
  [[apis.stages]]
  name = "$default"
  variables = { fn = "one" }
  [[apis.stages]]
  name = "beta"
  variables = { fn = "two" }
  [[apis.routes]]
  key = "GET /x/{id}"
  integration = { type = "aws_proxy", uri = "http://127.0.0.1:9001/2015-03-31/functions/${stageVariables.fn}/invocations", timeout_ms = 3000 }
"#,
        );
        let g = load_str("t.toml", &text).expect("valid");
        let route = &g.apis[0].routes[0];
        assert_eq!(&*route.param_names, [Box::<str>::from("id")]);
        let paths: Vec<(&str, PayloadVersion, Duration)> = route
            .targets
            .iter()
            .map(|t| match t {
                Target::Lambda(l) => (&*l.path, l.version, l.timeout),
                _ => panic!("not aws_proxy"),
            })
            .collect();
        assert_eq!(
            paths,
            [
                (
                    "/2015-03-31/functions/one/invocations",
                    PayloadVersion::V2,
                    Duration::from_secs(3)
                ),
                (
                    "/2015-03-31/functions/two/invocations",
                    PayloadVersion::V2,
                    Duration::from_secs(3)
                ),
            ]
        );
    }

    #[test]
    fn aws_proxy_mistakes() {
        let rest = |integration: &str| {
            errors(&format!(
                "protocol = \"rest\"\n[[apis.stages]]\nname = \"prod\"\n[[apis.routes]]\nkey = \"GET /x\"\nintegration = {integration}\n"
            ))
        };
        assert_eq!(
            rest(&format!(
                r#"{{ type = "aws_proxy", uri = "{FN}", payload_format_version = "2.0" }}"#
            )),
            ["payload format 2.0 is only for http APIs: REST APIs use \"1.0\""]
        );
        assert_eq!(
            rest(&format!(
                r#"{{ type = "aws_proxy", uri = "{FN}", payload_format_version = "3" }}"#
            )),
            ["unknown payload_format_version `3`, expected \"1.0\" or \"2.0\""]
        );
        assert_eq!(
            rest(r#"{ type = "aws_proxy", uri = "http://127.0.0.1:9001" }"#),
            ["the URI has no path: write http://host:port/2015-03-31/functions/NAME/invocations"]
        );
        assert_eq!(
            rest(&format!(
                r#"{{ type = "aws_proxy", uri = "{FN}", timeout_ms = 40000 }}"#
            )),
            ["`timeout_ms` must be between 50 and 29000 for rest APIs"]
        );
        assert!(rest(&format!(
            r#"{{ type = "aws_proxy", uri = "{FN}", status = 200 }}"#
        ))[0]
            .starts_with("unknown key `status`"));
    }

    #[test]
    fn authorizers_compile() {
        let text = config(&format!(
            r#"protocol = "rest"
binary_media_types = ["image/png", "*/*"]
  [[apis.stages]]
  name = "prod"
  [[apis.authorizers]]
  name = "tok"
  type = "token"
  uri = "{FN}"
  validation_regex = "^Bearer .+$"
  [[apis.authorizers]]
  name = "req"
  type = "request"
  uri = "{FN}"
  identity_sources = ["method.request.header.X-A", "method.request.querystring.q", "stageVariables.v", "context.identity.sourceIp"]
  ttl_seconds = 60
  cache_entries = 5
  timeout_ms = 2000
  [[apis.routes]]
  key = "GET /x"
  authorizer = "req"
  integration = {{ type = "mock" }}
"#
        ));
        let g = load_str("t.toml", &text).expect("valid");
        let api = &g.apis[0];
        assert_eq!(api.binary_media_types.len(), 2);
        assert_eq!(api.routes[0].authorizer, Some(1));
        let tok = &api.authorizers[0];
        assert_eq!(
            (tok.kind, tok.id, tok.ttl),
            (AuthorizerKind::Token, 0, Duration::from_secs(300))
        );
        assert_eq!(
            tok.identity_sources,
            [IdentitySource::Header("Authorization".into())]
        );
        assert!(tok
            .validation
            .as_ref()
            .is_some_and(|r| r.is_match("Bearer x")));
        let req = &api.authorizers[1];
        assert_eq!(req.id, 1);
        assert_eq!(req.identity_sources.len(), 4);
        assert_eq!(
            (req.ttl, req.cache_entries, req.timeout),
            (Duration::from_secs(60), 5, Duration::from_secs(2))
        );
        assert_eq!(req.version, PayloadVersion::V1);
    }

    #[test]
    fn authorizer_mistakes() {
        let with = |auth: &str, route_auth: &str| {
            errors(&format!(
                "protocol = \"rest\"\n[[apis.stages]]\nname = \"prod\"\n[[apis.authorizers]]\nname = \"a\"\nuri = \"{FN}\"\n{auth}\n[[apis.routes]]\nkey = \"GET /x\"\nauthorizer = \"{route_auth}\"\nintegration = {{ type = \"mock\" }}\n"
            ))
        };
        assert_eq!(
            with("type = \"token\"", "nope"),
            ["unknown authorizer `nope`: the API's authorizers are `a`"]
        );
        assert_eq!(
            with("type = \"token\"\nttl_seconds = 3601", "a"),
            ["`ttl_seconds` must be between 0 (no cache) and 3600"]
        );
        assert!(with("type = \"token\"\nvalidation_regex = \"(\"", "a")[0]
            .starts_with("invalid validation_regex"));
        assert_eq!(
            with("type = \"jwt\"", "a"),
            ["JWT authorizers are only for http APIs: use a `token` or `request` Lambda authorizer"]
        );
        assert_eq!(
            with("type = \"request\"\nttl_seconds = 0\nissuer = \"x\"", "a"),
            ["`issuer` is only for jwt authorizers"]
        );
        assert_eq!(
            with("type = \"request\"\nidentity_sources = [\"$request.header.X\"]", "a"),
            ["unknown identity source `$request.header.X`: write method.request.header.NAME, method.request.querystring.NAME, stageVariables.NAME or context.NAME"]
        );
        assert_eq!(
            with("type = \"request\"", "a"),
            ["a cached request authorizer needs at least one identity source (the cache key), or ttl_seconds = 0"]
        );
        assert!(with("type = \"request\"\nttl_seconds = 0", "a").is_empty());
        assert_eq!(
            with(
                "type = \"request\"\nidentity_sources = [\"context.requestId\"]",
                "a"
            )
            .len(),
            1
        );
        assert_eq!(
            with("type = \"token\"\nsimple_responses = true", "a"),
            ["simple responses need payload_format_version = \"2.0\" (http APIs)"]
        );
        let http = |auth: &str| {
            errors(&format!(
                "protocol = \"http\"\n[[apis.stages]]\nname = \"$default\"\n[[apis.authorizers]]\nname = \"j\"\ntype = \"jwt\"\n{auth}\n"
            ))
        };
        assert_eq!(
            http("issuer = \"i\"\naudiences = [\"a\"]"),
            ["a jwt authorizer needs `jwks_uri` or `jwks_file` (the issuer's public keys)"]
        );
        assert_eq!(
            http("issuer = \"i\"\naudiences = []\njwks_uri = \"http://127.0.0.1:1/k\""),
            ["`audiences` has 1 to 50 entries"]
        );
        assert!(http(
            "issuer = \"i\"\naudiences = [\"a\"]\njwks_file = \"/nonexistent/jwks.json\""
        )[0]
        .starts_with("cannot read the JWKS file"));
        assert!(
            http("issuer = \"i\"\naudiences = [\"a\"]\njwks_uri = \"http://127.0.0.1:1/k\"")
                .is_empty()
        );
        assert!(errors(
            "protocol = \"rest\"\nbinary_media_types = [\"png\"]\n[[apis.stages]]\nname = \"p\"\n"
        )[0]
        .starts_with("`png` is not a media type"));
    }
}
