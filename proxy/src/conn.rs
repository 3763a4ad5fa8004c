//! A client connection's whole life, request after request, in execution order:
//!
//! 1. `read_head`: wait for a request head (idle timeout before its first byte, header-read
//!    timeout after; an idle connection waits holding no buffer), parse it strictly; refusals
//!    answer 4xx and close.
//! 2. `plan`: dispatch to API, stage and route; an error or mock response is built right away,
//!    a proxy request gets its backend head built into the out buffer.
//! 3. `respond_local` (mock / gateway error, skipping any request body) or `proxy`: send the
//!    head, stream the request body, read the backend response head (integration timeout),
//!    send the client head, stream the response body, return the backend connection to the pool.
//! 4. keep-alive: the next pipelined request may already be in the buffer.

use crate::buffer::Buf;
use crate::net::Conn;
use crate::relay::{self, Framing, Limits, RelayError};
use crate::shard::Shard;
use crate::upstream::{self, UpConn};
use std::io;
use std::net::{IpAddr, Ipv4Addr};
use std::rc::Rc;
use std::time::{Duration, Instant};
use tollgate_core::forward::{self, ClientInfo};
use tollgate_core::gateway::{Protocol, Resolved, Target};
use tollgate_core::http::error::{self, GatewayError};
use tollgate_core::http::request::{self, HeadError};
use tollgate_core::http::response::{self, ResponseError};
use tollgate_core::http::{BodyKind, MAX_HEADERS};
use tollgate_core::method::Method;

/// What the parsed request needs after its head bytes are gone.
#[derive(Clone, Copy)]
struct ReqMeta {
    method: Method,
    body: BodyKind,
    keep_alive: bool,
    expect_continue: bool,
    minor_version: u8,
}

enum Plan {
    /// `out` holds a complete local response (mock or gateway error).
    Local { close: bool },
    /// `out` holds the backend request head.
    Proxy { upstream: u32, timeout: Duration },
}

struct Client {
    conn: Conn,
    buf: Buf,
    out: Vec<u8>,
    info: ClientInfo,
}

