//! The data representations of section 1.5: integers, Variable Byte Integers, UTF-8 strings,
//! binary data and string pairs, read from a packet body and written to a sink.

use bytes::{Buf, Bytes, BytesMut};

use super::error::Violation;

/// The largest value a Variable Byte Integer holds (section 1.5.5).
pub const MAX_VARINT: u32 = 268_435_455;

/// Reads the fields of one packet body. Every read checks the bytes left, so a short or lying
/// packet gives [`Violation::Truncated`], never a panic. Binary fields are slices of the input.
pub(crate) struct Reader {
    buf: Bytes,
}

impl Reader {
    pub(crate) fn new(buf: Bytes) -> Self {
        Self { buf }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    pub(crate) fn remaining(&self) -> usize {
        self.buf.len()
    }

    fn need(&self, n: usize, field: &'static str) -> Result<(), Violation> {
        if self.buf.len() < n {
            Err(Violation::Truncated { field })
        } else {
            Ok(())
        }
    }

    pub(crate) fn u8(&mut self, field: &'static str) -> Result<u8, Violation> {
        self.need(1, field)?;
        Ok(self.buf.get_u8())
    }

    pub(crate) fn u16(&mut self, field: &'static str) -> Result<u16, Violation> {
        self.need(2, field)?;
        Ok(self.buf.get_u16())
    }

    pub(crate) fn u32(&mut self, field: &'static str) -> Result<u32, Violation> {
        self.need(4, field)?;
        Ok(self.buf.get_u32())
    }

    /// A Variable Byte Integer. Non-minimal encodings are accepted: only senders must be minimal
    /// [MQTT-1.5.5-1].
    pub(crate) fn varint(&mut self, field: &'static str) -> Result<u32, Violation> {
        let mut value = 0u32;
        for shift in [0u32, 7, 14, 21] {
            let byte = self.u8(field)?;
            value |= u32::from(byte & 0x7F) << shift;
            if byte & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(Violation::VarintTooLong { field })
    }

    /// The next `n` bytes, as a slice of the input.
    pub(crate) fn take(&mut self, n: usize, field: &'static str) -> Result<Bytes, Violation> {
        self.need(n, field)?;
        Ok(self.buf.split_to(n))
    }

    /// Everything left, as a slice of the input.
    pub(crate) fn rest(&mut self) -> Bytes {
        std::mem::take(&mut self.buf)
    }

    /// Binary Data: a two-byte length and that many bytes.
    pub(crate) fn binary(&mut self, field: &'static str) -> Result<Bytes, Violation> {
        let len = self.u16(field)?;
        self.take(usize::from(len), field)
    }

    /// A UTF-8 Encoded String, checked against [MQTT-1.5.4-1] and [MQTT-1.5.4-2].
    pub(crate) fn string(&mut self, field: &'static str) -> Result<String, Violation> {
        let raw = self.binary(field)?;
        let text = std::str::from_utf8(&raw).map_err(|_| Violation::InvalidUtf8 { field })?;
        if text.contains('\0') {
            return Err(Violation::NullCharacter { field });
        }
        Ok(text.to_owned())
    }
}

/// Where encoded bytes go. Encoding runs twice over the same code: once into a [`Counter`] to
/// learn a length prefix, once into the real buffer, so the two can never disagree.
pub(crate) trait Sink {
    fn put_slice(&mut self, bytes: &[u8]);

    /// A PUBLISH payload: the last bytes of its packet.
    fn payload(&mut self, bytes: &[u8]) {
        self.put_slice(bytes);
    }

    fn u8(&mut self, value: u8) {
        self.put_slice(&[value]);
    }

    fn u16(&mut self, value: u16) {
        self.put_slice(&value.to_be_bytes());
    }

    fn u32(&mut self, value: u32) {
        self.put_slice(&value.to_be_bytes());
    }

    /// A Variable Byte Integer in its minimal encoding.
    fn varint(&mut self, field: &'static str, value: u32) -> Result<(), Violation> {
        if value > MAX_VARINT {
            return Err(Violation::VarintTooLarge {
                field,
                value: u64::from(value),
            });
        }
        let mut rest = value;
        loop {
            // Masked to 7 bits, so the cast keeps every bit.
            let mut byte = (rest & 0x7F) as u8;
            rest >>= 7;
            if rest > 0 {
                byte |= 0x80;
            }
            self.u8(byte);
            if rest == 0 {
                return Ok(());
            }
        }
    }

    fn binary(&mut self, field: &'static str, value: &[u8]) -> Result<(), Violation> {
        let len = u16::try_from(value.len()).map_err(|_| Violation::TooLong {
            field,
            len: value.len(),
        })?;
        self.u16(len);
        self.put_slice(value);
        Ok(())
    }

    fn string(&mut self, field: &'static str, value: &str) -> Result<(), Violation> {
        if value.contains('\0') {
            return Err(Violation::NullCharacter { field });
        }
        self.binary(field, value.as_bytes())
    }

    /// Writes `body` behind a Variable Byte Integer that gives its length.
    fn length_prefixed<E: Encode>(&mut self, field: &'static str, body: &E) -> Result<(), Violation>
    where
        Self: Sized,
    {
        let len = prefix_value(field, body.encoded_len()?)?;
        self.varint(field, len)?;
        body.encode(self)
    }
}

/// A length as a Variable Byte Integer value, refused above the largest one.
fn prefix_value(field: &'static str, len: usize) -> Result<u32, Violation> {
    u32::try_from(len)
        .ok()
        .filter(|&v| v <= MAX_VARINT)
        .ok_or(Violation::VarintTooLarge {
            field,
            value: len as u64,
        })
}

impl Sink for BytesMut {
    fn put_slice(&mut self, bytes: &[u8]) {
        self.extend_from_slice(bytes);
    }
}

/// A sink that writes everything but a PUBLISH payload, which the caller sends as it is.
pub(crate) struct WithoutPayload<'a>(pub &'a mut BytesMut);

impl Sink for WithoutPayload<'_> {
    fn put_slice(&mut self, bytes: &[u8]) {
        self.0.extend_from_slice(bytes);
    }

    fn payload(&mut self, _bytes: &[u8]) {}
}

/// A sink that only counts.
#[derive(Default)]
pub(crate) struct Counter(pub usize);

impl Sink for Counter {
    fn put_slice(&mut self, bytes: &[u8]) {
        self.0 += bytes.len();
    }

