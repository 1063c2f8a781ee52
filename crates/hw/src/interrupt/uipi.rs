//! Intel UIPI architectural state, with the semantics of §3.1–3.3 of the
//! xUI paper and the Intel ISA extensions reference.
//!
//! * [`Upid`] — the 16-byte User Posted Interrupt Descriptor (Table 1):
//!   ON (bit 0), SN (bit 1), NV (bits 23:16), NDST (bits 63:32), PIR
//!   (bits 127:64), stored as the real 128-bit word and read through
//!   accessors, so the bit layout is the one the paper tabulates.
//! * [`Uitt`] — a process's User Interrupt Target Table: entries of
//!   ⟨UPID address, user vector⟩. `senduipi` only ever reads it; the kernel
//!   fills it.
//! * [`UiState`] — a thread's user-interrupt registers: UIRR (64 pending
//!   user vectors), UIF (delivery enabled), the handler address, and the
//!   xUI safepoint-mode flag.
//!
//! Invariants: a send that finds SN set posts the vector in PIR but sends no
//! IPI (the kernel reposts on resume); notification processing moves PIR
//! into UIRR and clears ON atomically; delivery happens only with UIF set,
//! clears UIF and the delivered UIRR bit, and `uiret` sets UIF again.

use thiserror::Error;

/// Highest user vector: UIPI vectors are 6 bits (§3.1).
pub const USER_VECTORS: u8 = 64;

/// Address of a UPID in the simulated kernel's UPID memory.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct UpidAddr(pub usize);

/// The User Posted Interrupt Descriptor, as its 128-bit memory image.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Upid(pub u128);

impl Upid {
    const ON: u128 = 1 << 0;
    const SN: u128 = 1 << 1;

    /// A descriptor notifying core `ndst` with vector `nv`.
    pub fn new(nv: u8, ndst: u32) -> Upid {
        let mut u = Upid(0);
        u.set_nv(nv);
        u.set_ndst(ndst);
        u
    }
    pub fn on(&self) -> bool {
        self.0 & Self::ON != 0
    }
    pub fn sn(&self) -> bool {
        self.0 & Self::SN != 0
    }
    pub fn set_sn(&mut self, sn: bool) {
        if sn {
            self.0 |= Self::SN
        } else {
            self.0 &= !Self::SN
        }
    }
    pub fn nv(&self) -> u8 {
        (self.0 >> 16) as u8
    }
    pub fn set_nv(&mut self, nv: u8) {
        self.0 = (self.0 & !(0xffu128 << 16)) | ((nv as u128) << 16);
    }
    /// APIC ID of the core the owner thread runs (or last ran) on.
    pub fn ndst(&self) -> u32 {
        (self.0 >> 32) as u32
    }
    pub fn set_ndst(&mut self, ndst: u32) {
        self.0 = (self.0 & !(0xffff_ffffu128 << 32)) | ((ndst as u128) << 32);
    }
    /// Posted interrupt requests, one bit per user vector.
    pub fn pir(&self) -> u64 {
        (self.0 >> 64) as u64
    }
    /// Step (1) of §3.3: post `uv` and set ON. Returns whether ON was
    /// already set (a notification is outstanding).
    pub fn post(&mut self, uv: u8) -> bool {
        let was_on = self.on();
        self.0 |= 1u128 << (64 + uv as u32);
        self.0 |= Self::ON;
        was_on
    }
    /// Step (4): take PIR and clear ON, as one locked operation.
    pub fn take_pir(&mut self) -> u64 {
        let pir = self.pir();
        self.0 &= (1u128 << 64) - 1;
        self.0 &= !Self::ON;
        pir
    }
}

/// One UITT entry (§3.1): which UPID, which user vector.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UittEntry {
    pub upid: UpidAddr,
    pub uv: u8,
}

/// A process's User Interrupt Target Table.
#[derive(Clone, Debug, Default)]
pub struct Uitt {
    entries: Vec<Option<UittEntry>>,
}

impl Uitt {
    /// Install an entry; returns its index (the `senduipi` operand).
    pub fn insert(&mut self, e: UittEntry) -> usize {
        if let Some(i) = self.entries.iter().position(Option::is_none) {
            self.entries[i] = Some(e);
            i
        } else {
            self.entries.push(Some(e));
            self.entries.len() - 1
        }
    }
    pub fn remove(&mut self, index: usize) {
        if let Some(slot) = self.entries.get_mut(index) {
            *slot = None;
        }
    }
    /// The entry `senduipi index` would use; `None` means #GP.
    pub fn get(&self, index: usize) -> Option<UittEntry> {
        self.entries.get(index).copied().flatten()
    }
}

/// Why a user-interrupt instruction faulted.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Error)]
pub enum UiFault {
    #[error("#GP: UITT index {0} is not a valid entry")]
    InvalidUittEntry(usize),
    #[error("#UD: user interrupts are not enabled for this thread")]
    NotEnabled,
    #[error("#GP: user vector {0} out of range")]
    BadVector(u8),
}

/// What `senduipi` did (§3.3 steps 1–2).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SendOutcome {
    /// Posted and an ordinary IPI with vector `nv` goes to APIC `ndst`.
    Ipi { ndst: u32, nv: u8 },
    /// Posted, but SN was set (target descheduled) or ON was already set
    /// (a notification is outstanding): no IPI.
    Posted { suppressed: bool },
}

