//! Sliding (hopping) windows: windows of `size` starting at every multiple of `advance`
//! since the epoch; a row belongs to every window that contains it (`size / advance` of
//! them when `advance` divides `size`).

use super::bins::Assigner;
use super::floor_div;

/// Assigns a row to every sliding window containing it.
pub struct Sliding {
    pub size: i64,
    pub advance: i64,
}

impl Assigner for Sliding {
    const SINGLE: bool = false;

    fn size(&self) -> i64 {
        self.size
    }

    #[inline]
    fn last_start(&self, ts: i64) -> i64 {
        floor_div(ts, self.advance).saturating_mul(self.advance)
    }

    #[inline]
    fn previous(&self, start: i64) -> i64 {
        start.saturating_sub(self.advance)
    }

    fn advance(&self) -> i64 {
        self.advance
    }

    fn first_start(&self, ts: i64) -> i64 {
        // Windows containing ts start in (ts - size, ts], at multiples of advance.
        floor_div(ts - self.size, self.advance) * self.advance + self.advance
    }

    fn pane(&self) -> i64 {
        gcd(self.size, self.advance)
    }
}

fn gcd(a: i64, b: i64) -> i64 {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_row_is_in_size_over_advance_windows() {
        let s = Sliding {
            size: 30,
            advance: 10,
        };
        let ts = 25;
        let mut starts = Vec::new();
        let mut start = s.last_start(ts);
        while start + s.size > ts {
            starts.push(start);
            start = s.previous(start);
        }
        assert_eq!(starts, vec![20, 10, 0]);
    }
}
