//! Lambda I/O on a shard: calls a function through the Lambda Invoke API
//! (`POST /2015-03-31/functions/NAME/invocations`, the event as the JSON body, the result as the
//! JSON response, `X-Amz-Function-Error` on a function error) over the shard's upstream pools,
//! reads a whole request body into memory for an `aws_proxy` event, and fetches JWT
//! authorizers' JWKS in the background (`start_jwks_refresh`). Everything it decides
//! about the bytes is in `tollgate_core::lambda` / `pipeline`; this module only moves them,
//! within deadlines and size bounds, and never blocks the shard (all waits are async).

use crate::buffer::Buf;
use crate::net::Conn;
use crate::shard::{Gen, Shard, Turn};
use crate::upstream::{self, UpConn};
use std::io;
use std::rc::Rc;
use std::time::{Duration, Instant};
use tollgate_core::forward::push_decimal;
use tollgate_core::http::chunked::{ChunkError, ChunkedDecoder};
use tollgate_core::http::{response, BodyKind, MAX_HEADERS};
use tollgate_core::lambda::jwt::{parse_jwks, MAX_JWKS_BYTES};
use tollgate_core::lambda::{JwksSource, FUNCTION_ERROR_HEADER};

/// The Invoke API's answer.
#[derive(Debug)]
pub struct Invoked {
    pub status: u16,
    /// `X-Amz-Function-Error` was set: `body` is the error document.
    pub function_error: bool,
    pub body: Vec<u8>,
}

/// Why an invocation gave no answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InvokeError {
    /// Connection refused, reset or closed before a complete response.
    Failed,
    /// No complete response within the timeout (connect included).
    Timeout,
    /// Not a valid HTTP response.
    Malformed,
    /// The response body is over the size bound.
    TooLarge,
}

/// What one attempt on one connection gave.
enum Attempt {
    Done(Invoked, bool),
    /// A pooled connection was dead before the function saw anything: try a fresh one.
    Stale,
    Err(InvokeError),
}

/// Invokes the function at `path` on `upstream` with `event` as the payload, waiting at most
/// `timeout` for the whole response, whose body may be at most `max_body` bytes.
pub async fn invoke(
    shard: &Turn<'_>,
    upstream: usize,
    path: &str,
    event: &[u8],
    timeout: Duration,
    max_body: usize,
) -> Result<Invoked, InvokeError> {
    request(shard, upstream, Some(event), path, timeout, max_body).await
}

/// `POST path` with `body` (JSON), or `GET path` without one, on `upstream`'s pool.
async fn request(
    shard: &Turn<'_>,
    upstream: usize,
    body: Option<&[u8]>,
    path: &str,
    timeout: Duration,
    max_body: usize,
) -> Result<Invoked, InvokeError> {
    let gw = &shard.gateway;
    let Some(up) = gw.upstreams.get(upstream) else {
        return Err(InvokeError::Failed);
    };
    let deadline = Instant::now() + timeout;
    let event = body.unwrap_or(b"");
    let mut req = Vec::with_capacity(160 + path.len() + event.len());
    req.extend_from_slice(if body.is_some() { b"POST " } else { b"GET " });
    req.extend_from_slice(path.as_bytes());
    req.extend_from_slice(b" HTTP/1.1\r\nhost: ");
    req.extend_from_slice(up.host_header.as_bytes());
    if body.is_some() {
        req.extend_from_slice(b"\r\ncontent-type: application/json\r\ncontent-length: ");
        push_decimal(&mut req, event.len() as u64);
    } else {
        req.extend_from_slice(b"\r\naccept: application/json");
    }
    req.extend_from_slice(b"\r\n\r\n");
    req.extend_from_slice(event);

    for attempt in 0..2 {
        let pooled = shard.pools.borrow_mut().take(upstream, Instant::now());
        let mut conn = match pooled {
            Some(c) => c,
            None => {
                let left = deadline.saturating_duration_since(Instant::now());
                let limit = left.min(gw.settings.upstream_connect_timeout);
                let secure = shard.secure.get(upstream).and_then(Option::as_ref);
                match upstream::connect(secure, up.addr, limit, &shard.bufs).await {
                    Ok(c) => c,
                    Err(e) if e.kind() == io::ErrorKind::TimedOut && limit == left => {
                        return Err(InvokeError::Timeout)
                    }
                    Err(_) => return Err(InvokeError::Failed),
                }
            }
        };
        match exchange(shard, &mut conn, &req, deadline, max_body).await {
            Attempt::Done(invoked, reusable) => {
                if reusable {
                    shard.pools.borrow_mut().put(upstream, conn, Instant::now());
                }
                return Ok(invoked);
            }
            Attempt::Stale if conn.reused && attempt == 0 => continue,
            Attempt::Stale => return Err(InvokeError::Failed),
            Attempt::Err(e) => return Err(e),
        }
    }
    Err(InvokeError::Failed)
}