pub async fn serve(shard: Rc<Shard>, conn: Conn) {
    let ip = conn
        .peer_addr()
        .map(|a| a.ip())
        .unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
    let port = conn.local_addr().map(|a| a.port()).unwrap_or(0);
    let mut c = Client {
        conn,
        buf: Buf::new(&shard.bufs),
        out: Vec::new(),
        info: ClientInfo {
            ip,
            port,
            proto: "http",
        },
    };
    loop {
        match serve_one(&shard, &mut c).await {
            Ok(true) => continue,
            Ok(false) => break linger(&mut c).await,
            Err(_) => break,
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
        match c.conn.read(c.buf.spare(), deadline).await {
            Ok(0) | Err(_) => break,
            Ok(n) => left = left.saturating_sub(n),
        }
    }
}

/// Serves one request; `Ok(true)` when the connection may carry another.
async fn serve_one(shard: &Shard, c: &mut Client) -> io::Result<bool> {
    let s = &shard.gateway.settings;
    let idle_deadline = Instant::now() + s.idle_timeout;
    let mut head_deadline = (!c.buf.is_empty()).then(|| Instant::now() + s.header_read_timeout);
    if c.buf.is_empty() {
        // Idle between requests: hold no buffer while waiting for the next one.
        c.buf.release();
        shard.bufs.give_out(&mut c.out);
        c.conn.readable(idle_deadline).await?;
    }
    shard.bufs.take_out(&mut c.out);
    let request_id = shard.next_request_id();
    c.out.clear();

    // 1-2. Read and parse the head, then plan (all while the head borrows the buffer).
    let (meta, plan) = loop {
        let refused = if !c.buf.is_empty() {
            let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
            match request::parse(c.buf.filled(), &mut headers, s.max_header_bytes) {
                Ok(Some(head)) => {
                    let meta = ReqMeta {
                        method: head.method,
                        body: head.body,
                        keep_alive: head.keep_alive,
                        expect_continue: head.expect_continue,
                        minor_version: head.minor_version,
                    };
                    let plan = plan(shard, &head, &c.info, &request_id, &mut c.out);
                    let head_len = head.head_len;
                    c.buf.consume(head_len);
                    break (meta, plan);
                }
                Ok(None) => None,
                Err(e) => Some(match e {
                    HeadError::TooLarge => GatewayError::HeadersTooLarge,
                    HeadError::Malformed(_) | HeadError::Smuggling(_) => GatewayError::BadRequest,
                    HeadError::Version => GatewayError::VersionNotSupported,
                    HeadError::UnsupportedCoding => GatewayError::NotImplemented,
                }),
            }
        } else {
            None
        };
        // Outside the scope of `headers` (3 KiB), so no await keeps it in this future.
        if let Some(err) = refused {
            error::write(err, &request_id, true, false, &mut c.out);
            let _ = c.conn.write_all(&c.out, s.client_write_timeout).await;
            return Ok(false);
        }
        let deadline = head_deadline.unwrap_or(idle_deadline);
        let n = c.conn.read(c.buf.spare(), deadline).await?;
        if n == 0 {
            return Ok(false);
        }
        c.buf.commit(n);
        head_deadline.get_or_insert_with(|| Instant::now() + s.header_read_timeout);
    };

    match plan {
        Plan::Local { close } => respond_local(shard, c, meta, close).await,
        Plan::Proxy { upstream, timeout } => {
            proxy(shard, c, meta, upstream as usize, timeout, &request_id).await
        }
    }
}

/// Dispatches the request and writes either a local response or the backend head to `out`.
fn plan(
    shard: &Shard,
    head: &request::RequestHead<'_, '_>,
    info: &ClientInfo,
    request_id: &[u8],
    out: &mut Vec<u8>,
) -> Plan {
    let gw = &shard.gateway;
    let is_head = head.method == Method::Head;
    let close = !head.keep_alive;
    if let BodyKind::Length(n) = head.body {
        if n > gw.settings.max_body_bytes {
            error::write_with_limit(
                GatewayError::RequestTooLarge,
                request_id,
                true,
                is_head,
                gw.settings.max_body_bytes,
                out,
            );
            return Plan::Local { close: true };
        }
    }
    match gw.resolve(head.host, head.method, head.path) {
        Resolved::NoRoute(miss) => {
            let err = match miss.protocol {
                Protocol::Rest => GatewayError::MissingAuthenticationToken,
                Protocol::Http => GatewayError::NotFound,
            };
            error::write(err, request_id, close, is_head, out);
            Plan::Local { close }
        }
        Resolved::Route(m) => match m.target {
            Target::Mock(mock) => {
                forward::write_mock(mock, request_id, close, is_head, head.minor_version, out);
                Plan::Local { close }
            }
            Target::HttpProxy(p) => {
                let Some(up) = gw.upstreams.get(p.upstream as usize) else {
                    error::write(GatewayError::Internal, request_id, close, is_head, out);
                    return Plan::Local { close };
                };
                forward::write_upstream_head(head, up, p, &m.params, m.path, info, out);
                Plan::Proxy {
                    upstream: p.upstream,
                    timeout: p.timeout,
                }
            }
        },
    }
}

/// Largest request body read and thrown away to keep a connection after a local response;
/// bigger bodies (or a client waiting for `100 Continue`) get the response and a close.
const DRAIN_LIMIT: u64 = 64 * 1024;

async fn respond_local(
    shard: &Shard,
    c: &mut Client,
    meta: ReqMeta,
    close: bool,
) -> io::Result<bool> {
    let s = &shard.gateway.settings;
    let mut close = close;
    let drainable = match meta.body {
        BodyKind::None | BodyKind::UntilClose => true,
        BodyKind::Length(n) => {
            !meta.expect_continue && (n <= DRAIN_LIMIT || n <= c.buf.len() as u64)
        }
        BodyKind::Chunked => !meta.expect_continue,
    };
    if !drainable && !close {
        // The response must say it closes; rebuilding is rare, so just mark it.
        close = true;
        mark_close(&mut c.out);
    }
    if !close && meta.body != BodyKind::None {
        let framing = Framing::request(meta.body);
        let limits = Limits {
            read_timeout: s.header_read_timeout,
            write_timeout: s.client_write_timeout,
            max_body: DRAIN_LIMIT,
        };
        if relay::relay(&mut c.conn, &mut c.buf, None, framing, &limits)
            .await
            .is_err()
        {
            close = true;
            mark_close(&mut c.out);
        }
    }
    c.conn.write_all(&c.out, s.client_write_timeout).await?;
    Ok(!close)
}

/// Adds `connection: close` to a complete response in `out` (after the status line).
fn mark_close(out: &mut Vec<u8>) {
    if let Some(eol) = memchr::memmem::find(out, b"\r\n") {
        if memchr::memmem::find(out, b"\r\nconnection: close\r\n").is_none() {
            let at = eol + 2;
            out.splice(at..at, b"connection: close\r\n".iter().copied());
        }
    }
}

/// How an attempt at a backend exchange failed.
enum Failure {
    /// Nothing reached the client yet: answer with this error.
    Answer(GatewayError),
    /// The client connection is no longer usable (it closed, or we already sent part of a
    /// response): drop it.
    Drop,
}

async fn proxy(
    shard: &Shard,
    c: &mut Client,
    meta: ReqMeta,
    upstream: usize,
    timeout: Duration,
    request_id: &[u8],
) -> io::Result<bool> {
    let s = &shard.gateway.settings;
    let started = Instant::now();
    let deadline = started + timeout;
    let Some(addr) = shard.gateway.upstreams.get(upstream).map(|u| u.addr) else {
        return Ok(false);
    };
    let is_head = meta.method == Method::Head;
    // A request whose bytes are all in `out` after the head can be resent on a fresh
    // connection if a pooled one turns out dead.
    let small_body = match meta.body {
        BodyKind::None => true,
        BodyKind::Length(n) => n as usize <= c.buf.len() && n <= 16 * 1024,
        _ => false,
    };
    if let (true, BodyKind::Length(n)) = (small_body, meta.body) {
        c.out.extend_from_slice(&c.buf.filled()[..n as usize]);
        c.buf.consume(n as usize);
    }

    let mut attempt = 0;
    let mut up = loop {
        attempt += 1;
        let pooled = shard.pools.borrow_mut().take(upstream, Instant::now());
        let mut up = match pooled {
            Some(u) => u,
            None => {
                let left = deadline.saturating_duration_since(Instant::now());
                match upstream::connect(addr, left.min(s.upstream_connect_timeout), &shard.bufs)
                    .await
                {
                    Ok(u) => u,
                    Err(e) => {
                        let err = if e.kind() == io::ErrorKind::TimedOut {
                            GatewayError::IntegrationTimeout
                        } else {
                            GatewayError::IntegrationFailure
                        };
                        return answer(shard, c, meta, request_id, err, small_body).await;
                    }
                }
            }
        };
        let reused = up.reused;
        match exchange(shard, c, &mut up, meta, small_body, deadline).await {
            Ok(()) => break up,
            Err(Exchange::Stale) if reused && attempt == 1 => continue,
            Err(Exchange::Stale)
            | Err(Exchange::Fail(Failure::Answer(GatewayError::IntegrationFailure))) => {
                return answer(
                    shard,
                    c,
                    meta,
                    request_id,
                    GatewayError::IntegrationFailure,
                    small_body,
                )
                .await
            }
            Err(Exchange::Fail(Failure::Answer(err))) => {
                return answer(shard, c, meta, request_id, err, small_body).await
            }
            Err(Exchange::Fail(Failure::Drop)) => return Ok(false),
        }
    };

    // The backend's response head is parsed in `up.buf`; build the client head.
    c.out.clear();
    // `headers` (3 KiB) lives only in this block, so no await below keeps it in the future.
    let parsed = {
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        match response::parse(up.buf.filled(), &mut headers, s.read_buffer_bytes, is_head) {
            Ok(Some(resp)) => {
                let client_head = forward::write_client_head(
                    &resp,
                    meta.minor_version,
                    request_id,
                    !meta.keep_alive,
                    &mut c.out,
                );
                Some((
                    resp.body,
                    resp.keep_alive,
                    client_head.relay,
                    resp.head_len,
                    client_head.close,
                ))
            }
            _ => None,
        }
    };
    let Some((body, up_keep_alive, relay_mode, resp_head_len, close)) = parsed else {
        return answer(
            shard,
            c,
            meta,
            request_id,
            GatewayError::IntegrationFailure,
            true,
        )
        .await;
    };
    up.buf.consume(resp_head_len);

    // Send the head, with the body bytes that came along if they are few.
    if let BodyKind::Length(n) = body {
        let take = (n as usize).min(up.buf.len());
        if take <= 16 * 1024 {
            c.out.extend_from_slice(&up.buf.filled()[..take]);
            up.buf.consume(take);
            let framing_left = n - take as u64;
            if c.conn
                .write_all(&c.out, s.client_write_timeout)
                .await
                .is_err()
            {
                return Ok(false);
            }
            return finish_body(
                shard,
                c,
                up,
                upstream,
                Framing::Length(framing_left),
                up_keep_alive,
                close,
                timeout,
            )
            .await;
        }
    }
    if c.conn
        .write_all(&c.out, s.client_write_timeout)
        .await
        .is_err()
    {
        return Ok(false);
    }
    let framing = Framing::response(body, relay_mode);
    finish_body(
        shard,
        c,
        up,
        upstream,
        framing,
        up_keep_alive,
        close,
        timeout,
    )
    .await
}

#[allow(clippy::too_many_arguments)]
async fn finish_body(
    shard: &Shard,
    c: &mut Client,
    mut up: UpConn,
    upstream: usize,
    framing: Framing,
    up_keep_alive: bool,
    close: bool,
    timeout: Duration,
) -> io::Result<bool> {
    let s = &shard.gateway.settings;
    let until_close = framing.until_close();
    let limits = Limits {
        read_timeout: timeout,
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
            if up_keep_alive && !until_close && up.buf.is_empty() {
                shard.pools.borrow_mut().put(upstream, up, Instant::now());
            }
            Ok(!close)
        }
        // The client already has part of the response: closing is the only honest signal.
        Err(_) => Ok(false),
    }
}

