//! The per-request context that flows through the pipeline's phases.

use crate::forward::ClientInfo;
use crate::gateway::{Api, Route, Stage};
use crate::http::request::RequestHead;
use crate::http::BodyKind;
use crate::lambda::policy::AuthResult;
use crate::method::Method;
use crate::tls::TlsSession;
use crate::traffic::ApiKey;
use smallvec::SmallVec;
use std::rc::Rc;
use std::time::Instant;

/// Method token and path bytes kept inline; longer ones (rare) spill to the heap.
const SENT_INLINE: usize = 160;

/// What the pipeline knows about one request, from its parsed head to its response.
///
/// It outlives the request head (whose bytes leave the connection's buffer once the body is
/// read), so the method and path as sent are copied here; everything else is borrowed from
/// the compiled gateway (`'g`). The path parameters are not kept: they borrow the head and are
/// used only by the integration request, which gets them from the route match.
///
/// Fields that later phases add (documented in the module doc): the integration status and
/// latency (issue 18's log phase).
#[derive(Clone, Debug)]
pub struct Context<'g> {
    /// `$context.requestId`, also sent as `x-amzn-RequestId`.
    pub request_id: [u8; 36],
    /// The client connection (address, listener port, scheme).
    pub client: ClientInfo,
    /// When the request head was complete.
    pub started: Instant,
    pub method: Method,
    /// 0 for HTTP/1.0, 1 for HTTP/1.1.
    pub minor_version: u8,
    /// The client allows another request on this connection after this one.
    pub keep_alive: bool,
    /// The client sent `Expect: 100-continue`.
    pub expect_continue: bool,
    /// The request body's framing.
    pub body: BodyKind,
    /// Filled by dispatch as far as it got: API, then stage, then route.
    pub api: Option<&'g Api>,
    pub stage: Option<&'g Stage>,
    pub route: Option<&'g Route>,
    /// The TLS session of the connection (`None`: plain HTTP), set by the connection after
    /// `new`: the SNI's domain and, with mutual TLS, the client certificate
    /// (`$context.identity.clientCert.*`, `requestContext.identity.clientCert`).
    pub tls: Option<Rc<TlsSession>>,
    /// Set by throttle and quota on a route that required an API key: the key's index in
    /// `Gateway::traffic.keys` (logs show its name, never its value).
    pub api_key: Option<u32>,
    /// The gateway's API keys (set by dispatch), for `api_key`'s name.
    pub api_keys: &'g [ApiKey],
    /// The authorizer's result (phase 2): the one that allowed the request, or the policy that
    /// denied it (a deny's gateway response and log line may quote its principal and context,
    /// as API Gateway's do).
    pub authorizer: Option<Rc<AuthResult>>,
    /// Method token, then path as sent (stage prefix included, query excluded).
    sent: SmallVec<[u8; SENT_INLINE]>,
    method_len: usize,
}

