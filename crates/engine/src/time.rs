//! Simulated time: instants and durations in integer picoseconds, clock
//! frequencies and bit rates, and exact conversions between them.
//!
//! Invariants:
//! * [`Time`] and [`Duration`] are integer picoseconds; arithmetic saturates
//!   instead of wrapping, so a run that would overflow (≈ 213 days of
//!   simulated time) stops growing rather than travelling back in time.
//! * `Freq::cycles_to_duration` rounds up and `Freq::duration_to_cycles`
//!   rounds down, so converting cycles to time and back is the identity for
//!   every clock below 1 THz (tested).
//! * A [`Serializer`] carries the sub-picosecond remainder of every
//!   transmission forward, so a long back-to-back stream takes exactly
//!   `bits / rate` seconds however awkward the rate.

use std::fmt;
use std::ops::{Add, AddAssign, Sub};

use serde::{Deserialize, Serialize};

/// Picoseconds in one second.
pub const PS_PER_S: u64 = 1_000_000_000_000;

/// An instant of simulated time, in picoseconds since the start of the run.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
pub struct Time(pub u64);

/// A span of simulated time, in picoseconds.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
pub struct Duration(pub u64);

impl Time {
    pub const ZERO: Time = Time(0);
    pub const MAX: Time = Time(u64::MAX);

    pub const fn ps(self) -> u64 {
        self.0
    }
    pub fn as_ns_f64(self) -> f64 {
        self.0 as f64 / 1e3
    }
    pub fn as_secs_f64(self) -> f64 {
        self.0 as f64 / PS_PER_S as f64
    }
    /// Time elapsed since `earlier`, or zero if `earlier` is later.
    pub fn since(self, earlier: Time) -> Duration {
        Duration(self.0.saturating_sub(earlier.0))
    }
}

impl Duration {
    pub const ZERO: Duration = Duration(0);

    pub const fn from_ps(ps: u64) -> Self {
        Duration(ps)
    }
    pub const fn from_ns(ns: u64) -> Self {
        Duration(ns.saturating_mul(1_000))
    }
    pub const fn from_us(us: u64) -> Self {
        Duration(us.saturating_mul(1_000_000))
    }
    pub const fn from_ms(ms: u64) -> Self {
        Duration(ms.saturating_mul(1_000_000_000))
    }
    /// Nearest picosecond to `ns` nanoseconds; negative or NaN become zero.
    pub fn from_ns_f64(ns: f64) -> Self {
        if ns.is_finite() && ns > 0.0 {
            Duration((ns * 1e3).round().min(u64::MAX as f64) as u64)
        } else {
            Duration(0)
        }
    }
    pub const fn ps(self) -> u64 {
        self.0
    }
    pub fn as_ns_f64(self) -> f64 {
        self.0 as f64 / 1e3
    }
    pub fn as_us_f64(self) -> f64 {
        self.0 as f64 / 1e6
    }
    pub fn as_secs_f64(self) -> f64 {
        self.0 as f64 / PS_PER_S as f64
    }
    pub fn saturating_sub(self, other: Duration) -> Duration {
        Duration(self.0.saturating_sub(other.0))
    }
    pub fn times(self, n: u64) -> Duration {
        Duration(self.0.saturating_mul(n))
    }
}

impl Add<Duration> for Time {
    type Output = Time;
    fn add(self, d: Duration) -> Time {
        Time(self.0.saturating_add(d.0))
    }
}
impl AddAssign<Duration> for Time {
    fn add_assign(&mut self, d: Duration) {
        self.0 = self.0.saturating_add(d.0);
    }
}
impl Sub<Time> for Time {
    type Output = Duration;
    /// Saturating: a later `rhs` gives zero.
    fn sub(self, rhs: Time) -> Duration {
        self.since(rhs)
    }
}
impl Add for Duration {
    type Output = Duration;
    fn add(self, d: Duration) -> Duration {
        Duration(self.0.saturating_add(d.0))
    }
}
impl AddAssign for Duration {
    fn add_assign(&mut self, d: Duration) {
        self.0 = self.0.saturating_add(d.0);
    }
}
impl std::iter::Sum for Duration {
    fn sum<I: Iterator<Item = Duration>>(iter: I) -> Duration {
        iter.fold(Duration::ZERO, |a, b| a + b)
    }
}

