//! Phase 6, respond: the one place where a failure becomes what the client receives. Gateway
//! failures become API Gateway gateway responses rendered by the API's `GatewayResponses`
//! (customisations included); protocol refusals stay `http::error` responses.

use super::Context;
use crate::forward::{push_decimal, reason_phrase};
use crate::gateway::responses::{ErrorContext, GatewayResponses, ResponseType};
use crate::gateway::{Gateway, Protocol};
use crate::http::error::GatewayError;

/// Why tollgate answers a request itself instead of with the backend's response.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Failure {
    /// Dispatch found no API, stage or route; the protocol of what could have served it.
    NoRoute(Protocol),
    /// The body is (declared or found) over `max_body_bytes`. Closes the connection.
    BodyTooLarge,
    /// The backend refused the connection, reset it or closed it before a complete response.
    BackendFailed,
    /// No complete response head within the integration timeout (connect included).
    IntegrationTimeout,
    /// The backend answered with a malformed (or oversized) response head.
    BadBackendResponse,
    /// A gateway bug (inconsistent compiled config).
    Internal,
    /// A request for a mutual-TLS domain without that domain's verified client certificate.
    MutualTlsRequired,
    /// Throttle and quota: missing, unknown or disabled API key, or one with no usage plan on
    /// the stage (403 INVALID_API_KEY).
    InvalidApiKey,
    /// A level of the throttling hierarchy has no token (429 THROTTLED).
    Throttled,
    /// The key's usage plan quota is spent for this period (429 QUOTA_EXCEEDED).
    QuotaExceeded,
    /// The Lambda authorizer did not authenticate the caller (missing identity source, token
    /// failing the validation regex, the function's `Unauthorized` error): 401.
    Unauthorized,
    /// The authorizer's policy denies the request: `explicit` Deny (or simple response
    /// `isAuthorized: false`), or no Allow for the method: 403.
    Denied { explicit: bool, protocol: Protocol },
    /// The authorizer could not be reached, timed out or gave an invalid output: 500.
    AuthorizerConfig(Protocol),
    /// The authorizer function failed with another error than `Unauthorized`: 500.
    AuthorizerFailed(Protocol),
    /// A Lambda function error or a malformed proxy result: 502 (REST), 500 (HTTP APIs).
    BadLambdaResponse(Protocol),
    /// The Invoke API refused to run the function: 500.
    LambdaInvokeFailed(Protocol),
    /// A JWT authorizer refused the token: 401 (`forbidden`: no required scope, 403), with
    /// `www-authenticate: Bearer scope="" error="invalid_token" error_description="..."`.
    JwtRejected {
        description: &'static str,
        forbidden: bool,
    },
    /// A protocol-level refusal (malformed request or body framing, ...): not a gateway
    /// response type. Closes the connection.
    Refused(GatewayError),
}

/// A gateway response: its type, plus the status / message that replace the built-in ones
/// (when the API does not customise them).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Answer {
    pub ty: ResponseType,
    pub status: Option<u16>,
    pub message: Option<&'static str>,
}

impl Answer {
    const fn of(ty: ResponseType) -> Answer {
        Answer {
            ty,
            status: None,
            message: None,
        }
    }
}

/// HTTP APIs' text for their 500s (guide L43775-43780).
const HTTP_INTERNAL: &str = "Internal Server Error";

/// `ty` as a REST API answers it; an HTTP API says `Internal Server Error`.
const fn http_text(ty: ResponseType, protocol: Protocol) -> Answer {
    match protocol {
        Protocol::Rest => Answer::of(ty),
        Protocol::Http => Answer {
            ty,
            status: None,
            message: Some(HTTP_INTERNAL),
        },
    }
}

