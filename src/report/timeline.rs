//! The run's time axis: fixed-width bins over the run window, and which phase (warm-up before
//! the first injection, fault, after recovery) an instant belongs to.

/// Epoch milliseconds.
pub type Ms = i64;

/// At most this many bins per plot: enough resolution for a page, bounded memory per series.
pub const MAX_BINS: usize = 120;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    WarmUp,
    Fault,
    After,
}

/// One fault's active interval (`recovered` = the run's end when the label has none).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    pub start: Ms,
    pub end: Ms,
}

#[derive(Debug, Clone)]
pub struct Timeline {
    pub start: Ms,
    pub end: Ms,
    pub bin_ms: Ms,
    pub bins: usize,
    /// Fault windows, sorted by start.
    pub faults: Vec<Window>,
}

impl Timeline {
    /// At most [`MAX_BINS`] bins of a round width (1 s, 15 s, 1 min, …) covering `[start, end]`.
    pub fn new(start: Ms, end: Ms, mut faults: Vec<Window>) -> Self {
        const STEPS: [Ms; 17] = [
            100, 250, 500, 1_000, 2_000, 5_000, 10_000, 15_000, 30_000, 60_000, 120_000, 300_000,
            600_000, 900_000, 1_800_000, 3_600_000, 7_200_000,
        ];
        let end = end.max(start + 1);
        let span = end - start;
        let need = (span + MAX_BINS as Ms - 1) / MAX_BINS as Ms;
        let bin_ms = STEPS
            .iter()
            .copied()
            .find(|s| *s >= need)
            .unwrap_or_else(|| (need + 3_599_999) / 3_600_000 * 3_600_000);
        let bins = usize::try_from((span + bin_ms - 1) / bin_ms)
            .unwrap_or(1)
            .max(1);
        faults.sort_by_key(|w| w.start);
        Self {
            start,
            end,
            bin_ms,
            bins,
            faults,
        }
    }

    /// The bin of `t`; instants outside the window (clock skew, collector margins) go to the
    /// edge bins rather than being dropped.
    pub fn bin(&self, t: Ms) -> usize {
        if t <= self.start {
            return 0;
        }
        usize::try_from((t - self.start) / self.bin_ms)
            .unwrap_or(usize::MAX)
            .min(self.bins - 1)
    }

    /// Start of bin `i`, in epoch milliseconds.
    pub fn bin_start(&self, i: usize) -> Ms {
        self.start + self.bin_ms * i as Ms
    }

    /// Middle of bin `i`.
    pub fn bin_mid(&self, i: usize) -> Ms {
        self.bin_start(i) + self.bin_ms / 2
    }

    pub fn phase(&self, t: Ms) -> Phase {
        let Some(first) = self.faults.first() else {
            return Phase::WarmUp;
        };
        if t < first.start {
            Phase::WarmUp
        } else if self.faults.iter().any(|w| t >= w.start && t <= w.end) {
            Phase::Fault
        } else {
            Phase::After
        }
    }

    pub fn has_fault(&self) -> bool {
        !self.faults.is_empty()
    }
}

/// Mean of a stream of values, by phase (warm-up, fault, after).
#[derive(Debug, Clone, Copy, Default)]
pub struct PhaseMeans {
    sum: [f64; 3],
    n: [u64; 3],
}

impl PhaseMeans {
    pub fn add(&mut self, phase: Phase, v: f64) {
        let i = phase as usize;
        self.sum[i] += v;
        self.n[i] += 1;
    }

    pub fn mean(&self, phase: Phase) -> Option<f64> {
        let i = phase as usize;
        (self.n[i] > 0).then(|| self.sum[i] / self.n[i] as f64)
    }

    pub fn count(&self, phase: Phase) -> u64 {
        self.n[phase as usize]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bins_are_round_and_cover_the_window() {
        let t = Timeline::new(0, 3 * 3_600_000, vec![]);
        assert_eq!(t.bin_ms, 120_000);
        assert!(t.bins <= MAX_BINS);
        assert!(t.bin_start(t.bins) >= t.end);
        assert_eq!(t.bin(-5), 0);
        assert_eq!(t.bin(t.end + 10_000_000), t.bins - 1);
    }

    #[test]
    fn short_windows_get_short_bins() {
        let t = Timeline::new(1_000, 1_000 + 10 * 60_000, vec![]);
        assert_eq!((t.bin_ms, t.bins), (5_000, 120));
        assert_eq!(t.bin(1_000 + 60_000), 12);
        let secs = Timeline::new(0, 6_000, vec![]);
        assert_eq!((secs.bin_ms, secs.bins), (100, 60));
    }

    #[test]
    fn phases_follow_the_fault_windows() {
        let w = Window {
            start: 100,
            end: 200,
        };
        let t = Timeline::new(0, 300, vec![w]);
        assert_eq!(t.phase(99), Phase::WarmUp);
        assert_eq!(t.phase(100), Phase::Fault);
        assert_eq!(t.phase(200), Phase::Fault);
        assert_eq!(t.phase(201), Phase::After);
        let none = Timeline::new(0, 300, vec![]);
        assert_eq!(none.phase(250), Phase::WarmUp);
    }

    #[test]
    fn phase_means_keep_phases_apart() {
        let mut m = PhaseMeans::default();
        m.add(Phase::WarmUp, 1.0);
        m.add(Phase::WarmUp, 3.0);
        m.add(Phase::Fault, 10.0);
        assert_eq!(m.mean(Phase::WarmUp), Some(2.0));
        assert_eq!(m.mean(Phase::Fault), Some(10.0));
        assert_eq!(m.mean(Phase::After), None);
    }
}
