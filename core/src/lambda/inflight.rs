//! Authorizer calls in progress on one shard, so that concurrent requests of one identity
//! share one call: the first becomes the `Leader` and calls; the others wait (a waker list, no
//! timer, no lock: the shard is single-threaded) and then read the cache. Plain `std` async.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::future::poll_fn;
use std::rc::Rc;
use std::task::{Poll, Waker};

/// Authorizer calls in progress on this shard, by (authorizer id, cache key): a request whose
/// identity is already being authorized waits for that call and then reads the cache instead
/// of calling again, so an identity costs one call per shard per TTL even under concurrency.
#[derive(Default)]
pub struct Inflight {
    calls: RefCell<HashMap<CallKey, Rc<Done>>>,
}

/// (authorizer id, cache key).
type CallKey = (u32, Box<[u8]>);

#[derive(Default)]
struct Done {
    done: Cell<bool>,
    wakers: RefCell<Vec<Waker>>,
}

/// Held by the request that makes the call: ends it (waking the waiters) when dropped.
pub struct Leader<'s> {
    inflight: &'s Inflight,
    key: (u32, Box<[u8]>),
    done: Rc<Done>,
}

impl Drop for Leader<'_> {
    fn drop(&mut self) {
        self.inflight.calls.borrow_mut().remove(&self.key);
        self.done.done.set(true);
        for w in self.done.wakers.borrow_mut().drain(..) {
            w.wake();
        }
    }
}

impl Inflight {
    /// Becomes the caller for `key` (`Ok`), or waits until the current caller is done
    /// (`Err(())` once it is).
    pub async fn join<'s>(&'s self, id: u32, key: &[u8]) -> Result<Leader<'s>, ()> {
        let existing = self.calls.borrow().get(&(id, key) as &dyn KeyRef).cloned();
        match existing {
            Some(done) => {
                poll_fn(|cx| {
                    if done.done.get() {
                        Poll::Ready(())
                    } else {
                        done.wakers.borrow_mut().push(cx.waker().clone());
                        Poll::Pending
                    }
                })
                .await;
                Err(())
            }
            None => {
                let done = Rc::new(Done::default());
                let key = (id, Box::<[u8]>::from(key));
                self.calls.borrow_mut().insert(key.clone(), done.clone());
                Ok(Leader {
                    inflight: self,
                    key,
                    done,
                })
            }
        }
    }
}

/// Looks `(u32, &[u8])` up in a map keyed by `(u32, Box<[u8]>)` without allocating.
trait KeyRef {
    fn key(&self) -> (u32, &[u8]);
}

impl KeyRef for (u32, Box<[u8]>) {
    fn key(&self) -> (u32, &[u8]) {
        (self.0, &self.1)
    }
}

impl KeyRef for (u32, &[u8]) {
    fn key(&self) -> (u32, &[u8]) {
        (self.0, self.1)
    }
}

impl<'a> std::borrow::Borrow<dyn KeyRef + 'a> for (u32, Box<[u8]>) {
    fn borrow(&self) -> &(dyn KeyRef + 'a) {
        self
    }
}

impl PartialEq for dyn KeyRef + '_ {
    fn eq(&self, other: &Self) -> bool {
        self.key() == other.key()
    }
}

impl Eq for dyn KeyRef + '_ {}

impl std::hash::Hash for dyn KeyRef + '_ {
    fn hash<H: std::hash::Hasher>(&self, h: &mut H) {
        self.key().hash(h);
    }
}
