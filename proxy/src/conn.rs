//! A client connection's I/O, request after request: this module drives sockets and timers
//! and calls the request pipeline (`tollgate_core::pipeline`) for every decision.
//!
//! Per request (`serve_one`):
//! 1. Wait for a request head (idle timeout before its first byte, header-read timeout after;
//!    an idle connection waits holding no buffer) and parse it strictly; a refused head gets a
//!    protocol refusal (400/431/505) and the connection closes.
//! 2. While the head is borrowed from the buffer: `Context::new`, then the pipeline's dispatch,
//!    mutual TLS, authorize (`prepare`: decided from the shard's cache, or an authorizer call
//!    to make), throttle-and-quota (`Turn::throttle`; after the authorizer call when there is
//!    one, since the API key may be the authorizer's) and integration request phases, which
//!    leave in `out` either a complete local response (mock) or the backend request head, or
//!    prepare an `aws_proxy` event; a failure becomes a gateway response (`respond`). An
//!    authorizer call is made (`authorize`, through `lambda::invoke`) before anything else.
//! 3. A local answer (`send_local`) reads and discards the request body (strictly framed, up
//!    to `max_body_bytes`) so the connection can carry the next request. A proxied request
//!    (`proxy`, state in `Exchange`) sends the head and body, reads and parses the backend
//!    response head once (integration timeout), lets the integration response phase build the
//!    client head, streams the response body and returns the backend connection to the pool.
//!    A failure before any response byte reached the client is answered through `answer`.
//! 4. Keep-alive: the next pipelined request may already be in the buffer.
//! 5. The log phase (`finish`): the request's `Outcome` (status, response length, latencies,
//!    integration status or error, gateway response type), filled as the steps above go,
//!    feeds the shard's metrics and, when the stage has one, its access log line. While the
//!    shard drains (shutdown), every response says `connection: close`.

use crate::buffer::Buf;
use crate::lambda;
use crate::metrics::ShardMetrics;
use crate::net::Conn;
use crate::relay::{self, Framing, Limits, RelayError};
use crate::shard::{Shard, Turn};
use crate::upstream::{self, UpConn};
use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::rc::Rc;
use std::time::{Duration, Instant, SystemTime};
use tollgate_core::forward::ClientInfo;
use tollgate_core::gateway::RouteMatch;
use tollgate_core::http::error::GatewayError;
use tollgate_core::http::request::{self, HeadError};
use tollgate_core::http::{response, BodyKind, MAX_HEADERS};
use tollgate_core::lambda::{MAX_AUTHORIZER_RESULT_BYTES, MAX_RESULT_BYTES};
use tollgate_core::pipeline::{
    self, AuthAnswer, AuthCall, Authorize, Context, Failure, Integration, LambdaAnswer, LambdaCall,
    Outcome, ResponsePlan, ThrottleInput,
};

/// A request body up to this size that is already in the buffer with its head is sent in the
/// same write as the head, and can be resent on a fresh backend connection if a pooled one
/// turns out dead.
const RESEND_BODY_MAX: usize = 16 * 1024;

/// Response body bytes up to this size that arrived with the backend's head are sent to the
/// client in the same write as the head.
const COALESCE_BODY_MAX: usize = 16 * 1024;

struct Client {
    conn: Conn,
    buf: Buf,
    out: Vec<u8>,
    info: ClientInfo,
    /// The current request's outcome, for the log phase.
    outcome: Outcome,
}

/// Serves a client connection until it closes. The task's own future stays small (about the
/// `Client` and one read): it waits for bytes, holding no buffer while idle, and runs the
/// pipeline over them (`serve_one`, the large state machine) in a block lent by the shard's
/// pool (`BufPool::pooled`) that goes back as soon as a request is done or the head is
/// incomplete. Parked connections, idle or trickling a head, therefore do not carry it.
pub fn serve(shard: Rc<Shard>, conn: Conn) -> impl std::future::Future<Output = ()> {
    let ip = conn
        .peer_addr()
        .map(|a| a.ip())
        .unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
    let port = conn.local_addr().map(|a| a.port()).unwrap_or(0);
    let proto = if conn.is_tls() { "https" } else { "http" };
    let mut c = Client {
        buf: Buf::new(&shard.bufs),
        conn,
        out: Vec::new(),
        info: ClientInfo { ip, port, proto },
        outcome: Outcome::default(),
    };
    // Built outside the async block and captured by it (not rebound inside), so the task
    // keeps one `Client` and no second copy of `conn`.
    async move {
        ShardMetrics::inc(&shard.metrics.open_connections);
        shard.bufs.conn_opened();
        if serve_requests(&shard, &mut c).await {
            linger(&mut c).await;
        }
        drop(c);
        ShardMetrics::dec(&shard.metrics.open_connections);
        if shard.bufs.conn_closed() {
            shard.trim_later();
        }
    }
}

