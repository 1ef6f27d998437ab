//! LEB128 varints and a bounds-checked reader for the block body. Blocks come back from
//! disk (or, later, from Redis), so every read is checked: a damaged block is an error,
//! never a panic.

use super::BlockError;

pub(super) fn put_u64(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push((value as u8) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

pub(super) fn put_i64(out: &mut Vec<u8>, value: i64) {
    put_u64(out, zigzag(value));
}

/// Small magnitudes of either sign to small unsigned values: 0, -1, 1, -2 ... → 0, 1, 2, 3 ...
pub(super) fn zigzag(value: i64) -> u64 {
    ((value << 1) ^ (value >> 63)) as u64
}

pub(super) fn unzigzag(value: u64) -> i64 {
    ((value >> 1) as i64) ^ -((value & 1) as i64)
}

pub(super) struct Reader<'a> {
    bytes: &'a [u8],
    position: usize,
}

impl<'a> Reader<'a> {
    pub(super) fn new(bytes: &'a [u8]) -> Self {
        Self { bytes, position: 0 }
    }

    pub(super) fn position(&self) -> usize {
        self.position
    }

    pub(super) fn remaining(&self) -> usize {
        self.bytes.len() - self.position
    }

    pub(super) fn u8(&mut self) -> Result<u8, BlockError> {
        let byte = *self.bytes.get(self.position).ok_or(BlockError::Damaged("body ends early"))?;
        self.position += 1;
        Ok(byte)
    }

    /// Inlined for the one-byte value (most codes, lengths and deltas of a block); the
    /// longer ones are read out of line.
    #[inline]
    pub(super) fn u64(&mut self) -> Result<u64, BlockError> {
        if let Some(&byte) = self.bytes.get(self.position)
            && byte < 0x80
        {
            self.position += 1;
            return Ok(u64::from(byte));
        }
        self.long_u64()
    }

    #[inline(never)]
    fn long_u64(&mut self) -> Result<u64, BlockError> {
        let mut value = 0u64;
        for shift in (0..64).step_by(7) {
            let byte = self.u8()?;
            value |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(BlockError::Damaged("varint longer than 64 bits"))
    }

    pub(super) fn i64(&mut self) -> Result<i64, BlockError> {
        Ok(unzigzag(self.u64()?))
    }

    /// A count or length, checked against what is left so a damaged value cannot make
    /// the decoder reserve gigabytes.
    pub(super) fn len(&mut self) -> Result<usize, BlockError> {
        let value = self.u64()?;
        usize::try_from(value)
            .ok()
            .filter(|&len| len <= self.bytes.len())
            .ok_or(BlockError::Damaged("length larger than the block"))
    }

    /// `count` lengths (a column of them).
    pub(super) fn lengths(&mut self, count: usize) -> Result<Vec<usize>, BlockError> {
        let mut lengths = Vec::with_capacity(count.min(self.remaining()));
        for _ in 0..count {
            lengths.push(self.len()?);
        }
        Ok(lengths)
    }

    pub(super) fn take(&mut self, len: usize) -> Result<&'a [u8], BlockError> {
        let end = self.position.checked_add(len).ok_or(BlockError::Damaged("length overflow"))?;
        let slice = self.bytes.get(self.position..end).ok_or(BlockError::Damaged("body ends early"))?;
        self.position = end;
        Ok(slice)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_round_trip() {
        let values = [0i64, 1, -1, 63, -64, 64, i64::MAX, i64::MIN, 1_700_000_000_000_000_000];
        let mut out = Vec::new();
        for value in values {
            put_i64(&mut out, value);
        }
        put_u64(&mut out, u64::MAX);
        let mut reader = Reader::new(&out);
        for value in values {
            assert_eq!(reader.i64().unwrap(), value);
        }
        assert_eq!(reader.u64().unwrap(), u64::MAX);
        assert!(reader.u8().is_err(), "reading past the end is an error");
    }

    #[test]
    fn damaged_input_is_an_error() {
        assert!(Reader::new(&[0xff; 11]).u64().is_err());
        assert!(Reader::new(&[0x80]).u64().is_err());
        let mut reader = Reader::new(&[5, 1, 2]);
        assert!(reader.len().is_err(), "a length past the end is refused");
    }
}
