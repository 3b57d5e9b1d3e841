//! What the benchmarks (the workspace's examples) share: the sample count they take from the
//! command line, and the statistics and units they print.

use std::time::Duration;

/// The first command-line argument as a count of samples, else `default`.
pub fn samples_arg(default: usize) -> usize {
    std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(default)
}

/// Milliseconds, for printing.
pub fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// The `percent` percentile of `sorted` (non-empty, ascending): the sample nearest that rank.
pub fn percentile(sorted: &[Duration], percent: usize) -> Duration {
    let index = ((sorted.len() - 1) * percent + 50) / 100;
    sorted[index]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_pick_the_nearest_rank() {
        let samples: Vec<Duration> = (1..=11).map(Duration::from_millis).collect();
        assert_eq!(percentile(&samples, 0), Duration::from_millis(1));
        assert_eq!(percentile(&samples, 50), Duration::from_millis(6));
        assert_eq!(percentile(&samples, 95), Duration::from_millis(11));
        assert_eq!(percentile(&samples, 100), Duration::from_millis(11));
        assert!((ms(Duration::from_micros(1500)) - 1.5).abs() < 1e-9);
    }
}
