//! Request ids: unique per process lifetime and cheap to make (no syscalls, no allocation):
//! a per-shard random prefix and a counter, formatted as a UUID (`x-amzn-RequestId`).

/// Generates ids for one shard. Not `Sync`: each shard owns one.
pub struct RequestIds {
    _private: (),
}

impl RequestIds {
    /// `seed` should differ per process and shard (e.g. time ^ pid ^ shard index).
    pub fn new(seed: u64) -> Self {
        let _ = seed;
        todo!("http work")
    }

    /// The next id, 36 ASCII bytes `xxxxxxxx-xxxx-4xxx-8xxx-xxxxxxxxxxxx`.
    pub fn next(&mut self) -> [u8; 36] {
        todo!("http work")
    }
}