/// Reads and serves requests until the connection ends; true when we chose to close it (then
/// `linger`), false when the client went away or failed.
async fn serve_requests(shard: &Shard, c: &mut Client) -> bool {
    loop {
        let (idle_timeout, header_read_timeout) = shard.read_timeouts();
        let idle_deadline = Instant::now() + idle_timeout;
        let mut head_deadline = (!c.buf.is_empty()).then(|| Instant::now() + header_read_timeout);
        if c.buf.is_empty() {
            // Idle between requests: hold no buffer while waiting for the next one.
            c.buf.release();
            shard.bufs.give_out(&mut c.out);
            if c.conn.readable(idle_deadline).await.is_err() {
                return false;
            }
        }
        loop {
            if !c.buf.is_empty() {
                match shard.bufs.pooled(|| serve_one(shard, &mut *c)).await {
                    Ok(Some(true)) => break,
                    Ok(Some(false)) => return true,
                    Ok(None) => {}
                    Err(_) => return false,
                }
            }
            // The head is incomplete: read more.
            let deadline = head_deadline.unwrap_or(idle_deadline);
            match c.conn.read(c.buf.spare(), deadline).await {
                Ok(0) => return true,
                Ok(n) => c.buf.commit(n),
                Err(_) => return false,
            }
            head_deadline.get_or_insert_with(|| Instant::now() + header_read_timeout);
        }
    }
}

/// How long, and how many bytes, a closing connection keeps reading what the client still
/// sends (`linger`).
const LINGER_TIME: Duration = Duration::from_secs(2);
const LINGER_BYTES: usize = 1 << 20;

/// Closes a connection we chose to close: FIN first, then read and discard what the client
/// still sends (a request body we refused, pipelined requests) until it closes too, for at
/// most `LINGER_TIME` / `LINGER_BYTES`. Closing with unread bytes would make the kernel send a
/// RST, and a client still writing its body would get a reset instead of our response.
async fn linger(c: &mut Client) {
    if c.conn.shutdown_write().await.is_err() {
        return;
    }
    let n = c.buf.len();
    c.buf.consume(n);
    let deadline = Instant::now() + LINGER_TIME;
    let mut left = LINGER_BYTES;
    while left > 0 {
        let spare = c.buf.spare();
        let room = spare.len();
        match c.conn.read(spare, deadline).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                left = left.saturating_sub(n);
                if n == room {
                    // Much is coming: discard it with full-size reads.
                    c.buf.read_filled_spare();
                }
            }
        }
    }
}

/// The refusal for a head the parser would not take.
fn refusal(e: HeadError) -> GatewayError {
    match e {
        HeadError::TooLarge => GatewayError::HeadersTooLarge,
        HeadError::Malformed(_) | HeadError::Smuggling(_) => GatewayError::BadRequest,
        HeadError::Version => GatewayError::VersionNotSupported,
        HeadError::UnsupportedCoding => GatewayError::NotImplemented,
    }
}

/// Serves the request whose head is in the buffer: `Ok(None)` when the head is not complete
/// yet (nothing was done: the caller reads more), `Ok(Some(true))` when the connection may
/// carry another request. The request runs on the configuration current once its head is
/// there (a reload swaps it between requests), held to its end.
async fn serve_one(shard: &Shard, c: &mut Client) -> io::Result<Option<bool>> {
    let gen = shard.generation();
    serve_turn(&Turn::new(shard, &gen), c).await
}

/// `serve_one` on the generation the request holds.
async fn serve_turn(shard: &Turn<'_>, c: &mut Client) -> io::Result<Option<bool>> {
    let gw = shard.gateway;
    let s = &gw.settings;

    // Parse the head, then run the phases that need it (it borrows the buffer).
    let parsed = {
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        match request::parse(c.buf.filled(), &mut headers, s.max_header_bytes) {
            Ok(Some(head)) => {
                let request_id = shard.next_request_id();
                shard.bufs.take_out(&mut c.out);
                c.out.clear();
                let mut ctx = Context::new(request_id, c.info, Instant::now(), &head);
                ctx.tls = c.conn.tls_session();
                if shard.draining.get() {
                    ctx.keep_alive = false;
                }
                ShardMetrics::inc(&shard.metrics.in_flight);
                c.outcome.reset();
                let step = pipeline::dispatch(gw, &head, &mut ctx)
                    .and_then(|m| pipeline::mutual_tls(gw, &head, &ctx).map(|()| m))
                    .and_then(|m| prepare(shard, &head, &m, &mut ctx, &mut c.out));
                if let Some(log) = pipeline::access_log(&ctx) {
                    begin_log(&mut c.outcome, log, &head);
                }
                let head_len = head.head_len;
                c.buf.consume(head_len);
                Ok((ctx, step))
            }
            Ok(None) => return Ok(None),
            Err(e) => Err(refusal(e)),
        }
    };
    // Outside the scope of `headers` (3 KiB), so no await keeps it in this future.
    let (ctx, step) = match parsed {
        Ok(p) => p,
        Err(err) => {
            let request_id = shard.next_request_id();
            shard.bufs.take_out(&mut c.out);
            c.out.clear();
            pipeline::refuse(err, &request_id, true, false, &mut c.out);
            // Counted with the requests that reached no stage (no access log: no stage).
            record_local(&mut c.outcome, &c.out);
            shard.counters.request(0, c.outcome.status, 0, None);
            let _ = c.conn.write_all(&c.out, s.client_write_timeout).await;
            return Ok(Some(false));
        }
    };

    let mut ctx = ctx;
    let result = serve_step(shard, c, &mut ctx, step).await;
    finish(shard, c, &ctx);
    result.map(Some)
}

