//! Primitive costs of the Linux UDP path, one per mechanism, in cycles of
//! the core the stack runs on, each with where it comes from.
//!
//! What the simulator times itself is *not* here: PCIe flights, the NIC's
//! DMA and write-backs, the MSI-X message, cache and TLB misses of every
//! descriptor, header and payload access, MMIO doorbells, queueing behind
//! other packets or threads. These costs are the instructions between
//! them.
//!
//! Two sets, the root preset's `[os.linux_net.*]`, where each value's
//! source is:
//! * [`LinuxNetCosts::accio_testbed`] — the kernel of Accio's Table 1
//!   (Linux 6.6 with debugging features on a Xeon Gold 6240 whose clock
//!   averaged ≈2 GHz, §8.1–8.2, E810 NIC). Table 1 gives three phases of
//!   the receive path; each phase's CPU time is split over the mechanisms
//!   it spans by a stated share (an assumption: the paper does not break
//!   the phases down further), after taking out the hardware time the
//!   model produces itself. These costs are therefore **fitted** to
//!   Table 1, and the breakdown the simulation measures with them is not
//!   evidence for the model, only a check that the path is built as
//!   described. The send path has no published breakdown: each send-side
//!   layer costs what its receive-side mirror costs (assumption).
//! * [`LinuxNetCosts::production`] — a kernel without debugging features,
//!   from the OS model's default path lengths ([`crate::OsCosts`]) and
//!   per-layer costs of the order of Arrakis' Table 1 (Linux 3.8: 3.36 µs
//!   of in-kernel processing for a UDP echo, both directions, OSDI '14);
//!   assumptions, not fitted to anything this project reports.
//!
//! [`LinuxNetCosts::scaled`] carries a set to a slower core: Accio's FPGA
//! prototype runs Linux on Rocket cores, whose CoreMark per MHz is 5.3×
//! below the test servers' (Table 2: 108.51 at 50 MHz vs 23018.49 at an
//! average 2 GHz), so the same kernel path takes that many more cycles
//! (assumption: kernel code scales like CoreMark).

use serde::{Deserialize, Serialize};

/// Cycles of each mechanism of the kernel's UDP receive and send paths.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LinuxNetCosts {
    // ---- receive: NIC to kernel ------------------------------------
    /// Hard-IRQ entry, `ice_msix_clean_rings`, `napi_schedule_irqoff`,
    /// IRQ exit raising NET_RX.
    pub hardirq_cycles: u64,
    /// `do_softirq` → `net_rx_action` → the driver's NAPI poll entry.
    pub softirq_cycles: u64,
    /// `ice_clean_rx_irq` per packet: descriptor decode, `build_skb`,
    /// skb fields (the descriptor and header loads are timed separately).
    pub driver_rx_cycles: u64,
    /// GRO and `__netif_receive_skb_core` up to `ip_rcv`.
    pub netif_rx_cycles: u64,
    // ---- receive: header processing --------------------------------
    /// `ip_rcv`, the route lookup, `ip_local_deliver`.
    pub ip_rcv_cycles: u64,
    /// `udp_rcv`, `__udp4_lib_lookup` (socket demultiplexing).
    pub udp_rcv_cycles: u64,
    /// `udp_queue_rcv_skb`: memory accounting, `__skb_queue_tail`,
    /// `sk_data_ready` up to the wake-up.
    pub sock_enqueue_cycles: u64,
    // ---- receive: kernel to user -----------------------------------
    /// `try_to_wake_up` of a reader blocked in `recvfrom`.
    pub wakeup_cycles: u64,
    /// `napi_complete_done` and the IRQ's return (the re-arm's MMIO write
    /// is timed by the fabric).
    pub napi_complete_cycles: u64,
    /// `__skb_recv_udp` after the wake-up: dequeue, address, cmsg,
    /// `skb_consume_udp` (the copy itself is timed by the cache model).
    pub recvmsg_cycles: u64,
    /// Returning from a system call to user mode.
    pub syscall_exit_cycles: u64,
    /// Entering a system call from user mode.
    pub syscall_entry_cycles: u64,
    // ---- send ---------------------------------------------------------
    /// `udp_sendmsg` → `ip_make_skb` (the copy from user is timed).
    pub udp_send_cycles: u64,
    /// `ip_local_out`, neighbour output, `dev_queue_xmit`.
    pub ip_output_cycles: u64,
    /// pfifo_fast enqueue, `qdisc_run`, dequeue.
    pub qdisc_cycles: u64,
    /// `ice_start_xmit`: descriptor, then the tail doorbell (timed).
    pub driver_tx_cycles: u64,
    /// TX completion in the NAPI poll, per packet (`ice_clean_tx_irq`).
    pub tx_clean_cycles: u64,
    /// Copying to or from user space, per byte beyond the cache-modelled
    /// loads and stores (`copy_user_enhanced_fast_string`).
    pub copy_cycles_per_32_bytes: u64,
}

