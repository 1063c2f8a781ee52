//! The I/O Connection Table's register map (its BAR 0), shared by the
//! table, the NIC that talks to it and the OS and library that drive it.
//!
//! Four windows, each a different view of the per-core tables:
//! * **user** — one row per *connection id*, routed by the hardware to
//!   the table of the core making the access (a core only ever sees its
//!   own ICT, as it sees its own TLB). Rows are content-addressed: a
//!   connection whose row is not resident in the core's table misses.
//!   Reads of a resident row need the row's address space; writes only
//!   move the two user-owned pointers (`RX_HEAD`, `TX_TAIL`).
//! * **kernel** — per core, kernel mode only: the registers of §4 and the
//!   prototype's sub-blocks (current-thread, interrupt masks, the
//!   round-robin scheduler port, the first-empty-slot allocator, kick-all)
//!   and the slots themselves by index, fully readable and writable.
//! * **control** — kernel mode only: the control event queue.
//! * **NIC** — per core, for the NIC only: rows by connection id, and the
//!   register the NIC posts events to.
//!
//! Rows are 256 bytes, one field per 8-byte beat, as the prototype's
//! 64-bit bus lays them out; every access is one aligned 8-byte beat,
//! except the NIC's bursts over a row.

/// Bytes of one row (one field per 8-byte beat, 32 beats).
pub const ROW_BYTES: u64 = 256;
/// Bytes of one register or field.
pub const BEAT_BYTES: u64 = 8;
/// Connection ids the user and NIC windows can name.
pub const MAX_CONNECTIONS: u32 = 4096;
/// Most slots a core's table may have (the kernel window's size).
pub const MAX_SLOTS: usize = 64;
/// Most cores one table serves.
pub const MAX_CORES: usize = 32;

/// The user window: `USER_BASE + conn × ROW_BYTES`.
pub const USER_BASE: u64 = 0;
pub const USER_BYTES: u64 = MAX_CONNECTIONS as u64 * ROW_BYTES;
/// The control page.
pub const CONTROL_BASE: u64 = 0x0010_0000;
pub const CONTROL_BYTES: u64 = 0x1000;
/// Kernel windows: `KERNEL_BASE + core × KERNEL_CORE_BYTES`.
pub const KERNEL_BASE: u64 = 0x0020_0000;
pub const KERNEL_CORE_BYTES: u64 = 0x8000;
/// Slots in a kernel window: `+ SLOTS_OFFSET + slot × ROW_BYTES`.
pub const SLOTS_OFFSET: u64 = 0x4000;
/// NIC windows: `NIC_BASE + core × NIC_CORE_BYTES + conn × ROW_BYTES`;
/// the event register follows the rows.
pub const NIC_BASE: u64 = 0x0040_0000;
pub const NIC_CORE_BYTES: u64 = 0x0020_0000;
pub const NIC_EVENT_OFFSET: u64 = USER_BYTES;

/// The BAR's size for `cores` cores.
pub fn bar_bytes(cores: usize) -> u64 {
    (NIC_BASE + cores as u64 * NIC_CORE_BYTES).next_power_of_two()
}

/// Row fields (offsets in a row).
pub mod row {
    /// Connection id (bits 0..32) and the valid bit (63).
    pub const CONN: u64 = 0x00;
    /// State bits ([`super::state`]).
    pub const STATE: u64 = 0x08;
    /// Owner: ASID (bits 0..16), accelerated-thread bit (16), priority
    /// (24..32), thread id (32..64).
    pub const OWNER: u64 = 0x10;
    /// The CPU (core) whose table holds the row.
    pub const CPU: u64 = 0x18;
    pub const RX_RING_ADDR: u64 = 0x20;
    pub const RX_RING_SIZE: u64 = 0x28;
    /// RX read pointer: the user's; bytes consumed, free-running.
    pub const RX_HEAD: u64 = 0x30;
    /// RX write pointer: the NIC's; bytes produced, free-running.
    pub const RX_TAIL: u64 = 0x38;
    pub const TX_RING_ADDR: u64 = 0x40;
    pub const TX_RING_SIZE: u64 = 0x48;
    /// TX read pointer: the NIC's (completion by pointer update).
    pub const TX_HEAD: u64 = 0x50;
    /// TX write pointer: the user's (moving it notifies the NIC).
    pub const TX_TAIL: u64 = 0x58;
    /// Protocol (48..56), local port (32..48), local IPv4 (0..32).
    pub const LOCAL: u64 = 0x60;
    /// Remote port (32..48), remote IPv4 (0..32); zero if unconnected.
    pub const REMOTE: u64 = 0x68;
    /// The remote's MAC (bits 0..48).
    pub const REMOTE_MAC: u64 = 0x70;
    /// Direction bits: 1 receive, 2 send.
    pub const DIRECTION: u64 = 0x78;
    /// Fields the NIC reads in one burst: `STATE` through `DIRECTION`.
    pub const NIC_VIEW_START: u64 = STATE;
    pub const NIC_VIEW_BYTES: u64 = DIRECTION + super::BEAT_BYTES - STATE;
    /// The fields a user may write.
    pub fn user_writable(field: u64) -> bool {
        field == RX_HEAD || field == TX_TAIL
    }
}

