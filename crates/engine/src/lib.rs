//! The bottom layer of nextio: simulated time, the event queue and the
//! executor that runs simulated software as async tasks, the seeded random
//! number generator, statistics and tracing.
//!
//! Nothing here knows about hardware. Everything above builds on three
//! promises this crate keeps:
//!
//! * time is an integer count of picoseconds and never goes backwards;
//! * events fire in `(time, insertion sequence)` order, so a run is a pure
//!   function of its configuration and seed;
//! * a task only advances time by awaiting something that costs time
//!   ([`Sim::sleep`], [`Sim::sleep_until`]) or by waiting on a
//!   [`Notify`]/[`Mailbox`]; polling a task never consumes simulated time.

pub mod ledger;
pub mod queue;
pub mod rng;
pub mod sim;
pub mod stats;
pub mod stats_report;
pub mod sync;
pub mod time;
pub mod trace;

pub use ledger::{Category, Ledger};
pub use rng::SimRng;
pub use sim::{PastError, Sim, TaskId};
pub use stats::{Counters, LatencyHist};
pub use stats_report::{StatValue, StatsReport};
pub use sync::{Mailbox, Notify};
pub use time::{Duration, Freq, Rate, Serializer, Time};
pub use trace::{HostId, TraceConfig, TraceSink, TrackId};
