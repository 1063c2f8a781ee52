//! The simulator: a clock, an event queue and a single-threaded executor
//! that runs simulated software and device processes as async Rust tasks.
//!
//! A task advances simulated time only by awaiting a future that says what
//! it waits for ([`Sim::sleep`], a [`crate::Notify`], a [`crate::Mailbox`]).
//! Wake-ups are events in the one queue, so tasks and plain callbacks
//! ([`Sim::at`]) interleave in a single deterministic `(time, sequence)`
//! order.
//!
//! Design choices and the invariants they keep:
//! * Tasks are woken by [`TaskId`], not through `std::task::Waker`: the
//!   primitives in this crate record `sim.current_task()` when they block.
//!   Tasks are polled with a no-op waker, so no unsafe code is needed and a
//!   waker can never leak to another thread. Every primitive re-checks its
//!   condition when polled, so a spurious wake-up is harmless.
//! * A task id carries a generation: waking a finished task whose slot was
//!   reused does nothing.
//! * Tasks hold clones of the `Sim`, which is a reference cycle; call
//!   [`Sim::shutdown`] when a run is over to drop every task. Shutting down
//!   from inside a task is safe: the running task is dropped when its poll
//!   returns.
//! * The past cannot be scheduled: [`Sim::at`] and [`Sim::wake_at`] refuse a
//!   time before now with a [`PastError`] rather than silently moving it, so
//!   a model that computes a wrong time is told instead of mistimed.

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};

use crate::queue::EventQueue;
use crate::stats_report::StatsReport;
use crate::time::{Duration, Time};
use crate::trace::{HostId, TraceConfig, TraceSink, TrackId};

/// A request to schedule something before the current time: always a bug in
/// the model that computed the time, so it is reported, never clamped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PastError {
    pub requested: Time,
    pub now: Time,
}

impl std::fmt::Display for PastError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "an event was scheduled at {} ps, before the current time {} ps",
            self.requested.ps(),
            self.now.ps()
        )
    }
}

impl std::error::Error for PastError {}

/// Identifies a spawned task. Stale ids (the task finished) are ignored.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct TaskId {
    index: u32,
    generation: u32,
}

type BoxFuture = Pin<Box<dyn Future<Output = ()>>>;
type Callback = Box<dyn FnOnce()>;

/// What an event does, packed in eight bytes so heap entries stay small
/// (sifting the heap is bound by memory traffic): either wake a task
/// (`generation << 32 | index`, top bit clear) or run the callback parked
/// in slot `n` of the callback table (`1 << 63 | n`).
#[derive(Clone, Copy)]
struct Action(u64);

const CALL_BIT: u64 = 1 << 63;
/// Generations wrap below the call bit.
const GENERATION_MASK: u32 = 0x7fff_ffff;

impl Action {
    fn wake(id: TaskId) -> Action {
        Action((id.generation as u64) << 32 | id.index as u64)
    }
    fn call(slot: u32) -> Action {
        Action(CALL_BIT | slot as u64)
    }
    fn decode(self) -> Result<TaskId, u32> {
        if self.0 & CALL_BIT == 0 {
            Ok(TaskId {
                index: self.0 as u32,
                generation: (self.0 >> 32) as u32,
            })
        } else {
            Err(self.0 as u32)
        }
    }
}

struct Slot {
    generation: u32,
    /// `None` while the task is being polled or after it finished.
    future: Option<BoxFuture>,
    alive: bool,
}