/// `senduipi`'s steps after the UITT lookup (§3.3 steps 1–2): post the
/// vector in the target UPID, then notify unless suppressed or already
/// outstanding. The caller looked the entry up with [`Uitt::get`] (a
/// missing entry is #GP before any memory is touched).
pub fn post_and_notify(upid: &mut Upid, uv: u8) -> Result<SendOutcome, UiFault> {
    if uv >= USER_VECTORS {
        return Err(UiFault::BadVector(uv));
    }
    let was_on = upid.post(uv);
    Ok(if upid.sn() {
        SendOutcome::Posted { suppressed: true }
    } else if was_on {
        SendOutcome::Posted { suppressed: false }
    } else {
        SendOutcome::Ipi {
            ndst: upid.ndst(),
            nv: upid.nv(),
        }
    })
}

/// A thread's user-interrupt registers.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct UiState {
    /// User Interrupt Request Register: pending user vectors.
    pub uirr: u64,
    /// User Interrupt Flag: delivery enabled.
    pub uif: bool,
    /// UINT_Handler: address of the user handler (0: none registered).
    pub handler: u64,
    /// xUI hardware safepoint mode (§4.4): deliver only at safepoints.
    pub safepoint_mode: bool,
}

impl UiState {
    /// `clui`: block delivery.
    pub fn clui(&mut self) {
        self.uif = false;
    }
    /// `stui`: allow delivery.
    pub fn stui(&mut self) {
        self.uif = true;
    }
    /// `testui`: is delivery allowed?
    pub fn testui(&self) -> bool {
        self.uif
    }
    /// Step (4) tail: OR posted requests into UIRR.
    pub fn recognise(&mut self, pir: u64) {
        self.uirr |= pir;
    }
    /// Whether a delivery may happen now: something pending, UIF set, a
    /// handler registered, and (in safepoint mode) at a safepoint.
    pub fn deliverable(&self, at_safepoint: bool) -> bool {
        self.uirr != 0 && self.uif && self.handler != 0 && (!self.safepoint_mode || at_safepoint)
    }
    /// Step (5), user-interrupt delivery: take the highest pending vector,
    /// clear its UIRR bit and UIF. Returns the vector handed to the handler.
    pub fn deliver(&mut self, at_safepoint: bool) -> Option<u8> {
        if !self.deliverable(at_safepoint) {
            return None;
        }
        let uv = 63 - self.uirr.leading_zeros() as u8;
        self.uirr &= !(1u64 << uv);
        self.uif = false;
        Some(uv)
    }
    /// `uiret`: return from the handler, re-enabling delivery.
    pub fn uiret(&mut self) {
        self.uif = true;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upid_fields_sit_where_table_1_says() {
        let mut u = Upid::new(0xec, 7);
        assert_eq!(u.0 >> 16 & 0xff, 0xec);
        assert_eq!(u.0 >> 32 & 0xffff_ffff, 7);
        assert!(!u.post(5));
        assert_eq!(u.0 & 1, 1, "ON is bit 0");
        assert_eq!(u.0 >> 64, 1 << 5, "PIR is bits 127:64");
        u.set_sn(true);
        assert_eq!(u.0 >> 1 & 1, 1, "SN is bit 1");
        assert_eq!(u.take_pir(), 1 << 5);
        assert!(!u.on());
        assert!(u.sn());
        assert_eq!(u.nv(), 0xec);
    }

    #[test]
    fn second_send_while_outstanding_sends_no_ipi() {
        let mut u = Upid::new(0xec, 3);
        assert_eq!(
            post_and_notify(&mut u, 1),
            Ok(SendOutcome::Ipi { ndst: 3, nv: 0xec })
        );
        assert_eq!(
            post_and_notify(&mut u, 2),
            Ok(SendOutcome::Posted { suppressed: false })
        );
        assert_eq!(u.pir(), 0b110);
    }

    #[test]
    fn suppressed_target_gets_no_ipi_but_keeps_the_request() {
        let mut u = Upid::new(0xec, 3);
        u.set_sn(true);
        assert_eq!(
            post_and_notify(&mut u, 9),
            Ok(SendOutcome::Posted { suppressed: true })
        );
        assert!(u.on());
        assert_eq!(u.pir(), 1 << 9);
    }

    #[test]
    fn delivery_needs_uif_and_clears_it_until_uiret() {
        let mut s = UiState {
            handler: 0x4000,
            ..Default::default()
        };
        s.recognise(1 << 3 | 1 << 7);
        assert_eq!(s.deliver(false), None, "UIF clear after reset");
        s.stui();
        assert!(s.testui());
        assert_eq!(s.deliver(false), Some(7), "highest vector first");
        assert!(!s.testui());
        assert_eq!(s.deliver(false), None, "no nesting while in the handler");
        s.uiret();
        assert_eq!(s.deliver(false), Some(3));
        s.uiret();
        s.clui();
        s.recognise(1);
        assert_eq!(s.deliver(false), None);
    }

    #[test]
    fn safepoint_mode_delivers_only_at_safepoints() {
        let mut s = UiState {
            handler: 1,
            uif: true,
            safepoint_mode: true,
            ..Default::default()
        };
        s.recognise(1 << 4);
        assert_eq!(s.deliver(false), None);
        assert_eq!(s.deliver(true), Some(4));
    }

    #[test]
    fn missing_uitt_entry_is_a_fault() {
        let mut t = Uitt::default();
        let i = t.insert(UittEntry {
            upid: UpidAddr(0),
            uv: 1,
        });
        assert!(t.get(i).is_some());
        assert_eq!(t.get(i + 1), None);
        t.remove(i);
        assert_eq!(t.get(i), None);
    }
}
