//! A streaming validator/decoder for chunked bodies (RFC 9112 §7.1), fed bytes as they arrive.

#[derive(Clone, Debug, Default)]
pub struct ChunkedDecoder {
    _private: (),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ChunkError(pub &'static str);

impl ChunkedDecoder {
    pub fn new() -> Self {
        Self::default()
    }

    /// Consumes framing and data from `input`, calling `on_data` with each run of body bytes.
    /// Returns how many bytes of `input` belong to this body (all of it unless the body ended
    /// inside `input`) and whether the body (incl. trailers and final CRLF) is complete.
    pub fn feed<'a>(
        &mut self,
        input: &'a [u8],
        on_data: impl FnMut(&'a [u8]),
    ) -> Result<(usize, bool), ChunkError> {
        let _ = (input, on_data);
        todo!("http work")
    }

    /// Body bytes (excluding framing) seen so far.
    pub fn data_len(&self) -> u64 {
        todo!("http work")
    }
}