/// Runs what the head's phases prepared: the authorizer call (then throttle and quota), then
/// the integration.
async fn serve_step<'g>(
    shard: &'g Turn<'g>,
    c: &mut Client,
    ctx: &mut Context<'g>,
    step: Result<Prepared<'g>, Failure>,
) -> io::Result<bool> {
    let (integration, lambda_call) = match step {
        Ok(p) => {
            if let Some(call) = p.auth {
                if let Err(f) = authorize(shard, &call, ctx).await {
                    return answer(shard, c, ctx, f, BodyState::Unread).await;
                }
                // Throttle and quota come after authorize (the key may be the authorizer's).
                if let Some(input) = &p.throttle {
                    if let Err(f) = shard.throttle(input, ctx) {
                        return answer(shard, c, ctx, f, BodyState::Unread).await;
                    }
                }
            }
            (p.integration, p.lambda)
        }
        Err(failure) => return answer(shard, c, ctx, failure, BodyState::Unread).await,
    };
    match (integration, lambda_call) {
        (Integration::Local { close }, _) => send_local(shard, c, ctx, close, true).await,
        (Integration::Proxy { upstream, timeout }, _) => {
            proxy(shard, c, ctx, upstream, timeout).await
        }
        (Integration::Lambda, Some(call)) => serve_lambda(shard, c, ctx, call).await,
        (Integration::Lambda, None) => {
            answer(shard, c, ctx, Failure::Internal, BodyState::Unread).await
        }
    }
}

/// What the log phase needs from the head, read while it is still borrowed: the wall-clock
/// time, and `Host` / `User-Agent` when the format uses them (only for logged stages).
fn begin_log(
    o: &mut Outcome,
    log: &tollgate_core::gateway::access_log::AccessLog,
    head: &request::RequestHead<'_, '_>,
) {
    o.request_time_epoch_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    if log.format.needs_host() {
        o.host.extend_from_slice(head.host.unwrap_or(b""));
    }
    if log.format.needs_user_agent() {
        if let Some(h) = head
            .headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case("user-agent"))
        {
            o.user_agent.extend_from_slice(h.value);
        }
    }
}

/// The log phase: metrics, then the stage's access log line.
fn finish(shard: &Turn<'_>, c: &mut Client, ctx: &Context<'_>) {
    ShardMetrics::dec(&shard.metrics.in_flight);
    let o = &mut c.outcome;
    o.response_latency_ms = ctx.started.elapsed().as_millis() as u64;
    let series = shard
        .layout
        .series(shard.gateway, ctx.api, ctx.stage, ctx.route);
    shard.counters.request(
        series,
        o.status,
        o.response_latency_ms,
        o.integration_latency_ms,
    );
    if let Some((ty, _)) = o.error {
        shard.counters.rejected(series, ty);
    }
    if let Some(log) = pipeline::access_log(ctx) {
        shard
            .log
            .write(log.sink, |line| pipeline::log(ctx, o, line));
    }
}

/// Status and body length of the complete local response in `out`.
fn record_local(o: &mut Outcome, out: &[u8]) {
    if let Some(code) = out.get(9..12) {
        o.status = code
            .iter()
            .fold(0u16, |n, &d| n * 10 + u16::from(d.wrapping_sub(b'0') % 10));
    }
    o.response_length = memchr::memmem::find(out, b"\r\n\r\n").map(|i| (out.len() - i - 4) as u64);
}

