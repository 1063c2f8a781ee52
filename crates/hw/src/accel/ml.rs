//! The ML accelerator's kernel: a fixed linear classifier over the bytes
//! of an image (a small stand-in for the thesis's TPU-style inference,
//! §4.1). The image is split into [`FEATURES`] equal bands; each band's
//! mean byte value is a feature; class `k` scores `Σ w[k][i]·f[i]` with
//! the fixed integer weights of [`weight`]; the result is the best class
//! (the lowest on a tie) and its score, as 8 bytes (`u32` class, `i32`
//! score, little-endian). [`classify`] is the software reference the
//! tests and the CPU-mediated path compare against: the device computes
//! the same function.
//!
//! Cost: a fixed set-up per inference, then the image streamed at the
//! engine's rate: the root preset's `[accel_kernels.classifier]`, where
//! each value's source is.

use nextio_engine::Duration;
use serde::{Deserialize, Serialize};

use super::{Kernel, linear_cost};
use crate::nagare::layout::{STATE_BYTES, status};

pub const OP_CLASSIFY: u32 = 3;
/// Features (bands of the image) and classes.
pub const FEATURES: usize = 16;
pub const CLASSES: usize = 4;
/// Bytes of a result.
pub const RESULT_BYTES: usize = 8;

/// The fixed weight of feature `i` for class `k`, in -6..=6.
pub fn weight(k: usize, i: usize) -> i32 {
    ((k * 31 + i * 17) % 13) as i32 - 6
}

/// The class and score of `image` (at least [`FEATURES`] bytes).
pub fn classify(image: &[u8]) -> Option<(u32, i32)> {
    if image.len() < FEATURES {
        return None;
    }
    let band = image.len() / FEATURES;
    let features: Vec<i32> = (0..FEATURES)
        .map(|i| {
            let b = &image[i * band..(i + 1) * band];
            (b.iter().map(|&x| x as u64).sum::<u64>() / band as u64) as i32
        })
        .collect();
    (0..CLASSES)
        .map(|k| {
            let s: i32 = features
                .iter()
                .enumerate()
                .map(|(i, f)| weight(k, i) * f)
                .sum();
            (k as u32, s)
        })
        .fold(None, |best: Option<(u32, i32)>, (k, s)| match best {
            Some((_, bs)) if bs >= s => best,
            _ => Some((k, s)),
        })
}

/// A result as the device writes it.
pub fn encode_result(class: u32, score: i32) -> [u8; RESULT_BYTES] {
    let mut b = [0u8; RESULT_BYTES];
    b[..4].copy_from_slice(&class.to_le_bytes());
    b[4..].copy_from_slice(&score.to_le_bytes());
    b
}

/// The classifier with its cost.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Classifier {
    /// Per inference, before the first byte streams.
    pub setup_ps: u64,
    pub bytes_per_s: u64,
}

impl Default for Classifier {
    /// The root preset's `[accel_kernels.classifier]`.
    fn default() -> Self {
        nextio_presets::root_section("accel_kernels.classifier")
    }
}

impl Kernel for Classifier {
    fn name(&self) -> &'static str {
        "ml-accel"
    }

    fn run(
        &mut self,
        op: u32,
        _param: u64,
        _state: &[u8; STATE_BYTES],
        input: &[u8],
    ) -> Result<Vec<u8>, u8> {
        if op != OP_CLASSIFY {
            return Err(status::BAD_OP);
        }
        let (class, score) = classify(input).ok_or(status::BAD_INPUT)?;
        Ok(encode_result(class, score).to_vec())
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
    fn the_classifier_is_the_reference_and_refuses_short_input() {
        let img: Vec<u8> = (0..1024u32).map(|i| (i * 7 % 251) as u8).collect();
        let (c, s) = classify(&img).unwrap();
        assert!(c < CLASSES as u32);
        let mut k = Classifier::default();
        let out = k.run(OP_CLASSIFY, 0, &[0; 16], &img).unwrap();
        assert_eq!(out, encode_result(c, s).to_vec());
        assert_eq!(
            k.run(OP_CLASSIFY, 0, &[0; 16], &[1; 3]),
            Err(status::BAD_INPUT)
        );
        assert_eq!(k.run(1, 0, &[0; 16], &img), Err(status::BAD_OP));
        // Different images land in different classes.
        let classes: std::collections::BTreeSet<u32> = (0..64u8)
            .map(|v| {
                let img: Vec<u8> = (0..256).map(|i| ((i as u8).wrapping_mul(v)) ^ v).collect();
                classify(&img).unwrap().0
            })
            .collect();
        assert!(classes.len() > 1);
    }
}
