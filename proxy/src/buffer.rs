//! A connection's read buffer: one fixed allocation per connection, reused for every request,
//! with the unread bytes in `start..end` (pipelined requests and body bytes that arrived with a
//! head stay here until consumed).

pub struct Buf {
    data: Box<[u8]>,
    start: usize,
    end: usize,
}

impl Buf {
    pub fn new(capacity: usize) -> Buf {
        Buf {
            data: vec![0u8; capacity].into_boxed_slice(),
            start: 0,
            end: 0,
        }
    }

    /// Unread bytes.
    #[inline]
    pub fn filled(&self) -> &[u8] {
        &self.data[self.start..self.end]
    }

    #[inline]
    pub fn len(&self) -> usize {
        self.end - self.start
    }

    #[inline]
    pub fn is_empty(&self) -> bool {
        self.start == self.end
    }

    #[inline]
    pub fn consume(&mut self, n: usize) {
        debug_assert!(n <= self.len());
        self.start += n.min(self.len());
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        }
    }

    /// Free space to read into, after moving unread bytes to the front when the tail is full.
    /// Empty only when the buffer is entirely unread bytes.
    #[inline]
    pub fn spare(&mut self) -> &mut [u8] {
        if self.end == self.data.len() && self.start > 0 {
            self.data.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        &mut self.data[self.end..]
    }

    #[inline]
    pub fn commit(&mut self, n: usize) {
        self.end = (self.end + n).min(self.data.len());
    }

    /// Whether unread bytes fill the whole buffer (a head that does not fit).
    pub fn is_full(&self) -> bool {
        self.start == 0 && self.end == self.data.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compacts_when_tail_is_full() {
        let mut b = Buf::new(8);
        b.spare()[..8].copy_from_slice(b"abcdefgh");
        b.commit(8);
        assert!(b.is_full());
        b.consume(6);
        assert_eq!(b.filled(), b"gh");
        assert_eq!(b.spare().len(), 6);
        assert_eq!(b.filled(), b"gh");
        b.consume(2);
        assert!(b.is_empty());
        assert_eq!(b.spare().len(), 8);
    }
}