struct Inner {
    now: Cell<Time>,
    queue: RefCell<EventQueue<Action>>,
    /// Callbacks waiting for their event, and the free slots among them.
    calls: RefCell<Vec<Option<Callback>>>,
    free_calls: RefCell<Vec<u32>>,
    slots: RefCell<Vec<Slot>>,
    free_slots: RefCell<Vec<u32>>,
    current: Cell<Option<TaskId>>,
    events: Cell<u64>,
    live_tasks: Cell<usize>,
    stopped: Cell<bool>,
    /// Mirrors `trace.is_some()`, so a model asks with one flag test.
    trace_on: Cell<bool>,
    trace: RefCell<Option<TraceSink>>,
    /// Components that add their counters to the report, when one is
    /// collected; registered only while stats are on.
    stats_on: Cell<bool>,
    stats_sources: RefCell<Vec<StatsSource>>,
    /// Hosts built so far: each is named by its index in traces and stats.
    hosts: Cell<u32>,
    /// How many components of each kind (other than hosts) were named.
    component_indices: RefCell<std::collections::BTreeMap<&'static str, u32>>,
}

type StatsSource = Box<dyn Fn(&mut StatsReport)>;

/// A handle to one simulation. Cheap to clone; all clones share the clock.
#[derive(Clone)]
pub struct Sim(Rc<Inner>);

impl Default for Sim {
    fn default() -> Self {
        Sim::new()
    }
}

impl Sim {
    pub fn new() -> Sim {
        Sim(Rc::new(Inner {
            now: Cell::new(Time::ZERO),
            queue: RefCell::new(EventQueue::new()),
            calls: RefCell::new(Vec::new()),
            free_calls: RefCell::new(Vec::new()),
            slots: RefCell::new(Vec::new()),
            free_slots: RefCell::new(Vec::new()),
            current: Cell::new(None),
            events: Cell::new(0),
            live_tasks: Cell::new(0),
            stopped: Cell::new(false),
            trace_on: Cell::new(false),
            trace: RefCell::new(None),
            stats_on: Cell::new(false),
            stats_sources: RefCell::new(Vec::new()),
            hosts: Cell::new(0),
            component_indices: RefCell::new(std::collections::BTreeMap::new()),
        }))
    }

    /// The current simulated time.
    pub fn now(&self) -> Time {
        self.0.now.get()
    }

    /// Events processed so far (task wake-ups and callbacks).
    pub fn events(&self) -> u64 {
        self.0.events.get()
    }

    /// Tasks spawned and not yet finished.
    pub fn live_tasks(&self) -> usize {
        self.0.live_tasks.get()
    }

    /// The task being polled. Panics outside a task: blocking primitives
    /// can only be awaited from inside one.
    pub fn current_task(&self) -> TaskId {
        self.0
            .current
            .get()
            .expect("a simulation primitive was awaited outside a simulated task")
    }

    /// Start `future` as a task; it is first polled at the current time,
    /// after the events already queued for this instant.
    pub fn spawn(&self, future: impl Future<Output = ()> + 'static) -> TaskId {
        let future: BoxFuture = Box::pin(future);
        let id = {
            let mut slots = self.0.slots.borrow_mut();
            match self.0.free_slots.borrow_mut().pop() {
                Some(index) => {
                    let slot = &mut slots[index as usize];
                    slot.generation = slot.generation.wrapping_add(1) & GENERATION_MASK;
                    slot.future = Some(future);
                    slot.alive = true;
                    TaskId {
                        index,
                        generation: slot.generation,
                    }
                }
                None => {
                    let index = u32::try_from(slots.len()).expect("more than 4 billion live tasks");
                    slots.push(Slot {
                        generation: 0,
                        future: Some(future),
                        alive: true,
                    });
                    TaskId {
                        index,
                        generation: 0,
                    }
                }
            }
        };
        self.0.live_tasks.set(self.0.live_tasks.get() + 1);
        self.wake(id);
        id
    }

    fn check_future(&self, time: Time) -> Result<(), PastError> {
        if time < self.now() {
            Err(PastError {
                requested: time,
                now: self.now(),
            })
        } else {
            Ok(())
        }
    }

    /// Poll task `id` at `time`, which must not be in the past.
    pub fn wake_at(&self, time: Time, id: TaskId) -> Result<(), PastError> {
        self.check_future(time)?;
        self.0.queue.borrow_mut().push(time, Action::wake(id));
        Ok(())
    }

