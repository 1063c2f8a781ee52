//! `udma-p2p` — storage blocks sent as UDP frames by a NIC, with and
//! without a kernel bounce buffer (G3). A block device and a packetized
//! NIC sit under one PCIe switch that forwards peer to peer; the NIC's
//! port feeds a sink that records every frame. Each storage block becomes
//! one frame's UDP payload, in order. Two ways to send `kib` KiB:
//!
//! * **bounce**: a system call; the kernel has the device read the blocks
//!   into a kernel buffer in host memory (each after a header gap), writes
//!   the Ethernet/IPv4/UDP headers into the gaps and posts TX descriptors
//!   pointing there; the NIC reads the frames back out of host memory
//!   (the payload crosses the switch's uplink twice);
//! * **direct**: from user space, no kernel: the device reads the blocks
//!   into its own controller memory buffer (CMB) after the same header
//!   gaps, the process writes the headers into the CMB through its
//!   mapping, and posts descriptors whose buffer addresses are in the CMB;
//!   the NIC reads each frame across the switch, peer to peer, so no
//!   payload byte reaches the uplink or host memory.
//!
//! Keeps true: every frame on the wire carries exactly the block read
//! from the media for it (the run fails otherwise), one frame per block.
//! Reports latency, the bytes that crossed the switch's uplink, host DRAM
//! bytes and the core's non-waiting time. Model only.

use std::cell::RefCell;
use std::rc::Rc;

use nextio_engine::{Category, Duration};
use nextio_hw::device::Device as _;
use nextio_hw::devices::blockdev::layout::{
    COMMAND_BYTES, COMPLETION_BYTES, Command, status as bstatus,
};
use nextio_hw::devices::blockdev::{BlockDev, BlockDevConfig};
use nextio_hw::ethernet::{FrameSink, LinkConfig};
use nextio_hw::fabric::{Attach, DeviceLink, P2pPolicy, SwitchConfig};
use nextio_hw::machine::{MachineSpec, frame_inbox};
use nextio_hw::nic::packetized::layout::{
    TX_DESC_BYTES, TXD_CMD_EOP, TXD_CMD_IIPT_IPV4, TXD_CMD_L4T_UDP, TXD_CMD_RS, TxDataDesc,
    tx_offsets,
};
use nextio_hw::nic::packetized::{PacketizedConfig, PacketizedNic, regs};
use nextio_hw::packet::{self, FlowKey, Frame, Macs, UDP_HEADERS_BYTES};
use nextio_hw::pcie::PcieConfig;
use nextio_os::{Host, OsCosts};
use serde_json::json;

use crate::experiment::{
    Axis, CheckSpec, Experiment, Origin, Outcome, RunContext, RunError, Series, SimTally,
};
use crate::params::{ParamKind, ParamSpec};
use crate::udma_common::busy;

pub struct UdmaP2p;

const PARAMS: &[ParamSpec] = &[
    ParamSpec::new(
        "kib",
        ParamKind::U64List,
        "4,64,512",
        "KiB",
        "bytes moved per transfer, 1 to 2048 KiB",
    )
    .quick("4,64")
    .int(1, 2048)
    .items(1, 16),
    ParamSpec::new(
        "transfers",
        ParamKind::U64,
        "8",
        "transfers",
        "transfers per point, 1 to 10000",
    )
    .quick("3")
    .int(1, 10_000),
];

const CHECKS: &[CheckSpec] = &[
    CheckSpec::new(
        "bounce-over-direct-latency",
        "bounce ÷ direct latency per transfer, storage to the NIC's last frame read, the largest size",
        "×",
        Origin::Simulated,
    ),
    CheckSpec::new(
        "direct-uplink-per-payload-byte",
        "bytes over the switch's uplink per payload byte sent, direct, the largest size (headers, descriptors, doorbells, completions only: below 1 means no payload crossed)",
        "B/B",
        Origin::Simulated,
    ),
    CheckSpec::new(
        "bounce-uplink-per-payload-byte",
        "bytes over the switch's uplink per payload byte sent, bounce, the largest size (the payload crosses down and back up)",
        "B/B",
        Origin::Simulated,
    ),
];

/// The two ways a transfer reaches the NIC.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Way {
    /// Through a kernel buffer in host memory.
    Bounce,
    /// Peer to peer from the block device's CMB.
    Direct,
}
const WAYS: [(Way, &str); 2] = [(Way::Bounce, "bounce"), (Way::Direct, "direct")];

