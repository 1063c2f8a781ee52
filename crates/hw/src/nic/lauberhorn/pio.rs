//! The PCIe PIO variant of the Lauberhorn NIC's host interface, the
//! baseline of Fig. 2: the same message path as the coherent NIC's
//! loopback, but the core moves every byte with uncached loads and stores
//! to the NIC's BAR over PCIe. A message is written into the transmit
//! buffer with posted writes and rung with a doorbell write; it comes back
//! into the receive buffer after the NIC's pipelines, and the core polls
//! the receive status register and reads the bytes with non-posted reads.
//!
//! Register map (BAR 0): the transmit buffer at [`TX_BUF`], the doorbell
//! at [`DOORBELL`] (write the length), the receive status at
//! [`RX_STATUS`] (read: the length ready, 0 if none), the receive
//! acknowledgement at [`RX_ACK`], the receive buffer at [`RX_BUF`].
//!
//! Invariant: every doorbell ends in exactly one received message or one
//! `drop.*` counter (a doorbell while a message waits unread, a length
//! beyond the buffer).

use nextio_engine::{Counters, Duration};

use crate::device::{BarSpec, Device, DeviceCtx, Requester};

pub const BAR0_BYTES: u64 = 64 << 10;
pub const TX_BUF: u64 = 0;
pub const BUF_BYTES: u64 = 16 << 10;
pub const DOORBELL: u64 = 0x8000;
pub const RX_STATUS: u64 = 0x8008;
pub const RX_ACK: u64 = 0x8010;
pub const RX_BUF: u64 = 0xc000;

const T_LOOP: u64 = 1;

/// The PIO NIC.
pub struct PioNic {
    /// Transmit encode plus receive decode (the coherent NIC's pipelines).
    loop_ps: u64,
    tx: Vec<u8>,
    rx: Vec<u8>,
    rx_len: u64,
    pending: Option<u64>,
    counters: Counters,
}

impl PioNic {
    pub fn new(loop_ps: u64) -> PioNic {
        PioNic {
            loop_ps,
            tx: vec![0; BUF_BYTES as usize],
            rx: vec![0; BUF_BYTES as usize],
            rx_len: 0,
            pending: None,
            counters: Counters::new(),
        }
    }
}

impl Device for PioNic {
    fn name(&self) -> &'static str {
        "lauberhorn-pio-nic"
    }
    fn bars(&self) -> Vec<BarSpec> {
        vec![BarSpec::new(BAR0_BYTES)]
    }
    fn bar_write(
        &mut self,
        cx: &mut DeviceCtx<'_>,
        _from: Requester,
        _bar: u8,
        offset: u64,
        data: &[u8],
    ) {
        let word = || {
            u32::from_le_bytes(
                data.get(..4)
                    .and_then(|b| b.try_into().ok())
                    .unwrap_or([0; 4]),
            )
        };
        match offset {
            o if o + data.len() as u64 <= TX_BUF + BUF_BYTES => {
                self.tx[o as usize..o as usize + data.len()].copy_from_slice(data);
            }
            DOORBELL => {
                let len = word() as u64;
                if len > BUF_BYTES {
                    self.counters.inc("drop.too_long");
                } else if self.pending.is_some() || self.rx_len != 0 {
                    self.counters.inc("drop.busy");
                } else {
                    self.counters.inc("doorbells");
                    self.pending = Some(len);
                    cx.set_timer(Duration::from_ps(self.loop_ps), T_LOOP);
                }
            }
            RX_ACK => self.rx_len = 0,
            _ => self.counters.inc("bad_register_writes"),
        }
    }
    fn bar_read(
        &mut self,
        _cx: &mut DeviceCtx<'_>,
        _from: Requester,
        _bar: u8,
        offset: u64,
        out: &mut [u8],
    ) {
        match offset {
            RX_STATUS => {
                for (o, b) in out.iter_mut().zip((self.rx_len as u32).to_le_bytes()) {
                    *o = b;
                }
            }
            o if o >= RX_BUF && o + out.len() as u64 <= RX_BUF + BUF_BYTES => {
                let at = (o - RX_BUF) as usize;
                out.copy_from_slice(&self.rx[at..at + out.len()]);
            }
            _ => {}
        }
    }
    fn timer(&mut self, _cx: &mut DeviceCtx<'_>, _token: u64) {
        if let Some(len) = self.pending.take() {
            self.rx[..len as usize].copy_from_slice(&self.tx[..len as usize]);
            self.rx_len = len;
            self.counters.inc("received");
        }
    }
    fn counters(&self) -> &Counters {
        &self.counters
    }
}