impl fmt::Display for Time {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:.3} ns", self.as_ns_f64())
    }
}
impl fmt::Display for Duration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:.3} ns", self.as_ns_f64())
    }
}

/// A clock frequency in hertz.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Freq {
    hz: u64,
}

impl Freq {
    /// A frequency of `hz` hertz. Zero is rejected because nothing could
    /// ever happen on such a clock.
    pub const fn from_hz(hz: u64) -> Option<Freq> {
        if hz == 0 { None } else { Some(Freq { hz }) }
    }
    /// `mhz` megahertz; panics only on zero, for constants in code.
    pub const fn mhz(mhz: u64) -> Freq {
        assert!(mhz > 0, "a clock of 0 MHz never ticks");
        Freq {
            hz: mhz * 1_000_000,
        }
    }
    pub const fn hz(self) -> u64 {
        self.hz
    }
    pub fn ghz_f64(self) -> f64 {
        self.hz as f64 / 1e9
    }
    /// Time taken by `cycles` cycles, rounded up to the next picosecond.
    pub fn cycles_to_duration(self, cycles: u64) -> Duration {
        // The same quotient in 64 bits whenever the product fits (up to
        // ~10^7 cycles): a 128-bit division is a library call.
        if let Some(p) = cycles.checked_mul(PS_PER_S) {
            return Duration(p.div_ceil(self.hz));
        }
        let ps = (cycles as u128 * PS_PER_S as u128).div_ceil(self.hz as u128);
        Duration(ps.min(u64::MAX as u128) as u64)
    }
    /// Whole cycles that fit in `d`, rounded down.
    pub fn duration_to_cycles(self, d: Duration) -> u64 {
        if let Some(p) = d.0.checked_mul(self.hz) {
            return p / PS_PER_S;
        }
        let c = d.0 as u128 * self.hz as u128 / PS_PER_S as u128;
        c.min(u64::MAX as u128) as u64
    }
    /// Cycles that fit in `d`, as a real number (for reports).
    pub fn cycles_f64(self, d: Duration) -> f64 {
        d.0 as f64 * self.hz as f64 / PS_PER_S as f64
    }
}

/// A bit rate in bits per second.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Rate {
    bits_per_s: u64,
}

impl Rate {
    pub const fn from_bits_per_s(bits_per_s: u64) -> Option<Rate> {
        if bits_per_s == 0 {
            None
        } else {
            Some(Rate { bits_per_s })
        }
    }
    /// `gbps` gigabits per second; panics only on zero, for constants.
    pub const fn gbps(gbps: u64) -> Rate {
        assert!(gbps > 0, "a link of 0 Gb/s carries nothing");
        Rate {
            bits_per_s: gbps * 1_000_000_000,
        }
    }
    pub const fn bits_per_s(self) -> u64 {
        self.bits_per_s
    }
    pub fn gbps_f64(self) -> f64 {
        self.bits_per_s as f64 / 1e9
    }
    /// Time to send `bytes` bytes, rounded up (a one-off transfer; streams
    /// use a [`Serializer`] to stay exact).
    pub fn duration_for_bytes(self, bytes: u64) -> Duration {
        if let Some(p) = bytes.checked_mul(8 * PS_PER_S) {
            return Duration(p.div_ceil(self.bits_per_s));
        }
        let ps = (bytes as u128 * 8 * PS_PER_S as u128).div_ceil(self.bits_per_s as u128);
        Duration(ps.min(u64::MAX as u128) as u64)
    }
}

