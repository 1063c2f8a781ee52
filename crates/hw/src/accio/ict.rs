//! The I/O Connection Table as a device on the host's fabric (§4, §7: the
//! prototype's ICT is a peripheral on the system bus; cores reach it with
//! loads and stores, the NIC with requests routed through the fabric).
//!
//! What it does on each access ([`super::regs`] for the map,
//! [`super::table`] for the rules):
//! * a core's store to its row's `TX_TAIL` notifies the NIC (a posted
//!   write of ⟨core, connection, tail⟩ to the NIC's notify register, so
//!   the NIC never scans the table); a store to `RX_HEAD` frees ring space;
//! * the NIC's store to a row's `RX_TAIL` or `TX_HEAD` wakes a row whose
//!   owner is suspended on it: the row goes on the core's ready queue and,
//!   if the rules allow, the core's I/O interrupt is sent (MSI-X entry
//!   `2 × core`);
//! * the NIC's store to its event register queues a control event and
//!   sends the control interrupt (entry `2 × core + 1`);
//! * the kernel's reads of `SCHED_READ` pop the ready queue, its writes
//!   of `CURRENT` say what the core runs (which may send an interrupt a
//!   higher-priority thread had held back).
//!
//! Protection is the cores' ([`IctGuard`], installed on the BAR by the
//! OS): an access the guard refused never reaches the table. The table
//! re-resolves every access when it arrives; one whose row was evicted
//! meanwhile is counted (`stale_*`) and has no effect.

use std::cell::RefCell;
use std::rc::Rc;

use nextio_engine::Counters;
use serde::{Deserialize, Serialize};
use thiserror::Error;

use super::regs::{self, Window, kernel, row, state};
use super::table::{self, IctState};
use crate::device::{BarSpec, Device, DeviceCtx, Requester};
use crate::fabric::{CpuAccess, GuardFault, MmioGuard};

/// How the table is built: its cores, chosen by whoever builds it, and
/// its sizes and timing, the root preset's `[accio.ict]`, where each
/// value's source is.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IctConfig {
    #[serde(skip)]
    pub cores: usize,
    /// Slots (rows) per core.
    pub slots: usize,
    /// Control events held.
    pub event_queue: usize,
    /// Time the table takes to answer a read beyond the fabric's own
    /// timing.
    pub turnaround_ps: u64,
}

impl IctConfig {
    /// The root preset's table for `cores` cores.
    pub fn new(cores: usize) -> IctConfig {
        IctConfig {
            cores,
            ..nextio_presets::root_section("accio.ict")
        }
    }
}

#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum IctError {
    #[error("invalid connection-table configuration: {0}")]
    Config(String),
}

/// The table.
pub struct Ict {
    cfg: IctConfig,
    state: Rc<RefCell<IctState>>,
    /// The bus address of the NIC's notify register.
    notify: Option<u64>,
    counters: Counters,
}

impl Ict {
    pub fn new(cfg: IctConfig) -> Result<Ict, IctError> {
        if cfg.cores == 0 || cfg.cores > regs::MAX_CORES {
            return Err(IctError::Config(format!(
                "1..={} cores, not {}",
                regs::MAX_CORES,
                cfg.cores
            )));
        }
        if cfg.slots == 0 || cfg.slots > regs::MAX_SLOTS {
            return Err(IctError::Config(format!(
                "1..={} slots per core, not {}",
                regs::MAX_SLOTS,
                cfg.slots
            )));
        }
        if cfg.event_queue == 0 {
            return Err(IctError::Config("the event queue needs room".into()));
        }
        Ok(Ict {
            state: Rc::new(RefCell::new(IctState::new(
                cfg.cores,
                cfg.slots,
                cfg.event_queue,
            ))),
            cfg,
            notify: None,
            counters: Counters::new(),
        })
    }

    pub fn config(&self) -> &IctConfig {
        &self.cfg
    }

    /// The core-side check to install on the table's BAR.
    pub fn guard(&self) -> Rc<dyn MmioGuard> {
        Rc::new(IctGuard(self.state.clone()))
    }

    /// Where TX notifications go: the NIC's notify register, as a bus
    /// address the OS mapped for the table (configuration, untimed).
    pub fn set_notify_target(&mut self, bus_addr: u64) {
        self.notify = Some(bus_addr);
    }

    /// A copy of the table's state (for tests and checks).
    pub fn snapshot(&self) -> IctState {
        self.state.borrow().clone()
    }

    fn bad(&mut self, what: &'static str) {
        self.counters.inc(what);
    }

