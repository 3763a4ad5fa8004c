//! Phase 2, authorize: the route's Lambda authorizer (TOKEN / REQUEST), guide L13189-14130,
//! L39955-40415 (DIGEST §4.1, §4.2).
//!
//! `authorize` runs while the request head is at hand: it reads the identity sources (a
//! missing one, or a token failing `validation_regex`, is 401 without calling the
//! authorizer), looks the result up in the shard's cache (keyed by every identity source
//! value) and either decides at once or returns the authorizer event to send
//! (`Authorize::Call`). `authorize_result` takes the authorizer's answer, caches it and
//! decides. The decision (policy evaluated against the method ARN) goes into
//! `Context::authorizer` for the integration (`requestContext.authorizer`).
//!
//! Errors: 401 UNAUTHORIZED (missing identity, failed regex, the function's `Unauthorized`
//! error); 403 ACCESS_DENIED (explicit Deny / `isAuthorized: false`, or no Allow for the
//! method); 500 AUTHORIZER_CONFIGURATION_ERROR (authorizer unreachable, timed out, refused by
//! the Invoke API, or an invalid output), 500 AUTHORIZER_FAILURE (the function failed).
//! HTTP APIs answer `Forbidden` / `Internal Server Error` texts instead.
//!
//! Cost: a route without an authorizer pays one branch. A cached hit pays the identity values
//! (borrowed from the head when sent once as UTF-8), the cache key (on the stack up to 256
//! bytes), one hash lookup and the policy match; the method ARN (one allocation of the exact
//! size) only when the cached policy does not decide the same for every ARN (an Allow or Deny
//! of `Resource: "*"` does): bench/RESULTS.md, "Lambda and authorizer cost".

use super::lambda::event_request;
use super::{Context, Failure};
use crate::gateway::{Protocol, RouteMatch};
use crate::http::request::RequestHead;
use crate::lambda::cache::{self, Caches};
use crate::lambda::event::EventRequest;
use crate::lambda::jwt::{self, JwtError};
use crate::lambda::policy::{self, AuthResult, Decision};
use crate::lambda::{Authorizer, AuthorizerKind, PayloadVersion};
use smallvec::SmallVec;
use std::borrow::Cow;
use std::rc::Rc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// What the authorize phase decided.
#[derive(Debug)]
pub enum Authorize<'g> {
    /// Go on: the route has no authorizer, or a cached result allows the request.
    Done,
    /// Send `event` to the authorizer, then call `authorize_result`.
    Call(Box<AuthCall<'g>>),
}

/// An authorizer invocation to make.
#[derive(Debug)]
pub struct AuthCall<'g> {
    pub authorizer: &'g Authorizer,
    /// Index into `Gateway::upstreams` and the shard's pools.
    pub upstream: usize,
    /// The Invoke API request body.
    pub event: Vec<u8>,
    cache_key: Option<Box<[u8]>>,
    method_arn: String,
    protocol: Protocol,
}

/// What the authorizer's Invoke API exchange gave.
#[derive(Clone, Copy, Debug)]
pub enum AuthAnswer<'a> {
    /// Not reachable, timed out, or a response that is not HTTP.
    Unreachable,
    /// The Invoke API refused the call (status other than 2xx).
    InvokeFailed(u16),
    /// The function failed (`X-Amz-Function-Error`); its error document.
    FunctionError(&'a [u8]),
    /// The function's output.
    Output(&'a [u8]),
}

/// Phase 2 (see the module doc). `now` / `wall`: the time for the cache and for the events.
pub fn authorize<'g>(
    head: &RequestHead<'_, '_>,
    m: &RouteMatch<'g, '_>,
    ctx: &mut Context<'g>,
    caches: &mut Caches,
    now: Instant,
    wall: SystemTime,
) -> Result<Authorize<'g>, Failure> {
    let Some(index) = m.route.authorizer else {
        return Ok(Authorize::Done);
    };
    let a = m
        .api
        .authorizers
        .get(index as usize)
        .ok_or(Failure::Internal)?;
    let protocol = m.api.protocol;
    let request_id = ctx.request_id;
    let ev = event_request(head, m, &request_id, ctx.client.ip, wall);
    // Borrowed from the head where possible: a cached hit allocates only the method ARN.
    let values: SmallVec<[Option<Cow<'_, str>>; 4]> = a
        .identity_sources
        .iter()
        .map(|s| ev.identity_value_cow(s))
        .collect();
    if a.kind == AuthorizerKind::Jwt {
        let token = values.first().and_then(Option::as_deref);
        return jwt(
            a,
            &m.route.authorization_scopes,
            token,
            ctx,
            caches,
            now,
            wall,
        )
        .map(|()| Authorize::Done);
    }
    let cached = !a.ttl.is_zero();
    check_identity(a, &values, cached, protocol)?;
    let texts: SmallVec<[&str; 4]> = values.iter().map(|v| v.as_deref().unwrap_or("")).collect();
    let cache_key = cached.then(|| cache::key_buf(&texts));
    if let Some(key) = &cache_key {
        if let Some(hit) = caches.get_mut(a.id).and_then(|c| c.get(key, now)) {
            return cached_decision(hit, &ev, ctx, protocol);
        }
    }
    Ok(Authorize::Call(Box::new(call(
        &ev, a, protocol, &texts, cache_key,
    ))))
}

