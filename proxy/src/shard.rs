//! One shard: the state a core owns (its copy of the compiled gateway, its backend pools, its
//! request-id generator) and its accept loop. Nothing here is shared with other cores.

use crate::conn;
use crate::net::Listener;
use crate::upstream::Pools;
use std::cell::RefCell;
use std::rc::Rc;
use tollgate_core::gateway::Gateway;
use tollgate_core::request_id::RequestIds;

pub struct Shard {
    pub index: usize,
    pub gateway: Gateway,
    pub pools: RefCell<Pools>,
    pub ids: RefCell<RequestIds>,
}

impl Shard {
    pub fn new(index: usize, gateway: Gateway, seed: u64) -> Shard {
        let s = &gateway.settings;
        let pools = Pools::new(
            gateway.upstreams.len(),
            s.upstream_pool_size,
            s.upstream_idle_timeout,
        );
        Shard {
            index,
            pools: RefCell::new(pools),
            ids: RefCell::new(RequestIds::new(seed)),
            gateway,
        }
    }

    pub fn next_request_id(&self) -> [u8; 36] {
        self.ids.borrow_mut().next()
    }
}

/// Accepts connections on `listener` forever, one task per connection.
pub async fn accept_loop(shard: Rc<Shard>, listener: Listener) {
    loop {
        match listener.accept().await {
            Ok(c) => {
                let shard = shard.clone();
                glommio::spawn_local(conn::serve(shard, c)).detach();
            }
            Err(e) => {
                // EMFILE/ENFILE and friends: back off briefly instead of spinning.
                eprintln!("tollgate: shard {}: accept failed: {e}", shard.index);
                glommio::timer::sleep(std::time::Duration::from_millis(50)).await;
            }
        }
    }
}