    fn io_interrupt(&mut self, cx: &mut DeviceCtx<'_>, core: usize) {
        self.counters.inc("io_interrupts");
        cx.msix(regs::io_vector_entry(core));
    }

    fn cpu_write(&mut self, cx: &mut DeviceCtx<'_>, core: usize, w: Window, v: u64) {
        let mut st = self.state.borrow_mut();
        match w {
            Window::User { conn, field } => {
                let Some(t) = st.cores.get_mut(core) else {
                    drop(st);
                    return self.bad("bad_register_writes");
                };
                let Some(s) = t.find(conn) else {
                    drop(st);
                    return self.bad("stale_user_writes");
                };
                if !row::user_writable(field) {
                    drop(st);
                    return self.bad("bad_register_writes");
                }
                table::set(&mut t.slots[s], field, v);
                drop(st);
                if field == row::TX_TAIL {
                    self.notify_nic(cx, core, conn, v);
                }
                self.counters.inc("user_writes");
            }
            Window::Kernel { core: c, reg } => {
                let Some(t) = st.cores.get_mut(c) else {
                    drop(st);
                    return self.bad("bad_register_writes");
                };
                let fire = match reg {
                    kernel::CURRENT => {
                        t.current = v;
                        t.recheck()
                    }
                    kernel::INT_MASK => {
                        t.int_mask = v;
                        t.recheck()
                    }
                    kernel::KICK_ALL => {
                        t.kick_all();
                        false
                    }
                    _ => {
                        drop(st);
                        return self.bad("bad_register_writes");
                    }
                };
                drop(st);
                if fire {
                    self.io_interrupt(cx, c);
                }
            }
            Window::Slot {
                core: c,
                slot,
                field,
            } => {
                let Some(r) = st.cores.get_mut(c).and_then(|t| t.slots.get_mut(slot)) else {
                    drop(st);
                    return self.bad("bad_register_writes");
                };
                table::set(r, field, v);
                drop(st);
                self.counters.inc("kernel_writes");
            }
            _ => {
                drop(st);
                self.bad("bad_register_writes");
            }
        }
    }

    fn cpu_read(&mut self, core: usize, w: Window) -> Option<u64> {
        let mut st = self.state.borrow_mut();
        let st = &mut *st;
        Some(match w {
            Window::User { conn, field } => {
                let t = st.cores.get(core)?;
                match t.find(conn) {
                    Some(s) => table::get(&t.slots[s], field),
                    None => {
                        self.counters.inc("stale_user_reads");
                        0
                    }
                }
            }
            Window::Kernel { core: c, reg } => {
                let t = st.cores.get_mut(c)?;
                match reg {
                    kernel::CURRENT => t.current,
                    kernel::INT_MASK => t.int_mask,
                    kernel::SCHED_READ | kernel::SCHED_PEEK => {
                        match t.next_ready(reg == kernel::SCHED_READ) {
                            Some(s) => 1 << 63 | table::tid_of(&t.slots[s]) as u64,
                            None => 0,
                        }
                    }
                    kernel::ALLOC_FIRST_EMPTY => t.first_empty().map_or(u64::MAX, |s| s as u64),
                    kernel::KICK_COUNT => t.kick_count,
                    kernel::KICK_MASK => t.kick_mask,
                    kernel::SLOTS => t.slots.len() as u64,
                    _ => return None,
                }
            }
            Window::Slot {
                core: c,
                slot,
                field,
            } => table::get(st.cores.get(c)?.slots.get(slot)?, field),
            Window::Control { reg } => match reg {
                regs::control::EVENT_POP => st.events.pop_front().unwrap_or(0),
                regs::control::EVENT_COUNT => st.events.len() as u64,
                regs::control::EVENT_OVERFLOWS => std::mem::take(&mut st.event_overflows),
                _ => return None,
            },
            _ => return None,
        })
    }

    /// The NIC moved a row's pointer (or posted an event).
    fn nic_write(&mut self, cx: &mut DeviceCtx<'_>, w: Window, v: u64) {
        match w {
            Window::Nic { core, conn, field } if field == row::RX_TAIL || field == row::TX_HEAD => {
                let fire = {
                    let mut st = self.state.borrow_mut();
                    let Some(t) = st.cores.get_mut(core) else {
                        drop(st);
                        return self.bad("bad_nic_writes");
                    };
                    let Some(s) = t.find(conn) else {
                        // Evicted meanwhile: the NIC posts its pointers
                        // again when the row is refilled.
                        drop(st);
                        return self.bad("stale_nic_writes");
                    };
                    table::set(&mut t.slots[s], field, v);
                    let bit = if field == row::RX_TAIL {
                        state::RX_SUSPENDED
                    } else {
                        state::TX_SUSPENDED
                    };
                    let was = table::get(&t.slots[s], row::STATE);
                    let fire = t.wake(s, bit);
                    if was & bit != 0 {
                        st.counters.inc("wakeups");
                    }
                    fire
                };
                self.counters.inc("nic_pointer_writes");
                if fire {
                    self.io_interrupt(cx, core);
                }
            }
            Window::NicEvent { core } => {
                let queued = self.state.borrow_mut().push_event(v);
                if queued {
                    self.counters.inc("events");
                    cx.msix(regs::control_vector_entry(core));
                }
            }
            _ => self.bad("bad_nic_writes"),
        }
    }