/// A [`Freq`] in a configuration file: a whole number of hertz, never 0
/// (`#[serde(with = "nextio_engine::time::as_hz")]`).
pub mod as_hz {
    use super::Freq;
    use serde::{Deserialize, Deserializer, Serializer, de::Error};

    pub fn serialize<S: Serializer>(f: &Freq, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(f.hz())
    }
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Freq, D::Error> {
        let hz = u64::deserialize(d)?;
        Freq::from_hz(hz).ok_or_else(|| D::Error::custom("a clock of 0 Hz never ticks"))
    }
}

/// A [`Rate`] in a configuration file: a whole number of bits per second,
/// never 0 (`#[serde(with = "nextio_engine::time::as_bits_per_s")]`).
pub mod as_bits_per_s {
    use super::Rate;
    use serde::{Deserialize, Deserializer, Serializer, de::Error};

    pub fn serialize<S: Serializer>(r: &Rate, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(r.bits_per_s())
    }
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Rate, D::Error> {
        let bps = u64::deserialize(d)?;
        Rate::from_bits_per_s(bps)
            .ok_or_else(|| D::Error::custom("a link of 0 bit/s carries nothing"))
    }
}

/// Turns a stream of transmissions at a fixed rate into exact picosecond
/// spans: each call returns the whole picoseconds of its bytes and keeps the
/// fraction for the next one, so `n` back-to-back sends take exactly
/// `n × bytes × 8 / rate` (to within one picosecond) however long the run.
///
/// The rate is stored as a ratio `ps = bytes × num / den` in lowest terms.
#[derive(Clone, Debug)]
pub struct Serializer {
    num: u128,
    den: u128,
    remainder: u128,
}

impl Serializer {
    /// A serializer for a link whose raw rate is `bits_per_s` scaled by the
    /// line-code efficiency `code_num / code_den` (e.g. 128/130).
    pub fn new(rate: Rate, code_num: u64, code_den: u64) -> Serializer {
        let num = 8u128 * PS_PER_S as u128 * code_den.max(1) as u128;
        let den = rate.bits_per_s as u128 * code_num.max(1) as u128;
        let g = gcd(num, den);
        Serializer {
            num: num / g,
            den: den / g,
            remainder: 0,
        }
    }
    /// Picoseconds to send `bytes` right after the previous transmission.
    pub fn next(&mut self, bytes: u64) -> Duration {
        // In 64 bits when the ratio and the product fit (every real link);
        // the remainder is below `den`, so it fits whenever `den` does.
        if let (Ok(num), Ok(den)) = (u64::try_from(self.num), u64::try_from(self.den))
            && let Some(total) = bytes
                .checked_mul(num)
                .and_then(|t| t.checked_add(self.remainder as u64))
        {
            self.remainder = (total % den) as u128;
            return Duration(total / den);
        }
        let total = bytes as u128 * self.num + self.remainder;
        self.remainder = total % self.den;
        Duration((total / self.den).min(u64::MAX as u128) as u64)
    }
    /// Picoseconds to send `bytes` on their own (rounded up), leaving the
    /// carried fraction of the stream untouched.
    pub fn one_off(&self, bytes: u64) -> Duration {
        if let (Ok(num), Ok(den)) = (u64::try_from(self.num), u64::try_from(self.den))
            && let Some(total) = bytes.checked_mul(num)
        {
            return Duration(total.div_ceil(den));
        }
        let total = bytes as u128 * self.num;
        Duration(total.div_ceil(self.den).min(u64::MAX as u128) as u64)
    }
    /// Forget the carried fraction: the line went idle.
    pub fn reset(&mut self) {
        self.remainder = 0;
    }
    /// Picoseconds per byte as a real number (for closed-form checks).
    pub fn ps_per_byte(&self) -> f64 {
        self.num as f64 / self.den as f64
    }
}

