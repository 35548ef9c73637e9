//! Benchmarks (`tinyrustlm bench ...`): medians with their spread, and ratios to a baseline
//! measured in the same run. Never used by tests for timing.

pub mod browsers;
pub mod engines;
pub mod model;
pub mod sha256;
pub mod tokenizer;

use std::time::Instant;

/// Timing of several runs of one measured job.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Stats {
    pub runs: usize,
    pub median_s: f64,
    pub min_s: f64,
    pub max_s: f64,
    /// The middle time, or the two middle times of an even count (for [`Stats::rate`]).
    #[serde(skip)]
    middle: [f64; 2],
}

impl Stats {
    /// Runs `job` once to warm up, then `runs` times, timing each.
    pub fn measure(runs: usize, mut job: impl FnMut()) -> Stats {
        assert!(runs > 0);
        job();
        let times: Vec<f64> = (0..runs)
            .map(|_| {
                let start = Instant::now();
                job();
                start.elapsed().as_secs_f64()
            })
            .collect();
        Stats::of(times)
    }

    /// The statistics of measured times in seconds (at least one).
    pub fn of(mut times: Vec<f64>) -> Stats {
        assert!(!times.is_empty());
        let runs = times.len();
        times.sort_by(f64::total_cmp);
        let middle = [times[(runs - 1) / 2], times[runs / 2]];
        Stats {
            runs,
            median_s: (middle[0] + middle[1]) / 2.0,
            min_s: times[0],
            max_s: times[runs - 1],
            middle,
        }
    }

    /// Throughput (units per second): the median of the runs' rates (for an even count the mean
    /// of the two middle rates, not the rate at the median time), and its spread (the slowest
    /// and the fastest run).
    pub fn rate(&self, units: f64) -> (f64, f64, f64) {
        let [a, b] = self.middle;
        (
            (units / a + units / b) / 2.0,
            units / self.max_s,
            units / self.min_s,
        )
    }

    /// [`Stats::rate`] as a record.
    pub fn throughput(&self, units: f64) -> Rate {
        let (median, min, max) = self.rate(units);
        Rate { median, min, max }
    }
}

/// A throughput: at the median run, the slowest and the fastest.
#[derive(Clone, Copy, Debug, serde::Serialize)]
pub struct Rate {
    pub median: f64,
    pub min: f64,
    pub max: f64,
}

/// Bytes of the streaming-read baseline ([`stream_read`]): past the last-level cache of the
/// machines we run on, so it measures memory rather than cache.
pub const STREAM_BYTES: usize = 64 << 20;

/// The machine's sequential read bandwidth now, in bytes per second: one pass summing a
/// [`STREAM_BYTES`] buffer, `runs` times after a warm-up. A decode step reads every tensor once,
/// so on a model larger than the cache this is its ceiling; `bench model` measures it next to
/// each model, as a shared machine's bandwidth changes from minute to minute.
pub fn stream_read(runs: usize) -> Rate {
    let words = vec![1u64; STREAM_BYTES / 8];
    let words = std::hint::black_box(&words[..]);
    Stats::measure(runs, || {
        let mut acc = [0u64; 8];
        for chunk in words.chunks_exact(8) {
            for (a, w) in acc.iter_mut().zip(chunk) {
                *a = a.wrapping_add(*w);
            }
        }
        std::hint::black_box(acc);
    })
    .throughput(STREAM_BYTES as f64)
}

/// The machine's load averages (1, 5, 15 minutes) from /proc/loadavg, when readable: the
/// machine may be shared, so every report carries them.
pub fn load_average() -> Option<[f64; 3]> {
    let text = std::fs::read_to_string("/proc/loadavg").ok()?;
    let mut it = text.split_whitespace().map(|w| w.parse::<f64>().ok());
    Some([it.next()??, it.next()??, it.next()??])
}

#[cfg(test)]
mod tests {
    use super::Stats;

    #[test]
    fn the_median_rate_is_the_median_of_the_runs_rates() {
        // Odd: the middle run's rate.
        let s = Stats::of(vec![4.0, 1.0, 2.0]);
        assert_eq!((s.median_s, s.min_s, s.max_s), (2.0, 1.0, 4.0));
        assert_eq!(s.rate(8.0), (4.0, 2.0, 8.0));
        // Even: the mean of the two middle rates (8 / 2 and 8 / 4), not the rate at the mean of
        // the two middle times (8 / 3).
        let s = Stats::of(vec![8.0, 2.0, 4.0, 1.0]);
        assert_eq!(s.median_s, 3.0);
        assert_eq!(s.rate(8.0), (3.0, 1.0, 8.0));
    }
}
