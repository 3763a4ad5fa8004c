//! Phases 4 and 5 for `aws_proxy` integrations: the function's event (built while the request
//! head is at hand, finished with the body and the authorizer's result) and the client
//! response mapped from the function's result. The Invoke API exchange itself is I/O, done by
//! `proxy/src/lambda.rs`.
//!
//! Per request on this path (and only here): the event is written as JSON straight into the
//! Invoke API request body (one buffer, sized from the head; no value tree), and the result is
//! parsed into a `serde_json::Value`.

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
    /// The event as written so far (JSON, left open inside `requestContext`).
    event: Vec<u8>,
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
    // Written straight as JSON (no value tree); the headers appear about twice in 1.0.
    let header_bytes: usize = head
        .headers
        .iter()
        .map(|h| h.name.len() + h.value.len() + 8)
        .sum();
    let mut event = Vec::with_capacity(1024 + 2 * header_bytes + head.path.len() * 3);
    match target.version {
        PayloadVersion::V1 => ev.write_proxy_v1(protocol == Protocol::Http, &mut event),
        PayloadVersion::V2 => ev.write_proxy_v2(&mut event),
    }
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
        let mut out = std::mem::take(&mut self.event);
        out.reserve(body.len() + 64);
        let json = |out: &mut Vec<u8>, v: &Value| {
            // Cannot fail: a JSON value into a Vec.
            let _ = serde_json::to_writer(&mut *out, v);
        };
        let object = |out: &mut Vec<u8>, m: &Map<String, Value>, first: &mut bool| {
            for (k, v) in m {
                if !std::mem::take(first) {
                    out.push(b',');
                }
                event::string(out, k);
                out.push(b':');
                json(out, v);
            }
        };
        match (&ctx.authorizer, self.target.version) {
            // JWT: the claims and scopes (2.0 under `jwt`).
            (Some(a), version) if a.jwt_scopes.is_some() => {
                out.extend_from_slice(if version == PayloadVersion::V2 {
                    br#","authorizer":{"jwt":{"claims":{"#
                } else {
                    br#","authorizer":{"claims":{"#
                });
                object(&mut out, &a.context, &mut true);
                out.extend_from_slice(br#"},"scopes":["#);
                let mut first = true;
                for s in a.jwt_scopes.iter().flatten() {
                    if !std::mem::take(&mut first) {
                        out.push(b',');
                    }
                    event::string(&mut out, s);
                }
                out.extend_from_slice(if version == PayloadVersion::V2 {
                    b"]}}"
                } else {
                    b"]}"
                });
            }
            // 1.0: principalId and the context keys side by side (a context key named
            // `principalId` wins, as it would in a map).
            (Some(a), PayloadVersion::V1) => {
                out.extend_from_slice(br#","authorizer":{"#);
                let mut first = true;
                if let Some(p) = a
                    .principal_id
                    .as_deref()
                    .filter(|_| !a.context.contains_key("principalId"))
                {
                    first = false;
                    out.extend_from_slice(br#""principalId":"#);
                    event::string(&mut out, p);
                }
                object(&mut out, &a.context, &mut first);
                out.push(b'}');
            }
            (Some(a), PayloadVersion::V2) => {
                out.extend_from_slice(br#","authorizer":{"#);
                if let Some(p) = &a.principal_id {
                    out.extend_from_slice(br#""principalId":"#);
                    event::string(&mut out, p);
                    out.push(b',');
                }
                out.extend_from_slice(br#""lambda":{"#);
                object(&mut out, &a.context, &mut true);
                out.extend_from_slice(b"}}");
            }
            // As the guide's 1.0 example shows it for a method without authorization.
            (None, PayloadVersion::V1) => {
                out.extend_from_slice(br#","authorizer":{"claims":null,"scopes":null}"#);
            }
            (None, PayloadVersion::V2) => {}
        }
        event::close_event(&mut out, body, self.binary_body);
        out
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
