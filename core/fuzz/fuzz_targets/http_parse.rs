//! Fuzzes the HTTP head parsers and the chunked decoder for panics and for disagreement
//! between feeding a chunked body whole and feeding it in pieces.

#![no_main]

use libfuzzer_sys::fuzz_target;
use tollgate_core::http::chunked::ChunkedDecoder;
use tollgate_core::http::{request, response, MAX_HEADERS};

/// Feeds `input` to a fresh decoder in pieces of `step` bytes; (data, consumed, done) or error.
fn decode(input: &[u8], step: usize) -> Result<(Vec<u8>, usize, bool), &'static str> {
    let mut d = ChunkedDecoder::new();
    let mut data = Vec::new();
    let mut consumed = 0;
    for piece in input.chunks(step.max(1)) {
        let (used, done) = d
            .feed(piece, |s| data.extend_from_slice(s))
            .map_err(|e| e.0)?;
        assert!(used <= piece.len());
        consumed += used;
        if done {
            assert_eq!(d.data_len(), data.len() as u64);
            return Ok((data, consumed, true));
        }
        assert_eq!(used, piece.len());
    }
    assert_eq!(d.data_len(), data.len() as u64);
    Ok((data, consumed, false))
}

fuzz_target!(|input: &[u8]| {
    let Some((&knob, input)) = input.split_first() else {
        return;
    };
    let limit = 64 + usize::from(knob) * 32;

    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    if let Ok(Some(head)) = request::parse(input, &mut headers, limit) {
        assert!(head.head_len <= input.len() && head.head_len <= limit);
        assert!(head.path.starts_with('/'));
    }
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    if let Ok(Some(head)) = response::parse(input, &mut headers, limit, knob & 1 == 1) {
        assert!(head.head_len <= input.len());
    }

    let whole = decode(input, input.len());
    let split = decode(input, usize::from(knob % 7) + 1);
    match (&whole, &split) {
        (Ok(a), Ok(b)) => assert_eq!(a, b),
        (Err(_), Err(_)) => {}
        _ => panic!("whole {whole:?} vs split {split:?}"),
    }
});