/// Bits of a row's `STATE`.
pub mod state {
    pub const ENABLED: u64 = 1 << 0;
    /// The connection is on the fast path (clear: the kernel path).
    pub const ACCELERATED: u64 = 1 << 1;
    /// The owner sleeps waiting for data.
    pub const RX_SUSPENDED: u64 = 1 << 2;
    /// The owner sleeps waiting for ring space.
    pub const TX_SUSPENDED: u64 = 1 << 3;
    /// Wake-ups interrupt the core (the high-priority flag of §4).
    pub const HIPRIO_IRQ: u64 = 1 << 4;
    /// On the ready queue: the owner may run.
    pub const READY: u64 = 1 << 5;
}

/// `CONN`'s valid bit.
pub const CONN_VALID: u64 = 1 << 63;

/// Kernel-window registers (offsets in a core's kernel window).
pub mod kernel {
    /// What the core runs: ASID (0..16), accelerated bit (16), priority
    /// (24..32). Written by the OS on every context switch (the
    /// prototype's register standing in for the ASID's extra bit, §7).
    pub const CURRENT: u64 = 0x000;
    /// Interrupt masks: bit 0 the I/O interrupt, bit 1 the control one.
    pub const INT_MASK: u64 = 0x008;
    /// Reading pops the round-robin ready queue: the thread id of the next
    /// ready row with bit 63 set, or 0 when none is ready.
    pub const SCHED_READ: u64 = 0x010;
    /// The same without popping.
    pub const SCHED_PEEK: u64 = 0x018;
    /// The first slot not in use, or `u64::MAX` if all are.
    pub const ALLOC_FIRST_EMPTY: u64 = 0x020;
    /// Writing clears the suspended and ready bits of every row of the
    /// core (the prototype's kick-all); `KICK_COUNT`/`KICK_MASK` then say
    /// how many and which slots were ready.
    pub const KICK_ALL: u64 = 0x028;
    pub const KICK_COUNT: u64 = 0x030;
    pub const KICK_MASK: u64 = 0x038;
    /// Slots of this core's table.
    pub const SLOTS: u64 = 0x040;
}

/// Control-page registers.
pub mod control {
    /// Reading pops the oldest control event ([`super::Event`] encoding),
    /// 0 when the queue is empty.
    pub const EVENT_POP: u64 = 0x000;
    /// Events waiting.
    pub const EVENT_COUNT: u64 = 0x008;
    /// Events lost to a full queue since the last read of this register.
    pub const EVENT_OVERFLOWS: u64 = 0x010;
}

/// `CURRENT`'s encoding.
pub fn current(asid: u16, accelerated: bool, priority: u8) -> u64 {
    asid as u64 | (accelerated as u64) << 16 | (priority as u64) << 24
}

/// `OWNER`'s encoding.
pub fn owner(asid: u16, accelerated: bool, priority: u8, tid: u32) -> u64 {
    current(asid, accelerated, priority) | (tid as u64) << 32
}

/// `LOCAL`'s and `REMOTE`'s encoding.
pub fn endpoint(ip: std::net::Ipv4Addr, port: u16, protocol: u8) -> u64 {
    u32::from(ip) as u64 | (port as u64) << 32 | (protocol as u64) << 48
}

/// Decode an endpoint field.
pub fn endpoint_of(v: u64) -> (std::net::Ipv4Addr, u16) {
    (std::net::Ipv4Addr::from(v as u32), (v >> 32) as u16)
}

/// What a control event is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventKind {
    LinkDown = 1,
    LinkUp = 2,
    /// The offload engine can take connections again after a link change.
    EngineReady = 3,
    /// The offload engine hit an error; connections must leave it.
    EngineError = 4,
    /// The NIC found a connection's row not resident (a NIC-side miss).
    Miss = 5,
    /// The NIC has stopped using a connection it was told to hand to the
    /// kernel: its last `TX_HEAD` is posted, nothing more will come.
    Quiesced = 6,
}

/// A control event: kind (0..8), core (8..16), connection (16..48).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Event {
    pub kind: EventKind,
    pub core: u8,
    pub conn: u32,
}

impl Event {
    pub fn encode(&self) -> u64 {
        self.kind as u64 | (self.core as u64) << 8 | (self.conn as u64) << 16
    }
    pub fn decode(v: u64) -> Option<Event> {
        let kind = match v & 0xff {
            1 => EventKind::LinkDown,
            2 => EventKind::LinkUp,
            3 => EventKind::EngineReady,
            4 => EventKind::EngineError,
            5 => EventKind::Miss,
            6 => EventKind::Quiesced,
            _ => return None,
        };
        Some(Event {
            kind,
            core: (v >> 8) as u8,
            conn: ((v >> 16) & 0xffff_ffff) as u32,
        })
    }
}

