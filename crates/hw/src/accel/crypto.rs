//! The crypto accelerator's kernel: AES-128-GCM (NIST SP 800-38D) with the
//! `aes-gcm` crate, on real bytes. A request's input is a sealed message:
//! a 12-byte nonce, then the ciphertext with its 16-byte tag; its state is
//! the 16-byte key. Decryption fails with `AUTH_FAILED` when the tag does
//! not verify.
//!
//! Cost: a fixed per-request set-up, then the bytes streamed at the
//! engine's rate: the root preset's `[accel_kernels.aes_gcm]`, where each
//! value's source is.

use aes_gcm::aead::{Aead, KeyInit};
use aes_gcm::{Aes128Gcm, Nonce};
use nextio_engine::Duration;
use serde::{Deserialize, Serialize};

use super::{Kernel, linear_cost};
use crate::nagare::layout::{STATE_BYTES, status};

/// Op codes.
pub const OP_DECRYPT: u32 = 1;
pub const OP_ENCRYPT: u32 = 2;
/// Bytes of a nonce and of a tag.
pub const NONCE_BYTES: usize = 12;
pub const TAG_BYTES: usize = 16;

/// AES-128-GCM with its cost.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AesGcm {
    /// Per request, before the first byte streams.
    pub setup_ps: u64,
    pub bytes_per_s: u64,
}

impl Default for AesGcm {
    /// The root preset's `[accel_kernels.aes_gcm]`.
    fn default() -> Self {
        nextio_presets::root_section("accel_kernels.aes_gcm")
    }
}

/// `plaintext` sealed under `key` with `nonce`: nonce ‖ ciphertext ‖ tag.
pub fn seal(key: &[u8; 16], nonce: &[u8; NONCE_BYTES], plaintext: &[u8]) -> Vec<u8> {
    let cipher = Aes128Gcm::new(key.into());
    let mut out = nonce.to_vec();
    // Encryption of a buffer in memory cannot fail.
    out.extend(
        cipher
            .encrypt(Nonce::from_slice(nonce), plaintext)
            .unwrap_or_default(),
    );
    out
}

/// The plaintext of a sealed message, or a status code.
pub fn open(key: &[u8; 16], sealed: &[u8]) -> Result<Vec<u8>, u8> {
    if sealed.len() < NONCE_BYTES + TAG_BYTES {
        return Err(status::BAD_INPUT);
    }
    let (nonce, ct) = sealed.split_at(NONCE_BYTES);
    Aes128Gcm::new(key.into())
        .decrypt(Nonce::from_slice(nonce), ct)
        .map_err(|_| status::AUTH_FAILED)
}

impl Kernel for AesGcm {
    fn name(&self) -> &'static str {
        "crypto-accel"
    }

    fn run(
        &mut self,
        op: u32,
        param: u64,
        state: &[u8; STATE_BYTES],
        input: &[u8],
    ) -> Result<Vec<u8>, u8> {
        match op {
            OP_DECRYPT => open(state, input),
            OP_ENCRYPT => {
                // The nonce is the parameter's low 12 bytes (a counter).
                let mut nonce = [0u8; NONCE_BYTES];
                nonce[..8].copy_from_slice(&param.to_le_bytes());
                Ok(seal(state, &nonce, input))
            }
            _ => Err(status::BAD_OP),
        }
    }

    fn cost(&self, _op: u32, input_bytes: u64) -> Duration {
        linear_cost(
            Duration::from_ps(self.setup_ps),
            input_bytes,
            self.bytes_per_s,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_bytes_open_and_a_flipped_bit_fails() {
        let key = [7u8; 16];
        let sealed = seal(&key, &[1; 12], b"an image");
        assert_eq!(sealed.len(), 12 + 8 + 16);
        let mut k = AesGcm::default();
        assert_eq!(
            k.run(OP_DECRYPT, 0, &key, &sealed),
            Ok(b"an image".to_vec())
        );
        let mut bad = sealed.clone();
        bad[13] ^= 1;
        assert_eq!(k.run(OP_DECRYPT, 0, &key, &bad), Err(status::AUTH_FAILED));
        assert_eq!(k.run(OP_DECRYPT, 0, &key, &[0; 5]), Err(status::BAD_INPUT));
        assert_eq!(k.run(99, 0, &key, &sealed), Err(status::BAD_OP));
        // 1000 B at 12.5 GB/s = 80 ns after set-up.
        assert_eq!(k.cost(OP_DECRYPT, 1000), Duration::from_ns(580));
    }
}
