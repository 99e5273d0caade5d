//! Calibration statistics: the range of a tensor chosen from the values it took, for every
//! [`Method`]. Memory is one [`Histogram`] per tensor whatever the amount of data: calibration
//! makes two passes over the data, the first for [`MinMax`] (the exact range), the second filling
//! a histogram over that range for the other methods.

use super::{Method, Range};

/// Bins of a calibration histogram (TensorRT's entropy calibration uses 2048).
pub const BINS: usize = 2048;

/// Histogram groups per u8 level at which the entropy method judges every candidate range;
/// its shortest candidate is `256 · ENTROPY_BINS_PER_LEVEL` bins (see
/// [`Histogram::entropy_threshold`]).
pub const ENTROPY_BINS_PER_LEVEL: usize = 2;

/// The exact range of the values seen.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct MinMax {
    pub min: f32,
    pub max: f32,
}

impl Default for MinMax {
    fn default() -> MinMax {
        MinMax {
            min: f32::INFINITY,
            max: f32::NEG_INFINITY,
        }
    }
}

impl MinMax {
    /// Adds `values`; the error names the first value that is NaN or infinite.
    pub fn add(&mut self, values: &[f32]) -> Result<(), f32> {
        for &v in values {
            if !v.is_finite() {
                return Err(v);
            }
            self.min = self.min.min(v);
            self.max = self.max.max(v);
        }
        Ok(())
    }

    /// The range; `None` when no value was added.
    pub fn range(&self) -> Option<Range> {
        (self.min <= self.max).then_some(Range {
            min: self.min,
            max: self.max,
        })
    }
}

/// A histogram of `|v|` over `[0, limit]` in [`BINS`] equal bins (`limit` the largest magnitude
/// of the first pass), with the exact range kept beside it.
#[derive(Clone, Debug, PartialEq)]
pub struct Histogram {
    pub range: Range,
    pub limit: f32,
    pub counts: Vec<u64>,
}

impl Histogram {
    /// An empty histogram for values in `range` (from the first pass).
    pub fn new(range: Range) -> Histogram {
        Histogram {
            range,
            limit: range.min.abs().max(range.max.abs()),
            counts: vec![0; BINS],
        }
    }

    /// Adds `values` (a value beyond the first pass's range falls in the last bin).
    pub fn add(&mut self, values: &[f32]) {
        if self.limit <= 0.0 {
            self.counts[0] += values.len() as u64;
            return;
        }
        let per_bin = BINS as f64 / self.limit as f64;
        for &v in values {
            let b = ((v.abs() as f64) * per_bin) as usize;
            self.counts[b.min(BINS - 1)] += 1;
        }
    }

    /// The bin width.
    fn width(&self) -> f64 {
        self.limit as f64 / BINS as f64
    }

    /// The range under `method` (not [`Method::MinMax`], which is the first pass's range):
    /// a magnitude threshold `t` is chosen and the range is the exact one clipped to `[-t, t]`.
    pub fn range_for(&self, method: Method) -> Range {
        let t = match method {
            Method::MinMax => return self.range,
            Method::Percentile(p) => self.percentile_threshold(p),
            Method::Entropy => self.entropy_threshold(),
            Method::Mse => self.mse_threshold(),
        };
        Range {
            min: self.range.min.max(-t),
            max: self.range.max.min(t),
        }
    }

    /// The upper edge of the first bin at which the cumulative count reaches `p` percent.
    pub fn percentile_threshold(&self, p: f64) -> f32 {
        let total: u64 = self.counts.iter().sum();
        let want = total as f64 * p / 100.0;
        let mut seen = 0u64;
        for (i, &c) in self.counts.iter().enumerate() {
            seen += c;
            if seen as f64 >= want {
                return ((i + 1) as f64 * self.width()) as f32;
            }
        }
        self.limit
    }

