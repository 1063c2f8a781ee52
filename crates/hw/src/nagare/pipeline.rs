//! The timing of Nagare's match-action pipeline (thesis §4.3, after RMT):
//! every TLP entering a programmable switch port traverses a fixed number
//! of stages, each taking a fixed number of cycles of the switch clock, so
//! the latency it adds is `stages × cycles_per_stage / clock` whatever the
//! TLP does — and the pipeline accepts a new TLP every
//! `initiation_interval_cycles`, so a burst queues only when TLPs arrive
//! faster than that.
//!
//! The model is per stage, not a constant: a TLP enters stage `s` when both
//! it has left stage `s − 1` and the stage has finished accepting the TLP
//! before it; it leaves `cycles_per_stage` later. The added latency an
//! experiment reports is therefore measured on the simulated TLP path.
//!
//! What the stages compute is [`Program`]: the ops of Nagare's dataplane
//! with their dependencies; a program deeper than the pipeline is a
//! configuration error.
//!
//! Invariants: a TLP never leaves before `arrival + stages × stage time`;
//! TLPs of one port leave in arrival order; stage bookings never overlap.

use nextio_engine::{Duration, Freq, Time};
use serde::{Deserialize, Serialize};
use thiserror::Error;

/// Configuration of one programmable switch's pipelines: a preset's
/// `[nagare.pipeline]`, where each value's source is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PipelineConfig {
    /// Match-action stages every TLP traverses.
    pub stages: u32,
    /// Cycles each stage takes.
    pub cycles_per_stage: u32,
    /// The switch clock.
    #[serde(rename = "clock_hz", with = "nextio_engine::time::as_hz")]
    pub clock: Freq,
    /// Cycles between two TLPs entering a stage.
    pub initiation_interval_cycles: u32,
}

impl Default for PipelineConfig {
    /// The root preset's pipeline.
    fn default() -> Self {
        nextio_presets::root_section("nagare.pipeline")
    }
}

#[derive(Clone, Debug, Error, PartialEq, Eq)]
pub enum PipelineError {
    #[error("a pipeline needs at least one stage")]
    NoStages,
    #[error("a stage needs at least one cycle")]
    NoCycles,
    #[error("the initiation interval ({ii} cycles) must be 1..=cycles_per_stage ({cycles})")]
    BadInterval { ii: u32, cycles: u32 },
    #[error("{stages} stages exceed the {MAX_STAGES} a pipeline may have")]
    TooManyStages { stages: u32 },
    #[error(
        "Nagare's program needs {needed} dependent match-action stages; the pipeline has {stages}"
    )]
    ProgramTooDeep { needed: u32, stages: u32 },
}

/// Most stages a configuration may ask for: bounds per-port state.
pub const MAX_STAGES: u32 = 256;

impl PipelineConfig {
    pub fn validate(&self) -> Result<(), PipelineError> {
        if self.stages == 0 {
            return Err(PipelineError::NoStages);
        }
        if self.stages > MAX_STAGES {
            return Err(PipelineError::TooManyStages {
                stages: self.stages,
            });
        }
        if self.cycles_per_stage == 0 {
            return Err(PipelineError::NoCycles);
        }
        let ii = self.initiation_interval_cycles;
        if ii == 0 || ii > self.cycles_per_stage {
            return Err(PipelineError::BadInterval {
                ii,
                cycles: self.cycles_per_stage,
            });
        }
        Ok(())
    }

    /// The closed form the thesis computes: `stages × cycles / clock`.
    /// For checks only; the fabric times TLPs with [`Pipeline`].
    pub fn closed_form_ps(&self) -> f64 {
        self.stages as f64 * self.cycles_per_stage as f64 * 1e12 / self.clock.hz() as f64
    }
}

/// One port's pipeline: when each stage can take its next TLP.
#[derive(Clone, Debug)]
pub struct Pipeline {
    stage: Duration,
    interval: Duration,
    free_at: Vec<Time>,
    /// TLPs that had to wait for a stage, and how long in all.
    pub stalls: u64,
    pub stalled_ps: u64,
    pub tlps: u64,
}

impl Pipeline {
    pub fn new(cfg: &PipelineConfig) -> Result<Pipeline, PipelineError> {
        cfg.validate()?;
        Ok(Pipeline {
            // Rounded up to the next picosecond per stage: at most one ps
            // per stage above the closed form.
            stage: cfg.clock.cycles_to_duration(cfg.cycles_per_stage as u64),
            interval: cfg
                .clock
                .cycles_to_duration(cfg.initiation_interval_cycles as u64),
            free_at: vec![Time::ZERO; cfg.stages as usize],
            stalls: 0,
            stalled_ps: 0,
            tlps: 0,
        })
    }