/// assumption: 1 KiB blocks (NVMe LBA formats go from 512 B up), so one
/// block fills one standard Ethernet frame's UDP payload (at most
/// 1472 B) and a block is a frame.
pub const BLOCK_BYTES: u64 = 1024;
/// Where frame `k` of a transfer sits in its staging buffer (the kernel
/// buffer or the CMB): the headers at `k * SLOT_BYTES`, the block right
/// after them, so one descriptor covers the frame. The one layout both
/// ways use. 2 KiB slots keep each slot inside one 4 KiB page.
const SLOT_BYTES: u64 = 2048;
const FRAME_BYTES: u64 = UDP_HEADERS_BYTES as u64 + BLOCK_BYTES;
const _: () = assert!(FRAME_BYTES <= SLOT_BYTES);
const _: () = assert!(FRAME_BYTES as usize + packet::FCS_BYTES <= packet::MAX_FRAME_BYTES);
fn slot(k: u64) -> u64 {
    k * SLOT_BYTES
}
/// TX ring entries: more than the largest transfer's frames (2048), so a
/// transfer's descriptors never overwrite ones the NIC still owns.
const TX_RING_ENTRIES: u32 = 4096;

/// The flow the frames go out on (addresses are arbitrary: the sink only
/// records).
fn flow() -> (Macs, FlowKey) {
    (
        Macs::default(),
        FlowKey {
            src_ip: std::net::Ipv4Addr::new(10, 0, 0, 1),
            dst_ip: std::net::Ipv4Addr::new(10, 0, 0, 2),
            src_port: 5000,
            dst_port: 6000,
        },
    )
}

/// The headers of a frame carrying one block, built by the shared packet
/// builder; the NIC fills the UDP checksum in (offload), as it cannot be
/// known before the block arrives.
fn headers() -> Result<Vec<u8>, RunError> {
    let (macs, flow) = flow();
    let mut f = packet::build_udp_datagram(macs, flow, &[0u8; BLOCK_BYTES as usize])
        .map_err(|e| RunError::Config(e.to_string()))?;
    f.truncate(UDP_HEADERS_BYTES);
    Ok(f)
}

/// The first block transfer `i` reads: transfers alternate between two
/// block ranges, so a frame from the wrong transfer is told apart.
fn first_block(i: u64, blocks: u64) -> u64 {
    (i % 2) * blocks
}

/// What one run delivered, for the experiment's points and the tests.
pub struct Delivery {
    /// The frames the NIC's port put on the wire, in arrival order.
    pub frames: Vec<Frame>,
    /// The media's bytes.
    pub media: Vec<u8>,
    /// Blocks per transfer.
    pub blocks: u64,
    pub transfers: u64,
    /// Bytes (TLP headers and payload, both directions) over the
    /// switch's uplink, over the whole run's transfers.
    pub uplink_bytes: u64,
    /// Host DRAM bytes read and written over the transfers.
    pub dram_bytes: u64,
    /// Bytes the NIC read out of the block device's CMB.
    pub cmb_bytes_read: u64,
    elapsed: Duration,
    busy: Duration,
    tally: SimTally,
}

impl Delivery {
    /// The block frame `n` must carry: transfer `n / blocks`, block
    /// `n % blocks` of it.
    pub fn expected_payload(&self, n: u64) -> &[u8] {
        let (i, k) = (n / self.blocks, n % self.blocks);
        let at = ((first_block(i, self.blocks) + k) * BLOCK_BYTES) as usize;
        &self.media[at..at + BLOCK_BYTES as usize]
    }
    /// Every frame parses (checksums verified) and carries exactly its
    /// block, in order, and there is one frame per block read.
    pub fn verify(&self) -> Result<(), String> {
        let want = self.blocks * self.transfers;
        if self.frames.len() as u64 != want {
            return Err(format!("{} frames for {want} blocks", self.frames.len()));
        }
        for (n, f) in self.frames.iter().enumerate() {
            let v = packet::parse_udp(&f.bytes).map_err(|e| format!("frame {n}: {e}"))?;
            let got = &f.bytes[v.payload_offset..v.payload_offset + v.payload_len];
            if got != self.expected_payload(n as u64) {
                return Err(format!("frame {n} does not carry its block"));
            }
        }
        Ok(())
    }
}