/// Where an offset of the BAR falls.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Window {
    User {
        conn: u32,
        field: u64,
    },
    Control {
        reg: u64,
    },
    Kernel {
        core: usize,
        reg: u64,
    },
    Slot {
        core: usize,
        slot: usize,
        field: u64,
    },
    Nic {
        core: usize,
        conn: u32,
        field: u64,
    },
    NicEvent {
        core: usize,
    },
}

/// The window of `offset`, if it is one.
pub fn decode(offset: u64) -> Option<Window> {
    if offset < USER_BASE + USER_BYTES {
        let o = offset - USER_BASE;
        return Some(Window::User {
            conn: (o / ROW_BYTES) as u32,
            field: o % ROW_BYTES,
        });
    }
    if (CONTROL_BASE..CONTROL_BASE + CONTROL_BYTES).contains(&offset) {
        return Some(Window::Control {
            reg: offset - CONTROL_BASE,
        });
    }
    if (KERNEL_BASE..KERNEL_BASE + MAX_CORES as u64 * KERNEL_CORE_BYTES).contains(&offset) {
        let o = offset - KERNEL_BASE;
        let core = (o / KERNEL_CORE_BYTES) as usize;
        let reg = o % KERNEL_CORE_BYTES;
        if reg >= SLOTS_OFFSET {
            let s = reg - SLOTS_OFFSET;
            let slot = (s / ROW_BYTES) as usize;
            return (slot < MAX_SLOTS).then_some(Window::Slot {
                core,
                slot,
                field: s % ROW_BYTES,
            });
        }
        return Some(Window::Kernel { core, reg });
    }
    if offset >= NIC_BASE {
        let o = offset - NIC_BASE;
        let core = (o / NIC_CORE_BYTES) as usize;
        let r = o % NIC_CORE_BYTES;
        if core >= MAX_CORES {
            return None;
        }
        if r == NIC_EVENT_OFFSET {
            return Some(Window::NicEvent { core });
        }
        if r < USER_BYTES {
            return Some(Window::Nic {
                core,
                conn: (r / ROW_BYTES) as u32,
                field: r % ROW_BYTES,
            });
        }
    }
    None
}

/// Offset of `conn`'s row field `field` in the user window.
pub fn user_field(conn: u32, field: u64) -> u64 {
    USER_BASE + conn as u64 * ROW_BYTES + field
}
/// Offset of kernel register `reg` of `core`.
pub fn kernel_reg(core: usize, reg: u64) -> u64 {
    KERNEL_BASE + core as u64 * KERNEL_CORE_BYTES + reg
}
/// Offset of field `field` of slot `slot` of `core`.
pub fn slot_field(core: usize, slot: usize, field: u64) -> u64 {
    kernel_reg(core, SLOTS_OFFSET + slot as u64 * ROW_BYTES + field)
}
/// Offset of `conn`'s row field `field` in `core`'s NIC window.
pub fn nic_field(core: usize, conn: u32, field: u64) -> u64 {
    NIC_BASE + core as u64 * NIC_CORE_BYTES + conn as u64 * ROW_BYTES + field
}
/// Offset of the register the NIC posts `core`'s events to.
pub fn nic_event(core: usize) -> u64 {
    NIC_BASE + core as u64 * NIC_CORE_BYTES + NIC_EVENT_OFFSET
}

/// MSI-X table entries: `2 × core` is the core's I/O interrupt,
/// `2 × core + 1` its control interrupt.
pub fn io_vector_entry(core: usize) -> u16 {
    2 * core as u16
}
pub fn control_vector_entry(core: usize) -> u16 {
    2 * core as u16 + 1
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_window_decodes_to_itself() {
        assert_eq!(
            decode(user_field(4095, row::TX_TAIL)),
            Some(Window::User {
                conn: 4095,
                field: row::TX_TAIL
            })
        );
        assert_eq!(
            decode(kernel_reg(3, kernel::SCHED_READ)),
            Some(Window::Kernel {
                core: 3,
                reg: kernel::SCHED_READ
            })
        );
        assert_eq!(
            decode(slot_field(2, 63, row::RX_TAIL)),
            Some(Window::Slot {
                core: 2,
                slot: 63,
                field: row::RX_TAIL
            })
        );
        assert_eq!(
            decode(nic_field(1, 7, row::STATE)),
            Some(Window::Nic {
                core: 1,
                conn: 7,
                field: row::STATE
            })
        );
        assert_eq!(decode(nic_event(5)), Some(Window::NicEvent { core: 5 }));
        assert_eq!(
            decode(CONTROL_BASE + control::EVENT_POP),
            Some(Window::Control { reg: 0 })
        );
        assert!(bar_bytes(4) >= nic_event(3) + 8);
        assert_eq!(decode(CONTROL_BASE + CONTROL_BYTES), None);
        for kind in [EventKind::LinkDown, EventKind::Miss] {
            let e = Event {
                kind,
                core: 3,
                conn: 4095,
            };
            assert_eq!(Event::decode(e.encode()), Some(e));
        }
        assert_eq!(Event::decode(0), None);
        assert_eq!(row::NIC_VIEW_BYTES, 0x78);
    }
}
