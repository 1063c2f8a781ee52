//! Blocking primitives for simulated tasks: a [`Notify`] that wakes waiters
//! when some state changed, and a [`Mailbox`], a FIFO whose items become
//! visible at a given simulated time (what a wire or a bus delivers).
//!
//! Both wake tasks by id through the [`Sim`] and re-check their condition
//! on every poll, so they tolerate spurious wake-ups. Neither ever blocks
//! the host thread.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use crate::sim::{Sim, TaskId};
use crate::time::Time;

/// Wakes every task waiting on it. A waiter that started waiting before a
/// notification completes; one that starts after it waits for the next.
pub struct Notify {
    sim: Sim,
    state: RefCell<NotifyState>,
}

struct NotifyState {
    epoch: u64,
    waiters: Vec<TaskId>,
}

impl Notify {
    pub fn new(sim: &Sim) -> Notify {
        Notify {
            sim: sim.clone(),
            state: RefCell::new(NotifyState {
                epoch: 0,
                waiters: Vec::new(),
            }),
        }
    }

    /// Wake every current waiter (at the current time).
    pub fn notify(&self) {
        let mut st = self.state.borrow_mut();
        st.epoch += 1;
        for id in st.waiters.drain(..) {
            self.sim.wake(id);
        }
    }

    /// A future that completes at the next [`Notify::notify`].
    pub fn notified(&self) -> Notified<'_> {
        let epoch = self.state.borrow().epoch;
        Notified {
            notify: self,
            epoch,
            registered: false,
        }
    }
}

/// See [`Notify::notified`].
pub struct Notified<'a> {
    notify: &'a Notify,
    epoch: u64,
    registered: bool,
}

impl Future for Notified<'_> {
    type Output = ();
    fn poll(mut self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<()> {
        let notify = self.notify;
        let mut st = notify.state.borrow_mut();
        if st.epoch != self.epoch {
            return Poll::Ready(());
        }
        if !self.registered {
            st.waiters.push(notify.sim.current_task());
            self.registered = true;
        }
        Poll::Pending
    }
}

/// A single-consumer FIFO of items that each become receivable at a time.
/// Items must be pushed in non-decreasing time order (as a wire delivers
/// them); an earlier time is raised to the last one so order is kept.
pub struct Mailbox<T> {
    sim: Sim,
    state: RefCell<MailboxState<T>>,
}

struct MailboxState<T> {
    items: VecDeque<(Time, T)>,
    last_time: Time,
    waiter: Option<TaskId>,
}

impl<T> Mailbox<T> {
    pub fn new(sim: &Sim) -> Mailbox<T> {
        Mailbox {
            sim: sim.clone(),
            state: RefCell::new(MailboxState {
                items: VecDeque::new(),
                last_time: Time::ZERO,
                waiter: None,
            }),
        }
    }

    /// Deliver `item` at `time` (no earlier than the previous item).
    pub fn push_at(&self, time: Time, item: T) {
        let mut st = self.state.borrow_mut();
        let time = time.max(st.last_time);
        st.last_time = time;
        st.items.push_back((time, item));
        if st.items.len() == 1
            && let Some(id) = st.waiter.take()
        {
            self.sim.wake_at(time, id);
        }
    }

    /// Take the head if it has arrived.
    pub fn try_recv(&self) -> Option<T> {
        let mut st = self.state.borrow_mut();
        match st.items.front() {
            Some((t, _)) if *t <= self.sim.now() => st.items.pop_front().map(|(_, x)| x),
            _ => None,
        }
    }

    /// Wait for the head to arrive and take it.
    pub fn recv(&self) -> Recv<'_, T> {
        Recv {
            mailbox: self,
            armed_for: None,
        }
    }

    /// Items pushed and not yet received, arrived or not.
    pub fn len(&self) -> usize {
        self.state.borrow().items.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// When the head item arrives, if there is one.
    pub fn head_time(&self) -> Option<Time> {
        self.state.borrow().items.front().map(|(t, _)| *t)
    }
}

/// See [`Mailbox::recv`].
pub struct Recv<'a, T> {
    mailbox: &'a Mailbox<T>,
    armed_for: Option<Time>,
}

impl<T> Future for Recv<'_, T> {
    type Output = T;
    fn poll(mut self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<T> {
        if let Some(item) = self.mailbox.try_recv() {
            return Poll::Ready(item);
        }
        let sim = &self.mailbox.sim;
        let id = sim.current_task();
        let head = self.mailbox.head_time();
        match head {
            Some(t) if self.armed_for != Some(t) => {
                sim.wake_at(t, id);
                self.armed_for = Some(t);
            }
            Some(_) => {}
            None => self.mailbox.state.borrow_mut().waiter = Some(id),
        }
        Poll::Pending
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::time::Duration;
    use std::cell::Cell;
    use std::rc::Rc;

    #[test]
    fn mailbox_delivers_at_item_time_in_order() {
        let sim = Sim::new();
        let mb = Rc::new(Mailbox::new(&sim));
        let got = Rc::new(RefCell::new(Vec::new()));
        let (s, m, g) = (sim.clone(), mb.clone(), got.clone());
        sim.spawn(async move {
            for _ in 0..3 {
                let x: u32 = m.recv().await;
                g.borrow_mut().push((s.now().0, x));
            }
        });
        let (s, m) = (sim.clone(), mb.clone());
        sim.spawn(async move {
            s.sleep(Duration(10)).await;
            m.push_at(Time(50), 1);
            m.push_at(Time(20), 2); // raised to 50: FIFO kept
            m.push_at(Time(90), 3);
        });
        sim.run();
        assert_eq!(*got.borrow(), vec![(50, 1), (50, 2), (90, 3)]);
    }

    #[test]
    fn notify_wakes_only_earlier_waiters() {
        let sim = Sim::new();
        let n = Rc::new(Notify::new(&sim));
        let woke = Rc::new(Cell::new(0u64));
        let (s, nn, w) = (sim.clone(), n.clone(), woke.clone());
        sim.spawn(async move {
            nn.notified().await;
            w.set(s.now().0);
        });
        let (s, nn) = (sim.clone(), n.clone());
        sim.spawn(async move {
            s.sleep(Duration(40)).await;
            nn.notify();
        });
        sim.run();
        assert_eq!(woke.get(), 40);
    }
}