/// Run `transfers` transfers of `kib` KiB `way`, and collect what the
/// NIC's wire carried.
pub fn deliver(ctx: &RunContext, way: Way, kib: u64, transfers: u64) -> Result<Delivery, RunError> {
    let err = |e: &dyn std::fmt::Display| RunError::Config(e.to_string());
    let sim = ctx.new_sim();
    let host =
        Host::new(&sim, MachineSpec::ice_lake_sp(1), OsCosts::default()).map_err(|e| err(&e))?;
    let fabric = host.machine().fabric().clone();
    let sw = fabric
        .add_switch(
            Attach::RootPort,
            PcieConfig::gen_lanes(3, 16),
            SwitchConfig {
                p2p: P2pPolicy::Direct,
                ..SwitchConfig::default()
            },
        )
        .map_err(|e| err(&e))?;
    let blocks = (kib << 10) / BLOCK_BYTES;
    let cfg = BlockDevConfig {
        block_bytes: BLOCK_BYTES,
        blocks: 2 * blocks,
        cmb_bytes: slot(blocks).next_power_of_two().max(4096),
        ..BlockDevConfig::default()
    };
    let link = DeviceLink::pcie(PcieConfig::gen_lanes(3, 16));
    let disk = host
        .attach(
            BlockDev::new(cfg).map_err(|e| err(&e))?,
            Attach::Switch(sw),
            link.clone(),
        )
        .map_err(|e| err(&e))?;
    let nic = host
        .attach(
            PacketizedNic::new(PacketizedConfig::default()).map_err(|e| err(&e))?,
            Attach::Switch(sw),
            link,
        )
        .map_err(|e| err(&e))?;
    let inbox = frame_inbox(&sim);
    host.machine()
        .wire_port(
            nic.id,
            0,
            inbox.clone() as Rc<dyn FrameSink>,
            LinkConfig::default(),
            LinkConfig::default(),
        )
        .map_err(|e| err(&e))?;
    let media: Vec<u8> = (0..2 * blocks * BLOCK_BYTES)
        .map(|i| (i % 251) as u8)
        .collect();
    disk.borrow_mut().load(0, &media);
    let disk_cmb = fabric.bar(disk.id, 1).ok_or_else(|| err(&"no CMB"))?;
    // The process maps the disk's doorbell, its CMB and the NIC's
    // registers (user-space storage and networking, SPDK/DPDK-style).
    // The bounce path's kernel rings the same registers; its own mapping
    // of them would cost the same stores.
    let p = host.create_process().map_err(|e| err(&e))?;
    let bell = p.map_bar(disk.id, 0, 0, 4096).map_err(|e| err(&e))?;
    let cmb_va = p
        .map_bar(disk.id, 1, 0, disk_cmb.bytes)
        .map_err(|e| err(&e))?;
    let nic_regs = p
        .map_bar(nic.id, 0, 0, regs::BAR0_BYTES)
        .map_err(|e| err(&e))?;
    // Pinned host memory: the completion words (disk writes), the TX ring
    // (NIC reads, writes back) and, for the bounce, the kernel buffer
    // (disk writes, NIC reads); each mapped for the device that uses it.
    let span = |b: u64| b.div_ceil(4096) * 4096;
    let cpl_bytes = span(blocks * COMPLETION_BYTES as u64);
    let ring_bytes = span(TX_RING_ENTRIES as u64 * TX_DESC_BYTES);
    let staging_bytes = span(slot(blocks));
    let memory = host.machine().memory().clone();
    let alloc = |bytes: u64| {
        memory
            .borrow_mut()
            .phys
            .alloc(bytes, 4096)
            .map(|r| r.base)
            .map_err(|e| err(&e))
    };
    let (cpl, ring, kbuf) = (alloc(cpl_bytes)?, alloc(ring_bytes)?, alloc(staging_bytes)?);
    {
        let mut k = host.kernel().borrow_mut();
        let ddom = k.device_domain(disk.id).map_err(|e| err(&e))?;
        let ndom = k.device_domain(nic.id).map_err(|e| err(&e))?;
        for (dom, at, bytes, write) in [
            (ddom, cpl, cpl_bytes, true),
            (ddom, kbuf, staging_bytes, true),
            (ndom, ring, ring_bytes, true),
            (ndom, kbuf, staging_bytes, false),
        ] {
            fabric
                .iommu_map(dom, at.0, at, bytes, write)
                .map_err(|e| err(&e))?;
        }
    }
    nic.borrow_mut()
        .configure_tx(0, ring.0, TX_RING_ENTRIES)
        .map_err(|e| err(&e))?;
    let cpl_watch = memory.borrow_mut().watch(cpl, cpl_bytes);
    let ring_watch = memory.borrow_mut().watch(ring, ring_bytes);
    let core = host
        .machine()
        .core(0)
        .cloned()
        .ok_or_else(|| err(&"core"))?;
    let t = p.thread(0).map_err(|e| err(&e))?.ctx;
    let os = OsCosts::default();
    let dpdk = nextio_lib::dpdk::costs();
    let hdr = headers()?;
    // Where frame k's bytes are, as the NIC addresses them.
    let staging = match way {
        Way::Bounce => kbuf.0,
        Way::Direct => disk_cmb.base,
    };
    let out = Rc::new(RefCell::new(Err::<(Duration, Duration), String>(
        "not run".into(),
    )));
    let o = out.clone();
    let m = memory.clone();
    sim.spawn(async move {
        let r: Result<(Duration, Duration), String> = async {
            let e = |x: &dyn std::fmt::Display| x.to_string();
            let kernel = way == Way::Bounce;
            t.sync().await;
            let (start, b0) = (t.local_now(), busy(&core.ledger_at(t.local_now())));
            let mut tail = 0u32;
            for i in 0..transfers {
                if kernel {
                    t.cycles(Category::Kernel, os.syscall_cycles);
                }
                m.borrow_mut()
                    .phys
                    .write(cpl, &vec![0u8; (blocks * COMPLETION_BYTES as u64) as usize])
                    .map_err(|x| e(&x))?;
                // One read per block, each to its slot after the header
                // gap: into the kernel buffer, or into the CMB.
                for k in 0..blocks {
                    let mut c =
                        Command::new([0u8; COMMAND_BYTES]).unwrap_or_else(|| unreachable!());
                    let (addr, to_cmb) = match way {
                        Way::Bounce => (kbuf.0 + slot(k) + UDP_HEADERS_BYTES as u64, false),
                        Way::Direct => (slot(k) + UDP_HEADERS_BYTES as u64, true),
                    };
                    c.set_read(
                        first_block(i, blocks) + k,
                        1,
                        addr,
                        to_cmb,
                        cpl.0 + k * COMPLETION_BYTES as u64,
                        i * blocks + k,
                    );
                    t.mmio_write(bell, &c.into_inner(), "doorbell")
                        .await
                        .map_err(|x| e(&x))?;
                }
                // The headers, while the reads are in flight: stores into
                // host memory (the kernel, charged as a driver's
                // per-packet work), or writes through the CMB mapping.
                for k in 0..blocks {
                    match way {
                        Way::Bounce => {
                            t.cycles(Category::Kernel, dpdk.tx_per_packet_cycles);
                            m.borrow_mut()
                                .phys
                                .write(kbuf.offset(slot(k)), &hdr)
                                .map_err(|x| e(&x))?;
                        }
                        Way::Direct => {
                            t.mmio_write(cmb_va.offset(slot(k)), &hdr, "headers")
                                .await
                                .map_err(|x| e(&x))?;
                        }
                    }
                }
                let mm = m.clone();
                t.spin_until(&cpl_watch, || {
                    (0..blocks).all(|k| {
                        mm.borrow()
                            .phys
                            .read_u64(cpl.offset(k * COMPLETION_BYTES as u64))
                            .is_ok_and(|v| v as u8 != 0)
                    })
                })
                .await;
                for k in 0..blocks {
                    let st = m
                        .borrow()
                        .phys
                        .read_u64(cpl.offset(k * COMPLETION_BYTES as u64))
                        .map_err(|x| e(&x))? as u8;
                    if st != bstatus::SUCCESS {
                        return Err(format!("block {k} read status {st:#x}"));
                    }
                }
                // One descriptor per frame, the RS bit on the last so one
                // write-back says the transfer has left.
                let offsets = tx_offsets(14, 20, 8);
                let mut last = 0;
                for k in 0..blocks {
                    let mut cmd = TXD_CMD_EOP | TXD_CMD_L4T_UDP | TXD_CMD_IIPT_IPV4;
                    if k + 1 == blocks {
                        cmd |= TXD_CMD_RS;
                    }
                    let d = TxDataDesc::build(staging + slot(k), cmd, offsets, FRAME_BYTES);
                    t.cycles(
                        if kernel {
                            Category::Kernel
                        } else {
                            Category::Driver
                        },
                        dpdk.tx_per_packet_cycles,
                    );
                    m.borrow_mut()
                        .phys
                        .write(ring.offset(tail as u64 * TX_DESC_BYTES), &d)
                        .map_err(|x| e(&x))?;
                    last = tail;
                    tail = (tail + 1) % TX_RING_ENTRIES;
                }
                t.cycles(Category::Driver, dpdk.doorbell_cycles);
                t.mmio_write(
                    nic_regs.offset(regs::tx_tail(0)),
                    &tail.to_le_bytes(),
                    "tx-tail",
                )
                .await
                .map_err(|x| e(&x))?;
                let at = ring.offset(last as u64 * TX_DESC_BYTES);
                let mm = m.clone();
                t.spin_until(&ring_watch, || {
                    let mut d = [0u8; TX_DESC_BYTES as usize];
                    mm.borrow().phys.read(at, &mut d).is_ok()
                        && TxDataDesc::new_unchecked(&d[..]).done()
                })
                .await;
                if kernel {
                    t.cycles(Category::Kernel, os.syscall_cycles);
                }
            }
            t.sync().await;
            let end = t.local_now();
            Ok((end - start, busy(&core.ledger_at(end)).saturating_sub(b0)))
        }
        .await;
        *o.borrow_mut() = r;
    });
    // The sink: records the frames expected, as they arrive.
    let got = Rc::new(RefCell::new(Vec::new()));
    let (g, ib, want) = (got.clone(), inbox.clone(), blocks * transfers);
    sim.spawn(async move {
        for _ in 0..want {
            let f = ib.recv().await;
            g.borrow_mut().push(f);
        }
    });
    let uplink = || {
        fabric
            .switch_link_counters(sw)
            .map(|(u, d)| u.header_bytes + u.payload_bytes + d.header_bytes + d.payload_bytes)
            .unwrap_or(0)
    };
    let up0 = uplink();
    let dram0 = fabric.memory_side_stats();
    sim.run();
    let (elapsed, busy_time) = out.borrow().clone().map_err(RunError::Config)?;
    let dram = fabric.memory_side_stats();
    let dram_bytes = (dram.dram_read_bytes + dram.dram_write_bytes)
        - (dram0.dram_read_bytes + dram0.dram_write_bytes);
    let uplink_bytes = uplink() - up0;
    // Frames beyond the ones expected stay in the sink: count them in.
    let mut frames = std::mem::take(&mut *got.borrow_mut());
    frames.extend(std::iter::from_fn(|| inbox.try_recv()));
    frames.extend((0..inbox.len()).map(|_| Frame::new(Vec::new(), u64::MAX)));
    let bad = disk.borrow().counters().sum_prefix("failed.")
        + disk.borrow().counters().sum_prefix("drop.")
        + nic.borrow().counters().sum_prefix("drop.");
    if bad > 0 || fabric.counters().sum_prefix("drop.") > 0 {
        return Err(RunError::Config(format!(
            "{way:?}: reads failed or frames dropped"
        )));
    }
    let cmb_bytes_read = disk.borrow().counters().get("cmb_bytes_read");
    ctx.write_artefacts(&format!("udma-p2p-{way:?}-{kib}"), &sim)?;
    sim.shutdown();
    Ok(Delivery {
        frames,
        media,
        blocks,
        transfers,
        uplink_bytes,
        dram_bytes,
        cmb_bytes_read,
        elapsed,
        busy: busy_time,
        tally: SimTally::of(&sim, transfers),
    })
}