    // Counting the body once gives both the prefix and the body's size.
    fn length_prefixed<E: Encode>(
        &mut self,
        field: &'static str,
        body: &E,
    ) -> Result<(), Violation> {
        let len = body.encoded_len()?;
        prefix_value(field, len)?;
        self.0 += varint_len(len) + len;
        Ok(())
    }
}

/// How many bytes the minimal encoding of `value` takes.
pub(crate) fn varint_len(value: usize) -> usize {
    match value {
        0..=127 => 1,
        128..=16_383 => 2,
        16_384..=2_097_151 => 3,
        _ => 4,
    }
}

/// Something that writes itself as a run of bytes.
pub(crate) trait Encode {
    fn encode<S: Sink>(&self, sink: &mut S) -> Result<(), Violation>;

    /// The number of bytes [`Encode::encode`] writes.
    fn encoded_len(&self) -> Result<usize, Violation> {
        let mut counter = Counter::default();
        self.encode(&mut counter)?;
        Ok(counter.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn varint_bytes(value: u32) -> Vec<u8> {
        let mut buf = BytesMut::new();
        buf.varint("test", value).unwrap();
        buf.to_vec()
    }

    #[test]
    fn varint_boundaries_match_table_1_1() {
        assert_eq!(varint_bytes(0), [0x00]);
        assert_eq!(varint_bytes(127), [0x7F]);
        assert_eq!(varint_bytes(128), [0x80, 0x01]);
        assert_eq!(varint_bytes(16_383), [0xFF, 0x7F]);
        assert_eq!(varint_bytes(16_384), [0x80, 0x80, 0x01]);
        assert_eq!(varint_bytes(2_097_151), [0xFF, 0xFF, 0x7F]);
        assert_eq!(varint_bytes(2_097_152), [0x80, 0x80, 0x80, 0x01]);
        assert_eq!(varint_bytes(MAX_VARINT), [0xFF, 0xFF, 0xFF, 0x7F]);
        for v in [
            0, 127, 128, 16_383, 16_384, 2_097_151, 2_097_152, MAX_VARINT,
        ] {
            assert_eq!(varint_len(v as usize), varint_bytes(v).len());
        }
    }

    #[test]
    fn varint_above_maximum_is_refused() {
        let mut buf = BytesMut::new();
        assert!(matches!(
            buf.varint("x", MAX_VARINT + 1),
            Err(Violation::VarintTooLarge { .. })
        ));
        assert!(buf.is_empty());
    }

    #[test]
    fn non_minimal_varint_is_accepted_on_input() {
        let mut r = Reader::new(Bytes::from_static(&[0x80, 0x80, 0x00]));
        assert_eq!(r.varint("x").unwrap(), 0);
    }

    #[test]
    fn five_byte_varint_is_malformed() {
        let mut r = Reader::new(Bytes::from_static(&[0xFF, 0xFF, 0xFF, 0xFF, 0x7F]));
        assert_eq!(r.varint("x"), Err(Violation::VarintTooLong { field: "x" }));
    }

    #[test]
    fn strings_reject_null_and_surrogates() {
        let mut r = Reader::new(Bytes::from_static(&[0x00, 0x02, b'a', 0x00]));
        assert_eq!(r.string("s"), Err(Violation::NullCharacter { field: "s" }));
        // U+D800 encoded as if it were a scalar value: ED A0 80.
        let mut r = Reader::new(Bytes::from_static(&[0x00, 0x03, 0xED, 0xA0, 0x80]));
        assert_eq!(r.string("s"), Err(Violation::InvalidUtf8 { field: "s" }));
        // Overlong encoding of '/': C0 AF.
        let mut r = Reader::new(Bytes::from_static(&[0x00, 0x02, 0xC0, 0xAF]));
        assert_eq!(r.string("s"), Err(Violation::InvalidUtf8 { field: "s" }));
    }

    #[test]
    fn byte_order_mark_is_kept() {
        // [MQTT-1.5.4-3]: U+FEFF is never stripped.
        let mut r = Reader::new(Bytes::from_static(&[0x00, 0x04, 0xEF, 0xBB, 0xBF, b'a']));
        assert_eq!(r.string("s").unwrap(), "\u{FEFF}a");
    }

    #[test]
    fn length_prefix_past_the_end_is_truncation() {
        let mut r = Reader::new(Bytes::from_static(&[0x00, 0x05, b'a']));
        assert_eq!(r.binary("b"), Err(Violation::Truncated { field: "b" }));
    }
}