/// The Table 1 kernel's scheduler: its context switch, which the OS
/// model's [`crate::OsCosts`] carries for that kernel.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TestbedScheduler {
    pub context_switch_cycles: u64,
}

impl LinuxNetCosts {
    /// The Table 1 kernel (see the module doc): fitted; the root preset's
    /// `[os.linux_net.accio_testbed]` says how each phase was split.
    pub fn accio_testbed() -> LinuxNetCosts {
        nextio_presets::root_section("os.linux_net.accio_testbed")
    }

    /// The context switch of the Table 1 kernel (see
    /// [`LinuxNetCosts::accio_testbed`]): fitted.
    pub fn accio_testbed_context_switch_cycles() -> u64 {
        nextio_presets::root_section::<TestbedScheduler>("os.linux_net.accio_testbed_scheduler")
            .context_switch_cycles
    }

    /// A production kernel (see the module doc): assumptions.
    pub fn production() -> LinuxNetCosts {
        nextio_presets::root_section("os.linux_net.production")
    }

    /// The same path on a core that needs `factor` times the cycles.
    pub fn scaled(self, factor: f64) -> LinuxNetCosts {
        let s = |c: u64| (c as f64 * factor).round() as u64;
        LinuxNetCosts {
            hardirq_cycles: s(self.hardirq_cycles),
            softirq_cycles: s(self.softirq_cycles),
            driver_rx_cycles: s(self.driver_rx_cycles),
            netif_rx_cycles: s(self.netif_rx_cycles),
            ip_rcv_cycles: s(self.ip_rcv_cycles),
            udp_rcv_cycles: s(self.udp_rcv_cycles),
            sock_enqueue_cycles: s(self.sock_enqueue_cycles),
            wakeup_cycles: s(self.wakeup_cycles),
            napi_complete_cycles: s(self.napi_complete_cycles),
            recvmsg_cycles: s(self.recvmsg_cycles),
            syscall_exit_cycles: s(self.syscall_exit_cycles),
            syscall_entry_cycles: s(self.syscall_entry_cycles),
            udp_send_cycles: s(self.udp_send_cycles),
            ip_output_cycles: s(self.ip_output_cycles),
            qdisc_cycles: s(self.qdisc_cycles),
            driver_tx_cycles: s(self.driver_tx_cycles),
            tx_clean_cycles: s(self.tx_clean_cycles),
            copy_cycles_per_32_bytes: s(self.copy_cycles_per_32_bytes).max(1),
        }
    }

    /// Cycles a copy of `bytes` costs beyond its loads and stores.
    pub fn copy_cycles(&self, bytes: u64) -> u64 {
        bytes.div_ceil(32) * self.copy_cycles_per_32_bytes
    }
}

/// CoreMark per MHz of the test servers over the FPGA prototype's Rocket
/// cores (Accio Table 2: 23018.49 at an average 2 GHz, §8.2, against
/// 108.51 at 50 MHz): ≈5.30.
pub fn rocket_cycle_factor() -> f64 {
    (23018.49 / 2000.0) / (108.51 / 50.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Cycles at the Table 1 server's average clock (§8.2: ≈2 GHz).
    fn us(us: f64) -> u64 {
        (us * 2000.0).round() as u64
    }

    #[test]
    fn testbed_phases_sum_to_the_split_of_table_1() {
        let c = LinuxNetCosts::accio_testbed();
        let nic_to_kernel =
            c.hardirq_cycles + c.softirq_cycles + c.driver_rx_cycles + c.netif_rx_cycles;
        assert_eq!(nic_to_kernel, us(4.20));
        let header = c.ip_rcv_cycles + c.udp_rcv_cycles + c.sock_enqueue_cycles;
        assert_eq!(header, us(2.95));
        let to_user = c.wakeup_cycles
            + c.napi_complete_cycles
            + LinuxNetCosts::accio_testbed_context_switch_cycles()
            + c.recvmsg_cycles
            + c.syscall_exit_cycles;
        assert_eq!(to_user, us(11.75));
        assert!((rocket_cycle_factor() - 5.30).abs() < 0.01);
        let slow = c.scaled(2.0);
        assert_eq!(slow.ip_rcv_cycles, 2 * c.ip_rcv_cycles);
    }
}
