//! A checked cursor over untrusted bytes (after rustls `msgs/codec.rs` `Reader`).
//!
//! Every read returns `None` instead of panicking when the buffer is too short; a length field
//! opens a [`Reader::sub`] reader so that the bytes an element claims are the only bytes it can
//! consume. Callers turn `None` into a [`MessageError`](super::MessageError) naming the element.

/// A cursor over a byte slice; never reads past its end.
#[derive(Clone, Debug)]
pub(crate) struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    /// A reader over all of `buf`.
    pub(crate) fn new(buf: &'a [u8]) -> Self {
        Self { buf, pos: 0 }
    }

    /// Bytes not yet consumed.
    pub(crate) fn remaining(&self) -> usize {
        self.buf.len().saturating_sub(self.pos)
    }

    /// True when every byte has been consumed.
    pub(crate) fn is_empty(&self) -> bool {
        self.remaining() == 0
    }

    /// The unconsumed bytes, without consuming them.
    pub(crate) fn peek_rest(&self) -> &'a [u8] {
        self.buf.get(self.pos..).unwrap_or_default()
    }

    /// Consumes exactly `n` bytes, or nothing when fewer remain.
    pub(crate) fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let end = self.pos.checked_add(n)?;
        let out = self.buf.get(self.pos..end)?;
        self.pos = end;
        Some(out)
    }

    /// Consumes `n` bytes and returns a reader limited to them (rustls `Reader::sub`).
    pub(crate) fn sub(&mut self, n: usize) -> Option<Self> {
        self.take(n).map(Reader::new)
    }

    /// Consumes up to `n` bytes (fewer when the buffer ends first).
    pub(crate) fn skip_up_to(&mut self, n: usize) -> usize {
        let k = n.min(self.remaining());
        self.pos = self.pos.saturating_add(k);
        k
    }

    pub(crate) fn u8(&mut self) -> Option<u8> {
        self.take(1).and_then(|b| b.first().copied())
    }

    /// A 24-bit big-endian integer.
    pub(crate) fn u24(&mut self) -> Option<u32> {
        let b: [u8; 3] = self.take(3)?.try_into().ok()?;
        Some(u32::from_be_bytes([0, b[0], b[1], b[2]]))
    }

    /// A 32-bit big-endian integer.
    pub(crate) fn u32(&mut self) -> Option<u32> {
        let b: [u8; 4] = self.take(4)?.try_into().ok()?;
        Some(u32::from_be_bytes(b))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_are_checked() {
        let mut r = Reader::new(&[1, 2, 3, 4, 5]);
        assert_eq!(r.u24(), Some(0x010203));
        assert_eq!(r.u32(), None, "a failed read consumes nothing");
        assert_eq!(r.remaining(), 2);
        let mut s = r.sub(2).unwrap();
        assert_eq!(s.u8(), Some(4));
        assert_eq!(s.take(2), None);
        assert!(r.is_empty());
        assert_eq!(r.sub(1).map(|_| ()), None);
        assert_eq!(r.skip_up_to(9), 0);
    }
}
