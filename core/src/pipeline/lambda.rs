//! Phases 4 and 5 for `aws_proxy` integrations: the function's event (built while the request
//! head is at hand, finished with the body and the authorizer's result) and the client
//! response mapped from the function's result. The Invoke API exchange itself is I/O, done by
//! `proxy/src/lambda.rs`.
//!
//! Per request on this path (and only here): the event is a `serde_json` map (one allocation
//! per field) serialized once, and the result is parsed into a `serde_json::Value`.

use super::{Context, Failure};
use crate::gateway::{Gateway, Protocol, RouteMatch, Target};
use crate::http::request::RequestHead;
use crate::lambda::event::{self, EventRequest};
use crate::lambda::result;
use crate::lambda::{LambdaTarget, PayloadVersion};
use serde_json::{Map, Value};
use std::net::IpAddr;
use std::time::{Duration, SystemTime};

/// The request facts Lambda events are built from.
pub fn event_request<'a, 'b: 'a, 'h: 'a, 'g: 'a, 'p: 'a>(
    head: &'a RequestHead<'b, 'h>,
    m: &'a RouteMatch<'g, 'p>,
    request_id: &'a [u8; 36],
    client_ip: IpAddr,
    now: SystemTime,
) -> EventRequest<'a> {
    EventRequest {
        method: head.method_str,
        raw_path: head.path,
        path: m.path,
        query: head.query,
        headers: head.headers,
        minor_version: head.minor_version,
        route_key: &m.route.key,
        param_names: &m.route.param_names,
        params: &m.params,
        stage: &m.stage.name,
        stage_variables: &m.stage.variables,
        api_id: &m.api.name,
        account: &m.api.account,
        request_id: std::str::from_utf8(request_id).unwrap_or(""),
        source_ip: client_ip,
        time: now,
    }
}

/// An `aws_proxy` invocation being prepared.
#[derive(Debug)]
pub struct LambdaCall<'g> {
    pub target: &'g LambdaTarget,
    /// Index into `Gateway::upstreams` and the shard's pools.
    pub upstream: usize,
    pub timeout: Duration,
    protocol: Protocol,
    event: Map<String, Value>,
    /// The request body is of a binary media type: it travels base64-encoded.
    binary_body: bool,
    /// A result with `isBase64Encoded: true` is decoded before it is sent.
    decode_result: bool,
}

/// What the Invoke API exchange gave.
#[derive(Clone, Copy, Debug)]
pub enum LambdaAnswer<'a> {
    /// The function ran and returned this result.
    Result(&'a [u8]),
    /// The function failed (`X-Amz-Function-Error`); its error document.
    FunctionError(&'a [u8]),
    /// The Invoke API refused the call (status other than 2xx).
    InvokeFailed(u16),
}

/// Phase 4 for `aws_proxy`: the event without its body, while the head is borrowed. `now`:
/// the wall-clock time the request arrived (`requestTime`).
pub fn lambda_request<'g>(
    gw: &'g Gateway,
    head: &RequestHead<'_, '_>,
    m: &RouteMatch<'g, '_>,
    ctx: &Context<'_>,
    now: SystemTime,
) -> Result<Box<LambdaCall<'g>>, Failure> {
    let Target::Lambda(target) = m.target else {
        return Err(Failure::Internal);
    };
    let upstream = target.upstream as usize;
    if upstream >= gw.upstreams.len() {
        return Err(Failure::Internal);
    }
    let protocol = m.api.protocol;
    let ev = event_request(head, m, &ctx.request_id, ctx.client.ip, now);
    let event = match target.version {
        PayloadVersion::V1 => ev.proxy_v1(protocol == Protocol::Http),
        PayloadVersion::V2 => ev.proxy_v2(),
    };
    let types = &m.api.binary_media_types;
    let binary_body = ev
        .header("content-type")
        .is_some_and(|ct| event::is_binary_type(ct, types));
    let decode_result = protocol == Protocol::Http
        || ev
            .headers
            .iter()
            .filter(|h| h.name.eq_ignore_ascii_case("accept"))
            .any(|h| event::accepts_binary(h.value, types));
    Ok(Box::new(LambdaCall {
        target,
        upstream,
        timeout: target.timeout,
        protocol,
        event,
        binary_body,
        decode_result,
    }))
}