    fn nic_read(&mut self, core: usize, conn: u32, field: u64, out: &mut [u8]) {
        let st = self.state.borrow();
        let Some(t) = st.cores.get(core) else {
            drop(st);
            return self.bad("bad_nic_reads");
        };
        // A row that is not resident reads as zeros: not enabled.
        let Some(s) = t.find(conn) else {
            drop(st);
            self.counters.inc("nic_misses");
            return;
        };
        let r = t.slots[s];
        drop(st);
        for (i, chunk) in out.chunks_mut(regs::BEAT_BYTES as usize).enumerate() {
            let f = field + i as u64 * regs::BEAT_BYTES;
            if f >= regs::ROW_BYTES {
                break;
            }
            let b = table::get(&r, f).to_le_bytes();
            chunk.copy_from_slice(&b[..chunk.len()]);
        }
        self.counters.inc("nic_row_reads");
    }

    fn notify_nic(&mut self, cx: &mut DeviceCtx<'_>, core: usize, conn: u32, tail: u64) {
        let Some(addr) = self.notify else {
            return self.bad("drop.notify_unconfigured");
        };
        let mut msg = [0u8; 16];
        msg[..8].copy_from_slice(&(core as u64 | (conn as u64) << 16).to_le_bytes());
        msg[8..].copy_from_slice(&tail.to_le_bytes());
        match cx.dma_write(addr, &msg, "notification", 0) {
            Ok(_) => self.counters.inc("nic_notifications"),
            Err(_) => self.bad("drop.notify_error"),
        }
    }
}

impl Device for Ict {
    fn name(&self) -> &'static str {
        "accio-ict"
    }

    fn bars(&self) -> Vec<BarSpec> {
        vec![BarSpec::new(regs::bar_bytes(self.cfg.cores))]
    }

    fn bar_write(
        &mut self,
        cx: &mut DeviceCtx<'_>,
        from: Requester,
        bar: u8,
        offset: u64,
        data: &[u8],
    ) {
        let w = if bar == 0 { regs::decode(offset) } else { None };
        let (Some(w), Ok(v)) = (w, <[u8; 8]>::try_from(data).map(u64::from_le_bytes)) else {
            return self.bad("bad_register_writes");
        };
        match from {
            Requester::Cpu { core } => self.cpu_write(cx, core, w, v),
            Requester::Device(_) => self.nic_write(cx, w, v),
        }
    }

    fn bar_read(
        &mut self,
        _cx: &mut DeviceCtx<'_>,
        from: Requester,
        bar: u8,
        offset: u64,
        out: &mut [u8],
    ) {
        let Some(w) = (if bar == 0 { regs::decode(offset) } else { None }) else {
            return self.bad("bad_register_reads");
        };
        match (from, w) {
            (Requester::Device(_), Window::Nic { core, conn, field }) => {
                self.nic_read(core, conn, field, out)
            }
            (Requester::Cpu { core }, w) if out.len() == regs::BEAT_BYTES as usize => {
                match self.cpu_read(core, w) {
                    Some(v) => out.copy_from_slice(&v.to_le_bytes()),
                    None => self.bad("bad_register_reads"),
                }
            }
            _ => self.bad("bad_register_reads"),
        }
    }

    fn bar_read_turnaround_ps(&self) -> u64 {
        self.cfg.turnaround_ps
    }

    fn counters(&self) -> &Counters {
        &self.counters
    }
}

/// The cores' protection check of the table's BAR (§4 "ISA
/// Modifications": loads and stores to a row are checked against its
/// ASID "via the same mechanism used for TLB memory protection").
pub struct IctGuard(Rc<RefCell<IctState>>);

impl MmioGuard for IctGuard {
    fn check(&self, a: &CpuAccess) -> Result<(), GuardFault> {
        if a.bar != 0 {
            return Err(GuardFault::Protection);
        }
        self.0
            .borrow()
            .check_cpu(a.core, a.offset, a.len, a.write, a.asid.0, a.user)
    }
}