    /// Poll task `id` at the current time, after what is already queued.
    pub fn wake(&self, id: TaskId) {
        self.0.queue.borrow_mut().push(self.now(), Action::wake(id));
    }

    /// Run `f` at `time`, which must not be in the past.
    pub fn at(&self, time: Time, f: impl FnOnce() + 'static) -> Result<(), PastError> {
        self.check_future(time)?;
        self.push_call(time, Box::new(f));
        Ok(())
    }

    /// Run `f` after `delay` (never in the past).
    pub fn after(&self, delay: Duration, f: impl FnOnce() + 'static) {
        self.push_call(self.now() + delay, Box::new(f));
    }

    fn push_call(&self, time: Time, f: Callback) {
        let slot = {
            let mut calls = self.0.calls.borrow_mut();
            match self.0.free_calls.borrow_mut().pop() {
                Some(slot) => {
                    calls[slot as usize] = Some(f);
                    slot
                }
                None => {
                    calls.push(Some(f));
                    u32::try_from(calls.len() - 1).expect("fewer than 2^32 pending callbacks")
                }
            }
        };
        self.0.queue.borrow_mut().push(time, Action::call(slot));
    }

    /// A future that completes at `now + d`.
    pub fn sleep(&self, d: Duration) -> Sleep {
        Sleep {
            sim: self.clone(),
            deadline: self.now() + d,
            armed: false,
        }
    }

    /// A future that completes at `deadline` (at once if it has passed).
    pub fn sleep_until(&self, deadline: Time) -> Sleep {
        Sleep {
            sim: self.clone(),
            deadline,
            armed: false,
        }
    }

    /// Let every other event queued for this instant run first.
    pub fn yield_now(&self) -> YieldNow {
        YieldNow {
            sim: self.clone(),
            yielded: false,
        }
    }

    /// Ask the running loop to return after the current event.
    pub fn stop(&self) {
        self.0.stopped.set(true);
    }

    /// Process events until none are left or [`Sim::stop`] is called.
    pub fn run(&self) {
        self.run_until(Time::MAX);
    }

    /// Process every event due at or before `deadline`, then leave the clock
    /// at `deadline` (if the loop was not stopped earlier and `deadline` is
    /// finite), so that measurements over a window see the whole window.
    pub fn run_until(&self, deadline: Time) {
        self.0.stopped.set(false);
        loop {
            if self.0.stopped.get() {
                return;
            }
            let next = {
                let mut q = self.0.queue.borrow_mut();
                match q.peek_time() {
                    Some(t) if t <= deadline => q.pop(),
                    _ => None,
                }
            };
            let Some((time, action)) = next else { break };
            self.0.now.set(time);
            self.0.events.set(self.0.events.get() + 1);
            match action.decode() {
                Ok(id) => self.poll_task(id),
                Err(slot) => {
                    let f = self.0.calls.borrow_mut()[slot as usize].take();
                    self.0.free_calls.borrow_mut().push(slot);
                    if let Some(f) = f {
                        f();
                    }
                }
            }
        }
        if deadline != Time::MAX && self.now() < deadline {
            self.0.now.set(deadline);
        }
    }

    /// Advance by `d`, running everything due in between.
    pub fn run_for(&self, d: Duration) {
        self.run_until(self.now() + d);
    }

    fn poll_task(&self, id: TaskId) {
        let future = {
            let mut slots = self.0.slots.borrow_mut();
            match slots.get_mut(id.index as usize) {
                Some(slot) if slot.generation == id.generation && slot.alive => slot.future.take(),
                _ => None,
            }
        };
        // None: stale id, or a task that woke itself and is being polled.
        let Some(mut future) = future else { return };
        let previous = self.0.current.replace(Some(id));
        let mut cx = Context::from_waker(Waker::noop());
        let done = future.as_mut().poll(&mut cx).is_ready();
        self.0.current.set(previous);
        let mut slots = self.0.slots.borrow_mut();
        let slot = match slots.get_mut(id.index as usize) {
            Some(slot) if slot.generation == id.generation && slot.alive => slot,
            // The task shut the simulator down while it ran: its slot is
            // gone, so the future is dropped here, outside every borrow.
            _ => {
                drop(slots);
                drop(future);
                return;
            }
        };
        if done {
            slot.alive = false;
            self.0.free_slots.borrow_mut().push(id.index);
            self.0.live_tasks.set(self.0.live_tasks.get() - 1);
            drop(slots);
            drop(future);
        } else {
            slot.future = Some(future);
        }
    }