    /// TensorRT's entropy calibration with 256 levels (u8), every candidate judged at the same
    /// resolution. A candidate is a threshold of `i` bins, `i` in `[256·R, BINS]` with `R =`
    /// [`ENTROPY_BINS_PER_LEVEL`]; its first `i` bins are merged into `256·R` equal groups,
    /// `R` per level. The reference distribution `P` is those groups with the outliers (every
    /// value beyond bin `i`) added to the last; `Q` is each level's sum (without the outliers)
    /// spread evenly over the level's non-empty groups; the threshold is the upper edge of the
    /// `i` minimising KL(P || Q) (a candidate whose `Q` is 0 where `P` is not is never chosen).
    ///
    /// TensorRT compares `P` and `Q` over the `i` bins themselves, so a short candidate is
    /// judged at a coarser resolution per level than a long one: at `i = 256` each level is one
    /// bin, `Q` equals `P` but for the outlier bin and the rounding error is invisible. Data
    /// with a few tall spikes (a convolution's bias over blank image regions) then looks best
    /// clipped to the shortest range, throwing away the informative tail (mnist5k's first
    /// convolution: 256 of 2048 bins, 73.9 %). Fixing `R` groups per level for every candidate
    /// removes that bias. The first bin (values near 0, a spike after a Relu) is left out: 0.0
    /// is exact in the scheme.
    pub fn entropy_threshold(&self) -> f32 {
        const LEVELS: usize = 256;
        const GROUPS: usize = LEVELS * ENTROPY_BINS_PER_LEVEL;
        let mut counts: Vec<f64> = self.counts.iter().map(|&c| c as f64).collect();
        counts[0] = 0.0;
        let mut best = (f64::INFINITY, BINS);
        let mut p = vec![0f64; GROUPS];
        let mut q = vec![0f64; GROUPS];
        let mut outliers: f64 = counts[GROUPS..].iter().sum();
        for i in GROUPS..=BINS {
            if i > GROUPS {
                outliers -= counts[i - 1];
            }
            for (g, pg) in p.iter_mut().enumerate() {
                *pg = counts[g * i / GROUPS..(g + 1) * i / GROUPS].iter().sum();
            }
            for (level, q) in q.chunks_exact_mut(ENTROPY_BINS_PER_LEVEL).enumerate() {
                let groups = &p[level * ENTROPY_BINS_PER_LEVEL..][..ENTROPY_BINS_PER_LEVEL];
                let sum: f64 = groups.iter().sum();
                let nonzero = groups.iter().filter(|&&c| c > 0.0).count();
                for (qg, &pg) in q.iter_mut().zip(groups) {
                    *qg = if pg > 0.0 { sum / nonzero as f64 } else { 0.0 };
                }
            }
            p[GROUPS - 1] += outliers.max(0.0);
            let kl = kl_divergence(&p, &q);
            if kl < best.0 {
                best = (kl, i);
            }
        }
        (best.1 as f64 * self.width()) as f32
    }

    /// The threshold (a bin edge) minimising the mean squared error of quantizing the histogram's
    /// values to 256 levels over `[-t, t]` clipped to the exact range: values beyond `t` cost
    /// their distance to it squared, values inside `step² / 12`.
    pub fn mse_threshold(&self) -> f32 {
        let w = self.width();
        let mut best = (f64::INFINITY, BINS);
        for i in 1..=BINS {
            let t = i as f64 * w;
            let lo = (self.range.min as f64).max(-t);
            let hi = (self.range.max as f64).min(t);
            let step = (hi - lo) / 255.0;
            let inside = step * step / 12.0;
            let mut err = 0.0;
            for (b, &c) in self.counts.iter().enumerate() {
                if c == 0 {
                    continue;
                }
                let centre = (b as f64 + 0.5) * w;
                err += c as f64
                    * if centre > t {
                        (centre - t) * (centre - t)
                    } else {
                        inside
                    };
            }
            if err < best.0 {
                best = (err, i);
            }
        }
        (best.1 as f64 * w) as f32
    }
}

/// KL(P || Q) of two unnormalised distributions; bins where `P` is 0 add nothing, bins where
/// `Q` is 0 and `P` is not make it infinite.
fn kl_divergence(p: &[f64], q: &[f64]) -> f64 {
    let (sp, sq): (f64, f64) = (p.iter().sum(), q.iter().sum());
    if sp == 0.0 || sq == 0.0 {
        return f64::INFINITY;
    }
    let mut kl = 0.0;
    for (&a, &b) in p.iter().zip(q) {
        if a > 0.0 {
            if b == 0.0 {
                return f64::INFINITY;
            }
            let (a, b) = (a / sp, b / sq);
            kl += a * (a / b).ln();
        }
    }
    kl
}

#[cfg(test)]
mod tests {
    use super::*;

    fn histogram(limit: f32, counts: &[(usize, u64)]) -> Histogram {
        let mut h = Histogram::new(Range {
            min: 0.0,
            max: limit,
        });
        for &(b, c) in counts {
            h.counts[b] = c;
        }
        h
    }