impl LambdaCall<'_> {
    /// The Invoke API request body: the event with the request `body` and the authorizer's
    /// result (`requestContext.authorizer`) added. Call once.
    pub fn invocation(&mut self, ctx: &Context<'_>, body: &[u8]) -> Vec<u8> {
        let mut event = std::mem::take(&mut self.event);
        if let Some(Value::Object(rc)) = event.get_mut("requestContext") {
            match (&ctx.authorizer, self.target.version) {
                // JWT: the claims and scopes (2.0 under `jwt`).
                (Some(a), version) if a.jwt_scopes.is_some() => {
                    let scopes: Vec<Value> = a
                        .jwt_scopes
                        .iter()
                        .flatten()
                        .map(|s| Value::String(s.clone()))
                        .collect();
                    let mut m = Map::new();
                    m.insert("claims".into(), Value::Object(a.context.clone()));
                    m.insert("scopes".into(), Value::Array(scopes));
                    if version == PayloadVersion::V2 {
                        let mut outer = Map::new();
                        outer.insert("jwt".into(), Value::Object(m));
                        m = outer;
                    }
                    rc.insert("authorizer".into(), Value::Object(m));
                }
                (Some(a), PayloadVersion::V1) => {
                    let mut m = Map::new();
                    if let Some(p) = &a.principal_id {
                        m.insert("principalId".into(), p.clone().into());
                    }
                    for (k, v) in &a.context {
                        m.insert(k.clone(), v.clone());
                    }
                    rc.insert("authorizer".into(), Value::Object(m));
                }
                (Some(a), PayloadVersion::V2) => {
                    let mut m = Map::new();
                    if let Some(p) = &a.principal_id {
                        m.insert("principalId".into(), p.clone().into());
                    }
                    m.insert("lambda".into(), Value::Object(a.context.clone()));
                    rc.insert("authorizer".into(), Value::Object(m));
                }
                // As the guide's 1.0 example shows it for a method without authorization.
                (None, PayloadVersion::V1) => {
                    let mut m = Map::new();
                    m.insert("claims".into(), Value::Null);
                    m.insert("scopes".into(), Value::Null);
                    rc.insert("authorizer".into(), Value::Object(m));
                }
                (None, PayloadVersion::V2) => {}
            }
        }
        event::finish(event, body, self.binary_body)
    }

    /// Phase 5 for `aws_proxy`: the client response for the function's answer, into `out`.
    /// Returns whether the connection closes after it (`close`).
    pub fn response(
        &self,
        answer: LambdaAnswer<'_>,
        ctx: &Context<'_>,
        close: bool,
        out: &mut Vec<u8>,
    ) -> Result<bool, Failure> {
        let json = match answer {
            LambdaAnswer::Result(json) => json,
            LambdaAnswer::FunctionError(_) => {
                return Err(Failure::BadLambdaResponse(self.protocol))
            }
            LambdaAnswer::InvokeFailed(_) => {
                return Err(Failure::LambdaInvokeFailed(self.protocol))
            }
        };
        let mapped = result::map_result(
            json,
            self.target.version,
            self.protocol == Protocol::Rest && self.target.version == PayloadVersion::V1,
            self.decode_result,
        )
        .map_err(|_| Failure::BadLambdaResponse(self.protocol))?;
        result::write_response(
            &mapped,
            &ctx.request_id,
            close,
            ctx.head_request(),
            ctx.minor_version,
            out,
        );
        Ok(close)
    }
}