impl Failure {
    /// The gateway response for this failure; `None` for protocol refusals.
    pub const fn answer(self) -> Option<Answer> {
        use ResponseType as T;
        Some(match self {
            Failure::NoRoute(Protocol::Rest) => Answer::of(T::MissingAuthenticationToken),
            Failure::NoRoute(Protocol::Http) => Answer::of(T::ResourceNotFound),
            Failure::BodyTooLarge => Answer::of(T::RequestTooLarge),
            Failure::BackendFailed => Answer::of(T::IntegrationFailure),
            Failure::IntegrationTimeout => Answer::of(T::IntegrationTimeout),
            // The guide (L16044): an unparseable integration response is a 502 Bad Gateway.
            Failure::BadBackendResponse => Answer {
                ty: T::Default5xx,
                status: Some(502),
                message: None,
            },
            Failure::Internal => Answer::of(T::Default5xx),
            Failure::Unauthorized => Answer::of(T::Unauthorized),
            Failure::Denied {
                explicit: true,
                protocol: Protocol::Rest,
            } => Answer::of(T::AccessDenied),
            Failure::Denied {
                explicit: false,
                protocol: Protocol::Rest,
            } => Answer {
                ty: T::AccessDenied,
                status: None,
                message: Some("User is not authorized to access this resource"),
            },
            Failure::Denied {
                protocol: Protocol::Http,
                ..
            } => Answer {
                ty: T::AccessDenied,
                status: None,
                message: Some("Forbidden"),
            },
            Failure::AuthorizerConfig(p) => http_text(T::AuthorizerConfigurationError, p),
            Failure::AuthorizerFailed(p) => http_text(T::AuthorizerFailure, p),
            // API Gateway: "Malformed Lambda proxy response" → 502 Internal server error.
            Failure::BadLambdaResponse(Protocol::Rest) => Answer {
                ty: T::Default5xx,
                status: Some(502),
                message: None,
            },
            Failure::BadLambdaResponse(Protocol::Http)
            | Failure::LambdaInvokeFailed(Protocol::Http) => Answer {
                ty: T::Default5xx,
                status: None,
                message: Some(HTTP_INTERNAL),
            },
            Failure::LambdaInvokeFailed(Protocol::Rest) => Answer::of(T::Default5xx),
            Failure::JwtRejected {
                forbidden: false, ..
            } => Answer::of(T::Unauthorized),
            Failure::JwtRejected {
                forbidden: true, ..
            } => Answer {
                ty: T::AccessDenied,
                status: None,
                message: Some("Forbidden"),
            },
            // "deny the request with a 403" (the guide on mutual TLS failures).
            Failure::MutualTlsRequired => Answer {
                ty: T::AccessDenied,
                status: None,
                message: Some("Forbidden"),
            },
            Failure::InvalidApiKey => Answer::of(T::InvalidApiKey),
            Failure::Throttled => Answer::of(T::Throttled),
            Failure::QuotaExceeded => Answer::of(T::QuotaExceeded),
            Failure::Refused(_) => return None,
        })
    }

    /// Whether the connection must close after this answer, whatever the client asked: the
    /// request's bytes cannot be trusted or were not read.
    pub const fn closes(self) -> bool {
        matches!(self, Failure::BodyTooLarge | Failure::Refused(_))
    }
}

/// What a gateway response may quote about the request (`$context.*`, `$stageVariables.*`)
/// and how it is framed, from the pipeline's context.
pub fn error_context<'c>(
    ctx: &'c Context<'_>,
    answer: Answer,
    max_body_bytes: u64,
    close: bool,
) -> ErrorContext<'c> {
    ErrorContext {
        request_id: &ctx.request_id,
        stage: ctx.stage_name(),
        stage_variables: ctx.stage.map_or(&[], |s| &s.variables[..]),
        http_method: ctx.http_method(),
        path: ctx.path(),
        status: answer.status,
        message: answer.message,
        max_body_bytes,
        close,
        head_request: ctx.head_request(),
        authorizer: ctx.authorizer.as_deref(),
        api_key_id: ctx.api_key_name(),
        policy_denial: false,
    }
}

