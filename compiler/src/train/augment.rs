//! Data augmentation (off unless asked): random translations of image samples.

use super::rng::Rng;
use anyhow::{bail, Result};
use kestrel_ir::{DType, Tensor};

/// What is done to each sample of a minibatch before a step.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Augment {
    #[default]
    None,
    /// Shift every f32 sample of rank ≥ 2 (…, H, W) by a random (dy, dx) in `-k..=k` each,
    /// filling with zeros.
    Shift(usize),
}

impl Augment {
    /// `none` or `shift=K`.
    pub fn parse(s: &str) -> Result<Augment> {
        if s == "none" {
            return Ok(Augment::None);
        }
        if let Some(k) = s.strip_prefix("shift=") {
            if let Ok(k) = k.parse::<usize>() {
                if k >= 1 {
                    return Ok(Augment::Shift(k));
                }
            }
        }
        bail!("--augment {s:?}: expected none or shift=K with K ≥ 1")
    }

    /// Applies the augmentation to a batch (batch axis first), drawing from `rng`.
    pub fn apply(self, batch: &mut [Tensor], rng: &mut Rng) {
        let Augment::Shift(k) = self else {
            return;
        };
        for t in batch.iter_mut() {
            if t.dtype() != DType::F32 || t.dims().len() < 3 {
                continue;
            }
            let dims = t.dims().to_vec();
            let (h, w) = (dims[dims.len() - 2], dims[dims.len() - 1]);
            let planes_per_sample: usize = dims[1..dims.len() - 2].iter().product();
            let src = t.to_f32_vec();
            let mut dst = vec![0f32; src.len()];
            for n in 0..dims[0] {
                let dy = rng.below(2 * k + 1) as isize - k as isize;
                let dx = rng.below(2 * k + 1) as isize - k as isize;
                for p in 0..planes_per_sample {
                    let base = (n * planes_per_sample + p) * h * w;
                    for y in 0..h as isize {
                        let sy = y - dy;
                        if sy < 0 || sy >= h as isize {
                            continue;
                        }
                        for x in 0..w as isize {
                            let sx = x - dx;
                            if sx >= 0 && sx < w as isize {
                                dst[base + (y as usize) * w + x as usize] =
                                    src[base + (sy as usize) * w + sx as usize];
                            }
                        }
                    }
                }
            }
            *t = Tensor::from_vec(dims, dst);
        }
    }
}
