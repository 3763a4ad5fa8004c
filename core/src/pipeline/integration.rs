//! Phases 4 and 5, the integration request and the integration response: what goes to the
//! backend (http_proxy) or straight back to the client (mock), and the client head built from
//! the backend's.

use super::{Context, Failure};
use crate::forward::{self, Relay};
use crate::gateway::{Gateway, RouteMatch, Target};
use crate::http::request::RequestHead;
use crate::http::response::ResponseHead;
use crate::http::BodyKind;
use std::time::Duration;

/// What the integration request left in the out buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Integration {
    /// A complete local response (mock): send it once the request body is read and dropped.
    /// `close`: it says `connection: close`.
    Local { close: bool },
    /// The backend request head: send it to `upstream` (index into `Gateway::upstreams`)
    /// and wait at most `timeout` for the response.
    Proxy { upstream: usize, timeout: Duration },
    /// An `aws_proxy` function: nothing was written; `lambda_request` prepares its event.
    Lambda,
}

/// Builds the integration request into `out`: a mock's complete response, or an http_proxy's
/// backend head (URI template filled from the path parameters, hop-by-hop headers dropped,
/// `X-Forwarded-*` added). Fails with `Internal` when the compiled gateway is inconsistent.
pub fn integration_request(
    gw: &Gateway,
    head: &RequestHead<'_, '_>,
    m: &RouteMatch<'_, '_>,
    ctx: &Context<'_>,
    out: &mut Vec<u8>,
) -> Result<Integration, Failure> {
    match m.target {
        Target::Mock(mock) => {
            let close = ctx.local_answer_closes();
            forward::write_mock(
                mock,
                &ctx.request_id,
                close,
                ctx.head_request(),
                ctx.minor_version,
                out,
            );
            Ok(Integration::Local { close })
        }
        Target::HttpProxy(p) => {
            let upstream = p.upstream as usize;
            let up = gw.upstreams.get(upstream).ok_or(Failure::Internal)?;
            forward::write_upstream_head(head, up, p, &m.params, m.path, &ctx.client, out);
            Ok(Integration::Proxy {
                upstream,
                timeout: p.timeout,
            })
        }
        Target::Lambda(_) => Ok(Integration::Lambda),
    }
}

/// How to finish a proxied response once its client head is built.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ResponsePlan {
    /// The backend's (and the client's) status.
    pub status: u16,
    /// The backend body's framing.
    pub body: BodyKind,
    /// Pass the body as is, or without chunk framing (HTTP/1.0 client).
    pub relay: Relay,
    /// The backend connection may be pooled after the body.
    pub backend_keep_alive: bool,
    /// The client connection closes after this response (the head says so).
    pub close: bool,
    /// Bytes of the backend head, to consume from its buffer.
    pub head_len: usize,
}

/// Builds the client response head for the backend's final (non-1xx) response head into
/// `out`: hop-by-hop headers dropped, `x-amzn-RequestId` set, `connection: close` when the
/// client connection ends with this response.
pub fn integration_response(
    resp: &ResponseHead<'_, '_>,
    ctx: &Context<'_>,
    out: &mut Vec<u8>,
) -> ResponsePlan {
    let head = forward::write_client_head(
        resp,
        ctx.minor_version,
        &ctx.request_id,
        !ctx.keep_alive,
        out,
    );
    ResponsePlan {
        status: resp.status,
        body: resp.body,
        relay: head.relay,
        backend_keep_alive: resp.keep_alive,
        close: head.close,
        head_len: resp.head_len,
    }
}

#[cfg(test)]
mod tests {
    use super::super::dispatch;
    use super::super::test_support::{gateway, with_head, ID};
    use super::*;
    use crate::http::{response, MAX_HEADERS};