impl<'g> Context<'g> {
    /// A context for a request whose head was just parsed.
    pub fn new(
        request_id: [u8; 36],
        client: ClientInfo,
        started: Instant,
        head: &RequestHead<'_, '_>,
    ) -> Context<'g> {
        let mut sent = SmallVec::new();
        sent.extend_from_slice(head.method_str.as_bytes());
        sent.extend_from_slice(head.path.as_bytes());
        Context {
            request_id,
            client,
            started,
            method: head.method,
            minor_version: head.minor_version,
            keep_alive: head.keep_alive,
            expect_continue: head.expect_continue,
            body: head.body,
            api: None,
            stage: None,
            route: None,
            tls: None,
            api_key: None,
            api_keys: &[],
            authorizer: None,
            sent,
            method_len: head.method_str.len(),
        }
    }

    /// `$context.httpMethod`: the method token as sent.
    pub fn http_method(&self) -> &[u8] {
        &self.sent[..self.method_len]
    }

    /// `$context.path`: the path as sent, stage prefix included, without the query.
    pub fn path(&self) -> &[u8] {
        &self.sent[self.method_len..]
    }

    /// `$context.routeKey` once a route matched.
    pub fn route_key(&self) -> Option<&'g str> {
        self.route.map(|r| &*r.key)
    }

    /// `$context.stage` ("" before a stage matched).
    pub fn stage_name(&self) -> &'g str {
        self.stage.map_or("", |s| &*s.name)
    }

    /// The configured name of the API key the request was counted against
    /// (`$context.identity.apiKeyId`; never the key's value).
    pub fn api_key_name(&self) -> Option<&'g str> {
        let i = self.api_key?;
        self.api_keys.get(i as usize).map(|k| &*k.name)
    }

    /// The API key a Lambda authorizer gave (`usageIdentifierKey`), for an API key source of
    /// AUTHORIZER.
    pub fn authorizer_api_key(&self) -> Option<&str> {
        self.authorizer.as_ref()?.usage_identifier_key.as_deref()
    }

    /// A HEAD request: responses carry no body.
    pub fn head_request(&self) -> bool {
        self.method == Method::Head
    }

    /// Whether the request has body bytes to come after its head.
    pub fn has_body(&self) -> bool {
        match self.body {
            BodyKind::None | BodyKind::UntilClose => false,
            BodyKind::Length(n) => n > 0,
            BodyKind::Chunked => true,
        }
    }

    /// Whether a response made here (mock, gateway response) closes the connection: the
    /// client asked for it, or it waits for `100 Continue` before sending a body we will not
    /// read.
    pub fn local_answer_closes(&self) -> bool {
        !self.keep_alive || (self.expect_continue && self.has_body())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::{request, MAX_HEADERS};
    use std::net::{IpAddr, Ipv4Addr};

    pub(crate) fn client() -> ClientInfo {
        ClientInfo {
            ip: IpAddr::V4(Ipv4Addr::LOCALHOST),
            port: 8080,
            proto: "http",
        }
    }

    fn ctx_for(raw: &[u8]) -> Context<'static> {
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let head = request::parse(raw, &mut headers, 8192)
            .expect("valid head")
            .expect("complete head");
        Context::new([b'a'; 36], client(), Instant::now(), &head)
    }

    #[test]
    fn keeps_method_and_path_as_sent() {
        let c = ctx_for(b"PATCH /prod/pets/7?x=1 HTTP/1.1\r\nhost: a\r\n\r\n");
        assert_eq!(c.http_method(), b"PATCH");
        assert_eq!(c.path(), b"/prod/pets/7");
        assert_eq!(c.stage_name(), "");
        assert_eq!(c.route_key(), None);
        assert!(!c.head_request());
        let long = format!("GET /{} HTTP/1.1\r\nhost: a\r\n\r\n", "x".repeat(500));
        let c = ctx_for(long.as_bytes());
        assert_eq!(c.path().len(), 501);
        assert_eq!(c.http_method(), b"GET");
    }

    #[test]
    fn stays_small() {
        // It is held across every await of a request: no large arrays in it.
        let size = std::mem::size_of::<Context<'static>>();
        assert!(size <= 384, "Context is {size} bytes");
    }

    #[test]
    fn local_answer_close_rules() {
        let c = ctx_for(b"GET / HTTP/1.1\r\nhost: a\r\n\r\n");
        assert!(!c.local_answer_closes());
        let c = ctx_for(b"GET / HTTP/1.1\r\nhost: a\r\nconnection: close\r\n\r\n");
        assert!(c.local_answer_closes());
        let c = ctx_for(b"GET / HTTP/1.0\r\nhost: a\r\n\r\n");
        assert!(c.local_answer_closes());
        let c = ctx_for(
            b"POST / HTTP/1.1\r\nhost: a\r\ncontent-length: 5\r\nexpect: 100-continue\r\n\r\n",
        );
        assert!(c.local_answer_closes());
        let c = ctx_for(b"POST / HTTP/1.1\r\nhost: a\r\ncontent-length: 5\r\n\r\n");
        assert!(!c.local_answer_closes());
        assert!(c.has_body());
        let c = ctx_for(
            b"POST / HTTP/1.1\r\nhost: a\r\ncontent-length: 0\r\nexpect: 100-continue\r\n\r\n",
        );
        assert!(!c.local_answer_closes());
    }
}
