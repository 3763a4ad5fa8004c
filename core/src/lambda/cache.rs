//! The authorizer result cache of one shard: one bounded map per authorizer, keyed by every
//! identity source value (guide L13819-13860, L40358-40372), entries living `ttl_seconds`.
//! A JWT authorizer's map holds verified tokens (keyed by the token, living until its `exp`
//! at most, forgotten when the keys change).
//! When full, expired entries go first, then the least recently used one (a scan: it runs only
//! when a new result is stored, after an authorizer call). Plain data, no locks: a shard owns
//! its caches, so nothing crosses cores.

use super::jwt::Keys;
use super::policy::AuthResult;
use super::JwksSource;
use smallvec::SmallVec;
use std::collections::HashMap;
use std::rc::Rc;
use std::time::{Duration, Instant};

struct Entry {
    result: Rc<AuthResult>,
    expires: Instant,
    used: u64,
}

/// One authorizer's cache.
pub struct Cache {
    map: HashMap<Box<[u8]>, Entry, ahash::RandomState>,
    cap: usize,
    ttl: Duration,
    tick: u64,
    /// Lookups answered from the cache / not (for the shard's metrics).
    hits: u64,
    misses: u64,
}

impl Cache {
    pub fn new(cap: usize, ttl: Duration) -> Cache {
        Cache {
            map: HashMap::default(),
            cap,
            ttl,
            tick: 0,
            hits: 0,
            misses: 0,
        }
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// The live result stored under `key`.
    pub fn get(&mut self, key: &[u8], now: Instant) -> Option<Rc<AuthResult>> {
        self.tick += 1;
        let tick = self.tick;
        match self.map.get_mut(key) {
            Some(e) if e.expires > now => {
                e.used = tick;
                self.hits += 1;
                Some(e.result.clone())
            }
            Some(_) => {
                self.map.remove(key);
                self.misses += 1;
                None
            }
            None => {
                self.misses += 1;
                None
            }
        }
    }

    /// Lookups so far: `(hits, misses)`.
    pub fn counts(&self) -> (u64, u64) {
        (self.hits, self.misses)
    }

    /// Stores `result` under `key` for the TTL (nothing when the TTL or capacity is 0).
    pub fn put(&mut self, key: Box<[u8]>, result: Rc<AuthResult>, now: Instant) {
        self.put_until(key, result, now, now + self.ttl);
    }

    /// Stores `result` under `key` until `expires`, at most for the TTL (nothing when the TTL
    /// or capacity is 0, or `expires` is not after `now`).
    pub fn put_until(
        &mut self,
        key: Box<[u8]>,
        result: Rc<AuthResult>,
        now: Instant,
        expires: Instant,
    ) {
        let expires = expires.min(now + self.ttl);
        if self.ttl.is_zero() || self.cap == 0 || expires <= now {
            return;
        }
        if self.map.len() >= self.cap && !self.map.contains_key(&key) {
            self.map.retain(|_, e| e.expires > now);
            if self.map.len() >= self.cap {
                let oldest = self
                    .map
                    .iter()
                    .min_by_key(|(_, e)| e.used)
                    .map(|(k, _)| k.clone());
                if let Some(k) = oldest {
                    self.map.remove(&k);
                }
            }
        }
        self.tick += 1;
        self.map.insert(
            key,
            Entry {
                result,
                expires,
                used: self.tick,
            },
        );
    }

    /// Forgets every entry.
    pub fn clear(&mut self) {
        self.map.clear();
    }
}

/// Every authorizer's state in one shard, indexed by `Authorizer::id`: its result cache and,
/// for JWT authorizers, the keys in use and whether a token asked for a JWKS refresh.
#[derive(Default)]
pub struct Caches {
    caches: Vec<Cache>,
    jwks: Vec<Option<Rc<Keys>>>,
    refresh: Vec<bool>,
}

impl Caches {
    /// One cache per authorizer of `gw`.
    pub fn for_gateway(gw: &crate::gateway::Gateway) -> Caches {
        let mut all: Vec<&crate::lambda::Authorizer> =
            gw.apis.iter().flat_map(|a| a.authorizers.iter()).collect();
        all.sort_by_key(|a| a.id);
        Caches {
            caches: all
                .iter()
                .map(|a| Cache::new(a.cache_entries, a.ttl))
                .collect(),
            jwks: all
                .iter()
                .map(|a| match a.jwt.as_deref().map(|j| &j.source) {
                    Some(JwksSource::File(keys)) => Some(Rc::new(keys.clone())),
                    _ => None,
                })
                .collect(),
            refresh: vec![false; all.len()],
        }
    }

    /// The keys JWT authorizer `id` uses now (`None` before the first fetch succeeded).
    pub fn jwks(&self, id: u32) -> Option<Rc<Keys>> {
        self.jwks.get(id as usize).cloned().flatten()
    }

    /// New keys for JWT authorizer `id`: the tokens verified with the old ones are forgotten
    /// (a key may have been withdrawn).
    pub fn set_jwks(&mut self, id: u32, keys: Keys) {
        if let Some(slot) = self.jwks.get_mut(id as usize) {
            *slot = Some(Rc::new(keys));
        }
        if let Some(c) = self.caches.get_mut(id as usize) {
            c.clear();
        }
    }

