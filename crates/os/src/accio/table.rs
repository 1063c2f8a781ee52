//! The kernel's management of the connection table: its accesses to the
//! table and to the NIC's engine (every one an MMIO load or store), and
//! putting rows into slots and taking them out.
//!
//! The kernel's copy of a row is its backing store. Installing writes the
//! row into a free slot (evicting a victim if none is free), the
//! connection id with its valid bit last so the row appears whole, then
//! tells the NIC which core holds it and to go on (it reposts the
//! pointers it owns and delivers frames it held). Evicting reads back the
//! fields that change while resident (state and the four pointers),
//! invalidates the slot and tells the NIC to forget what it cached; a
//! row evicted while ready has its owner woken by the kernel instead.
//!
//! Invariant: the kernel's `resident` map and the table's valid slots
//! agree after every install and eviction. Callers of `install`, `evict`
//! and the field accessors hold the table lock (`lock.rs`): two of these
//! sequences interleaved at their MMIO waits could pick the same free
//! slot.

use nextio_engine::Category;
use nextio_hw::accio::regs::{self as ict, CONN_VALID, kernel, row, state};
use nextio_hw::accio::table;
use nextio_hw::cpu::CoreCtx;
use nextio_hw::nic::accio::regs::{self as nicregs, FlowOp};

use super::{AccioError, AccioOs};
use crate::kernel::Tid;

/// The row fields written on install, in order (`CONN` comes last).
const INSTALL_FIELDS: [u64; 15] = [
    row::OWNER,
    row::CPU,
    row::RX_RING_ADDR,
    row::RX_RING_SIZE,
    row::RX_HEAD,
    row::RX_TAIL,
    row::TX_RING_ADDR,
    row::TX_RING_SIZE,
    row::TX_HEAD,
    row::TX_TAIL,
    row::LOCAL,
    row::REMOTE,
    row::REMOTE_MAC,
    row::DIRECTION,
    row::STATE,
];

/// The fields that change while a row is resident.
const LIVE_FIELDS: [u64; 5] = [
    row::STATE,
    row::RX_HEAD,
    row::RX_TAIL,
    row::TX_HEAD,
    row::TX_TAIL,
];

impl AccioOs {
    /// Store `v` at offset `off` of the table's BAR (kernel code).
    pub(super) async fn kwrite(&self, kctx: &CoreCtx, off: u64, v: u64) -> Result<(), AccioError> {
        kctx.cycles(Category::Kernel, self.0.cfg.costs.mmio_store_cycles);
        kctx.mmio_write(self.0.table_kva.offset(off), &v.to_le_bytes(), "ict")
            .await?;
        Ok(())
    }

    /// Load offset `off` of the table's BAR (kernel code; the core stalls
    /// for the completion).
    pub(super) async fn kread(&self, kctx: &CoreCtx, off: u64) -> Result<u64, AccioError> {
        let b = kctx
            .mmio_read(self.0.table_kva.offset(off), 8, "ict", Category::Kernel)
            .await?;
        Ok(u64::from_le_bytes(b.try_into().unwrap_or([0; 8])))
    }

    /// A `FLOW_CMD` to the NIC's engine.
    pub(super) async fn nic_cmd(
        &self,
        kctx: &CoreCtx,
        op: FlowOp,
        core: usize,
        conn: u32,
    ) -> Result<(), AccioError> {
        kctx.cycles(Category::Kernel, self.0.cfg.costs.mmio_store_cycles);
        let v = nicregs::flow_cmd(op, core, conn);
        kctx.mmio_write(
            self.0.nic_kva.offset(nicregs::FLOW_CMD),
            &v.to_le_bytes(),
            "flow-cmd",
        )
        .await?;
        Ok(())
    }