/// Appends the answer to `failure` to `out` and returns whether the connection closes after
/// it (`close`, or a failure that always closes; the response says `connection: close`).
///
/// Rendered with the gateway responses of the API dispatch reached (`ctx.api`), else the
/// built-ins, with `ErrorContext` filled from `ctx`: request id, stage and its variables,
/// method and path as sent.
pub fn respond(
    gw: &Gateway,
    ctx: &Context<'_>,
    failure: Failure,
    close: bool,
    out: &mut Vec<u8>,
) -> bool {
    let close = close || failure.closes();
    let Some(answer) = failure.answer() else {
        if let Failure::Refused(err) = failure {
            refuse(err, &ctx.request_id, close, ctx.head_request(), out);
        }
        return close;
    };
    let mut err_ctx = error_context(ctx, answer, gw.settings.max_body_bytes, close);
    err_ctx.policy_denial = matches!(
        failure,
        Failure::Denied {
            protocol: Protocol::Rest,
            ..
        }
    );
    let builtin;
    let table = match ctx.api {
        Some(api) => &api.responses,
        None => {
            builtin = GatewayResponses::builtin();
            &builtin
        }
    };
    let start = out.len();
    table.write(answer.ty, &err_ctx, out);
    if let Failure::JwtRejected {
        description,
        forbidden,
    } = failure
    {
        www_authenticate(out, start, description, forbidden);
    }
    close
}

/// Adds the JWT authorizer's `www-authenticate` header to the response written at `start`
/// (guide L43880-43903).
fn www_authenticate(out: &mut Vec<u8>, start: usize, description: &str, forbidden: bool) {
    let Some(end) = memchr::memmem::find(&out[start..], b"\r\n\r\n") else {
        return;
    };
    let error = if forbidden {
        "insufficient_scope"
    } else {
        "invalid_token"
    };
    let header = format!(
        "www-authenticate: Bearer scope=\"\" error=\"{error}\" error_description=\"{description}\"\r\n"
    );
    let at = start + end + 2;
    out.splice(at..at, header.into_bytes());
}

