//! One queue's MSI-X-like interrupt: its vector, whether it is armed, and
//! its pending bit.
//!
//! Software arms a vector by writing `GLINT_DYN_CTL(q)` with `INTENA`. The
//! next RX write-back on an armed queue sends the vector's message and
//! masks it until software arms it again. A write-back while masked sets
//! the pending bit (the MSI-X Pending Bit Array); arming a pending vector
//! sends its message at once. So no write-back is ever lost to a race
//! between a handler's last look at the ring and its re-arm, and an armed
//! vector sends exactly one message per arming.
//!
//! This is the state machine alone: it answers "send vector `v` now" and
//! the NIC sends it.

/// A `GLINT_DYN_CTL` write to a queue that has no vector.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct NotConfigured;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(super) struct QueueIrq {
    /// The MSI-X table entry the queue's messages use.
    vector: Option<u16>,
    /// Armed (unmasked): the next write-back sends the message.
    armed: bool,
    /// A write-back happened while masked.
    pending: bool,
}

impl QueueIrq {
    /// A queue using MSI-X table entry `vector`, masked and not pending.
    pub fn with_vector(vector: u16) -> QueueIrq {
        QueueIrq {
            vector: Some(vector),
            ..QueueIrq::default()
        }
    }

    pub fn armed(&self) -> bool {
        self.armed
    }

    /// `GLINT_DYN_CTL` was written with `value`: `INTENA` arms the vector,
    /// its absence masks it. Returns the vector to send now, if arming
    /// found a write-back pending.
    pub fn dyn_ctl(&mut self, value: u32) -> Result<Option<u16>, NotConfigured> {
        if self.vector.is_none() {
            return Err(NotConfigured);
        }
        self.armed = value & super::regs::DYN_CTL_INTENA != 0;
        Ok(if self.pending { self.fire() } else { None })
    }

    /// The queue's descriptors were written back: the vector to send now,
    /// if armed; otherwise the write-back is remembered as pending.
    pub fn written_back(&mut self) -> Option<u16> {
        self.vector?;
        self.pending = true;
        self.fire()
    }

    /// Send (if armed) and mask.
    fn fire(&mut self) -> Option<u16> {
        if !self.armed {
            return None;
        }
        self.armed = false;
        self.pending = false;
        self.vector
    }
}

#[cfg(test)]
mod tests {
    use super::super::regs::DYN_CTL_INTENA;
    use super::*;

    #[test]
    fn one_message_per_arming_and_none_lost_while_masked() {
        let mut irq = QueueIrq::with_vector(7);
        assert_eq!(irq.written_back(), None, "masked: pending only");
        assert_eq!(
            irq.dyn_ctl(DYN_CTL_INTENA),
            Ok(Some(7)),
            "arming a pending vector"
        );
        assert_eq!(irq.written_back(), None, "masked again after sending");
        assert_eq!(irq.dyn_ctl(DYN_CTL_INTENA), Ok(Some(7)));
        assert_eq!(irq.dyn_ctl(DYN_CTL_INTENA), Ok(None), "nothing pending");
        assert_eq!(irq.written_back(), Some(7));
        assert_eq!(irq.written_back(), None);
        assert_eq!(irq.dyn_ctl(0), Ok(None), "masking keeps it pending");
        assert_eq!(irq.dyn_ctl(DYN_CTL_INTENA), Ok(Some(7)));
        let mut none = QueueIrq::default();
        assert_eq!(none.written_back(), None);
        assert_eq!(none.dyn_ctl(DYN_CTL_INTENA), Err(NotConfigured));
    }
}
