//! Benchmarks (`tinyrustlm bench ...`): medians with their spread, and ratios to a baseline
//! measured in the same run. Never used by tests for timing.

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
}

impl Stats {
    /// Runs `job` once to warm up, then `runs` times, timing each.
    pub fn measure(runs: usize, mut job: impl FnMut()) -> Stats {
        assert!(runs > 0);
        job();
        let mut times: Vec<f64> = (0..runs)
            .map(|_| {
                let start = Instant::now();
                job();
                start.elapsed().as_secs_f64()
            })
            .collect();
        times.sort_by(f64::total_cmp);
        let median_s = if runs % 2 == 1 {
            times[runs / 2]
        } else {
            (times[runs / 2 - 1] + times[runs / 2]) / 2.0
        };
        Stats {
            runs,
            median_s,
            min_s: times[0],
            max_s: times[runs - 1],
        }
    }

    /// Throughput (units per second) at the median, and its spread (at the slowest and fastest run).
    pub fn rate(&self, units: f64) -> (f64, f64, f64) {
        (
            units / self.median_s,
            units / self.max_s,
            units / self.min_s,
        )
    }
}
