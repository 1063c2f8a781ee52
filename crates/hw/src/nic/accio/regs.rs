//! The Accio NIC's offload-engine registers (its BAR 1; BAR 0 is the
//! packetized NIC's, for the ordinary kernel path).
//!
//! Every register is one 8-byte beat, except `NOTIFY`, which the table
//! writes as a 16-byte pair.

/// Size of BAR 1.
pub const BAR1_BYTES: u64 = 4096;

/// Written by the connection table when a core moved a row's `TX_TAIL`:
/// core (bits 0..16) and connection (16..48) in the first beat, the new
/// tail in the second.
pub const NOTIFY: u64 = 0x00;
/// Written by the kernel: op (bits 0..8), core (8..16), connection
/// (16..48) — see [`FlowOp`].
pub const FLOW_CMD: u64 = 0x10;
/// Read: bit 0 link up, bit 1 engine ready.
pub const ENGINE_STATE: u64 = 0x18;

/// What a `FLOW_CMD` asks of the engine for one connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FlowOp {
    /// Forget what is cached of the row; the connection's table is now the
    /// core given (a refill elsewhere, a migration).
    Invalidate = 1,
    /// Send the connection's traffic to the kernel path.
    Fallback = 2,
    /// Take the connection back on the fast path.
    Resume = 3,
    /// The row is resident again (refilled): post the pointers, deliver
    /// the frames held for it.
    Retry = 4,
}

impl FlowOp {
    pub fn from_u8(v: u8) -> Option<FlowOp> {
        Some(match v {
            1 => FlowOp::Invalidate,
            2 => FlowOp::Fallback,
            3 => FlowOp::Resume,
            4 => FlowOp::Retry,
            _ => return None,
        })
    }
}

/// A `FLOW_CMD` value.
pub fn flow_cmd(op: FlowOp, core: usize, conn: u32) -> u64 {
    op as u64 | (core as u64 & 0xff) << 8 | (conn as u64) << 16
}

/// Decode a `FLOW_CMD` value.
pub fn decode_flow_cmd(v: u64) -> Option<(FlowOp, usize, u32)> {
    Some((
        FlowOp::from_u8(v as u8)?,
        (v >> 8 & 0xff) as usize,
        (v >> 16) as u32,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flow_commands_round_trip() {
        for op in [
            FlowOp::Invalidate,
            FlowOp::Fallback,
            FlowOp::Resume,
            FlowOp::Retry,
        ] {
            assert_eq!(decode_flow_cmd(flow_cmd(op, 3, 4095)), Some((op, 3, 4095)));
        }
        assert_eq!(decode_flow_cmd(0), None);
    }
}
