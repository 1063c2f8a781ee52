//! The per-core time ledger: every picosecond of a core's life is charged to
//! exactly one [`Category`].
//!
//! The ledger keeps a cursor, the time up to which the core's activity has
//! been accounted. Software running ahead of the global clock (costs it has
//! accrued but not yet slept for) moves the cursor past `now`; a wait moves
//! it to the time the wait ended. Invariant, checked by
//! [`Ledger::total`]: the categories always sum to `cursor − start`, so CPU
//! utilisation reported from a ledger can never double-count or lose time.

use serde::Serialize;

use crate::time::{Duration, Time};

/// What a core was doing.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Category {
    Application,
    NetworkStack,
    Driver,
    Polling,
    Interrupt,
    ContextSwitch,
    Kernel,
    Idle,
}

impl Category {
    pub const ALL: [Category; 8] = [
        Category::Application,
        Category::NetworkStack,
        Category::Driver,
        Category::Polling,
        Category::Interrupt,
        Category::ContextSwitch,
        Category::Kernel,
        Category::Idle,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Category::Application => "application",
            Category::NetworkStack => "network-stack",
            Category::Driver => "driver",
            Category::Polling => "polling",
            Category::Interrupt => "interrupt",
            Category::ContextSwitch => "context-switch",
            Category::Kernel => "kernel",
            Category::Idle => "idle",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// Time per category for one core.
#[derive(Clone, Debug)]
pub struct Ledger {
    start: Time,
    cursor: Time,
    ps: [u64; Category::ALL.len()],
}

impl Ledger {
    pub fn new(start: Time) -> Ledger {
        Ledger {
            start,
            cursor: start,
            ps: [0; Category::ALL.len()],
        }
    }

    /// Time up to which the core's activity is accounted.
    pub fn cursor(&self) -> Time {
        self.cursor
    }

    /// Charge the next `d` of the core's time to `category`.
    pub fn charge(&mut self, category: Category, d: Duration) {
        self.ps[category.index()] += d.0;
        self.cursor += d;
    }

    /// Charge everything from the cursor up to `t` to `category` (nothing if
    /// `t` is not later than the cursor).
    pub fn charge_until(&mut self, category: Category, t: Time) {
        if t > self.cursor {
            self.charge(category, t - self.cursor);
        }
    }

    pub fn get(&self, category: Category) -> Duration {
        Duration(self.ps[category.index()])
    }

    /// Sum over all categories; always equals `cursor − start`.
    pub fn total(&self) -> Duration {
        let sum = Duration(self.ps.iter().sum());
        debug_assert_eq!(sum, self.cursor - self.start);
        sum
    }

    /// Fraction of accounted time not idle (0 when nothing is accounted).
    pub fn busy_fraction(&self) -> f64 {
        let total = self.total().0;
        if total == 0 {
            0.0
        } else {
            1.0 - self.get(Category::Idle).0 as f64 / total as f64
        }
    }

    /// Fraction of accounted time in `category`.
    pub fn fraction(&self, category: Category) -> f64 {
        let total = self.total().0;
        if total == 0 {
            0.0
        } else {
            self.get(category).0 as f64 / total as f64
        }
    }

    /// `(category name, picoseconds)` for every category, in a fixed order.
    pub fn breakdown(&self) -> Vec<(&'static str, u64)> {
        Category::ALL
            .iter()
            .map(|c| (c.name(), self.ps[c.index()]))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn categories_sum_to_elapsed() {
        let mut l = Ledger::new(Time(100));
        l.charge(Category::Application, Duration(30));
        l.charge_until(Category::Polling, Time(200));
        l.charge_until(Category::Idle, Time(150)); // in the past: nothing
        l.charge(Category::Interrupt, Duration(5));
        assert_eq!(l.total(), Duration(105));
        assert_eq!(l.cursor(), Time(205));
        assert_eq!(l.get(Category::Polling), Duration(70));
        assert!((l.busy_fraction() - 1.0).abs() < 1e-12);
    }
}
