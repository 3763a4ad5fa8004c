//! Phase 1, dispatch: API, stage and route for a parsed head, and the payload limit on a
//! declared body length.

use super::{Context, Failure};
use crate::gateway::{Gateway, Resolved, RouteMatch};
use crate::http::request::RequestHead;
use crate::http::BodyKind;

/// Resolves the request to a route and records in `ctx` how far dispatch got (API, stage,
/// route: a failure is rendered with that API's gateway responses and stage variables).
///
/// Fails with `BodyTooLarge` when the declared `Content-Length` is over `max_body_bytes`
/// (before routing failures: the payload limit is the front door's), else `NoRoute`.
/// The route match borrows the head (path parameters) and feeds the integration request.
pub fn dispatch<'g, 'p>(
    gw: &'g Gateway,
    head: &RequestHead<'p, '_>,
    ctx: &mut Context<'g>,
) -> Result<RouteMatch<'g, 'p>, Failure> {
    let resolved = gw.resolve(head.host, head.method, head.path);
    ctx.api_keys = &gw.traffic.keys;
    match &resolved {
        Resolved::Route(m) => {
            ctx.api = Some(m.api);
            ctx.stage = Some(m.stage);
            ctx.route = Some(m.route);
        }
        Resolved::NoRoute(miss) => {
            ctx.api = miss.api;
            ctx.stage = miss.stage;
        }
    }
    if let BodyKind::Length(n) = head.body {
        if n > gw.settings.max_body_bytes {
            return Err(Failure::BodyTooLarge);
        }
    }
    match resolved {
        Resolved::Route(m) => Ok(m),
        Resolved::NoRoute(miss) => Err(Failure::NoRoute(miss.protocol)),
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::{gateway, with_head};
    use super::*;
    use crate::gateway::Protocol;

    #[test]
    fn route_found_fills_the_context() {
        let gw = gateway();
        with_head(
            b"GET /prod/pets/42 HTTP/1.1\r\nhost: a\r\n\r\n",
            |head, ctx| {
                let m = dispatch(&gw, head, ctx).expect("route");
                assert_eq!(&*m.route.key, "GET /pets/{id}");
                assert_eq!(&m.params[..], ["42"]);
                assert_eq!(m.path, "/pets/42");
                assert_eq!(ctx.route_key(), Some("GET /pets/{id}"));
                assert_eq!(ctx.stage_name(), "prod");
                assert_eq!(ctx.api.map(|a| &*a.name), Some("rest"));
            },
        );
    }

    #[test]
    fn no_route_says_how_far_it_got() {
        let gw = gateway();
        // Stage found, route not: API and stage are known.
        with_head(
            b"DELETE /prod/pets/42 HTTP/1.1\r\nhost: a\r\n\r\n",
            |head, ctx| {
                let e = dispatch(&gw, head, ctx).expect_err("no route");
                assert_eq!(e, Failure::NoRoute(Protocol::Rest));
                assert_eq!(ctx.stage_name(), "prod");
                assert!(ctx.api.is_some());
                assert!(ctx.route.is_none());
            },
        );
        // No stage: nothing is known.
        with_head(
            b"GET /nostage/pets HTTP/1.1\r\nhost: a\r\n\r\n",
            |head, ctx| {
                let e = dispatch(&gw, head, ctx).expect_err("no stage");
                assert_eq!(e, Failure::NoRoute(Protocol::Rest));
                assert!(ctx.api.is_none() && ctx.stage.is_none());
            },
        );
        // The HTTP API (its own host) answers 404-style misses.
        with_head(
            b"GET /nothing HTTP/1.1\r\nhost: h.example\r\n\r\n",
            |head, ctx| {
                let e = dispatch(&gw, head, ctx).expect_err("no route");
                assert_eq!(e, Failure::NoRoute(Protocol::Http));
            },
        );
    }

    #[test]
    fn declared_length_over_the_limit() {
        let gw = gateway();
        let limit = gw.settings.max_body_bytes;
        let at = format!("POST /prod/echo HTTP/1.1\r\nhost: a\r\ncontent-length: {limit}\r\n\r\n");
        with_head(at.as_bytes(), |head, ctx| {
            assert!(dispatch(&gw, head, ctx).is_ok());
        });
        let over = format!(
            "POST /prod/echo HTTP/1.1\r\nhost: a\r\ncontent-length: {}\r\n\r\n",
            limit + 1
        );
        with_head(over.as_bytes(), |head, ctx| {
            assert_eq!(dispatch(&gw, head, ctx).err(), Some(Failure::BodyTooLarge));
            // Rendered with the matched API's responses.
            assert_eq!(ctx.route_key(), Some("POST /echo"));
        });
        // Over the limit and no route: the payload limit wins.
        let over = format!(
            "POST /x/y HTTP/1.1\r\nhost: a\r\ncontent-length: {}\r\n\r\n",
            limit + 1
        );
        with_head(over.as_bytes(), |head, ctx| {
            assert_eq!(dispatch(&gw, head, ctx).err(), Some(Failure::BodyTooLarge));
        });
    }
}
