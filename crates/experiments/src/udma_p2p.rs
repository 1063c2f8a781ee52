//! `udma-p2p` — storage to another device's memory, with and without a
//! kernel bounce buffer (G3). A block device and a peer device (standing
//! in for a NIC's or an accelerator's memory: its BAR is memory) sit
//! under one PCIe switch that forwards peer to peer; the engine is on
//! the CPU die. Three ways to move `kib` KiB from the media to the peer:
//!
//! * **bounce**: a system call; the kernel has the device read into a
//!   kernel buffer in host memory, waits, then has the engine copy the
//!   buffer to the peer (two crossings of the switch's uplink, host
//!   memory written and read);
//! * **engine-p2p**: from user space, no kernel: the device reads into
//!   its own memory (its controller memory buffer, mapped into the
//!   process), then the engine copies between the two devices' memories
//!   by the process's virtual addresses (through the root complex);
//! * **direct**: from user space, the device writes straight into the
//!   peer's memory across the switch (no root complex, no host memory).
//!
//! Reports latency, the bytes that crossed the switch's uplink, host DRAM
//! bytes and the core's non-waiting time. Model only.

use std::cell::RefCell;
use std::rc::Rc;

use nextio_engine::{Category, Duration, SimRng};
use nextio_hw::device::Device as _;
use nextio_hw::devices::blockdev::layout::{
    COMMAND_BYTES, COMPLETION_BYTES, Command, status as bstatus,
};
use nextio_hw::devices::blockdev::{BlockDev, BlockDevConfig};
use nextio_hw::devices::udma::UdmaConfig;
use nextio_hw::devices::udma::layout::{RECORD_BYTES, opcode, status};
use nextio_hw::fabric::{Attach, DeviceLink, P2pPolicy, SwitchConfig};
use nextio_hw::machine::MachineSpec;
use nextio_hw::mem::PhysAddr;
use nextio_hw::pcie::PcieConfig;
use nextio_lib::udma::{UdmaQueue, descriptor};
use nextio_os::udma::UdmaDriver;
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
        "bounce ÷ direct latency per transfer, the largest size",
        "×",
        Origin::Simulated,
    ),
    CheckSpec::new(
        "bounce-over-engine-p2p-latency",
        "bounce ÷ engine device-to-device latency per transfer, the largest size",
        "×",
        Origin::Simulated,
    ),
    CheckSpec::new(
        "direct-uplink-bytes",
        "bytes over the switch's uplink per direct transfer, the largest size (the doorbell and completion only)",
        "B",
        Origin::Simulated,
    ),
    CheckSpec::new(
        "bounce-uplink-bytes",
        "bytes over the switch's uplink per bounced transfer, the largest size",
        "B",
        Origin::Simulated,
    ),
];

#[derive(Clone, Copy, Debug, PartialEq)]
enum Way {
    Bounce,
    EngineP2p,
    Direct,
}
const WAYS: [(Way, &str); 3] = [
    (Way::Bounce, "bounce"),
    (Way::EngineP2p, "engine-p2p"),
    (Way::Direct, "direct"),
];

#[derive(Clone, Copy, Default, serde::Serialize, serde::Deserialize)]
struct Point {
    latency_us: f64,
    uplink_bytes: f64,
    dram_bytes: f64,
    busy_ns: f64,
    tally: SimTally,
}