    /// Drop every task and pending event, breaking the reference cycles
    /// between tasks and the simulator. The clock and counters stay.
    pub fn shutdown(&self) {
        self.0.queue.borrow_mut().clear();
        let calls = std::mem::take(&mut *self.0.calls.borrow_mut());
        self.0.free_calls.borrow_mut().clear();
        drop(calls);
        let futures: Vec<_> = self
            .0
            .slots
            .borrow_mut()
            .iter_mut()
            .filter_map(|s| s.future.take())
            .collect();
        self.0.slots.borrow_mut().clear();
        self.0.free_slots.borrow_mut().clear();
        self.0.live_tasks.set(0);
        drop(futures);
        let sources = std::mem::take(&mut *self.0.stats_sources.borrow_mut());
        drop(sources);
    }

    /// The index of a host being built (0, 1, …): how traces and stats
    /// name it.
    pub fn new_host_index(&self) -> u32 {
        let n = self.0.hosts.get();
        self.0.hosts.set(n + 1);
        n
    }

    /// The index of a component of `kind` being built (0, 1, … per kind,
    /// in build order): how stats name, say, the second traffic generator.
    pub fn new_component_index(&self, kind: &'static str) -> u32 {
        let mut all = self.0.component_indices.borrow_mut();
        let n = all.entry(kind).or_insert(0);
        *n += 1;
        *n - 1
    }

    /// Keep the components built from now on, to collect every counter of
    /// the simulation with [`Sim::collect_stats`] (off by default).
    pub fn enable_stats(&self) {
        self.0.stats_on.set(true);
    }

    pub fn stats_enabled(&self) -> bool {
        self.0.stats_on.get()
    }

    /// Add `source` to the components whose counters a report collects
    /// (nothing when stats are off). Sources are dropped at
    /// [`Sim::shutdown`], so the simulator keeps nothing alive past it.
    pub fn on_stats(&self, source: impl Fn(&mut StatsReport) + 'static) {
        if self.stats_enabled() {
            self.0.stats_sources.borrow_mut().push(Box::new(source));
        }
    }

    /// Every registered component's counters, now (`None` when stats are
    /// off).
    pub fn collect_stats(&self) -> Option<StatsReport> {
        if !self.stats_enabled() {
            return None;
        }
        let mut report = StatsReport::new();
        for source in self.0.stats_sources.borrow().iter() {
            source(&mut report);
        }
        Some(report)
    }

    /// Start recording the structured trace (off by default: models then
    /// register no tracks and record nothing).
    pub fn enable_trace(&self, config: TraceConfig) {
        *self.0.trace.borrow_mut() = Some(TraceSink::new(config));
        self.0.trace_on.set(true);
    }

    pub fn trace_enabled(&self) -> bool {
        self.0.trace_on.get()
    }

    /// Register a host to group tracks under (`None` when not tracing).
    pub fn trace_host(&self, name: impl FnOnce() -> String) -> Option<HostId> {
        if !self.trace_enabled() {
            return None;
        }
        Some(self.0.trace.borrow_mut().as_mut()?.host(name()))
    }

    /// Register track `name` of `host`; `None` when not tracing or when the
    /// filter leaves the track out. `name` is only evaluated when tracing.
    pub fn trace_track(
        &self,
        host: Option<HostId>,
        name: impl FnOnce() -> String,
    ) -> Option<TrackId> {
        let host = host?;
        self.0.trace.borrow_mut().as_mut()?.track(host, name())
    }