/// The parsed response head: (status, function error, framing, keep-alive, head length).
type Head = (u16, bool, BodyKind, bool, usize);

/// What one look at the Invoke response buffer found.
enum Seen {
    /// A 1xx interim head of this length: skip it.
    Interim(usize),
    Final(Head),
    /// Incomplete: read more.
    More,
    /// Not a valid response head.
    Bad,
}

/// Parses what `buf` holds as the Invoke response head (`headers` lives only in this call,
/// never in a future).
fn look_at_head(buf: &Buf, max_head: usize) -> Seen {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    match response::parse(buf.filled(), &mut headers, max_head, false) {
        Ok(Some(r)) if (100..200).contains(&r.status) => Seen::Interim(r.head_len),
        Ok(Some(r)) => {
            let fe = r
                .headers
                .iter()
                .any(|h| h.name.eq_ignore_ascii_case(FUNCTION_ERROR_HEADER));
            Seen::Final((r.status, fe, r.body, r.keep_alive, r.head_len))
        }
        Ok(None) if buf.is_full() => Seen::Bad,
        Ok(None) => Seen::More,
        Err(_) => Seen::Bad,
    }
}

async fn exchange(
    shard: &Turn<'_>,
    up: &mut UpConn,
    req: &[u8],
    deadline: Instant,
    max_body: usize,
) -> Attempt {
    let write_timeout = deadline
        .saturating_duration_since(Instant::now())
        .max(Duration::from_millis(1));
    if up.conn.write_all(req, write_timeout).await.is_err() {
        return if up.reused {
            Attempt::Stale
        } else {
            Attempt::Err(InvokeError::Failed)
        };
    }
    let max_head = shard.gateway.settings.read_buffer_bytes;
    let mut got_any = false;
    let head: Head = loop {
        if !up.buf.is_empty() {
            match look_at_head(&up.buf, max_head) {
                Seen::Final(h) => break h,
                Seen::Interim(n) => {
                    up.buf.consume(n);
                    continue;
                }
                Seen::More => {}
                Seen::Bad => return Attempt::Err(InvokeError::Malformed),
            }
        }
        match up.conn.read(up.buf.spare(), deadline).await {
            Ok(0) if !got_any => return Attempt::Stale,
            Ok(0) => return Attempt::Err(InvokeError::Failed),
            Ok(n) => {
                got_any = true;
                up.buf.commit(n);
            }
            Err(e) if e.kind() == io::ErrorKind::TimedOut => {
                return Attempt::Err(InvokeError::Timeout)
            }
            Err(_) if !got_any => return Attempt::Stale,
            Err(_) => return Attempt::Err(InvokeError::Failed),
        }
    };
    let (status, function_error, framing, keep_alive, head_len) = head;
    up.buf.consume(head_len);
    let left = Deadline {
        read_timeout: deadline.saturating_duration_since(Instant::now()),
        deadline: Some(deadline),
    };
    let body = match read_body(&mut up.conn, &mut up.buf, framing, left, max_body as u64).await {
        Ok(b) => b,
        Err(BodyError::TooLarge) => return Attempt::Err(InvokeError::TooLarge),
        Err(BodyError::Timeout) => return Attempt::Err(InvokeError::Timeout),
        Err(BodyError::Framing) => return Attempt::Err(InvokeError::Malformed),
        Err(BodyError::Closed) => return Attempt::Err(InvokeError::Failed),
    };
    let reusable = keep_alive && framing != BodyKind::UntilClose && up.buf.is_empty();
    Attempt::Done(
        Invoked {
            status,
            function_error,
            body,
        },
        reusable,
    )
}

/// Starts this shard's background JWKS fetches: one task per JWT authorizer with a
/// `jwks_uri`. It fetches at once, then every `jwks_refresh_seconds`, and sooner when a token
/// named an unknown key (at most once per `jwks_cooldown_ms`); a failed fetch is retried after
/// the cooldown. Requests never wait for it: until the first fetch succeeds, tokens are refused.
/// The tasks belong to the configuration generation `gen` and end once a reload replaced it.
pub fn start_jwks_refresh(shard: &Rc<Shard>, gen: &Rc<Gen>) {
    for (api, a) in gen.gateway.apis.iter().enumerate() {
        for (index, auth) in a.authorizers.iter().enumerate() {
            if let Some(JwksSource::Uri { .. }) = auth.jwt.as_deref().map(|j| &j.source) {
                glommio::spawn_local(jwks_task(shard.clone(), gen.clone(), api, index)).detach();
            }
        }
    }
}

/// API Gateway's JWKS fetch timeout (L52177-52205).
const JWKS_TIMEOUT: Duration = Duration::from_millis(1500);