    /// A token named a key that is not there: ask for a refresh.
    pub fn want_refresh(&mut self, id: u32) {
        if let Some(r) = self.refresh.get_mut(id as usize) {
            *r = true;
        }
    }

    /// Whether a refresh was asked for since the last call.
    pub fn take_refresh(&mut self, id: u32) -> bool {
        self.refresh
            .get_mut(id as usize)
            .is_some_and(std::mem::take)
    }

    pub fn get_mut(&mut self, id: u32) -> Option<&mut Cache> {
        self.caches.get_mut(id as usize)
    }

    /// Authorizer `id`'s cache lookups so far: `(hits, misses)`.
    pub fn counts(&self, id: u32) -> (u64, u64) {
        self.caches.get(id as usize).map_or((0, 0), Cache::counts)
    }
}

/// The cache key of a request: every identity source value, each length-prefixed so that
/// `("ab", "c")` and `("a", "bc")` differ.
pub fn key<S: AsRef<str>>(values: &[S]) -> Box<[u8]> {
    Box::from(&key_buf(values)[..])
}

/// The cache key (as [`key`]) in a buffer that stays on the stack up to 256 bytes: a cached
/// hit looks its result up without allocating.
pub fn key_buf<S: AsRef<str>>(values: &[S]) -> SmallVec<[u8; 256]> {
    let mut k = SmallVec::new();
    for v in values {
        let v = v.as_ref().as_bytes();
        k.extend_from_slice(&(v.len() as u32).to_le_bytes());
        k.extend_from_slice(v);
    }
    k
}

#[cfg(test)]
mod tests {
    use super::*;

    fn result(p: &str) -> Rc<AuthResult> {
        Rc::new(AuthResult {
            principal_id: Some(p.into()),
            statements: Vec::new(),
            simple: Some(true),
            context: serde_json::Map::new(),
            usage_identifier_key: None,
            jwt_scopes: None,
        })
    }

    fn principal(r: Option<Rc<AuthResult>>) -> Option<String> {
        r.and_then(|r| r.principal_id.clone())
    }

    #[test]
    fn key_buf_is_the_key() {
        let long = "x".repeat(300);
        for values in [vec!["a", "bc"], vec![""], vec![long.as_str(), "y"]] {
            assert_eq!(&key_buf(&values)[..], &*key(&values));
        }
        assert_eq!(&*key(&["ab"]), &[2, 0, 0, 0, b'a', b'b'][..]);
        assert_ne!(key(&["ab", "c"]), key(&["a", "bc"]));
    }

    #[test]
    fn ttl_and_isolation() {
        let t0 = Instant::now();
        let mut c = Cache::new(8, Duration::from_secs(10));
        c.put(key(&["a", "b"]), result("ab"), t0);
        assert_eq!(principal(c.get(&key(&["a", "b"]), t0)), Some("ab".into()));
        // Every identity value is part of the key.
        assert_eq!(principal(c.get(&key(&["a", "c"]), t0)), None);
        assert_eq!(principal(c.get(&key(&["ab", ""]), t0)), None);
        assert_eq!(
            principal(c.get(&key(&["a", "b"]), t0 + Duration::from_secs(9))),
            Some("ab".into())
        );
        assert_eq!(
            principal(c.get(&key(&["a", "b"]), t0 + Duration::from_secs(10))),
            None
        );
        assert!(c.is_empty());
        assert_eq!(
            c.counts(),
            (2, 3),
            "hits, misses (an expired entry is a miss)"
        );
        // TTL 0: nothing is kept.
        let mut off = Cache::new(8, Duration::ZERO);
        off.put(key(&["a"]), result("a"), t0);
        assert_eq!(off.len(), 0);
    }

    #[test]
    fn entries_until_an_expiry_and_cleared() {
        let t0 = Instant::now();
        let s = Duration::from_secs;
        let mut c = Cache::new(8, s(300));
        // Until its own expiry when that comes before the TTL ...
        c.put_until(Box::from(&b"tok"[..]), result("t"), t0, t0 + s(5));
        assert!(c.get(b"tok", t0 + s(4)).is_some());
        assert!(c.get(b"tok", t0 + s(5)).is_none());
        // ... never longer than the TTL, and not at all when already expired.
        c.put_until(Box::from(&b"long"[..]), result("l"), t0, t0 + s(10_000));
        assert!(c.get(b"long", t0 + s(299)).is_some());
        assert!(c.get(b"long", t0 + s(300)).is_none());
        c.put_until(Box::from(&b"old"[..]), result("o"), t0, t0);
        assert!(c.is_empty());
        c.put(Box::from(&b"x"[..]), result("x"), t0);
        c.clear();
        assert!(c.get(b"x", t0).is_none());
    }

    #[test]
    fn least_recently_used_goes_first() {
        let t0 = Instant::now();
        let mut c = Cache::new(2, Duration::from_secs(60));
        c.put(key(&["1"]), result("1"), t0);
        c.put(key(&["2"]), result("2"), t0);
        assert!(c.get(&key(&["1"]), t0).is_some());
        c.put(key(&["3"]), result("3"), t0);
        assert_eq!(c.len(), 2);
        assert!(
            c.get(&key(&["2"]), t0).is_none(),
            "2 was the least recently used"
        );
        assert!(c.get(&key(&["1"]), t0).is_some());
        assert!(c.get(&key(&["3"]), t0).is_some());
    }
}