    #[test]
    fn minmax_rejects_nan_and_infinity() {
        let mut m = MinMax::default();
        assert_eq!(m.range(), None);
        m.add(&[1.0, -2.0, 0.5]).unwrap();
        assert_eq!(
            m.range(),
            Some(Range {
                min: -2.0,
                max: 1.0
            })
        );
        assert!(m.add(&[f32::NAN]).unwrap_err().is_nan());
        assert_eq!(m.add(&[f32::INFINITY]), Err(f32::INFINITY));
    }

    #[test]
    fn values_fall_in_their_magnitude_bins() {
        let mut h = Histogram::new(Range {
            min: -2048.0,
            max: 1024.0,
        });
        h.add(&[0.5, -1.5, 2047.9, 5000.0]);
        assert_eq!((h.counts[0], h.counts[1], h.counts[2047]), (1, 1, 2));
    }

    #[test]
    fn percentile_cuts_the_tail() {
        // 9990 values in bin 9, 10 in bin 2047 (limit 2048: bin edges are integers).
        let h = histogram(2048.0, &[(9, 9990), (2047, 10)]);
        assert_eq!(h.percentile_threshold(99.9), 10.0);
        assert_eq!(h.percentile_threshold(99.95), 2048.0);
        let r = h.range_for(Method::Percentile(99.9));
        assert_eq!((r.min, r.max), (0.0, 10.0));
    }

    #[test]
    fn entropy_clips_a_laplace_tail_and_keeps_a_uniform_range() {
        // A Laplace-like magnitude histogram (decay length 50 bins, empty beyond bin ~690): the
        // threshold clips the empty tail and keeps more than the 99.9th percentile (bin 345).
        let counts: Vec<(usize, u64)> = (0..BINS)
            .map(|b| (b, (1e6 * (-(b as f64) / 50.0).exp()).round() as u64))
            .collect();
        let h = histogram(2048.0, &counts);
        let t = h.entropy_threshold();
        assert!(t > h.percentile_threshold(99.9) && t < 1024.0, "{t}");
        // A uniform distribution over every bin keeps the whole range.
        let all: Vec<(usize, u64)> = (0..BINS).map(|b| (b, 10)).collect();
        assert_eq!(histogram(2048.0, &all).entropy_threshold(), 2048.0);
        // A spike at 0 does not pull the threshold down onto a sparse but real tail.
        let mut spiky = all.clone();
        spiky[0].1 = 100_000_000;
        assert_eq!(histogram(2048.0, &spiky).entropy_threshold(), 2048.0);
    }

    #[test]
    fn entropy_keeps_a_broad_tail_under_tall_spikes() {
        // mnist5k's first convolution in miniature: ten spikes holding most of the values
        // (the bias over blank regions) in the first 150 bins, and a long decaying tail of real
        // signal. Judged at one bin per level (TensorRT's search from 256 bins) the spikes make
        // a short range look best: it clipped at bin 383, cutting off half of the tail.
        let mut counts: Vec<(usize, u64)> = (1..BINS)
            .map(|b| (b, (800.0 * (-(b as f64) / 600.0).exp()).round() as u64))
            .collect();
        for k in 0..10 {
            counts[30 + 12 * k].1 = 100_000;
        }
        let t = histogram(2048.0, &counts).entropy_threshold();
        assert!((1024.0..=2048.0).contains(&t), "{t}");
    }

    #[test]
    fn mse_trades_clipping_against_resolution() {
        // 10^9 values in bin 99 and one at the top: clipping that one value costs less than
        // spreading 256 levels over the whole range, so the threshold is the bulk's upper edge.
        let h = histogram(2048.0, &[(99, 1_000_000_000), (2047, 1)]);
        assert_eq!(h.mse_threshold(), 100.0);
        // With c = 10^5 values the optimum is inside the range: the error
        // c·t²/(12·255²) + (2047.5 - t)² is least at t = 2047.5 / (1 + c/(12·255²)) = 1815.4,
        // whose bin edge below is 1815.
        let h = histogram(2048.0, &[(99, 100_000), (2047, 1)]);
        assert_eq!(h.mse_threshold(), 1815.0);
        // Two equal masses at both ends keep the range but for half of the last bin (its
        // centre, 2047.5, clipped to 2047, costs less than the finer step saves).
        let h = histogram(2048.0, &[(0, 1000), (2047, 1000)]);
        assert_eq!(h.mse_threshold(), 2047.0);
    }
}
