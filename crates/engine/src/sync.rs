//! Blocking primitives for simulated tasks: a [`Notify`] that wakes waiters
//! when some state changed, and a [`Mailbox`], a FIFO whose items become
//! visible at a given simulated time (what a wire or a bus delivers).
//!
//! Both wake tasks by id through the [`Sim`] and re-check their condition
//! on every poll, so they tolerate spurious wake-ups. Neither ever blocks
//! the host thread. A wait that is dropped before it completes takes its
//! registration with it, so an abandoned wait never costs a wake-up later.

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
            registered: None,
        }
    }
}

/// See [`Notify::notified`].
pub struct Notified<'a> {
    notify: &'a Notify,
    epoch: u64,
    /// The task put on the waiter list, once it is.
    registered: Option<TaskId>,
}

impl Future for Notified<'_> {
    type Output = ();
    fn poll(mut self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<()> {
        let notify = self.notify;
        let mut st = notify.state.borrow_mut();
        if st.epoch != self.epoch {
            return Poll::Ready(());
        }
        if self.registered.is_none() {
            let me = notify.sim.current_task();
            st.waiters.push(me);
            self.registered = Some(me);
        }
        Poll::Pending
    }
}

impl Drop for Notified<'_> {
    fn drop(&mut self) {
        let Some(me) = self.registered else { return };
        let mut st = self.notify.state.borrow_mut();
        // After a notification the waiter list was drained already. Removal
        // keeps the others' order, so wake-up order stays as it was.
        if st.epoch == self.epoch
            && let Some(i) = st.waiters.iter().position(|w| *w == me)
        {
            st.waiters.remove(i);
        }
    }
}

/// A FIFO of items that each become receivable at a time, with any number
/// of consumers: an item goes to exactly one of them, the first to look
/// once it has arrived. Items must be pushed in non-decreasing time order
/// (as a wire delivers them); an earlier time is raised to the last one so
/// order is kept.
pub struct Mailbox<T> {
    sim: Sim,
    state: RefCell<MailboxState<T>>,
}

struct MailboxState<T> {
    items: VecDeque<(Time, T)>,
    last_time: Time,
    /// Consumers waiting for the mailbox to become non-empty.
    waiters: Vec<TaskId>,
}

impl<T> Mailbox<T> {
    pub fn new(sim: &Sim) -> Mailbox<T> {
        Mailbox {
            sim: sim.clone(),
            state: RefCell::new(MailboxState {
                items: VecDeque::new(),
                last_time: Time::ZERO,
                waiters: Vec::new(),
            }),
        }
    }

    /// Deliver `item` at `time` (no earlier than the previous item).
    pub fn push_at(&self, time: Time, item: T) {
        let mut st = self.state.borrow_mut();
        let time = time.max(st.last_time);
        st.last_time = time;
        st.items.push_back((time, item));
        if st.items.len() == 1 {
            // An item pushed with a time already passed is receivable now.
            let at = time.max(self.sim.now());
            for id in st.waiters.drain(..) {
                let _ = self.sim.wake_at(at, id);
            }
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
            waiting: None,
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
    /// The task registered as waiting for an item, if it is.
    waiting: Option<TaskId>,
}

impl<T> Recv<'_, T> {
    fn deregister(&mut self) {
        if let Some(id) = self.waiting.take() {
            let mut st = self.mailbox.state.borrow_mut();
            if let Some(i) = st.waiters.iter().position(|w| *w == id) {
                st.waiters.remove(i);
            }
        }
    }
}

impl<T> Future for Recv<'_, T> {
    type Output = T;
    fn poll(mut self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<T> {
        if let Some(item) = self.mailbox.try_recv() {
            self.deregister();
            return Poll::Ready(item);
        }
        let sim = &self.mailbox.sim;
        let id = sim.current_task();
        let head = self.mailbox.head_time();
        match head {
            // The head is later than now, else try_recv would have taken it.
            Some(t) if self.armed_for != Some(t) => {
                let _ = sim.wake_at(t, id);
                self.armed_for = Some(t);
            }
            Some(_) => {}
            None => {
                // A push wakes every waiter; each looks again.
                self.deregister();
                self.mailbox.state.borrow_mut().waiters.push(id);
                self.waiting = Some(id);
            }
        }
        Poll::Pending
    }
}

impl<T> Drop for Recv<'_, T> {
    fn drop(&mut self) {
        self.deregister();
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
    fn dropped_waits_cost_nothing_later() {
        let sim = Sim::new();
        let n = Rc::new(Notify::new(&sim));
        let nn = n.clone();
        let s = sim.clone();
        sim.spawn(async move {
            for _ in 0..1000 {
                // Wait for a notification or 1 ps, whichever comes first,
                // abandoning the notification wait each time.
                let wait = nn.notified();
                let mut wait = std::pin::pin!(wait);
                let _ = std::future::poll_fn(|cx| {
                    let _ = wait.as_mut().poll(cx);
                    Poll::Ready(())
                })
                .await;
                s.sleep(Duration(1)).await;
            }
        });
        sim.run();
        let before = sim.events();
        n.notify();
        sim.run();
        assert_eq!(sim.events(), before, "no wake-up for an abandoned wait");
    }

    #[test]
    fn a_mailbox_serves_several_consumers_each_item_once() {
        let sim = Sim::new();
        let mb = Rc::new(Mailbox::new(&sim));
        let got = Rc::new(RefCell::new(Vec::new()));
        for name in ["a", "b", "c"] {
            let (s, m, g) = (sim.clone(), mb.clone(), got.clone());
            sim.spawn(async move {
                loop {
                    let x: u32 = m.recv().await;
                    g.borrow_mut().push((name, x));
                    // Busy with the item for longer than items arrive apart.
                    s.sleep(Duration(7)).await;
                }
            });
        }
        let (s, m) = (sim.clone(), mb.clone());
        sim.spawn(async move {
            for i in 0..30u32 {
                m.push_at(s.now() + Duration(5), i);
                s.sleep(Duration(3)).await;
            }
        });
        sim.run_until(Time(1_000));
        let mut items: Vec<u32> = got.borrow().iter().map(|(_, x)| *x).collect();
        items.sort_unstable();
        assert_eq!(items, (0..30).collect::<Vec<_>>(), "each item exactly once");
        let consumers: std::collections::BTreeSet<_> =
            got.borrow().iter().map(|(n, _)| *n).collect();
        assert!(consumers.len() > 1, "more than one consumer was served");
        sim.shutdown();
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