    /// Record a span of `dur` from `start` on `track`.
    pub fn trace_span(
        &self,
        track: TrackId,
        name: &'static str,
        category: &'static str,
        start: Time,
        dur: Duration,
    ) {
        self.record_span(track, name, category, start, dur, None);
    }

    /// [`Sim::trace_span`] with one numeric argument (bytes, a vector).
    pub fn trace_span_arg(
        &self,
        track: TrackId,
        name: &'static str,
        category: &'static str,
        start: Time,
        dur: Duration,
        arg: (&'static str, u64),
    ) {
        self.record_span(track, name, category, start, dur, Some(arg));
    }

    fn record_span(
        &self,
        track: TrackId,
        name: &'static str,
        category: &'static str,
        start: Time,
        dur: Duration,
        arg: Option<(&'static str, u64)>,
    ) {
        if let Some(t) = self.0.trace.borrow_mut().as_mut() {
            t.span(track, name, category, start, dur, arg);
        }
    }

    /// Record that `track`'s counter `name` holds `value` from `at` on.
    pub fn trace_counter(&self, track: TrackId, name: &'static str, at: Time, value: u64) {
        if let Some(t) = self.0.trace.borrow_mut().as_mut() {
            t.counter(track, name, at, value);
        }
    }

    /// Record an instant at `at` on `track`, with an optional argument.
    pub fn trace_instant(
        &self,
        track: TrackId,
        name: &'static str,
        category: &'static str,
        at: Time,
        arg: Option<(&'static str, u64)>,
    ) {
        if let Some(t) = self.0.trace.borrow_mut().as_mut() {
            t.instant(track, name, category, at, arg);
        }
    }

    /// Take the recorded trace (`None` when not tracing); tracing stops.
    pub fn take_trace(&self) -> Option<TraceSink> {
        self.0.trace_on.set(false);
        self.0.trace.borrow_mut().take()
    }
}

/// Completes at a fixed simulated time. See [`Sim::sleep`].
pub struct Sleep {
    sim: Sim,
    deadline: Time,
    armed: bool,
}

impl Sleep {
    pub fn deadline(&self) -> Time {
        self.deadline
    }
}

impl Future for Sleep {
    type Output = ();
    fn poll(mut self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<()> {
        if self.sim.now() >= self.deadline {
            return Poll::Ready(());
        }
        if !self.armed {
            self.armed = true;
            let id = self.sim.current_task();
            // The deadline is later than now (checked above).
            let _ = self.sim.wake_at(self.deadline, id);
        }
        Poll::Pending
    }
}

/// See [`Sim::yield_now`].
pub struct YieldNow {
    sim: Sim,
    yielded: bool,
}

impl Future for YieldNow {
    type Output = ();
    fn poll(mut self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<()> {
        if self.yielded {
            return Poll::Ready(());
        }
        self.yielded = true;
        let id = self.sim.current_task();
        self.sim.wake(id);
        Poll::Pending
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sleeps_advance_time_exactly() {
        let sim = Sim::new();
        let log = Rc::new(RefCell::new(Vec::new()));
        for (name, step) in [("a", 3u64), ("b", 5)] {
            let (s, log) = (sim.clone(), log.clone());
            sim.spawn(async move {
                for _ in 0..3 {
                    s.sleep(Duration(step)).await;
                    log.borrow_mut().push((s.now().0, name));
                }
            });
        }
        sim.run();
        assert_eq!(
            *log.borrow(),
            vec![(3, "a"), (5, "b"), (6, "a"), (9, "a"), (10, "b"), (15, "b")]
        );
        assert_eq!(sim.live_tasks(), 0);
    }

    #[test]
    fn callbacks_and_tasks_share_one_order() {
        let sim = Sim::new();
        let log = Rc::new(RefCell::new(Vec::new()));
        let l = log.clone();
        sim.at(Time(10), move || l.borrow_mut().push("call"))
            .unwrap();
        let (s, l) = (sim.clone(), log.clone());
        sim.spawn(async move {
            s.sleep_until(Time(10)).await;
            l.borrow_mut().push("task");
        });
        sim.run();
        assert_eq!(*log.borrow(), vec!["call", "task"]);
    }

    #[test]
    fn stale_wakes_are_ignored_and_slots_reused() {
        let sim = Sim::new();
        let id = sim.spawn(async {});
        sim.run();
        sim.wake(id);
        let ran = Rc::new(Cell::new(0));
        let r = ran.clone();
        let s = sim.clone();
        sim.spawn(async move {
            s.sleep(Duration(5)).await;
            r.set(r.get() + 1);
        });
        sim.run();
        assert_eq!(ran.get(), 1);
    }

    #[test]
    fn run_until_leaves_clock_at_deadline() {
        let sim = Sim::new();
        let s = sim.clone();
        sim.spawn(async move {
            loop {
                s.sleep(Duration(7)).await;
            }
        });
        sim.run_until(Time(100));
        assert_eq!(sim.now(), Time(100));
        assert_eq!(sim.events(), 1 + 100 / 7);
        sim.shutdown();
        assert_eq!(sim.live_tasks(), 0);
    }

    #[test]
    fn the_past_cannot_be_scheduled() {
        let sim = Sim::new();
        sim.at(Time(10), || {}).unwrap();
        sim.run();
        assert_eq!(
            sim.at(Time(5), || {}),
            Err(PastError {
                requested: Time(5),
                now: Time(10)
            })
        );
        let id = sim.spawn(async {});
        assert!(sim.wake_at(Time(9), id).is_err());
        assert!(sim.wake_at(Time(10), id).is_ok());
        let ran = Rc::new(Cell::new(false));
        let r = ran.clone();
        sim.after(Duration(0), move || r.set(true));
        sim.run();
        assert!(ran.get());
    }

    #[test]
    fn a_task_may_shut_the_simulator_down() {
        let sim = Sim::new();
        let s = sim.clone();
        let dropped = Rc::new(Cell::new(0));
        struct Guard(Rc<Cell<u32>>);
        impl Drop for Guard {
            fn drop(&mut self) {
                self.0.set(self.0.get() + 1);
            }
        }
        for _ in 0..3 {
            let (s, g) = (sim.clone(), Guard(dropped.clone()));
            sim.spawn(async move {
                let _g = g;
                s.sleep(Duration(100)).await;
            });
        }
        let g = Guard(dropped.clone());
        sim.spawn(async move {
            let _g = g;
            s.sleep(Duration(10)).await;
            s.shutdown();
            // Still running after the shutdown: the future outlives its slot.
            s.stop();
        });
        sim.run();
        assert_eq!(dropped.get(), 4, "every task was dropped");
        assert_eq!(sim.live_tasks(), 0);
        assert_eq!(sim.now(), Time(10));
        // The simulator stays usable.
        let ran = Rc::new(Cell::new(false));
        let r = ran.clone();
        sim.spawn(async move { r.set(true) });
        sim.run();
        assert!(ran.get());
    }

    #[test]
    fn trace_is_off_by_default_and_names_are_lazy() {
        let sim = Sim::new();
        assert!(
            sim.trace_host(|| panic!("must not be evaluated when tracing is off"))
                .is_none()
        );
        assert!(sim.take_trace().is_none());
        sim.enable_trace(crate::TraceConfig::default());
        let host = sim.trace_host(|| "host0".into());
        let core = sim.trace_track(host, || "core 0".into()).unwrap();
        let s = sim.clone();
        sim.spawn(async move {
            s.sleep(Duration(5)).await;
            s.trace_span(core, "application", "cpu", Time(0), Duration(5));
            s.trace_instant(core, "msi", "interrupt", s.now(), Some(("vector", 3)));
        });
        sim.run();
        let trace = sim.take_trace().unwrap();
        assert_eq!(trace.len(), 2);
        assert!(!sim.trace_enabled());
    }
}