/// A name for an I/O error in logs (static: no allocation on the failure path).
fn io_error_name(e: &io::Error) -> &'static str {
    match e.kind() {
        io::ErrorKind::ConnectionRefused => "connection refused",
        io::ErrorKind::ConnectionReset => "connection reset",
        io::ErrorKind::TimedOut => "timed out",
        io::ErrorKind::AddrNotAvailable => "no local address available",
        io::ErrorKind::BrokenPipe => "broken pipe",
        _ => "connect failed",
    }
}

/// Counts an upstream failure and writes its gateway-log line when one is due for its kind.
fn upstream_failed(
    shard: &Turn<'_>,
    o: &mut Outcome,
    addr: SocketAddr,
    failure: Failure,
    detail: &'static str,
) {
    let (kind, counter, what) = match failure {
        Failure::IntegrationTimeout => (1, &shard.metrics.upstream_timeouts, "integration timeout"),
        Failure::BadBackendResponse => (3, &shard.metrics.upstream_failures, "malformed response"),
        _ if detail != "closed or reset" => {
            (0, &shard.metrics.upstream_connect_errors, "connect failed")
        }
        _ => (2, &shard.metrics.upstream_failures, "exchange failed"),
    };
    ShardMetrics::inc(counter);
    o.integration_error = Some(detail);
    if let Some(n) = shard.upstream_lines[kind].due(Instant::now()) {
        log::warn!(
            shard = shard.index, upstream:% = addr, kind = what, detail = detail, count = n;
            "upstream {what} ({detail})"
        );
    }
}

/// What the phases run on the request head prepared.
struct Prepared<'g> {
    /// A Lambda authorizer to call before going on.
    auth: Option<Box<AuthCall<'g>>>,
    integration: Integration,
    /// The `aws_proxy` event waiting for the body.
    lambda: Option<Box<LambdaCall<'g>>>,
    /// Throttle and quota, still to run after the authorizer call (`auth`).
    throttle: Option<ThrottleInput<'g>>,
}

/// Phases 2 to 4 on the borrowed head: authorize (from the cache, or an authorizer call to
/// make), throttle and quota (or its inputs, when an authorizer call must come first), then
/// the integration request. The wall clock is read only for Lambda routes.
fn prepare<'g>(
    shard: &'g Turn<'g>,
    head: &request::RequestHead<'_, '_>,
    m: &RouteMatch<'g, '_>,
    ctx: &mut Context<'g>,
    out: &mut Vec<u8>,
) -> Result<Prepared<'g>, Failure> {
    let gw = &shard.gateway;
    let auth = match m.route.authorizer {
        None => None,
        Some(_) => {
            let mut caches = shard.auth_caches.borrow_mut();
            let decided =
                pipeline::authorize(head, m, ctx, &mut caches, Instant::now(), SystemTime::now());
            if let Some(a) = m
                .route
                .authorizer
                .and_then(|i| m.api.authorizers.get(i as usize))
            {
                let (hits, misses) = caches.counts(a.id);
                shard.counters.auth_cache(a.id, hits, misses);
            }
            match decided? {
                Authorize::Done => None,
                Authorize::Call(call) => Some(call),
            }
        }
    };
    // Phase 3, throttle and quota: now, unless an authorizer call must come first.
    let mut throttle = pipeline::throttle_input(gw, head, m)?;
    if auth.is_none() {
        if let Some(input) = throttle.take() {
            shard.throttle(&input, ctx)?;
        }
    }
    let integration = pipeline::integration_request(gw, head, m, ctx, out)?;
    let lambda = match integration {
        Integration::Lambda => Some(pipeline::lambda_request(
            gw,
            head,
            m,
            ctx,
            SystemTime::now(),
        )?),
        _ => None,
    };
    Ok(Prepared {
        auth,
        integration,
        lambda,
        throttle,
    })
}

/// Phase 2's I/O: calls the authorizer (async: other requests on the shard go on meanwhile)
/// and lets the pipeline decide from its answer.
async fn authorize<'g>(
    shard: &'g Turn<'g>,
    call: &AuthCall<'g>,
    ctx: &mut Context<'g>,
) -> Result<(), Failure> {
    let a = call.authorizer;
    // One call per identity at a time: a concurrent request of the same identity waits for it
    // and reads the cache.
    let _leader = match call.shared_key() {
        Some((id, key)) => match shard.auth_inflight.join(id, key).await {
            Ok(leader) => Some(leader),
            Err(()) => {
                let mut caches = shard.auth_caches.borrow_mut();
                let cached = pipeline::authorize_cached(call, ctx, &mut caches, Instant::now());
                let (hits, misses) = caches.counts(a.id);
                shard.counters.auth_cache(a.id, hits, misses);
                if let Some(decided) = cached {
                    return decided;
                }
                None
            }
        },
        None => None,
    };
    let invoked = lambda::invoke(
        shard,
        call.upstream,
        &a.path,
        &call.event,
        a.timeout,
        MAX_AUTHORIZER_RESULT_BYTES,
    )
    .await;
    let answer = match &invoked {
        Err(_) => AuthAnswer::Unreachable,
        Ok(r) if r.function_error => AuthAnswer::FunctionError(&r.body),
        Ok(r) if !(200..300).contains(&r.status) => AuthAnswer::InvokeFailed(r.status),
        Ok(r) => AuthAnswer::Output(&r.body),
    };
    let mut caches = shard.auth_caches.borrow_mut();
    pipeline::authorize_result(call, answer, ctx, &mut caches, Instant::now())
}

