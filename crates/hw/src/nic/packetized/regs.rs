//! The NIC's BAR0 register map: the ice offsets of the registers the data
//! plane uses, relative to BAR0, and their decoding.
//!
//! Every register is 32 bits wide and 4-byte aligned, as in the E810's
//! register space (ice_hw_autogen.h). [`decode`] answers `None` for any
//! offset that is not the start of a modelled register, so the NIC can
//! count a bad write instead of guessing what was meant.

/// Size of BAR0. Assumption: 4 MiB, the smallest power of two above the
/// highest register modelled (`QTX_COMM_DBELL(16383)` at `0x2C_FFFC`); the
/// E810's own BAR0 maps far more registers than the model decodes, and only
/// placement in the MMIO window depends on this.
pub const BAR0_BYTES: u64 = 4 << 20;

/// `QRX_TAIL(q) = 0x00290000 + 4q`, `q <= 2047` (ice_hw_autogen.h,
/// `QRX_TAIL_MAX_INDEX`).
const QRX_TAIL_BASE: u64 = 0x0029_0000;
const QRX_TAIL_COUNT: u64 = 2048;
/// `QTX_COMM_DBELL(q) = 0x002C0000 + 4q`, `q` in 0..=16383 (ice_hw_autogen.h).
const QTX_COMM_DBELL_BASE: u64 = 0x002C_0000;
const QTX_COMM_DBELL_COUNT: u64 = 16384;
/// `GLINT_DYN_CTL(i) = 0x00160000 + 4i`, `i` in 0..=2047 (ice_hw_autogen.h).
const GLINT_DYN_CTL_BASE: u64 = 0x0016_0000;
const GLINT_DYN_CTL_COUNT: u64 = 2048;

/// Bytes of every register: the E810's registers are 32 bits wide
/// (ice_hw_autogen.h spaces them 4 bytes apart).
pub const REGISTER_BYTES: usize = 4;

/// Most queue pairs the register map can address: one RX tail register
/// each (`QRX_TAIL_MAX_INDEX + 1`).
pub const MAX_QUEUES: usize = QRX_TAIL_COUNT as usize;

/// `GLINT_DYN_CTL_INTENA_M`: bit 0 enables (arms) the interrupt.
pub const DYN_CTL_INTENA: u32 = 1 << 0;

/// BAR0 offset of RX queue `q`'s tail register (`QRX_TAIL(q)`).
pub fn rx_tail(q: usize) -> u64 {
    QRX_TAIL_BASE + 4 * q as u64
}

/// BAR0 offset of TX queue `q`'s tail doorbell (`QTX_COMM_DBELL(q)`).
pub fn tx_tail(q: usize) -> u64 {
    QTX_COMM_DBELL_BASE + 4 * q as u64
}

/// BAR0 offset of interrupt `q`'s dynamic control (`GLINT_DYN_CTL(q)`).
/// The model gives queue `q` interrupt `q` (one vector per queue, as DPDK's
/// ice PMD sets up RX interrupts).
pub fn irq_dyn_ctl(q: usize) -> u64 {
    GLINT_DYN_CTL_BASE + 4 * q as u64
}

/// A register of the map, with the queue (or interrupt) it belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reg {
    RxTail(usize),
    TxTail(usize),
    IrqDynCtl(usize),
}

/// The register starting at BAR0 offset `offset`, if any.
pub fn decode(offset: u64) -> Option<Reg> {
    if !offset.is_multiple_of(REGISTER_BYTES as u64) {
        return None;
    }
    let index = |base: u64, count: u64| {
        let i = offset.checked_sub(base)? / 4;
        (i < count).then_some(i as usize)
    };
    if let Some(q) = index(QRX_TAIL_BASE, QRX_TAIL_COUNT) {
        Some(Reg::RxTail(q))
    } else if let Some(q) = index(QTX_COMM_DBELL_BASE, QTX_COMM_DBELL_COUNT) {
        Some(Reg::TxTail(q))
    } else {
        index(GLINT_DYN_CTL_BASE, GLINT_DYN_CTL_COUNT).map(Reg::IrqDynCtl)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_register_decodes_to_itself_and_nothing_else_decodes() {
        for q in [0, 1, 7, 2047] {
            assert_eq!(decode(rx_tail(q)), Some(Reg::RxTail(q)));
            assert_eq!(decode(irq_dyn_ctl(q)), Some(Reg::IrqDynCtl(q)));
        }
        assert_eq!(decode(tx_tail(16383)), Some(Reg::TxTail(16383)));
        assert!(tx_tail(16383) + 4 <= BAR0_BYTES);
        assert_eq!(decode(rx_tail(2048)), None);
        assert_eq!(decode(irq_dyn_ctl(2048)), None);
        assert_eq!(decode(tx_tail(16384)), None);
        assert_eq!(decode(rx_tail(0) + 2), None);
        assert_eq!(decode(0), None);
        assert_eq!(decode(u64::MAX - 3), None);
    }
}