    /// A TLP arrives at `at`; returns when it leaves the last stage.
    pub fn traverse(&mut self, at: Time) -> Time {
        self.tlps += 1;
        let mut t = at;
        let mut waited = Duration::ZERO;
        for free in &mut self.free_at {
            let start = t.max(*free);
            waited += start - t;
            *free = start + self.interval;
            t = start + self.stage;
        }
        if waited > Duration::ZERO {
            self.stalls += 1;
            self.stalled_ps += waited.ps();
        }
        t
    }
}

/// One op of Nagare's dataplane program. Each takes one stage; an op runs
/// in a later stage than every op it depends on (RMT's match dependencies,
/// SIGCOMM'13 §4.3), so the program's depth is its longest chain.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    /// Parse the TLP header: kind, requester, address, length.
    Parse,
    /// Match the address against the stream table.
    StreamMatch,
    /// Check the requester against the stream's access rule.
    AccessCheck,
    /// Read and update the stream's registers (bytes, messages, sequence).
    StreamRegisters,
    /// Look up the stream's next hop in its policy graph.
    HopLookup,
    /// Rewrite destination and kind; build the hop's command.
    Rewrite,
    /// Deparse: emit the TLPs.
    Emit,
}

impl Op {
    fn deps(self) -> &'static [Op] {
        match self {
            Op::Parse => &[],
            Op::StreamMatch => &[Op::Parse],
            Op::AccessCheck | Op::StreamRegisters => &[Op::StreamMatch],
            Op::HopLookup => &[Op::StreamRegisters],
            Op::Rewrite => &[Op::HopLookup, Op::AccessCheck],
            Op::Emit => &[Op::Rewrite],
        }
    }
}

/// Nagare's dataplane program: the ops every TLP of a stream goes through.
pub struct Program;

impl Program {
    pub const OPS: [Op; 7] = [
        Op::Parse,
        Op::StreamMatch,
        Op::AccessCheck,
        Op::StreamRegisters,
        Op::HopLookup,
        Op::Rewrite,
        Op::Emit,
    ];

    /// The stage (from 0) each op is placed in: one after its latest
    /// dependency.
    pub fn placement() -> Vec<(Op, u32)> {
        let mut placed: Vec<(Op, u32)> = Vec::new();
        for op in Self::OPS {
            let stage = op
                .deps()
                .iter()
                .filter_map(|d| placed.iter().find(|(o, _)| o == d).map(|(_, s)| s + 1))
                .max()
                .unwrap_or(0);
            placed.push((op, stage));
        }
        placed
    }

    /// Stages the program needs.
    pub fn depth() -> u32 {
        Self::placement()
            .iter()
            .map(|(_, s)| s + 1)
            .max()
            .unwrap_or(0)
    }

    /// Whether the program fits `cfg`'s pipeline.
    pub fn fits(cfg: &PipelineConfig) -> Result<(), PipelineError> {
        cfg.validate()?;
        let needed = Self::depth();
        if cfg.stages < needed {
            return Err(PipelineError::ProgramTooDeep {
                needed,
                stages: cfg.stages,
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unloaded_tlp_takes_stages_times_cycles() {
        let cfg = PipelineConfig::default();
        let mut p = Pipeline::new(&cfg).unwrap();
        let out = p.traverse(Time(1_000_000));
        // 10 stages of 3334 ps (10 cycles at 3 GHz, rounded up).
        assert_eq!(out.ps() - 1_000_000, 10 * 3334);
        assert!((cfg.closed_form_ps() - 33_333.3).abs() < 1.0);
        assert_eq!(p.stalls, 0);
    }

    #[test]
    fn a_burst_faster_than_the_interval_queues_and_keeps_order() {
        let cfg = PipelineConfig {
            initiation_interval_cycles: 10,
            ..PipelineConfig::default()
        };
        let mut p = Pipeline::new(&cfg).unwrap();
        let a = p.traverse(Time(0));
        let b = p.traverse(Time(0));
        assert!(b > a);
        assert_eq!(b - a, Duration(3334));
        assert_eq!(p.stalls, 1);
    }

    #[test]
    fn bad_configurations_and_a_too_shallow_pipeline_are_errors() {
        let d = PipelineConfig::default;
        let bad = |c: PipelineConfig| Pipeline::new(&c).unwrap_err();
        assert_eq!(
            bad(PipelineConfig { stages: 0, ..d() }),
            PipelineError::NoStages
        );
        assert_eq!(
            bad(PipelineConfig {
                cycles_per_stage: 0,
                ..d()
            }),
            PipelineError::NoCycles
        );
        assert!(matches!(
            bad(PipelineConfig {
                initiation_interval_cycles: 11,
                ..d()
            }),
            PipelineError::BadInterval { .. }
        ));
        assert_eq!(Program::depth(), 6);
        assert_eq!(
            Program::fits(&PipelineConfig { stages: 5, ..d() }),
            Err(PipelineError::ProgramTooDeep {
                needed: 6,
                stages: 5
            })
        );
        assert!(Program::fits(&d()).is_ok());
    }
}