fn run_point(
    ctx: &RunContext,
    way: Way,
    kib: u64,
    transfers: u64,
    seed: u64,
) -> Result<Point, RunError> {
    let err = |e: &dyn std::fmt::Display| RunError::Config(e.to_string());
    let sim = ctx.new_sim();
    let host =
        Host::new(&sim, MachineSpec::ice_lake_sp(1), OsCosts::default()).map_err(|e| err(&e))?;
    let fabric = host.machine().fabric().clone();
    let drv = UdmaDriver::attach(&host, UdmaConfig::default(), SimRng::new(seed).fork("udma"))
        .map_err(|e| err(&e))?;
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
    let bytes = kib << 10;
    let cfg = BlockDevConfig {
        cmb_bytes: (bytes * 2).next_power_of_two().max(4096),
        ..BlockDevConfig::default()
    };
    let blocks = bytes.div_ceil(cfg.block_bytes) as u32;
    let link = DeviceLink::pcie(PcieConfig::gen_lanes(3, 16));
    let disk = host
        .attach(
            BlockDev::new(cfg).map_err(|e| err(&e))?,
            Attach::Switch(sw),
            link.clone(),
        )
        .map_err(|e| err(&e))?;
    let peer = host
        .attach(
            BlockDev::new(cfg).map_err(|e| err(&e))?,
            Attach::Switch(sw),
            link,
        )
        .map_err(|e| err(&e))?;
    let media: Vec<u8> = (0..bytes).map(|i| (i % 249) as u8).collect();
    disk.borrow_mut().load(0, &media);
    let bar =
        |d: nextio_hw::device::DeviceId, b: u8| fabric.bar(d, b).ok_or_else(|| err(&"no BAR"));
    let (doorbell, disk_cmb, peer_cmb) = (bar(disk.id, 0)?, bar(disk.id, 1)?, bar(peer.id, 1)?);
    // The user process: the disk's doorbell and both devices' memories
    // mapped (user-space storage, SPDK-style), a completion buffer the
    // disk may write, and the engine's queue.
    let p = host.create_process().map_err(|e| err(&e))?;
    let bell = p.map_bar(disk.id, 0, 0, 4096).map_err(|e| err(&e))?;
    let cmb_va = p
        .map_bar(disk.id, 1, 0, disk_cmb.bytes)
        .map_err(|e| err(&e))?;
    let peer_va = p
        .map_bar(peer.id, 1, 0, peer_cmb.bytes)
        .map_err(|e| err(&e))?;
    let cpl = p.dma_alloc(disk.id, 4096).map_err(|e| err(&e))?;
    let portal = drv.open_dedicated(&p, 0).map_err(|e| err(&e))?;
    let t = p.thread(0).map_err(|e| err(&e))?;
    let mut q = UdmaQueue::new(&p, t.ctx.clone(), portal, 1).map_err(|e| err(&e))?;
    // The kernel: a bounce buffer both devices may reach, its own engine
    // queue, and the peer's memory mapped into the engine's domain.
    let kbuf = host
        .machine()
        .memory()
        .borrow_mut()
        .phys
        .alloc(bytes.div_ceil(4096) * 4096, 4096)
        .map_err(|e| err(&e))?
        .base;
    let kcpl = drv.kernel_page().map_err(|e| err(&e))?;
    let kportal = drv.open_kernel(1).map_err(|e| err(&e))?;
    {
        let mut k = host.kernel().borrow_mut();
        let ddom = k.device_domain(disk.id).map_err(|e| err(&e))?;
        let edom = k.device_domain(drv.device().id).map_err(|e| err(&e))?;
        let span = bytes.div_ceil(4096) * 4096;
        fabric
            .iommu_map(ddom, kbuf.0, kbuf, span, true)
            .map_err(|e| err(&e))?;
        fabric
            .iommu_map(ddom, kcpl.0, kcpl, 4096, true)
            .map_err(|e| err(&e))?;
        fabric
            .iommu_map(edom, kbuf.0, kbuf, span, false)
            .map_err(|e| err(&e))?;
        fabric
            .iommu_map(
                edom,
                peer_cmb.base,
                PhysAddr(peer_cmb.base),
                peer_cmb.bytes,
                true,
            )
            .map_err(|e| err(&e))?;
    }
    let memory = host.machine().memory().clone();
    let ucpl_watch = t
        .ctx
        .watch(cpl.va, COMPLETION_BYTES as u64)
        .map_err(|e| err(&e))?;
    let kcpl_watch = memory.borrow_mut().watch(kcpl, RECORD_BYTES as u64 + 64);
    let core = host
        .machine()
        .core(0)
        .cloned()
        .ok_or_else(|| err(&"core"))?;
    let os = OsCosts::default();
    let out = Rc::new(RefCell::new(Err::<(Duration, Duration), String>(
        "not run".into(),
    )));
    let o = out.clone();
    let ctx0 = t.ctx.clone();
    let f2 = fabric.clone();
    sim.spawn(async move {
        let r: Result<(Duration, Duration), String> = async {
            let e = |x: &dyn std::fmt::Display| x.to_string();
            let t = ctx0;
            t.sync().await;
            let (start, b0) = (t.local_now(), busy(&core.ledger_at(t.local_now())));
            for i in 0..transfers {
                let read = |addr: u64, to_cmb: bool, completion: u64| {
                    let mut c =
                        Command::new([0u8; COMMAND_BYTES]).unwrap_or_else(|| unreachable!());
                    c.set_read(0, blocks, addr, to_cmb, completion, i);
                    c.into_inner()
                };
                match way {
                    Way::Bounce => {
                        t.cycles(Category::Kernel, os.syscall_cycles);
                        memory
                            .borrow_mut()
                            .phys
                            .write(kcpl, &[0u8; 64])
                            .map_err(|x| e(&x))?;
                        t.sync().await;
                        f2.cpu_mmio_write(
                            t.core().id(),
                            PhysAddr(doorbell.base),
                            &read(kbuf.0, false, kcpl.0),
                            "doorbell",
                        )
                        .map_err(|x| e(&x))?;
                        let m = memory.clone();
                        t.spin_until(&kcpl_watch, || {
                            m.borrow().phys.read_u64(kcpl).is_ok_and(|v| v as u8 != 0)
                        })
                        .await;
                        // Then the engine: bounce buffer → the peer.
                        let rec = kcpl.offset(64);
                        m.borrow_mut()
                            .phys
                            .write(rec, &[0u8; RECORD_BYTES])
                            .map_err(|x| e(&x))?;
                        let d = descriptor(
                            opcode::MEMMOVE,
                            0,
                            kbuf.0,
                            peer_cmb.base,
                            bytes as u32,
                            rec.0,
                        );
                        t.cycles(Category::Kernel, 40);
                        t.sync().await;
                        f2.cpu_mmio_write(t.core().id(), kportal, &d, "descriptor")
                            .map_err(|x| e(&x))?;
                        t.spin_until(&kcpl_watch, || {
                            m.borrow().phys.read_u64(rec).is_ok_and(|v| v as u8 != 0)
                        })
                        .await;
                        let st = m.borrow().phys.read_u64(rec).map_err(|x| e(&x))? as u8;
                        if st != status::SUCCESS {
                            return Err(format!("bounce copy status {st:#x}"));
                        }
                        t.cycles(Category::Kernel, os.syscall_cycles);
                    }
                    Way::EngineP2p | Way::Direct => {
                        t.store(cpl.va, &[0u8; COMPLETION_BYTES], Category::Application)
                            .map_err(|x| e(&x))?;
                        let cmd = if way == Way::Direct {
                            read(peer_cmb.base, false, cpl.iova)
                        } else {
                            read(0, true, cpl.iova)
                        };
                        t.mmio_write(bell, &cmd, "doorbell")
                            .await
                            .map_err(|x| e(&x))?;
                        let c2 = t.clone();
                        t.spin_until(&ucpl_watch, || {
                            let mut b = [0u8; 1];
                            c2.peek(cpl.va, &mut b).is_ok() && b[0] != 0
                        })
                        .await;
                        let mut b = [0u8; 1];
                        t.load(cpl.va, &mut b, Category::Application)
                            .map_err(|x| e(&x))?;
                        if b[0] != bstatus::SUCCESS {
                            return Err(format!("read status {:#x}", b[0]));
                        }
                        if way == Way::EngineP2p {
                            let r = q
                                .memcpy(peer_va, cmb_va, bytes as u32)
                                .await
                                .map_err(|x| e(&x))?;
                            if r.status() != status::SUCCESS {
                                return Err(format!("engine copy status {:#x}", r.status()));
                            }
                        }
                    }
                }
            }
            t.sync().await;
            let end = t.local_now();
            Ok((end - start, busy(&core.ledger_at(end)).saturating_sub(b0)))
        }
        .await;
        *o.borrow_mut() = r;
    });
    let up0 = fabric
        .switch_link_counters(sw)
        .map(|(u, d)| u.header_bytes + u.payload_bytes + d.header_bytes + d.payload_bytes)
        .unwrap_or(0);
    let dram0 = fabric.memory_side_stats();
    sim.run();
    let (elapsed, busy_time) = out.borrow().clone().map_err(RunError::Config)?;
    // Direct writes may still be landing when the loop ends; the run has
    // drained, so the peer's memory is final now.
    if peer.borrow().cmb()[..bytes as usize] != media[..] {
        return Err(RunError::Config(format!(
            "{way:?}: the peer's memory differs from the media"
        )));
    }
    let uplink = fabric
        .switch_link_counters(sw)
        .map(|(u, d)| u.header_bytes + u.payload_bytes + d.header_bytes + d.payload_bytes)
        .unwrap_or(0)
        - up0;
    let dram = fabric.memory_side_stats();
    let dram_bytes = (dram.dram_read_bytes + dram.dram_write_bytes)
        - (dram0.dram_read_bytes + dram0.dram_write_bytes);
    let bad = disk.borrow().counters().sum_prefix("failed.")
        + drv.device().borrow().counters().sum_prefix("faulted.");
    if bad > 0 || fabric.counters().sum_prefix("drop.") > 0 {
        return Err(RunError::Config(format!(
            "{way:?}: transfers failed or faulted"
        )));
    }
    ctx.write_artefacts(&format!("udma-p2p-{way:?}-{kib}"), &sim)?;
    sim.shutdown();
    let n = transfers as f64;
    Ok(Point {
        latency_us: elapsed.as_us_f64() / n,
        uplink_bytes: uplink as f64 / n,
        dram_bytes: dram_bytes as f64 / n,
        busy_ns: busy_time.as_ns_f64() / n,
        tally: SimTally::of(&sim, transfers),
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
        "User-space DMA (Iida & Shinagawa) G3: storage → another device's memory with and without a kernel bounce buffer"
    }
    fn about(&self) -> &'static str {
        "A block device and a peer device under one peer-to-peer switch: the kernel bounces each transfer through host memory (system call, device read into a kernel buffer, engine copy to the peer), or a process drives it from user space — the device reads into its own memory and the engine copies device to device, or the device writes straight into the peer across the switch. Reports latency, switch-uplink bytes, host DRAM bytes and core time per transfer."
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
        let res = ctx.sweep(&points, |i, &(k, s)| {
            run_point(ctx, WAYS[k].0, s, transfers, ctx.point_seed(i))
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
        let mut checks = Vec::new();
        if let (Some(b), Some(e), Some(d)) =
            (get.get(&(0, big)), get.get(&(1, big)), get.get(&(2, big)))
        {
            checks.push(CHECKS[0].judge(b.latency_us / d.latency_us));
            checks.push(CHECKS[1].judge(b.latency_us / e.latency_us));
            checks.push(CHECKS[2].judge(d.uplink_bytes));
            checks.push(CHECKS[3].judge(b.uplink_bytes));
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
                "The peer device is a second block device whose controller memory buffer stands in for a NIC's or accelerator's memory: the model's NICs have no memory BAR to receive into.".into(),
                "Media timing (10 µs latency, 7 GB/s) is an assumption; it is the same on every path.".into(),
                "The bounce buffer is small and DDIO keeps it in the LLC, so host DRAM sees no bytes at these sizes; the cost of the bounce shows as the uplink crossings and the latency.".into(),
                "The engine is on the CPU die, so its device-to-device copy goes up the switch and back down through the root complex; only the device itself can use the switch's direct path.".into(),
            ],
        })
    }
}
