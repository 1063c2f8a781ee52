//! What each DMA tag and timer token the NIC hands the fabric stands for,
//! so a completion, a fault or a timer finds the work it belongs to.
//!
//! A tag packs the operation, the queue and a sequence number into 64 bits.
//! Sequence numbers come from one counter per NIC and are never reused
//! (40 bits last for 10^12 operations), so a completion that outlives the
//! state it was for (a queue reconfigured meanwhile) matches nothing and is
//! ignored rather than misread.

/// What a DMA or timer was for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Op {
    /// A read of RX descriptors into the descriptor cache.
    RxFetch = 1,
    /// A frame's bytes written into its RX buffer.
    RxData = 2,
    /// RX descriptors written back.
    RxWriteBack = 3,
    /// A read of TX descriptors.
    TxFetch = 4,
    /// A read of a packet's bytes for transmission.
    TxData = 5,
    /// A TX descriptor written back (RS).
    TxWriteBack = 6,
    /// Timer: write back a queue's partial batch.
    WriteBackFlush = 7,
    /// Timer: a frame leaves the receive pipeline.
    Pipeline = 8,
}

impl Op {
    fn from_u8(v: u8) -> Option<Op> {
        Some(match v {
            1 => Op::RxFetch,
            2 => Op::RxData,
            3 => Op::RxWriteBack,
            4 => Op::TxFetch,
            5 => Op::TxData,
            6 => Op::TxWriteBack,
            7 => Op::WriteBackFlush,
            8 => Op::Pipeline,
            _ => return None,
        })
    }
}

const SEQ_BITS: u32 = 40;
const SEQ_MASK: u64 = (1 << SEQ_BITS) - 1;
const QUEUE_SHIFT: u32 = SEQ_BITS;
const OP_SHIFT: u32 = 56;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Tag {
    pub op: Op,
    pub queue: usize,
    /// Only the low 40 bits are kept.
    pub seq: u64,
}

impl Tag {
    pub fn new(op: Op, queue: usize, seq: u64) -> Tag {
        Tag {
            op,
            queue,
            seq: seq & SEQ_MASK,
        }
    }

    /// Queues fit in 16 bits: the NIC has at most
    /// [`super::regs::MAX_QUEUES`].
    pub fn encode(self) -> u64 {
        ((self.op as u64) << OP_SHIFT) | ((self.queue as u64 & 0xffff) << QUEUE_SHIFT) | self.seq
    }

    pub fn decode(raw: u64) -> Option<Tag> {
        Some(Tag {
            op: Op::from_u8((raw >> OP_SHIFT) as u8)?,
            queue: ((raw >> QUEUE_SHIFT) & 0xffff) as usize,
            seq: raw & SEQ_MASK,
        })
    }
}

/// Hands out sequence numbers.
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct Sequence(u64);

impl Sequence {
    pub fn next(&mut self) -> u64 {
        self.0 = (self.0 + 1) & SEQ_MASK;
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_round_trip_and_garbage_decodes_to_nothing() {
        for op in [Op::RxFetch, Op::TxData, Op::Pipeline] {
            let t = Tag::new(op, 2047, (1 << 40) + 5);
            assert_eq!(t.seq, 5);
            assert_eq!(Tag::decode(t.encode()), Some(t));
        }
        assert_eq!(Tag::decode(0), None);
        assert_eq!(Tag::decode(u64::MAX), None);
    }
}
