//! Learning-rate schedules: the rate of each optimiser step.

/// How the learning rate moves over a run of `total` steps.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Schedule {
    /// Cosine annealing from the base rate to zero over the run (SGDR without restarts).
    #[default]
    Cosine,
    /// The base rate at every step.
    Constant,
}

impl Schedule {
    pub fn parse(s: &str) -> Result<Schedule, String> {
        match s {
            "cosine" => Ok(Schedule::Cosine),
            "constant" => Ok(Schedule::Constant),
            _ => Err(format!("unknown schedule {s:?} (cosine or constant)")),
        }
    }

    /// The rate of step `step` (0-based) of `total`.
    pub fn rate(self, base: f64, step: u64, total: u64) -> f64 {
        match self {
            Schedule::Constant => base,
            Schedule::Cosine => {
                let t = step as f64 / total.max(1) as f64;
                base * 0.5 * (1.0 + (std::f64::consts::PI * t).cos())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cosine_starts_at_the_base_rate_and_halves_at_midpoint() {
        assert_eq!(Schedule::Cosine.rate(0.1, 0, 100), 0.1);
        assert!((Schedule::Cosine.rate(0.1, 50, 100) - 0.05).abs() < 1e-15);
        assert!(Schedule::Cosine.rate(0.1, 99, 100) < 0.1 * 0.001);
        assert_eq!(Schedule::Constant.rate(0.1, 99, 100), 0.1);
    }
}