/// An `aws_proxy` request: reads the whole body (strictly framed, within `max_body_bytes`),
/// invokes the function with the event, and sends the mapped response.
async fn serve_lambda(
    shard: &Turn<'_>,
    c: &mut Client,
    ctx: &Context<'_>,
    mut call: Box<LambdaCall<'_>>,
) -> io::Result<bool> {
    let s = &shard.gateway.settings;
    if ctx.expect_continue
        && ctx.has_body()
        && c.conn
            .write_all(b"HTTP/1.1 100 Continue\r\n\r\n", s.client_write_timeout)
            .await
            .is_err()
    {
        return Ok(false);
    }
    let deadline = lambda::Deadline {
        read_timeout: s.header_read_timeout,
        deadline: None,
    };
    let body = match lambda::read_body(
        &mut c.conn,
        &mut c.buf,
        ctx.body,
        deadline,
        s.max_body_bytes,
    )
    .await
    {
        Ok(b) => b,
        Err(e) => {
            let f = match e {
                lambda::BodyError::TooLarge => Failure::BodyTooLarge,
                lambda::BodyError::Framing => Failure::Refused(GatewayError::BadRequest),
                lambda::BodyError::Timeout => Failure::Refused(GatewayError::RequestTimeout),
                lambda::BodyError::Closed => return Ok(false),
            };
            return answer(shard, c, ctx, f, BodyState::Broken).await;
        }
    };
    let event = call.invocation(ctx, &body);
    drop(body);
    let invoked = lambda::invoke(
        shard,
        call.upstream,
        &call.target.path,
        &event,
        call.timeout,
        MAX_RESULT_BYTES,
    )
    .await;
    drop(event);
    let answer_of = match &invoked {
        Err(lambda::InvokeError::Timeout) => Err(Failure::IntegrationTimeout),
        Err(lambda::InvokeError::Failed) => Err(Failure::BackendFailed),
        Err(lambda::InvokeError::Malformed) => Err(Failure::BadBackendResponse),
        Err(lambda::InvokeError::TooLarge) => Ok(LambdaAnswer::FunctionError(b"")),
        Ok(r) if r.function_error => Ok(LambdaAnswer::FunctionError(&r.body)),
        Ok(r) if !(200..300).contains(&r.status) => Ok(LambdaAnswer::InvokeFailed(r.status)),
        Ok(r) => Ok(LambdaAnswer::Result(&r.body)),
    };
    c.out.clear();
    let close = !ctx.keep_alive;
    match answer_of.and_then(|a| call.response(a, ctx, close, &mut c.out)) {
        Ok(close) => {
            record_local(&mut c.outcome, &c.out);
            c.conn.write_all(&c.out, s.client_write_timeout).await?;
            Ok(!close)
        }
        Err(f) => answer(shard, c, ctx, f, BodyState::Done).await,
    }
}

/// Where the client's request body stands when tollgate answers by itself.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum BodyState {
    /// Not read at all: it can still be read and discarded.
    Unread,
    /// Read completely (sent to the backend, or taken with the head).
    Done,
    /// Partly read: the connection cannot carry another request.
    Broken,
}

/// Answers `failure` with the pipeline's gateway response (or protocol refusal).
async fn answer(
    shard: &Turn<'_>,
    c: &mut Client,
    ctx: &Context<'_>,
    failure: Failure,
    body: BodyState,
) -> io::Result<bool> {
    let close = shard.draining.get()
        || match body {
            BodyState::Unread => ctx.local_answer_closes(),
            BodyState::Done => !ctx.keep_alive,
            BodyState::Broken => true,
        };
    c.out.clear();
    c.outcome.error = failure.answer().map(|a| (a.ty, a.message));
    let close = pipeline::respond(shard.gateway, ctx, failure, close, &mut c.out);
    send_local(shard, c, ctx, close, body == BodyState::Unread).await
}