#[derive(Clone, Copy, Default, serde::Serialize, serde::Deserialize)]
struct Point {
    latency_us: f64,
    uplink_bytes: f64,
    dram_bytes: f64,
    busy_ns: f64,
    tally: SimTally,
}

fn run_point(ctx: &RunContext, way: Way, kib: u64, transfers: u64) -> Result<Point, RunError> {
    let d = deliver(ctx, way, kib, transfers)?;
    d.verify()
        .map_err(|e| RunError::Config(format!("{way:?}: {e}")))?;
    let n = transfers as f64;
    Ok(Point {
        latency_us: d.elapsed.as_us_f64() / n,
        uplink_bytes: d.uplink_bytes as f64 / n,
        dram_bytes: d.dram_bytes as f64 / n,
        busy_ns: d.busy.as_ns_f64() / n,
        tally: d.tally,
    })
}

impl Experiment for UdmaP2p {
    fn host(&self) -> &'static str {
        "ice-lake-sp"
    }
    fn name(&self) -> &'static str {
        "udma-p2p"
    }
    fn reproduces(&self) -> &'static str {
        "User-space DMA (Iida & Shinagawa) G3: storage → a NIC's wire, peer to peer or through a kernel bounce buffer"
    }
    fn about(&self) -> &'static str {
        "A block device and a packetized NIC under one peer-to-peer switch; each storage block goes out as one UDP frame into a recording sink. The kernel bounces each transfer through host memory (system call, device reads into a kernel buffer after header gaps, the kernel writes headers and TX descriptors, the NIC reads host memory), or a process drives it from user space: the device reads into its controller memory buffer, the process writes the headers there and posts descriptors pointing into it, and the NIC reads the frames across the switch. Reports latency, switch-uplink bytes, host DRAM bytes and core time per transfer."
    }
    fn paper(&self) -> &'static str {
        "User-space DMA (Iida & Shinagawa)"
    }
    fn params(&self) -> &'static [ParamSpec] {
        PARAMS
    }
    fn checks(&self) -> &'static [CheckSpec] {
        CHECKS
    }
    fn run(&self, ctx: &RunContext) -> Result<Outcome, RunError> {
        let kibs = ctx.params.u64_list("kib");
        let transfers = ctx.params.u64("transfers");
        let points: Vec<(usize, u64)> = (0..WAYS.len())
            .flat_map(|k| kibs.iter().map(move |s| (k, *s)))
            .collect();
        let res = ctx.sweep(&points, |_, &(k, s)| {
            run_point(ctx, WAYS[k].0, s, transfers)
        })?;
        let mut series: Vec<Series> = WAYS
            .iter()
            .map(|(_, n)| {
                Series::new(
                    *n,
                    "kib",
                    &["latency_us", "uplink_bytes", "dram_bytes", "core_busy_ns"],
                )
            })
            .collect();
        let mut get = std::collections::BTreeMap::new();
        for ((k, s), p) in points.iter().zip(&res) {
            ctx.record(p.tally);
            get.insert((*k, *s), *p);
            series[*k].push(
                json!({"kib": s, "latency_us": p.latency_us, "uplink_bytes": p.uplink_bytes,
                "dram_bytes": p.dram_bytes, "core_busy_ns": p.busy_ns}),
            );
        }
        let big = *kibs.iter().max().unwrap_or(&0);
        let payload = (big * BLOCK_BYTES) as f64;
        let mut checks = Vec::new();
        if let (Some(b), Some(d)) = (get.get(&(0, big)), get.get(&(1, big))) {
            checks.push(CHECKS[0].judge(b.latency_us / d.latency_us));
            checks.push(CHECKS[1].judge(d.uplink_bytes / payload));
            checks.push(CHECKS[2].judge(b.uplink_bytes / payload));
        }
        Ok(Outcome {
            series,
            axes: vec![
                Axis::new("kib", "bytes per transfer (KiB)").log(),
                Axis::new("latency_us", "latency per transfer (µs)"),
                Axis::new("uplink_bytes", "bytes over the switch's uplink per transfer").log(),
                Axis::new("dram_bytes", "host DRAM bytes per transfer"),
                Axis::new("core_busy_ns", "core time per transfer, not waiting (ns)"),
            ],
            checks,
            notes: vec![
                "The NIC is the model's packetized NIC unchanged: it reads each frame with one DMA read at the descriptor's buffer address, and an address in the block device's CMB is routed straight across the switch.".into(),
                "Blocks are 1 KiB (an assumption) so a block is one frame's UDP payload; the headers sit in a gap before each block, the NIC fills in the UDP checksum (offload).".into(),
                "Media timing (10 µs latency, 7 GB/s) is an assumption; it is the same on both paths.".into(),
                "The direct path's uplink bytes are the headers the process writes into the CMB, the descriptor fetches and write-backs, doorbells and completions: no payload.".into(),
                "The kernel buffer is small and DDIO keeps it in the LLC, so host DRAM may see few bytes at these sizes; the cost of the bounce shows as the uplink crossings and the latency.".into(),
            ],
        })
    }
}
