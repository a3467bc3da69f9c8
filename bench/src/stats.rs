//! Percentiles and the summaries the report prints.

use serde_json::{Value, json};

/// Nearest-rank percentile of sorted samples (`p` in 0..=1).
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = (p * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// Count, mean and percentiles of a set of samples (any unit).
#[derive(Debug, Clone, Copy)]
pub struct Summary {
    pub n: usize,
    pub mean: f64,
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub max: f64,
}

impl Summary {
    pub fn of(samples: &[f64]) -> Self {
        let mut v: Vec<f64> = samples.iter().copied().filter(|x| x.is_finite()).collect();
        v.sort_by(f64::total_cmp);
        let mean = if v.is_empty() {
            f64::NAN
        } else {
            v.iter().sum::<f64>() / v.len() as f64
        };
        Self {
            n: v.len(),
            mean,
            p50: percentile(&v, 0.50),
            p90: percentile(&v, 0.90),
            p99: percentile(&v, 0.99),
            max: v.last().copied().unwrap_or(f64::NAN),
        }
    }

    pub fn json(&self) -> Value {
        json!({
            "n": self.n,
            "mean": round(self.mean),
            "p50": round(self.p50),
            "p90": round(self.p90),
            "p99": round(self.p99),
            "max": round(self.max),
        })
    }
}

/// The A/A difference of a direct series with itself: its samples split
/// into the even- and odd-numbered ones (both interleaved through the whole
/// run), and the absolute p50 and p99 differences of the halves. A delta
/// smaller than this is within the run's noise.
pub fn noise_floor(samples: &[f64]) -> (f64, f64) {
    let even: Vec<f64> = samples.iter().step_by(2).copied().collect();
    let odd: Vec<f64> = samples.iter().skip(1).step_by(2).copied().collect();
    let (a, b) = (Summary::of(&even), Summary::of(&odd));
    ((a.p50 - b.p50).abs(), (a.p99 - b.p99).abs())
}

/// Rounds to 3 significant decimals for the JSON (NaN becomes null).
pub fn round(x: f64) -> Value {
    if !x.is_finite() {
        return Value::Null;
    }
    let r = if x.abs() >= 100.0 {
        (x * 10.0).round() / 10.0
    } else if x.abs() >= 0.1 || x == 0.0 {
        (x * 1000.0).round() / 1000.0
    } else {
        // Small values keep 3 significant digits.
        let scale = 10f64.powi(2 - x.abs().log10().floor() as i32);
        (x * scale).round() / scale
    };
    json!(r)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        let s = Summary::of(&v);
        assert_eq!(
            (s.p50, s.p90, s.p99, s.max, s.n),
            (50.0, 90.0, 99.0, 100.0, 100)
        );
        assert_eq!(Summary::of(&[7.0]).p99, 7.0);
        assert!(Summary::of(&[]).p50.is_nan());
        assert_eq!(noise_floor(&[1.0, 1.0, 1.0, 1.0]), (0.0, 0.0));
        assert_eq!(round(0.000_886_4), json!(0.000_886));
        assert_eq!(round(12.345_67), json!(12.346));
        assert_eq!(round(1234.56), json!(1234.6));
    }
}
