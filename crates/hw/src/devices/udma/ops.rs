//! The byte work of each operation, on real bytes: the fill pattern, the
//! comparison, and CRC-32C (Castagnoli, reflected polynomial 0x82F63B78,
//! the CRC DSA's CRC Generation computes by default). Pure functions, so
//! the engine's timing cannot change a result and tests can check each
//! against an independent computation.

/// The 256-entry table of the reflected CRC-32C polynomial.
const CRC32C_TABLE: [u32; 256] = {
    let mut t = [0u32; 256];
    let mut i = 0;
    while i < 256 {
        let mut c = i as u32;
        let mut k = 0;
        while k < 8 {
            c = if c & 1 != 0 {
                (c >> 1) ^ 0x82F6_3B78
            } else {
                c >> 1
            };
            k += 1;
        }
        t[i] = c;
        i += 1;
    }
    t
};

/// Continue a CRC-32C over `data`. `state` is the running register: start
/// with `!seed` and finish with `!state` (see [`crc32c`]).
pub fn crc32c_update(mut state: u32, data: &[u8]) -> u32 {
    for &b in data {
        state = CRC32C_TABLE[((state ^ b as u32) & 0xff) as usize] ^ (state >> 8);
    }
    state
}

/// CRC-32C of `data` continuing from `seed` (0 for a fresh CRC).
pub fn crc32c(seed: u32, data: &[u8]) -> u32 {
    !crc32c_update(!seed, data)
}

/// `len` bytes of the 8-byte fill `pattern` repeated, as the pattern
/// would lie at byte offset `at` of the whole fill.
pub fn fill_bytes(pattern: u64, at: u64, len: usize) -> Vec<u8> {
    let p = pattern.to_le_bytes();
    (0..len)
        .map(|i| p[((at + i as u64) % 8) as usize])
        .collect()
}

/// The index of the first byte where `a` and `b` differ.
pub fn first_difference(a: &[u8], b: &[u8]) -> Option<usize> {
    a.iter().zip(b).position(|(x, y)| x != y)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc32c_check_value_and_chaining() {
        // The CRC-32C check value of "123456789" (RFC 3720 §B.4).
        assert_eq!(crc32c(0, b"123456789"), 0xE306_9283);
        let whole = crc32c(0, b"hello world");
        let part = !crc32c_update(crc32c_update(!0, b"hello "), b"world");
        assert_eq!(whole, part);
        assert_eq!(crc32c(0, &[]), 0);
    }

    #[test]
    fn fill_and_compare() {
        let f = fill_bytes(0x0807_0605_0403_0201, 6, 4);
        assert_eq!(f, vec![7, 8, 1, 2]);
        assert_eq!(first_difference(b"abcd", b"abXd"), Some(2));
        assert_eq!(first_difference(b"abcd", b"abcd"), None);
    }
}