/// The authorizer invocation for identity values `texts` (its result cached under
/// `cache_key` when there is one).
fn call<'g>(
    ev: &EventRequest<'_>,
    a: &'g Authorizer,
    protocol: Protocol,
    texts: &[&str],
    cache_key: Option<SmallVec<[u8; 256]>>,
) -> AuthCall<'g> {
    let method_arn = ev.method_arn();
    let values: Vec<String> = texts.iter().map(|v| v.to_string()).collect();
    let event = authorizer_event(ev, a, protocol, &method_arn, &values);
    AuthCall {
        authorizer: a,
        upstream: a.upstream as usize,
        event,
        cache_key: cache_key.map(|k| Box::from(&k[..])),
        method_arn,
        protocol,
    }
}

/// 401 before any call: a TOKEN authorizer's missing token or one failing
/// `validation_regex`; a REQUEST authorizer's missing identity source when results are cached
/// (or on an HTTP API).
#[inline]
fn check_identity(
    a: &Authorizer,
    values: &[Option<Cow<'_, str>>],
    cached: bool,
    protocol: Protocol,
) -> Result<(), Failure> {
    match a.kind {
        AuthorizerKind::Token => {
            let token = values.first().and_then(Option::as_deref);
            let Some(token) = token else {
                return Err(Failure::Unauthorized);
            };
            if a.validation.as_ref().is_some_and(|re| !re.is_match(token)) {
                return Err(Failure::Unauthorized);
            }
        }
        AuthorizerKind::Request | AuthorizerKind::Jwt => {
            let missing = values.iter().any(Option::is_none);
            if missing && (cached || protocol == Protocol::Http) {
                return Err(Failure::Unauthorized);
            }
        }
    }
    Ok(())
}

/// The decision of a cached authorizer result `hit`, kept on the context.
#[inline]
fn cached_decision<'g>(
    hit: Rc<AuthResult>,
    ev: &EventRequest<'_>,
    ctx: &mut Context<'g>,
    protocol: Protocol,
) -> Result<Authorize<'g>, Failure> {
    // A policy that decides the same for every ARN (`Resource: "*"`) needs none built.
    let decision = match hit.decide_any() {
        Some(d) => d,
        None => hit.decide(&ev.method_arn()),
    };
    ctx.authorizer = Some(hit);
    failure(decision, protocol).map(|()| Authorize::Done)
}

fn authorizer_event(
    ev: &EventRequest<'_>,
    a: &Authorizer,
    protocol: Protocol,
    method_arn: &str,
    values: &[String],
) -> Vec<u8> {
    match (a.kind, a.version) {
        (AuthorizerKind::Token | AuthorizerKind::Jwt, _) => {
            EventRequest::token_authorizer(values.first().map_or("", String::as_str), method_arn)
        }
        (AuthorizerKind::Request, PayloadVersion::V1) => {
            ev.request_authorizer_v1(method_arn, protocol == Protocol::Http, values)
        }
        (AuthorizerKind::Request, PayloadVersion::V2) => {
            ev.request_authorizer_v2(method_arn, values)
        }
    }
}