    /// Put `conn`'s row into a slot of `core`, evicting if the table is
    /// full. A no-op if it is resident there already.
    pub(super) async fn install(
        &self,
        kctx: &CoreCtx,
        conn: u32,
        core: usize,
    ) -> Result<(), AccioError> {
        let slot_now = {
            let st = self.0.state.borrow();
            st.conns
                .get(&conn)
                .ok_or_else(|| AccioError::Invalid(format!("no connection {conn}")))?
                .slot
        };
        match slot_now {
            Some((c, _)) if c == core => return Ok(()),
            Some((c, s)) => self.evict(kctx, c, s).await?,
            None => {}
        }
        let first = self
            .kread(kctx, ict::kernel_reg(core, kernel::ALLOC_FIRST_EMPTY))
            .await?;
        let slot = if first == u64::MAX {
            let slots = self.0.cfg.table.slots;
            let victim = {
                let mut st = self.0.state.borrow_mut();
                let mut v = st.victim[core] % slots;
                // Never the row the core's thread refilled last (the one
                // its retried access needs), unless it is the only one:
                // a NIC-side refill in between would otherwise take it
                // away again, and again.
                let keep = st.protect[core];
                if slots > 1 && keep.is_some() && st.resident.get(&(core, v)).copied() == keep {
                    v = (v + 1) % slots;
                }
                st.victim[core] = (v + 1) % slots;
                v
            };
            self.evict(kctx, core, victim).await?;
            victim
        } else {
            first as usize
        };
        let row = {
            let mut st = self.0.state.borrow_mut();
            let c = st.conns.get_mut(&conn).expect("checked above");
            table::set(&mut c.shadow, row::CPU, core as u64);
            // A row comes in neither ready nor (for the table) stale: what
            // it was suspended on stays.
            let s = table::get(&c.shadow, row::STATE) & !state::READY;
            table::set(&mut c.shadow, row::STATE, s);
            c.slot = Some((core, slot));
            let r = c.shadow;
            st.resident.insert((core, slot), conn);
            st.counters.inc("installs");
            r
        };
        for f in INSTALL_FIELDS {
            self.kwrite(kctx, ict::slot_field(core, slot, f), table::get(&row, f))
                .await?;
        }
        self.kwrite(
            kctx,
            ict::slot_field(core, slot, row::CONN),
            conn as u64 | CONN_VALID,
        )
        .await?;
        // Read the id back: MMIO writes are posted, and the read's
        // completion cannot pass them, so when it returns the row is in
        // the slot for every core-side check (the usual flush of posted
        // writes). Without it a retried access could miss again.
        let back = self
            .kread(kctx, ict::slot_field(core, slot, row::CONN))
            .await?;
        debug_assert_eq!(back, conn as u64 | CONN_VALID, "the row landed whole");
        self.nic_cmd(kctx, FlowOp::Invalidate, core, conn).await?;
        self.nic_cmd(kctx, FlowOp::Retry, core, conn).await?;
        Ok(())
    }

    /// Take the row in slot `slot` of `core` out (if any), saving what
    /// changed; wake its owner if the row was ready.
    pub(super) async fn evict(
        &self,
        kctx: &CoreCtx,
        core: usize,
        slot: usize,
    ) -> Result<(), AccioError> {
        let Some(conn) = self.0.state.borrow().resident.get(&(core, slot)).copied() else {
            return Ok(());
        };
        let mut live = [0u64; LIVE_FIELDS.len()];
        for (i, f) in LIVE_FIELDS.iter().enumerate() {
            live[i] = self.kread(kctx, ict::slot_field(core, slot, *f)).await?;
        }
        self.kwrite(kctx, ict::slot_field(core, slot, row::CONN), 0)
            .await?;
        self.nic_cmd(kctx, FlowOp::Invalidate, core, conn).await?;
        let wake: Option<Tid> = {
            let mut st = self.0.state.borrow_mut();
            st.resident.remove(&(core, slot));
            st.counters.inc("evictions");
            match st.conns.get_mut(&conn) {
                Some(c) => {
                    for (i, f) in LIVE_FIELDS.iter().enumerate() {
                        table::set(&mut c.shadow, *f, live[i]);
                    }
                    c.slot = None;
                    let s = live[0];
                    (s & state::READY != 0).then_some(c.tid)
                }
                None => None,
            }
        };
        if let Some(t) = wake {
            kctx.sync().await;
            self.0.disp.wake(t)?;
        }
        Ok(())
    }

    /// Read `conn`'s field `f` where it lives: its slot if resident, the
    /// kernel's copy otherwise.
    pub(super) async fn read_field(
        &self,
        kctx: &CoreCtx,
        conn: u32,
        f: u64,
    ) -> Result<u64, AccioError> {
        let (slot, v) = {
            let st = self.0.state.borrow();
            let c = st
                .conns
                .get(&conn)
                .ok_or_else(|| AccioError::Invalid(format!("no connection {conn}")))?;
            (c.slot, table::get(&c.shadow, f))
        };
        match slot {
            Some((core, s)) => self.kread(kctx, ict::slot_field(core, s, f)).await,
            None => Ok(v),
        }
    }

    /// Write `conn`'s field `f` where it lives.
    pub(super) async fn write_field(
        &self,
        kctx: &CoreCtx,
        conn: u32,
        f: u64,
        v: u64,
    ) -> Result<(), AccioError> {
        let slot = {
            let mut st = self.0.state.borrow_mut();
            let c = st
                .conns
                .get_mut(&conn)
                .ok_or_else(|| AccioError::Invalid(format!("no connection {conn}")))?;
            table::set(&mut c.shadow, f, v);
            c.slot
        };
        if let Some((core, s)) = slot {
            self.kwrite(kctx, ict::slot_field(core, s, f), v).await?;
        }
        Ok(())
    }
}