/// Sends the complete local response in `out`. Unless it closes the connection, an unread
/// request body (`drain`) is first read and discarded, strictly framed and within
/// `max_body_bytes`; a body over the limit is answered 413, malformed chunk framing 400, and
/// the connection closes.
async fn send_local(
    shard: &Turn<'_>,
    c: &mut Client,
    ctx: &Context<'_>,
    close: bool,
    drain: bool,
) -> io::Result<bool> {
    let s = &shard.gateway.settings;
    let mut close = close;
    if !close && drain && ctx.has_body() {
        let limits = Limits {
            read_timeout: s.body_read_timeout,
            write_timeout: s.client_write_timeout,
            max_body: s.max_body_bytes,
        };
        let framing = Framing::request(ctx.body);
        let failure = match relay::relay(&mut c.conn, &mut c.buf, None, framing, &limits).await {
            Ok(()) => None,
            Err(RelayError::TooLarge) => Some(Failure::BodyTooLarge),
            Err(RelayError::Framing) => Some(Failure::Refused(GatewayError::BadRequest)),
            // The body stopped arriving: 408, then close.
            Err(RelayError::SourceTimeout) => Some(Failure::Refused(GatewayError::RequestTimeout)),
            // The client went away: nothing to answer.
            Err(RelayError::Source | RelayError::Sink) => return Ok(false),
        };
        if let Some(f) = failure {
            c.out.clear();
            c.outcome.error = f.answer().map(|a| (a.ty, a.message));
            close = pipeline::respond(shard.gateway, ctx, f, true, &mut c.out);
        }
    }
    record_local(&mut c.outcome, &c.out);
    c.conn.write_all(&c.out, s.client_write_timeout).await?;
    Ok(!close)
}

/// A proxied request's exchange with its backend.
struct Exchange {
    /// Index into `Gateway::upstreams` and the shard's pools.
    upstream: usize,
    addr: SocketAddr,
    /// The integration timeout, and its deadline for the response head.
    timeout: Duration,
    deadline: Instant,
    /// The whole request (head and body) is in `out`: it can be resent.
    resendable: bool,
    body: BodyState,
}

/// Why one attempt at an exchange ended without a response head.
enum Attempt {
    /// The pooled connection was dead before the backend saw the request: try a fresh one.
    Stale,
    /// Answer this, nothing reached the client yet.
    Fail(Failure),
    /// The client connection is no longer usable: drop it.
    Drop,
}

async fn proxy(
    shard: &Turn<'_>,
    c: &mut Client,
    ctx: &Context<'_>,
    upstream: usize,
    timeout: Duration,
) -> io::Result<bool> {
    let Some(addr) = shard.gateway.upstreams.get(upstream).map(|u| u.addr) else {
        return answer(shard, c, ctx, Failure::Internal, BodyState::Unread).await;
    };
    let mut x = Exchange {
        upstream,
        addr,
        timeout,
        deadline: ctx.started + timeout,
        resendable: false,
        body: BodyState::Unread,
    };
    match ctx.body {
        BodyKind::None | BodyKind::UntilClose => {
            x.resendable = true;
            x.body = BodyState::Done;
        }
        BodyKind::Length(n) if n as usize <= c.buf.len() && n as usize <= RESEND_BODY_MAX => {
            c.out.extend_from_slice(&c.buf.filled()[..n as usize]);
            c.buf.consume(n as usize);
            x.resendable = true;
            x.body = BodyState::Done;
        }
        _ => {}
    }

    let began = Instant::now();
    let (up, plan) = match backend_response(shard, c, ctx, &mut x).await {
        Ok(r) => r,
        Err(None) => return Ok(false),
        Err(Some((f, detail))) => {
            c.outcome.integration_latency_ms = Some(ms_since(began));
            if let Some(detail) = detail {
                upstream_failed(shard, &mut c.outcome, x.addr, f, detail);
            }
            return answer(shard, c, ctx, f, x.body).await;
        }
    };
    let o = &mut c.outcome;
    o.integration_latency_ms = Some(ms_since(began));
    o.integration_status = Some(plan.status);
    o.status = plan.status;
    o.response_length = match plan.body {
        _ if ctx.head_request() => Some(0),
        BodyKind::None => Some(0),
        BodyKind::Length(n) => Some(n),
        BodyKind::Chunked | BodyKind::UntilClose => None,
    };

    send_response(shard, c, &x, up, plan).await
}

fn ms_since(t: Instant) -> u64 {
    t.elapsed().as_millis() as u64
}