enum Exchange {
    /// The (pooled) connection was dead before the backend saw the request.
    Stale,
    Fail(Failure),
}

/// Sends the request (head in `c.out`, body streamed from the client) and reads the backend's
/// response head into `up.buf` (skipping 1xx). On `Ok`, `up.buf` starts with a complete head.
async fn exchange(
    shard: &Shard,
    c: &mut Client,
    up: &mut UpConn,
    meta: ReqMeta,
    resendable: bool,
    deadline: Instant,
) -> Result<(), Exchange> {
    let s = &shard.gateway.settings;
    let write_timeout = deadline
        .saturating_duration_since(Instant::now())
        .max(Duration::from_millis(1));
    if up.conn.write_all(&c.out, write_timeout).await.is_err() {
        return Err(if up.reused {
            Exchange::Stale
        } else {
            Exchange::Fail(Failure::Answer(GatewayError::IntegrationFailure))
        });
    }
    if !resendable {
        if meta.expect_continue
            && c.conn
                .write_all(b"HTTP/1.1 100 Continue\r\n\r\n", s.client_write_timeout)
                .await
                .is_err()
        {
            return Err(Exchange::Fail(Failure::Drop));
        }
        let framing = Framing::request(meta.body);
        let limits = Limits {
            read_timeout: s.header_read_timeout,
            write_timeout,
            max_body: s.max_body_bytes,
        };
        match relay::relay(
            &mut c.conn,
            &mut c.buf,
            Some(&mut up.conn),
            framing,
            &limits,
        )
        .await
        {
            Ok(()) => {}
            Err(RelayError::TooLarge) => {
                return Err(Exchange::Fail(Failure::Answer(
                    GatewayError::RequestTooLarge,
                )))
            }
            Err(RelayError::Framing) => {
                return Err(Exchange::Fail(Failure::Answer(GatewayError::BadRequest)))
            }
            Err(RelayError::Source) => return Err(Exchange::Fail(Failure::Drop)),
            Err(RelayError::SourceTimeout) => {
                return Err(Exchange::Fail(Failure::Answer(
                    GatewayError::RequestTimeout,
                )))
            }
            Err(RelayError::Sink) => {
                return Err(Exchange::Fail(Failure::Answer(
                    GatewayError::IntegrationFailure,
                )))
            }
        }
    }

    // Read the response head.
    let is_head = meta.method == Method::Head;
    let mut got_any = false;
    loop {
        if !up.buf.is_empty() {
            let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
            match response::parse(up.buf.filled(), &mut headers, s.read_buffer_bytes, is_head) {
                Ok(Some(resp)) if (100..200).contains(&resp.status) => {
                    // Interim responses (we never ask for 100-continue or upgrades) are dropped.
                    let n = resp.head_len;
                    up.buf.consume(n);
                    continue;
                }
                Ok(Some(_)) => return Ok(()),
                Ok(None) if up.buf.is_full() => {
                    return Err(Exchange::Fail(Failure::Answer(
                        GatewayError::IntegrationFailure,
                    )))
                }
                Ok(None) => {}
                Err(ResponseError::TooLarge | ResponseError::Malformed(_)) => {
                    return Err(Exchange::Fail(Failure::Answer(
                        GatewayError::IntegrationFailure,
                    )))
                }
            }
        }
        match up.conn.read(up.buf.spare(), deadline).await {
            Ok(0) => {
                return Err(
                    if !got_any && up.reused && resendable && meta.method.is_idempotent() {
                        Exchange::Stale
                    } else {
                        Exchange::Fail(Failure::Answer(GatewayError::IntegrationFailure))
                    },
                )
            }
            Ok(n) => {
                got_any = true;
                up.buf.commit(n);
            }
            Err(e) if e.kind() == io::ErrorKind::TimedOut => {
                return Err(Exchange::Fail(Failure::Answer(
                    GatewayError::IntegrationTimeout,
                )))
            }
            Err(_) => {
                return Err(
                    if !got_any && up.reused && resendable && meta.method.is_idempotent() {
                        Exchange::Stale
                    } else {
                        Exchange::Fail(Failure::Answer(GatewayError::IntegrationFailure))
                    },
                )
            }
        }
    }
}

/// Answers a gateway error for a proxied request. The request body may be unread (when the
/// backend failed before we streamed it): then the connection closes.
async fn answer(
    shard: &Shard,
    c: &mut Client,
    meta: ReqMeta,
    request_id: &[u8],
    err: GatewayError,
    body_consumed: bool,
) -> io::Result<bool> {
    let s = &shard.gateway.settings;
    let close = !meta.keep_alive
        || !body_consumed
        || matches!(
            err,
            GatewayError::RequestTooLarge | GatewayError::BadRequest
        );
    c.out.clear();
    error::write_with_limit(
        err,
        request_id,
        close,
        meta.method == Method::Head,
        s.max_body_bytes,
        &mut c.out,
    );
    c.conn.write_all(&c.out, s.client_write_timeout).await?;
    Ok(!close)
}