/// A JWT authorizer (verified here, no call): the token from the identity source against the
/// shard's keys. An unknown `kid` asks the shard for a JWKS refresh (made in the background)
/// and is refused meanwhile.
///
/// A verified token is kept in the authorizer's cache (keyed by the token as sent, until its
/// `exp` plus the clock skew and at most `ttl_seconds`; forgotten when the keys change): the
/// same token again costs a hash lookup instead of the signature check. The route's scopes
/// are checked on every request, hit or not.
fn jwt<'g>(
    a: &Authorizer,
    scopes: &[Box<str>],
    token: Option<&str>,
    ctx: &mut Context<'g>,
    caches: &mut Caches,
    now: Instant,
    wall: SystemTime,
) -> Result<(), Failure> {
    let Some(token) = token else {
        return Err(Failure::Unauthorized);
    };
    let Some(settings) = a.jwt.as_deref() else {
        return Err(Failure::Internal);
    };
    let scope_refused = || Failure::JwtRejected {
        description: JwtError::Scope.description(),
        forbidden: true,
    };
    if let Some(hit) = caches
        .get_mut(a.id)
        .and_then(|c| c.get(token.as_bytes(), now))
    {
        let ok = jwt::has_scope(scopes, hit.jwt_scopes.as_deref().unwrap_or(&[]));
        ctx.authorizer = Some(hit);
        return if ok { Ok(()) } else { Err(scope_refused()) };
    }
    let now_secs = wall.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    // Verified without the route's scopes (checked below), so the result serves every route.
    let verified = match caches.jwks(a.id) {
        Some(keys) => jwt::verify(token, &keys, &settings.config, &[], now_secs),
        None => Err(JwtError::UnknownKey),
    };
    match verified {
        Ok(v) => {
            let principal_id = v
                .claims
                .get("sub")
                .and_then(|s| s.as_str())
                .map(str::to_string);
            let ok = jwt::has_scope(scopes, &v.scopes);
            let result = Rc::new(AuthResult {
                principal_id,
                statements: Vec::new(),
                simple: Some(true),
                context: v.claims,
                usage_identifier_key: None,
                jwt_scopes: Some(v.scopes),
            });
            if let Some(cache) = caches.get_mut(a.id) {
                let left = Duration::from_secs(v.valid_until.saturating_sub(now_secs));
                cache.put_until(token.as_bytes().into(), result.clone(), now, now + left);
            }
            ctx.authorizer = Some(result);
            if ok {
                Ok(())
            } else {
                Err(scope_refused())
            }
        }
        Err(e) => {
            if e == JwtError::UnknownKey {
                caches.want_refresh(a.id);
            }
            Err(Failure::JwtRejected {
                description: e.description(),
                forbidden: e == JwtError::Scope,
            })
        }
    }
}

/// The decision of `result` for this request, as a failure when it is not Allow.
fn decide(result: &AuthResult, method_arn: &str, protocol: Protocol) -> Result<(), Failure> {
    failure(result.decide(method_arn), protocol)
}

/// A decision as a failure when it is not Allow.
fn failure(decision: Decision, protocol: Protocol) -> Result<(), Failure> {
    match decision {
        Decision::Allow => Ok(()),
        Decision::ExplicitDeny => Err(Failure::Denied {
            explicit: true,
            protocol,
        }),
        Decision::NotAllowed => Err(Failure::Denied {
            explicit: false,
            protocol,
        }),
    }
}

/// Puts `result` in the context (an allowed request's integration and log, a denied one's
/// gateway response and log quote it) and decides.
fn decided(
    result: Rc<AuthResult>,
    method_arn: &str,
    protocol: Protocol,
    ctx: &mut Context<'_>,
) -> Result<(), Failure> {
    let d = decide(&result, method_arn, protocol);
    ctx.authorizer = Some(result);
    d
}

/// The error message of a function error document (`{"errorMessage": "..."}`).
fn error_message(doc: &[u8]) -> Option<String> {
    let v: serde_json::Value = serde_json::from_slice(doc).ok()?;
    v.get("errorMessage")?.as_str().map(str::to_string)
}

impl AuthCall<'_> {
    /// What identifies this call among concurrent ones of the shard (authorizer, cache key):
    /// `None` when results are not cached.
    pub fn shared_key(&self) -> Option<(u32, &[u8])> {
        self.cache_key.as_deref().map(|k| (self.authorizer.id, k))
    }
}

/// Phase 2 again after waiting for a concurrent call with the same identity: the cached result
/// decides, if that call left one (`None`: make the call).
pub fn authorize_cached<'g>(
    call: &AuthCall<'g>,
    ctx: &mut Context<'g>,
    caches: &mut Caches,
    now: Instant,
) -> Option<Result<(), Failure>> {
    let key = call.cache_key.as_deref()?;
    let hit = caches.get_mut(call.authorizer.id)?.get(key, now)?;
    Some(decided(hit, &call.method_arn, call.protocol, ctx))
}