/// Gets the backend's response head for a proxied request: a pooled or new connection, the
/// exchange, one retry on a fresh connection when a pooled one turns out stale. `Err(None)`:
/// the client connection is unusable (drop it); `Err(Some((failure, detail)))`: answer
/// `failure`, and log an upstream failure with `detail` when there is one.
async fn backend_response(
    shard: &Turn<'_>,
    c: &mut Client,
    ctx: &Context<'_>,
    x: &mut Exchange,
) -> Result<(UpConn, ResponsePlan), Option<(Failure, Option<&'static str>)>> {
    let s = &shard.gateway.settings;
    let mut attempt = 0;
    loop {
        attempt += 1;
        let pooled = shard.pools.borrow_mut().take(x.upstream, Instant::now());
        let mut up = match pooled {
            Some(u) => u,
            None => {
                let left = x.deadline.saturating_duration_since(Instant::now());
                let secure = shard.secure.get(x.upstream).and_then(Option::as_ref);
                let timeout = left.min(s.upstream_connect_timeout);
                match upstream::connect(secure, x.addr, timeout, &shard.bufs).await {
                    Ok(u) => u,
                    Err(e) => {
                        let f = if e.kind() == io::ErrorKind::TimedOut {
                            Failure::IntegrationTimeout
                        } else {
                            Failure::BackendFailed
                        };
                        return Err(Some((f, Some(io_error_name(&e)))));
                    }
                }
            }
        };
        match exchange(shard, c, ctx, &mut up, x).await {
            Ok(plan) => return Ok((up, plan)),
            Err(Attempt::Stale) if up.reused && attempt == 1 => continue,
            Err(Attempt::Stale) => {
                return Err(Some((Failure::BackendFailed, Some("closed or reset"))))
            }
            Err(Attempt::Fail(f)) => {
                let detail = match f {
                    Failure::IntegrationTimeout => Some("no response head in time"),
                    Failure::BadBackendResponse => Some("malformed response head"),
                    Failure::BackendFailed => Some("closed or reset"),
                    _ => None,
                };
                return Err(Some((f, detail)));
            }
            Err(Attempt::Drop) => return Err(None),
        }
    }
}

/// Sends the client head in `out` (with the body bytes that came along, if few) and streams
/// the rest of the response body; the backend connection goes back to the pool when it can
/// carry another request.
async fn send_response(
    shard: &Turn<'_>,
    c: &mut Client,
    x: &Exchange,
    mut up: UpConn,
    plan: ResponsePlan,
) -> io::Result<bool> {
    let s = &shard.gateway.settings;
    let mut framing = Framing::response(plan.body, plan.relay);
    if let BodyKind::Length(n) = plan.body {
        let take = (n as usize).min(up.buf.len());
        if take <= COALESCE_BODY_MAX {
            c.out.extend_from_slice(&up.buf.filled()[..take]);
            up.buf.consume(take);
            framing = Framing::Length(n - take as u64);
        }
    }
    if c.conn
        .write_all(&c.out, s.client_write_timeout)
        .await
        .is_err()
    {
        return Ok(false);
    }
    let until_close = framing.until_close();
    let limits = Limits {
        read_timeout: x.timeout,
        write_timeout: s.client_write_timeout,
        max_body: u64::MAX,
    };
    match relay::relay(
        &mut up.conn,
        &mut up.buf,
        Some(&mut c.conn),
        framing,
        &limits,
    )
    .await
    {
        Ok(()) => {
            if plan.backend_keep_alive && !until_close && up.buf.is_empty() {
                shard.pools.borrow_mut().put(x.upstream, up, Instant::now());
            }
            Ok(!plan.close)
        }
        // The client already has part of the response: closing is the only honest signal.
        Err(_) => Ok(false),
    }
}

/// What one look at the backend's buffer found.
enum Head {
    /// A 1xx interim head of this length: skip it.
    Interim(usize),
    /// The final head: the client head is in `out`.
    Final(ResponsePlan),
    /// Not a valid response head.
    Bad,
    /// Incomplete: read more.
    More,
}

/// Sends the request (head in `c.out`, body inline or streamed from the client), reads the
/// backend's response head into `up.buf` (skipping 1xx), parses it once and lets the
/// integration response phase build the client head into `c.out`. On `Ok`, `up.buf` starts
/// with the response body.
async fn exchange(
    shard: &Turn<'_>,
    c: &mut Client,
    ctx: &Context<'_>,
    up: &mut UpConn,
    x: &mut Exchange,
) -> Result<ResponsePlan, Attempt> {
    send_request(shard, c, ctx, up, x).await?;
    let is_head = ctx.head_request();
    let mut got_any = false;
    // A dead pooled connection shows as a close or reset before any byte.
    let reused = up.reused;
    let stale_or_failed = |got_any: bool| {
        if !got_any && reused && x.resendable && ctx.method.is_idempotent() {
            Attempt::Stale
        } else {
            Attempt::Fail(Failure::BackendFailed)
        }
    };
    loop {
        if !up.buf.is_empty() {
            match look_at_head(shard, c, ctx, up, is_head) {
                Head::Interim(n) => {
                    up.buf.consume(n);
                    continue;
                }
                Head::Final(plan) => {
                    up.buf.consume(plan.head_len);
                    return Ok(plan);
                }
                Head::Bad => return Err(Attempt::Fail(Failure::BadBackendResponse)),
                Head::More => {}
            }
        }
        match up.conn.read(up.buf.spare(), x.deadline).await {
            Ok(0) => return Err(stale_or_failed(got_any)),
            Ok(n) => {
                got_any = true;
                up.buf.commit(n);
            }
            Err(e) if e.kind() == io::ErrorKind::TimedOut => {
                return Err(Attempt::Fail(Failure::IntegrationTimeout))
            }
            Err(_) => return Err(stale_or_failed(got_any)),
        }
    }
}