    fn id() -> &'static str {
        std::str::from_utf8(&ID).expect("ascii id")
    }

    fn request(gw: &Gateway, raw: &[u8]) -> (Result<Integration, Failure>, String) {
        let mut out = Vec::new();
        let mut result = None;
        with_head(raw, |head, ctx| {
            let m = dispatch(gw, head, ctx).expect("route");
            result = Some(integration_request(gw, head, &m, ctx, &mut out));
        });
        let text = String::from_utf8(out).expect("utf-8 head");
        (result.expect("ran"), text)
    }

    #[test]
    fn mock_builds_the_whole_response() {
        let gw = gateway();
        let (r, out) = request(
            &gw,
            b"POST /prod/echo HTTP/1.1\r\nhost: a\r\ncontent-length: 3\r\n\r\n",
        );
        assert_eq!(r, Ok(Integration::Local { close: false }));
        assert_eq!(
            out,
            format!(
                "HTTP/1.1 201 Created\r\ncontent-type: text/plain\r\ncontent-length: 4\r\n\
                 x-amzn-RequestId: {}\r\n\r\nmade",
                id()
            )
        );
        // Expect: 100-continue with a body: the answer closes (and says so).
        let (r, out) = request(
            &gw,
            b"POST /prod/echo HTTP/1.1\r\nhost: a\r\ncontent-length: 3\r\nexpect: 100-continue\r\n\r\n",
        );
        assert_eq!(r, Ok(Integration::Local { close: true }));
        assert!(out.contains("\r\nconnection: close\r\n"), "{out}");
        // HEAD-less status without a reason phrase in our table still forms a status line.
        let (_, out) = request(&gw, b"GET /prod/teapot HTTP/1.1\r\nhost: a\r\n\r\n");
        assert!(out.starts_with("HTTP/1.1 418 \r\n"), "{out}");
    }

    #[test]
    fn proxy_builds_the_backend_head() {
        let gw = gateway();
        let (r, out) = request(
            &gw,
            b"GET /prod/pets/42?x=1 HTTP/1.1\r\nhost: a\r\nconnection: keep-alive\r\naccept: */*\r\n\r\n",
        );
        let Ok(Integration::Proxy { upstream, timeout }) = r else {
            panic!("not proxied: {r:?}");
        };
        assert_eq!(timeout, Duration::from_millis(1500));
        assert_eq!(gw.upstreams[upstream].addr.port(), 9000);
        assert_eq!(
            out,
            "GET /animals/42?x=1 HTTP/1.1\r\nhost: 127.0.0.1:9000\r\naccept: */*\r\n\
             x-forwarded-for: 192.0.2.9\r\nx-forwarded-proto: http\r\nx-forwarded-port: 8080\r\n\r\n"
        );
    }

    fn respond_to(raw_req: &[u8], raw_resp: &[u8]) -> (ResponsePlan, String) {
        let mut out = Vec::new();
        let mut plan = None;
        with_head(raw_req, |head, ctx| {
            let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
            let is_head = head.method == crate::method::Method::Head;
            let resp = response::parse(raw_resp, &mut headers, 8192, is_head)
                .expect("valid response")
                .expect("complete response");
            plan = Some(integration_response(&resp, ctx, &mut out));
        });
        (plan.expect("ran"), String::from_utf8(out).expect("utf-8"))
    }

    #[test]
    fn client_head_from_the_backend_head() {
        let raw: &[u8] = b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\nkeep-alive: timeout=5\r\n\
            x-amzn-requestid: theirs\r\nx-a: b\r\n\r\nhello";
        let (plan, out) = respond_to(b"GET / HTTP/1.1\r\nhost: a\r\n\r\n", raw);
        assert_eq!(
            plan,
            ResponsePlan {
                status: 200,
                body: BodyKind::Length(5),
                relay: Relay::Raw,
                backend_keep_alive: true,
                close: false,
                head_len: raw.len() - b"hello".len(),
            }
        );
        assert_eq!(
            out,
            format!(
                "HTTP/1.1 200 OK\r\ncontent-length: 5\r\nx-a: b\r\nx-amzn-RequestId: {}\r\n\r\n",
                id()
            )
        );
    }

    #[test]
    fn closing_cases() {
        // Backend body until close, HTTP/1.1 client: re-chunked, the client connection stays.
        let (plan, out) = respond_to(
            b"GET / HTTP/1.1\r\nhost: a\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nconnection: close\r\n\r\n",
        );
        assert_eq!(plan.body, BodyKind::UntilClose);
        assert_eq!(plan.relay, Relay::Rechunk);
        assert!(!plan.close && !plan.backend_keep_alive);
        assert!(out.contains("\r\ntransfer-encoding: chunked\r\n"), "{out}");
        assert!(!out.contains("connection: close"), "{out}");
        // ... and an HTTP/1.0 client: close-delimited, the client connection closes too.
        let (plan, out) = respond_to(
            b"GET / HTTP/1.0\r\nhost: a\r\nconnection: keep-alive\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nconnection: close\r\n\r\n",
        );
        assert_eq!(plan.relay, Relay::Raw);
        assert!(plan.close && !plan.backend_keep_alive);
        assert!(out.ends_with("connection: close\r\n\r\n"), "{out}");
        // Chunked to an HTTP/1.0 client: de-chunked and closed.
        let (plan, out) = respond_to(
            b"GET / HTTP/1.0\r\nhost: a\r\nconnection: keep-alive\r\n\r\n",
            b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n",
        );
        assert_eq!(plan.relay, Relay::Dechunk);
        assert!(plan.close);
        assert!(!out.contains("transfer-encoding"), "{out}");
        // The client asked to close.
        let (plan, _) = respond_to(
            b"GET / HTTP/1.1\r\nhost: a\r\nconnection: close\r\n\r\n",
            b"HTTP/1.1 204 No Content\r\n\r\n",
        );
        assert!(plan.close && plan.backend_keep_alive);
        assert_eq!(plan.body, BodyKind::None);
    }
}
