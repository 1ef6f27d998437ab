//! Anonymous memory for an AF_XDP UMEM.

use std::ptr::NonNull;

/// Page-aligned anonymous memory, unmapped on drop.
pub(super) struct UmemArea {
    base: NonNull<u8>,
    len: usize,
}

// SAFETY: the area is plain memory owned by one receiver; moving it to its thread is fine.
unsafe impl Send for UmemArea {}

impl UmemArea {
    pub(super) fn new(len: usize) -> std::io::Result<Self> {
        // SAFETY: an anonymous private mapping with no address hint; the result is checked.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_POPULATE,
                -1,
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(std::io::Error::last_os_error());
        }
        let base =
            NonNull::new(ptr.cast::<u8>()).ok_or_else(|| std::io::Error::other("mmap returned null"))?;
        Ok(Self { base, len })
    }

    pub(super) fn as_slice_ptr(&self) -> NonNull<[u8]> {
        NonNull::slice_from_raw_parts(self.base, self.len)
    }

    /// The bytes at `offset..offset + len`, if they lie inside the area.
    ///
    /// Only call for a frame the kernel handed over on the RX ring and that has not been
    /// put back on the fill ring: then nothing else writes it.
    pub(super) fn frame(&self, offset: u64, len: u32) -> Option<&[u8]> {
        let start = usize::try_from(offset).ok()?;
        let end = start.checked_add(len as usize)?;
        if end > self.len {
            return None;
        }
        // SAFETY: the range lies inside the mapping (checked above), which lives as long as
        // `self`; per the contract above the kernel does not write it meanwhile.
        Some(unsafe { std::slice::from_raw_parts(self.base.as_ptr().add(start), end - start) })
    }
}

impl Drop for UmemArea {
    fn drop(&mut self) {
        // SAFETY: the mapping came from mmap with this length; the receiver drops its socket
        // and UMEM registration before the area (field order).
        unsafe { libc::munmap(self.base.as_ptr().cast(), self.len) };
    }
}