/// Writes the request head in `c.out` to the backend, then, unless the body came inline
/// (`x.resendable`), answers `Expect: 100-continue` and streams the body from the client.
async fn send_request(
    shard: &Turn<'_>,
    c: &mut Client,
    ctx: &Context<'_>,
    up: &mut UpConn,
    x: &mut Exchange,
) -> Result<(), Attempt> {
    let s = &shard.gateway.settings;
    let write_timeout = x
        .deadline
        .saturating_duration_since(Instant::now())
        .max(Duration::from_millis(1));
    if up.conn.write_all(&c.out, write_timeout).await.is_err() {
        return Err(if up.reused {
            Attempt::Stale
        } else {
            Attempt::Fail(Failure::BackendFailed)
        });
    }
    if x.resendable {
        return Ok(());
    }
    if ctx.expect_continue
        && c.conn
            .write_all(b"HTTP/1.1 100 Continue\r\n\r\n", s.client_write_timeout)
            .await
            .is_err()
    {
        return Err(Attempt::Drop);
    }
    let limits = Limits {
        read_timeout: s.body_read_timeout,
        write_timeout,
        max_body: s.max_body_bytes,
    };
    x.body = BodyState::Broken;
    let framing = Framing::request(ctx.body);
    match relay::relay(
        &mut c.conn,
        &mut c.buf,
        Some(&mut up.conn),
        framing,
        &limits,
    )
    .await
    {
        Ok(()) => {
            x.body = BodyState::Done;
            Ok(())
        }
        Err(RelayError::TooLarge) => Err(Attempt::Fail(Failure::BodyTooLarge)),
        Err(RelayError::Framing) => Err(Attempt::Fail(Failure::Refused(GatewayError::BadRequest))),
        Err(RelayError::Source) => Err(Attempt::Drop),
        Err(RelayError::SourceTimeout) => Err(Attempt::Fail(Failure::Refused(
            GatewayError::RequestTimeout,
        ))),
        Err(RelayError::Sink) => Err(Attempt::Fail(Failure::BackendFailed)),
    }
}

/// Parses what `up.buf` holds as a response head (`headers`, 3 KiB, lives only in this
/// call, never in a future); for the final head, the integration response phase writes the
/// client head into `c.out`.
fn look_at_head(
    shard: &Turn<'_>,
    c: &mut Client,
    ctx: &Context<'_>,
    up: &UpConn,
    is_head: bool,
) -> Head {
    let s = &shard.gateway.settings;
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    match response::parse(up.buf.filled(), &mut headers, s.read_buffer_bytes, is_head) {
        // Interim responses (we never ask for upgrades) are dropped.
        Ok(Some(resp)) if (100..200).contains(&resp.status) => Head::Interim(resp.head_len),
        Ok(Some(resp)) => {
            c.out.clear();
            Head::Final(if shard.draining.get() && ctx.keep_alive {
                // Shutting down since the request came: the response closes.
                let mut closing = ctx.clone();
                closing.keep_alive = false;
                pipeline::integration_response(&resp, &closing, &mut c.out)
            } else {
                pipeline::integration_response(&resp, ctx, &mut c.out)
            })
        }
        Ok(None) if up.buf.is_full() => Head::Bad,
        Ok(None) => Head::More,
        Err(_) => Head::Bad,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Size of the future `f` returns (without calling it).
    fn future_size<A, B, F>(_: impl Fn(A, B) -> F) -> usize {
        std::mem::size_of::<F>()
    }

    /// What every parked connection carries is the task's future: about the `Client` and
    /// one read. The request state machine (`serve_one`, several KiB) must stay out of it,
    /// in the block the pool lends while a request runs.
    #[test]
    fn a_parked_connection_future_stays_small() {
        let task = future_size(serve);
        let request = future_size(serve_one);
        let client = std::mem::size_of::<Client>();
        assert!(
            task <= client + 768,
            "the connection task's future is {task} bytes (Client: {client})"
        );
        assert!(
            request > task,
            "serve_one ({request} bytes) is expected to be the large part"
        );
        assert!(client <= 320, "Client is {client} bytes");
    }
}
