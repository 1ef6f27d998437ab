//! Compresses a block body as one zstd frame in which every section (a column, the code
//! run, the piece bytes, the literals) begins a new zstd block (ADR 0053).
//!
//! zstd codes the literals of a block with one Huffman table and its sequences with one
//! set of FSE tables. Given the body whole, it cuts blocks every 128 KiB wherever they
//! fall, so one table serves bytes as unlike as severities, process ids and piece codes,
//! and a compacted block of a thousand rows is a single zstd block. Flushing at every
//! section's end starts a zstd block there, so each kind of byte gets tables of its
//! own; matches may still reach back into earlier sections. The frame is an ordinary
//! one with its content size, so the reader is unchanged and decodes blocks written
//! either way.

use zstd::zstd_safe::zstd_sys::ZSTD_EndDirective;
use zstd::zstd_safe::{CCtx, CParameter, InBuffer, OutBuffer, ResetDirective};

/// Per flushed section, room for a block header and a raw block's slack beyond zstd's
/// bound for the whole body.
const SECTION_SLACK: usize = 16;

pub(super) struct SectionCompressor {
    context: CCtx<'static>,
}

impl SectionCompressor {
    pub(super) fn new(level: i32) -> std::io::Result<Self> {
        let mut context = CCtx::try_create().ok_or_else(|| std::io::Error::other("no zstd context"))?;
        context.set_parameter(CParameter::CompressionLevel(level)).map_err(zstd_error)?;
        Ok(Self { context })
    }

    /// Compresses `body` as one frame, starting a zstd block at each offset of
    /// `section_ends` (ascending; the last section runs to the end of `body`).
    pub(super) fn compress(&mut self, body: &[u8], section_ends: &[usize]) -> std::io::Result<Vec<u8>> {
        // A reset clears what a failed block may have left in the context.
        self.context.reset(ResetDirective::SessionOnly).map_err(zstd_error)?;
        self.context.set_pledged_src_size(Some(body.len() as u64)).map_err(zstd_error)?;
        let mut out = Vec::with_capacity(
            zstd::zstd_safe::compress_bound(body.len()) + SECTION_SLACK * (section_ends.len() + 1),
        );
        let mut start = 0;
        let ends = section_ends.iter().copied().filter(|&end| end < body.len()).chain([body.len()]);
        for end in ends {
            let Some(section) = body.get(start..end) else { continue };
            let directive = if end == body.len() {
                ZSTD_EndDirective::ZSTD_e_end
            } else {
                ZSTD_EndDirective::ZSTD_e_flush
            };
            let mut input = InBuffer::around(section);
            loop {
                if out.capacity() - out.len() < SECTION_SLACK {
                    out.reserve(SECTION_SLACK.max(out.len() / 8));
                }
                let written = out.len();
                let mut output = OutBuffer::around_pos(&mut out, written);
                let left =
                    self.context.compress_stream2(&mut output, &mut input, directive).map_err(zstd_error)?;
                if left == 0 && input.pos() == section.len() {
                    break;
                }
            }
            start = end;
        }
        Ok(out)
    }
}

fn zstd_error(code: usize) -> std::io::Error {
    std::io::Error::other(zstd::zstd_safe::get_error_name(code))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two halves whose bytes are drawn from different alphabets: coded with one table
    /// they cost the bits of the union; starting a zstd block at the seam gives each half
    /// its own table.
    fn two_alphabets() -> (Vec<u8>, usize) {
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let mut body: Vec<u8> = (0..40_000).map(|_| b'a' + (next() % 16) as u8).collect();
        let seam = body.len();
        body.extend((0..40_000).map(|_| b'0' + (next() % 10) as u8 + if next() % 2 == 0 { 0x80 } else { 0 }));
        (body, seam)
    }

    #[test]
    fn sections_decompress_to_the_body() {
        let (body, seam) = two_alphabets();
        let mut compressor = SectionCompressor::new(1).unwrap();
        for ends in [&[][..], &[seam][..], &[0, 1, seam, seam, body.len() - 1, body.len()][..]] {
            let frame = compressor.compress(&body, ends).unwrap();
            assert_eq!(zstd::bulk::decompress(&frame, body.len()).unwrap(), body, "section ends {ends:?}");
        }
        let empty = compressor.compress(&[], &[]).unwrap();
        assert!(zstd::bulk::decompress(&empty, 0).unwrap().is_empty());
    }

    #[test]
    fn a_section_gets_tables_of_its_own() {
        let (body, seam) = two_alphabets();
        for level in [1, 9] {
            let mut compressor = SectionCompressor::new(level).unwrap();
            let whole = compressor.compress(&body, &[]).unwrap().len();
            let split = compressor.compress(&body, &[seam]).unwrap().len();
            assert_eq!(whole, zstd::bulk::compress(&body, level).unwrap().len(), "level {level}");
            assert!(split * 100 < whole * 95, "level {level}: {split} bytes in sections, {whole} whole");
        }
    }
}
