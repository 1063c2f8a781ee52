//! How transfers become TLPs: memory writes are cut into MPS-sized MWr
//! TLPs, reads into MRRS-sized MRd requests answered by completion-sized
//! CplD TLPs, all at naturally aligned boundaries.
//!
//! Every size used here (MPS, MRRS, RCB) is a power of two dividing 4096,
//! so cutting at multiples of it never lets a TLP cross a 4 KiB boundary,
//! as the spec requires; for the aligned transfers pcie-bench assumes this
//! gives exactly its TLP counts.

/// Pieces `(address, bytes)` of `[addr, addr + len)` cut at multiples of
/// `chunk` (a power of two dividing 4096). Empty for `len == 0`; the caller
/// has checked that `addr + len` does not overflow.
pub fn pieces(addr: u64, len: u64, chunk: u64) -> impl Iterator<Item = (u64, u64)> {
    let end = addr.saturating_add(len);
    let mut at = addr;
    std::iter::from_fn(move || {
        if at >= end {
            return None;
        }
        let next = ((at / chunk) + 1).saturating_mul(chunk).min(end);
        let piece = (at, next - at);
        at = next;
        Some(piece)
    })
}

/// Payload bytes of an MMIO access of `len` bytes: whole doublewords, byte
/// enables mask the rest.
pub fn dword_payload_bytes(len: u64) -> u64 {
    len.div_ceil(4) * 4
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transfers_split_at_aligned_boundaries() {
        let p: Vec<_> = pieces(0, 4096, 256).collect();
        assert_eq!(p.len(), 16);
        assert!(p.iter().all(|(_, n)| *n == 256));
        let p: Vec<_> = pieces(200, 100, 256).collect();
        assert_eq!(p, vec![(200, 56), (256, 44)]);
        assert_eq!(pieces(5, 0, 64).count(), 0);
        assert_eq!(dword_payload_bytes(1), 4);
        assert_eq!(dword_payload_bytes(8), 8);
    }
}
