//! One shard: the state a core owns (its copy of the compiled gateway, its backend pools, its
//! request-id generator, its buffers, its authorizer caches). Plain per-core data: the accept loop that serves
//! connections with it lives in `runtime`. Nothing here is shared with other cores.

use crate::buffer::BufPool;
use crate::upstream::Pools;
use std::cell::RefCell;
use std::rc::Rc;
use tollgate_core::gateway::Gateway;
use tollgate_core::lambda::cache::Caches;
use tollgate_core::lambda::inflight::Inflight;
use tollgate_core::request_id::RequestIds;

/// Free buffers a shard keeps for reuse (of each kind); beyond that they are freed, so a
/// burst of connections does not pin its peak memory.
const BUFS_KEPT: usize = 256;

pub struct Shard {
    pub index: usize,
    pub gateway: Gateway,
    pub pools: RefCell<Pools>,
    pub ids: RefCell<RequestIds>,
    /// Read buffers and head scratch for this shard's client and backend connections.
    pub bufs: Rc<BufPool>,
    /// Lambda authorizer results, one bounded cache per authorizer (issue 17).
    pub auth_caches: RefCell<Caches>,
    /// Lambda authorizer calls in progress, so concurrent requests of one identity share one.
    pub auth_inflight: Inflight,
}

impl Shard {
    pub fn new(index: usize, gateway: Gateway, seed: u64) -> Shard {
        let s = &gateway.settings;
        let pools = Pools::new(
            gateway.upstreams.len(),
            s.upstream_pool_size,
            s.upstream_idle_timeout,
        );
        // One size for client and backend buffers: a request or response head must fit.
        let buf_size = s.read_buffer_bytes.max(s.max_header_bytes + 1);
        Shard {
            index,
            bufs: BufPool::new(buf_size, BUFS_KEPT),
            pools: RefCell::new(pools),
            ids: RefCell::new(RequestIds::new(seed)),
            auth_caches: RefCell::new(Caches::for_gateway(&gateway)),
            auth_inflight: Inflight::default(),
            gateway,
        }
    }

    pub fn next_request_id(&self) -> [u8; 36] {
        self.ids.borrow_mut().next()
    }
}
