//! Tumbling windows: `[k·size, (k+1)·size)` aligned to the epoch; each row is in exactly
//! one window.

use super::bins::Assigner;
use super::floor_div;

/// Assigns a row to the one tumbling window containing it.
pub struct Tumbling {
    pub size: i64,
}

impl Assigner for Tumbling {
    const SINGLE: bool = true;

    fn size(&self) -> i64 {
        self.size
    }

    #[inline]
    fn last_start(&self, ts: i64) -> i64 {
        floor_div(ts, self.size).saturating_mul(self.size)
    }

    #[inline]
    fn previous(&self, start: i64) -> i64 {
        start.saturating_sub(self.size)
    }

    fn advance(&self) -> i64 {
        self.size
    }

    fn first_start(&self, ts: i64) -> i64 {
        self.last_start(ts)
    }

    fn pane(&self) -> i64 {
        self.size
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_are_half_open_and_aligned_to_the_epoch() {
        let t = Tumbling { size: 10 };
        assert_eq!(t.last_start(0), 0);
        assert_eq!(t.last_start(9), 0);
        assert_eq!(t.last_start(10), 10);
        assert_eq!(t.last_start(-1), -10);
    }
}