async fn jwks_task(shard: Rc<Shard>, gen: Rc<Gen>, api: usize, index: usize) {
    let shard = Turn::new(&shard, &gen);
    let Some(auth) = shard
        .gateway
        .apis
        .get(api)
        .and_then(|a| a.authorizers.get(index))
    else {
        return;
    };
    let Some(settings) = auth.jwt.as_deref() else {
        return;
    };
    let JwksSource::Uri { upstream, path } = &settings.source else {
        return;
    };
    while shard.is_current(&gen) {
        let fetched = request(
            &shard,
            *upstream as usize,
            None,
            path,
            JWKS_TIMEOUT,
            MAX_JWKS_BYTES,
        )
        .await;
        let keys = match fetched {
            Ok(r) if r.status == 200 => parse_jwks(&r.body),
            Ok(r) => Err(format!("status {}", r.status)),
            Err(e) => Err(format!("{e:?}")),
        };
        let ok = match keys {
            Ok(keys) => {
                shard.auth_caches.borrow_mut().set_jwks(auth.id, keys);
                true
            }
            Err(e) => {
                log::warn!(
                    shard = shard.index, authorizer = &*auth.name;
                    "authorizer `{}`: JWKS fetch failed: {e}",
                    auth.name
                );
                false
            }
        };
        let fetched_at = Instant::now();
        loop {
            glommio::timer::sleep(settings.cooldown).await;
            let wanted = shard.auth_caches.borrow_mut().take_refresh(auth.id);
            if !ok || wanted || fetched_at.elapsed() >= settings.refresh || !shard.is_current(&gen)
            {
                break;
            }
        }
    }
}

/// Why a body could not be read whole.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BodyError {
    /// Over the limit.
    TooLarge,
    /// Nothing arrived before the deadline.
    Timeout,
    /// Malformed chunk framing.
    Framing,
    /// The peer closed or reset the connection before the end.
    Closed,
}

/// When a read must have returned: each read within `read_timeout`, all by `deadline`.
#[derive(Clone, Copy, Debug)]
pub struct Deadline {
    pub read_timeout: Duration,
    pub deadline: Option<Instant>,
}

impl Deadline {
    fn next(self) -> Instant {
        let per_read = Instant::now() + self.read_timeout;
        self.deadline.map_or(per_read, |d| d.min(per_read))
    }
}

/// Reads a whole body framed as `kind` into memory (bytes already in `buf` first), at most
/// `max` bytes of data, within `deadline`. What follows the body stays in `buf`.
pub async fn read_body(
    conn: &mut Conn,
    buf: &mut Buf,
    kind: BodyKind,
    deadline: Deadline,
    max: u64,
) -> Result<Vec<u8>, BodyError> {
    let mut body = Vec::new();
    match kind {
        BodyKind::None => Ok(body),
        BodyKind::Length(n) => {
            if n > max {
                return Err(BodyError::TooLarge);
            }
            let n = n as usize;
            body.reserve_exact(n);
            loop {
                let take = (n - body.len()).min(buf.len());
                body.extend_from_slice(&buf.filled()[..take]);
                buf.consume(take);
                if body.len() == n {
                    return Ok(body);
                }
                fill(conn, buf, deadline).await?;
            }
        }
        BodyKind::Chunked => {
            let mut decoder = ChunkedDecoder::with_limit(max);
            loop {
                let (used, done) = decoder
                    .feed(buf.filled(), |data| body.extend_from_slice(data))
                    .map_err(|e| match e {
                        ChunkError::TooLarge => BodyError::TooLarge,
                        ChunkError::Malformed(_) => BodyError::Framing,
                    })?;
                buf.consume(used);
                if done {
                    return Ok(body);
                }
                fill(conn, buf, deadline).await?;
            }
        }
        BodyKind::UntilClose => loop {
            body.extend_from_slice(buf.filled());
            let n = buf.len();
            buf.consume(n);
            if body.len() as u64 > max {
                return Err(BodyError::TooLarge);
            }
            match conn.read(buf.spare(), deadline.next()).await {
                Ok(0) => return Ok(body),
                Ok(n) => buf.commit(n),
                Err(e) if e.kind() == io::ErrorKind::TimedOut => return Err(BodyError::Timeout),
                Err(_) => return Err(BodyError::Closed),
            }
        },
    }
}

/// Reads more bytes into `buf` (at least one).
async fn fill(conn: &mut Conn, buf: &mut Buf, deadline: Deadline) -> Result<(), BodyError> {
    match conn.read(buf.spare(), deadline.next()).await {
        Ok(0) => Err(BodyError::Closed),
        Ok(n) => {
            buf.commit(n);
            Ok(())
        }
        Err(e) if e.kind() == io::ErrorKind::TimedOut => Err(BodyError::Timeout),
        Err(_) => Err(BodyError::Closed),
    }
}