fn gcd(mut a: u128, mut b: u128) -> u128 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a.max(1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn three_ghz_cycle_rounds_up() {
        let f = Freq::mhz(3000);
        assert_eq!(f.cycles_to_duration(1), Duration(334));
        assert_eq!(f.cycles_to_duration(3), Duration(1000));
        assert_eq!(f.duration_to_cycles(Duration(1000)), 3);
        assert_eq!(f.duration_to_cycles(Duration(999)), 2);
    }

    proptest! {
        #[test]
        fn sixty_four_bit_paths_match_the_wide_formulas(
            hz in 1u64..u64::MAX, x in any::<u64>(), small in 0u64..1 << 24,
        ) {
            // The 64-bit fast paths and the 128-bit formulas they stand for.
            let f = Freq::from_hz(hz).unwrap();
            let r = Rate::from_bits_per_s(hz).unwrap();
            let wide = |n: u128, d: u128, up: bool| {
                let q = if up { n.div_ceil(d) } else { n / d };
                q.min(u64::MAX as u128) as u64
            };
            for c in [x, small] {
                prop_assert_eq!(f.cycles_to_duration(c).0, wide(c as u128 * PS_PER_S as u128, hz as u128, true));
                prop_assert_eq!(f.duration_to_cycles(Duration(c)), wide(c as u128 * hz as u128, PS_PER_S as u128, false));
                prop_assert_eq!(r.duration_for_bytes(c).0, wide(c as u128 * 8 * PS_PER_S as u128, hz as u128, true));
                let s = Serializer::new(r, 128, 130);
                let once = s.one_off(c).0;
                prop_assert_eq!(once, wide(c as u128 * s.num, s.den, true));
                let mut a = s.clone();
                let (t1, t2) = (a.next(c).0, a.next(small).0);
                let total = c as u128 * s.num;
                let rem = total % s.den;
                let second = small as u128 * s.num + rem;
                prop_assert_eq!((t1, t2), (wide(total, s.den, false), wide(second, s.den, false)));
            }
        }

        #[test]
        fn cycles_round_trip(hz in 1u64..999_999_999_999, cycles in 0u64..1u64 << 40) {
            let f = Freq::from_hz(hz).unwrap();
            prop_assert_eq!(f.duration_to_cycles(f.cycles_to_duration(cycles)), cycles);
        }

        #[test]
        fn serializer_stream_is_exact(gbps in 1u64..400, bytes in 1u64..9000, n in 1u64..2000) {
            let rate = Rate::gbps(gbps);
            let mut s = Serializer::new(rate, 1, 1);
            let total: u64 = (0..n).map(|_| s.next(bytes).0).sum();
            let exact = (n as u128 * bytes as u128 * 8 * PS_PER_S as u128) / rate.bits_per_s() as u128;
            prop_assert_eq!(total as u128, exact);
        }
    }

    #[test]
    fn hundred_gig_byte_is_80ps() {
        let mut s = Serializer::new(Rate::gbps(100), 1, 1);
        assert_eq!(s.next(84), Duration(6720));
    }

    #[test]
    fn gen3_encoding_carries_fraction() {
        // 8 GT/s × 16 lanes at 128b/130b: 63.4765625 ps per byte.
        let mut s = Serializer::new(Rate::gbps(128), 128, 130);
        assert!((s.ps_per_byte() - 63.4765625).abs() < 1e-9);
        let t: u64 = (0..64).map(|_| s.next(1).0).sum();
        assert_eq!(t, 4062); // 4062.5 ps, the half carried
        assert_eq!(s.next(64).0, 4063); // 8125 ps for 128 bytes in all
    }

    #[test]
    fn zero_rates_are_rejected() {
        assert!(Freq::from_hz(0).is_none());
        assert!(Rate::from_bits_per_s(0).is_none());
    }

    #[test]
    fn time_arithmetic_saturates() {
        assert_eq!(Time(5) - Time(9), Duration(0));
        assert_eq!(Time::MAX + Duration(1), Time::MAX);
    }
}