/// Appends a protocol refusal (status line, `content-type: application/json`,
/// `content-length`, `x-amzn-RequestId`, `x-amzn-ErrorType`, `connection: close` when `close`,
/// body) to `out`; for a HEAD request (`head`) without the body but with its length. Also used
/// directly for a head that did not parse (no context exists yet).
pub fn refuse(err: GatewayError, request_id: &[u8], close: bool, head: bool, out: &mut Vec<u8>) {
    let status = err.status();
    let body = err.body();
    out.reserve(200 + request_id.len() + body.len());
    out.extend_from_slice(b"HTTP/1.1 ");
    push_decimal(out, u64::from(status));
    out.push(b' ');
    out.extend_from_slice(reason_phrase(status).as_bytes());
    out.extend_from_slice(b"\r\ncontent-type: application/json\r\ncontent-length: ");
    push_decimal(out, body.len() as u64);
    out.extend_from_slice(b"\r\nx-amzn-RequestId: ");
    out.extend_from_slice(request_id);
    out.extend_from_slice(b"\r\nx-amzn-ErrorType: ");
    out.extend_from_slice(err.error_type().as_bytes());
    out.extend_from_slice(b"\r\n");
    if close {
        out.extend_from_slice(b"connection: close\r\n");
    }
    out.extend_from_slice(b"\r\n");
    if !head {
        out.extend_from_slice(body.as_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::super::dispatch;
    use super::super::test_support::{gateway, with_head, ID};
    use super::*;

    /// Dispatches `raw` (ignoring the outcome), then renders `failure`.
    fn rendered(raw: &[u8], failure: Failure, close: bool) -> (bool, String) {
        let gw = gateway();
        let mut out = Vec::new();
        let mut closed = None;
        with_head(raw, |head, ctx| {
            let _ = dispatch(&gw, head, ctx);
            closed = Some(respond(&gw, ctx, failure, close, &mut out));
        });
        (closed.expect("ran"), String::from_utf8(out).expect("utf-8"))
    }

    fn parts(s: &str) -> (&str, &str, &str) {
        let (head, body) = s.split_once("\r\n\r\n").expect("head end");
        let status = head.split("\r\n").next().expect("status line");
        let ty = head
            .split("\r\n")
            .find_map(|l| l.strip_prefix("x-amzn-ErrorType: "))
            .expect("error type");
        (status, ty, body)
    }

    const GET: &[u8] = b"GET /prod/pets/1 HTTP/1.1\r\nhost: a\r\n\r\n";

    #[test]
    fn failure_to_answer_mapping() {
        let table = [
            (
                Failure::NoRoute(Protocol::Rest),
                "HTTP/1.1 403 Forbidden",
                "MissingAuthenticationTokenException",
                r#"{"message":"Missing Authentication Token"}"#,
            ),
            (
                Failure::NoRoute(Protocol::Http),
                "HTTP/1.1 404 Not Found",
                "NotFoundException",
                r#"{"message":"Not Found"}"#,
            ),
            (
                Failure::BodyTooLarge,
                "HTTP/1.1 413 Content Too Large",
                "RequestTooLargeException",
                r#"{"message":"HTTP content length exceeded 1000 bytes."}"#,
            ),
            (
                Failure::BackendFailed,
                "HTTP/1.1 504 Gateway Timeout",
                "InternalServerErrorException",
                r#"{"message":"Internal server error"}"#,
            ),
            (
                Failure::IntegrationTimeout,
                "HTTP/1.1 504 Gateway Timeout",
                "InternalServerErrorException",
                r#"{"message":"Endpoint request timed out"}"#,
            ),
            (
                Failure::BadBackendResponse,
                "HTTP/1.1 502 Bad Gateway",
                "InternalServerErrorException",
                r#"{"message":"Internal server error"}"#,
            ),
            (
                Failure::Internal,
                "HTTP/1.1 500 Internal Server Error",
                "InternalServerErrorException",
                r#"{"message":"Internal server error"}"#,
            ),
            (
                Failure::InvalidApiKey,
                "HTTP/1.1 403 Forbidden",
                "ForbiddenException",
                r#"{"message":"Forbidden"}"#,
            ),
            (
                Failure::Throttled,
                "HTTP/1.1 429 Too Many Requests",
                "TooManyRequestsException",
                r#"{"message":"Too Many Requests"}"#,
            ),
            (
                Failure::QuotaExceeded,
                "HTTP/1.1 429 Too Many Requests",
                "LimitExceededException",
                r#"{"message":"Limit Exceeded"}"#,
            ),
            (
                Failure::Refused(GatewayError::BadRequest),
                "HTTP/1.1 400 Bad Request",
                "BadRequestException",
                r#"{"message":"Bad Request"}"#,
            ),
        ];
        for (failure, status, ty, body) in table {
            let (closed, s) = rendered(GET, failure, false);
            assert_eq!(parts(&s), (status, ty, body), "{failure:?}");
            assert!(s.contains("\r\nx-amzn-RequestId: c0ffee00-"), "{s}");
            assert_eq!(closed, failure.closes(), "{failure:?}");
            assert_eq!(s.contains("\r\nconnection: close\r\n"), closed, "{s}");
        }
        assert_eq!(
            Failure::BackendFailed.answer().map(|a| a.ty),
            Some(ResponseType::IntegrationFailure)
        );
        assert_eq!(Failure::Refused(GatewayError::BadRequest).answer(), None);
    }

    #[test]
    fn error_context_quotes_the_request_as_sent() {
        let gw = gateway();
        with_head(
            b"DELETE /prod/pets/7?q=1 HTTP/1.1\r\nhost: a\r\n\r\n",
            |head, ctx| {
                assert!(dispatch(&gw, head, ctx).is_err());
                let answer = Failure::BadBackendResponse
                    .answer()
                    .expect("gateway response");
                let e = error_context(ctx, answer, 77, true);
                assert_eq!(e.request_id, &ID[..]);
                assert_eq!(e.stage, "prod");
                assert_eq!(e.stage_variables.len(), 1);
                assert_eq!(&*e.stage_variables[0].0, "who");
                assert_eq!(&*e.stage_variables[0].1, "tests");
                assert_eq!(e.http_method, b"DELETE");
                assert_eq!(e.path, b"/prod/pets/7");
                assert_eq!(e.status, Some(502));
                assert_eq!(e.message, None);
                assert_eq!(e.max_body_bytes, 77);
                assert!(e.close && !e.head_request);
            },
        );
        // Before any stage matched: nothing to quote but the request.
        with_head(
            b"GET /elsewhere HTTP/1.1\r\nhost: a\r\n\r\n",
            |head, ctx| {
                assert!(dispatch(&gw, head, ctx).is_err());
                let answer = Failure::NoRoute(Protocol::Rest)
                    .answer()
                    .expect("gateway response");
                let e = error_context(ctx, answer, 1, false);
                assert_eq!((e.stage, e.stage_variables.len()), ("", 0));
                assert_eq!(e.path, b"/elsewhere");
                assert_eq!(e.status, None);
            },
        );
    }

    #[test]
    fn close_and_head_requests() {
        let (closed, s) = rendered(GET, Failure::BackendFailed, true);
        assert!(closed && s.contains("\r\nconnection: close\r\n"));
        let (_, s) = rendered(
            b"HEAD /prod/nothing HTTP/1.1\r\nhost: a\r\n\r\n",
            Failure::NoRoute(Protocol::Rest),
            false,
        );
        assert!(s.ends_with("\r\n\r\n"), "{s}");
        assert!(s.contains("content-length: 42\r\n"), "{s}");
        assert!(s.contains(std::str::from_utf8(&ID).expect("ascii")));
    }

    fn refused(err: GatewayError, close: bool, head: bool) -> String {
        let mut out = b"previous".to_vec();
        refuse(err, &ID, close, head, &mut out);
        let s = String::from_utf8(out).expect("utf-8");
        s.strip_prefix("previous").expect("appends").to_string()
    }

    #[test]
    fn refusal_bytes() {
        assert_eq!(
            refused(GatewayError::BadRequest, true, false),
            "HTTP/1.1 400 Bad Request\r\n\
             content-type: application/json\r\n\
             content-length: 25\r\n\
             x-amzn-RequestId: c0ffee00-0000-4000-8000-000000000001\r\n\
             x-amzn-ErrorType: BadRequestException\r\n\
             connection: close\r\n\
             \r\n\
             {\"message\":\"Bad Request\"}"
        );
        assert_eq!(
            refused(GatewayError::HeadersTooLarge, false, true),
            "HTTP/1.1 431 Request Header Fields Too Large\r\n\
             content-type: application/json\r\n\
             content-length: 45\r\n\
             x-amzn-RequestId: c0ffee00-0000-4000-8000-000000000001\r\n\
             x-amzn-ErrorType: RequestHeaderFieldsTooLargeException\r\n\
             \r\n"
        );
        for (err, line) in [
            (
                GatewayError::NotImplemented,
                "HTTP/1.1 501 Not Implemented\r\n",
            ),
            (
                GatewayError::VersionNotSupported,
                "HTTP/1.1 505 HTTP Version Not Supported\r\n",
            ),
        ] {
            let s = refused(err, true, false);
            assert!(s.starts_with(line), "{s}");
            assert!(s.ends_with(&format!("\r\n\r\n{}", err.body())), "{s}");
            assert!(s.contains(&format!("content-length: {}\r\n", err.body().len())));
        }
    }
}
