//! Shared set-up of the user-space DMA experiments: a host with the
//! engine attached, one process bound to it with a dedicated queue, and
//! helpers to time a closed loop of operations on one core.

use nextio_engine::{Category, Duration, Ledger, Sim, SimRng};
use nextio_hw::devices::udma::UdmaConfig;
use nextio_hw::machine::MachineSpec;
use nextio_hw::mem::VirtAddr;
use nextio_os::udma::{Portal, UdmaDriver};
use nextio_os::{Host, OsCosts, Process, Thread};

use crate::experiment::RunError;

/// The host: an Ice Lake-SP preset (assumption: the model has no
/// Sapphire Rapids preset; DSA ships on Sapphire Rapids, whose core clock
/// and caches are close) with the engine on the die.
pub fn udma_host(sim: &Sim, cores: usize, seed: u64) -> Result<(Host, UdmaDriver), RunError> {
    let err = |e: &dyn std::fmt::Display| RunError::Config(e.to_string());
    let host =
        Host::new(sim, MachineSpec::ice_lake_sp(cores), OsCosts::default()).map_err(|e| err(&e))?;
    let drv = UdmaDriver::attach(&host, UdmaConfig::default(), SimRng::new(seed).fork("udma"))
        .map_err(|e| err(&e))?;
    Ok((host, drv))
}

/// A process with a dedicated queue (queue 0), a thread on core 0 and a
/// source and destination region of `bytes`, the source filled (by the
/// loader: untimed, so no cache holds it).
pub struct Client {
    pub process: Process,
    pub thread: Thread,
    pub portal: Portal,
    pub src: VirtAddr,
    pub dst: VirtAddr,
}

pub fn client(drv: &UdmaDriver, host: &Host, bytes: u64) -> Result<Client, RunError> {
    let err = |e: &dyn std::fmt::Display| RunError::Config(e.to_string());
    let process = host.create_process().map_err(|e| err(&e))?;
    let portal = drv.open_dedicated(&process, 0).map_err(|e| err(&e))?;
    let thread = process.thread(0).map_err(|e| err(&e))?;
    let src = process.mmap(bytes, false).map_err(|e| err(&e))?;
    let dst = process.mmap(bytes, false).map_err(|e| err(&e))?;
    let data: Vec<u8> = (0..bytes).map(|i| (i % 251) as u8).collect();
    thread.ctx.poke(src, &data).map_err(|e| err(&e))?;
    Ok(Client {
        process,
        thread,
        portal,
        src,
        dst,
    })
}

/// Whether `dst` holds the source pattern over `bytes` (real bytes moved).
pub fn copied(c: &Client, bytes: u64) -> bool {
    let mut got = vec![0u8; bytes as usize];
    c.thread.ctx.peek(c.dst, &mut got).is_ok()
        && got.iter().enumerate().all(|(i, b)| *b == (i % 251) as u8)
}

/// A core's time that is neither idle nor spent waiting: what a path
/// costs the core (application, kernel, driver and interrupt time;
/// spinning on a record or a flag is polling and not counted).
pub fn busy(l: &Ledger) -> Duration {
    [
        Category::Application,
        Category::Kernel,
        Category::Driver,
        Category::Interrupt,
    ]
    .iter()
    .map(|c| l.get(*c))
    .fold(Duration::ZERO, |a, b| a + b)
}