/// Phase 2, after the authorizer answered: caches its output and decides.
pub fn authorize_result<'g>(
    call: &AuthCall<'g>,
    answer: AuthAnswer<'_>,
    ctx: &mut Context<'g>,
    caches: &mut Caches,
    now: Instant,
) -> Result<(), Failure> {
    let protocol = call.protocol;
    let a = call.authorizer;
    let output = match answer {
        AuthAnswer::Unreachable | AuthAnswer::InvokeFailed(_) => {
            return Err(Failure::AuthorizerConfig(protocol))
        }
        // The guide: the function's error "Unauthorized" is a 401; any other error a 500.
        AuthAnswer::FunctionError(doc) => {
            return Err(if error_message(doc).as_deref() == Some("Unauthorized") {
                Failure::Unauthorized
            } else {
                Failure::AuthorizerFailed(protocol)
            });
        }
        AuthAnswer::Output(json) => json,
    };
    let result = policy::parse(output, a.version, a.simple_responses)
        .map_err(|_| Failure::AuthorizerConfig(protocol))?;
    let result = Rc::new(result);
    if let (Some(key), Some(cache)) = (&call.cache_key, caches.get_mut(a.id)) {
        cache.put(key.clone(), result.clone(), now);
    }
    decided(result, &call.method_arn, protocol, ctx)
}

#[cfg(test)]
mod tests {
    use super::super::test_support::{gateway, with_head};
    use super::super::{dispatch, respond};
    use super::*;

    /// The status line, error type and body `failure` renders to on the REST test API.
    fn rendered(failure: Failure) -> (String, String) {
        let gw = gateway();
        let mut out = Vec::new();
        with_head(
            b"GET /prod/pets/1 HTTP/1.1\r\nhost: a\r\n\r\n",
            |head, ctx| {
                let _ = dispatch(&gw, head, ctx);
                respond(&gw, ctx, failure, false, &mut out);
            },
        );
        let text = String::from_utf8(out).expect("utf-8");
        let (head, body) = text.split_once("\r\n\r\n").expect("head end");
        let status = head.lines().next().unwrap_or("").to_string();
        let ty = head
            .lines()
            .find_map(|l| l.strip_prefix("x-amzn-ErrorType: "))
            .unwrap_or("")
            .to_string();
        (format!("{status} {ty}"), body.to_string())
    }

    #[test]
    fn authorizer_failures_render_as_api_gateway_does() {
        let cases = [
            (
                Failure::Unauthorized,
                "HTTP/1.1 401 Unauthorized UnauthorizedException",
                r#"{"message":"Unauthorized"}"#,
            ),
            (
                Failure::Denied {
                    explicit: true,
                    protocol: Protocol::Rest,
                },
                "HTTP/1.1 403 Forbidden AccessDeniedException",
                r#"{"Message":"User is not authorized to access this resource with an explicit deny"}"#,
            ),
            (
                Failure::Denied {
                    explicit: false,
                    protocol: Protocol::Rest,
                },
                "HTTP/1.1 403 Forbidden AccessDeniedException",
                r#"{"Message":"User is not authorized to access this resource"}"#,
            ),
            (
                Failure::Denied {
                    explicit: true,
                    protocol: Protocol::Http,
                },
                "HTTP/1.1 403 Forbidden AccessDeniedException",
                r#"{"message":"Forbidden"}"#,
            ),
            (
                Failure::AuthorizerConfig(Protocol::Rest),
                "HTTP/1.1 500 Internal Server Error AuthorizerConfigurationException",
                r#"{"message":null}"#,
            ),
            (
                Failure::AuthorizerFailed(Protocol::Rest),
                "HTTP/1.1 500 Internal Server Error AuthorizerFailureException",
                r#"{"message":null}"#,
            ),
            (
                Failure::AuthorizerFailed(Protocol::Http),
                "HTTP/1.1 500 Internal Server Error AuthorizerFailureException",
                r#"{"message":"Internal Server Error"}"#,
            ),
            (
                Failure::BadLambdaResponse(Protocol::Rest),
                "HTTP/1.1 502 Bad Gateway InternalServerErrorException",
                r#"{"message":"Internal server error"}"#,
            ),
            (
                Failure::BadLambdaResponse(Protocol::Http),
                "HTTP/1.1 500 Internal Server Error InternalServerErrorException",
                r#"{"message":"Internal Server Error"}"#,
            ),
            (
                Failure::LambdaInvokeFailed(Protocol::Rest),
                "HTTP/1.1 500 Internal Server Error InternalServerErrorException",
                r#"{"message":"Internal server error"}"#,
            ),
        ];
        for (failure, status, body) in cases {
            assert_eq!(
                rendered(failure),
                (status.to_string(), body.to_string()),
                "{failure:?}"
            );
        }
    }
}
