//! HTTP methods as API Gateway routes know them: the seven that `ANY` covers, plus "other".

/// A request method. `ANY` in a route key covers the first seven (DELETE, GET, HEAD, OPTIONS,
/// PATCH, POST, PUT), as API Gateway documents; any other method is `Other` and only reaches a
/// `$default` route.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Method {
    Get = 0,
    Head = 1,
    Post = 2,
    Put = 3,
    Delete = 4,
    Patch = 5,
    Options = 6,
    Other = 7,
}

impl Method {
    /// Number of methods a route can name explicitly (everything but `Other`).
    pub const NAMED: usize = 7;

    /// Classifies a request method token (case-sensitive, as RFC 9110 requires).
    #[inline]
    pub fn from_bytes(m: &[u8]) -> Method {
        match m {
            b"GET" => Method::Get,
            b"HEAD" => Method::Head,
            b"POST" => Method::Post,
            b"PUT" => Method::Put,
            b"DELETE" => Method::Delete,
            b"PATCH" => Method::Patch,
            b"OPTIONS" => Method::Options,
            _ => Method::Other,
        }
    }

    /// Parses a method as written in a route key (`GET`, `POST`, ...); `None` for `ANY` or junk.
    pub fn from_route_key(m: &str) -> Option<Method> {
        match Method::from_bytes(m.as_bytes()) {
            Method::Other => None,
            x => Some(x),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Method::Get => "GET",
            Method::Head => "HEAD",
            Method::Post => "POST",
            Method::Put => "PUT",
            Method::Delete => "DELETE",
            Method::Patch => "PATCH",
            Method::Options => "OPTIONS",
            Method::Other => "OTHER",
        }
    }

    /// Whether a retry on a fresh backend connection is safe (RFC 9110 idempotent methods).
    pub fn is_idempotent(self) -> bool {
        !matches!(self, Method::Post | Method::Patch | Method::Other)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_methods() {
        assert_eq!(Method::from_bytes(b"GET"), Method::Get);
        assert_eq!(Method::from_bytes(b"get"), Method::Other);
        assert_eq!(Method::from_bytes(b"TRACE"), Method::Other);
        assert_eq!(Method::from_route_key("ANY"), None);
        assert_eq!(Method::from_route_key("PATCH"), Some(Method::Patch));
        assert!(Method::Put.is_idempotent());
        assert!(!Method::Post.is_idempotent());
    }
}
