//! The CPU's library for Nagare (thesis §4.3): set a policy graph up once
//! — a source and a sequence of hops, each a device with its command and
//! per-stream state — and leave the data path. The library turns a graph
//! into a chain of streams (one per hop: the hop's input), programs each
//! stream, template and adapter with a 64-byte MMIO configuration write to
//! the switch and reads the result back, and configures the devices'
//! control planes (an Ensō pipe whose ring *is* a stream window; a legacy
//! accelerator whose command ring sits in the switch's memory).
//!
//! It also offers the CPU's own use of the switch (§4.5): a push of host
//! memory into a stream, or a host-to-host copy, with one MMIO write; and
//! reading the switch's error log.
//!
//! Invariants: streams are programmed from the end of the chain back, so
//! every stream's output exists before it; a configuration the switch
//! refuses is returned as an error and the graph is not used; every
//! stream's writers are exactly the previous hop's device (or the source).

use nextio_engine::Category;
use nextio_hw::cpu::{CoreCtx, MmioAccessError};
use nextio_hw::device::DeviceId;
use nextio_hw::fabric::DeviceHandle;
use nextio_hw::mem::VirtAddr;
use nextio_hw::nagare::NagareSwitch;
use nextio_hw::nagare::layout::{
    Action, AdapterKind, CPU_WRITER, ConfigEntry, ConfigError, ENTRY_BYTES, ErrorEntry,
    PushCommand, SINK_ENTRIES, STATE_BYTES, StreamFormat, WriterSet, bar, regs, sink_offset,
    writer_bit,
};
use nextio_hw::nic::enso::{EnsoNic, EnsoNicError, Register};
use nextio_hw::packet::FlowKey;
use nextio_os::{DmaBuffer, OsError, Process};
use serde::{Deserialize, Serialize};
use thiserror::Error;

/// The library's own instructions, in core cycles: the root preset's
/// `[nagare_lib]`, where each value's source is. Set-up is off the data
/// path: its cost is reported, not a result.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NagareLibCosts {
    /// Building one configuration entry.
    pub config_entry_cycles: u64,
    /// Building one push command.
    pub push_command_cycles: u64,
}

impl Default for NagareLibCosts {
    /// The root preset's `[nagare_lib]`.
    fn default() -> Self {
        nextio_presets::root_section("nagare_lib")
    }
}

#[derive(Debug, Error)]
pub enum NagareLibError {
    #[error(transparent)]
    Os(#[from] OsError),
    #[error(transparent)]
    Mmio(#[from] MmioAccessError),
    #[error(transparent)]
    Nic(#[from] EnsoNicError),
    #[error("the switch refused a configuration entry: {0}")]
    Refused(ConfigError),
    #[error("invalid policy graph: {0}")]
    Graph(&'static str),
    #[error("the switch has no room for {0}")]
    NoRoom(&'static str),
}

/// Where a chain's messages come from.
#[derive(Clone)]
pub enum Source {
    /// Frames of `flow` arriving at an Ensō NIC: its pipe's ring is the
    /// first stream's window.
    EnsoFlow {
        nic: DeviceHandle<EnsoNic>,
        flow: FlowKey,
    },
    /// A device that pushes records itself.
    Device(DeviceId),
    /// The CPU, with push commands.
    Cpu,
}

/// How the switch reaches a hop's device.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Via {
    /// A streaming device: command messages pushed into its BAR1 window.
    Stream,
    /// An unmodified command-queue accelerator, through a switch adapter.
    CommandQueue { entries: u32 },
    /// A NIC's push window (BAR1): a frame built from `template`.
    NicPush { template: Vec<u8> },
    /// An unmodified Ensō NIC's TX ring, through a switch adapter.
    NicTx { template: Vec<u8>, entries: u32 },
    /// A ring in host memory the CPU reads.
    Host { ring: DmaBuffer },
}

/// One hop of a policy graph.
#[derive(Clone, Debug)]
pub struct Hop {
    pub device: DeviceId,
    pub via: Via,
    pub op: u32,
    pub param: u64,
    pub state: [u8; STATE_BYTES],
}

/// A set-up chain: its streams, first to last.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Chain {
    pub streams: Vec<u16>,
}

fn nic_of(s: &Source) -> Option<DeviceHandle<EnsoNic>> {
    match s {
        Source::EnsoFlow { nic, .. } => Some(nic.clone()),
        _ => None,
    }
}

/// A thread's handle on the switch.
pub struct Nagare {
    ctx: CoreCtx,
    process: Process,
    switch: DeviceHandle<NagareSwitch>,
    regs: VirtAddr,
    next_stream: u16,
    next_adapter: u16,
    /// Configuration entries written, for the report.
    pub entries_written: u64,
    costs: NagareLibCosts,
}

impl Nagare {
    /// Map the switch's registers into `process` for the thread on `ctx`.
    pub fn open(
        ctx: CoreCtx,
        process: &Process,
        switch: DeviceHandle<NagareSwitch>,
    ) -> Result<Nagare, NagareLibError> {
        let regs = process.map_bar(switch.id, bar::REGISTERS, 0, regs::BYTES)?;
        Ok(Nagare {
            ctx,
            process: process.clone(),
            switch,
            regs,
            next_stream: 0,
            next_adapter: 0,
            entries_written: 0,
            costs: NagareLibCosts::default(),
        })
    }

    pub fn switch(&self) -> &DeviceHandle<NagareSwitch> {
        &self.switch
    }

    /// Write one configuration entry and read its result.
    pub async fn configure(&mut self, e: &ConfigEntry) -> Result<(), NagareLibError> {
        self.ctx
            .cycles(Category::Driver, self.costs.config_entry_cycles);
        self.ctx
            .mmio_write(self.regs.offset(regs::CONFIG), &e.emit(), "config")
            .await?;
        let v = self
            .ctx
            .mmio_read(
                self.regs.offset(regs::CONFIG_STATUS),
                8,
                "config",
                Category::Driver,
            )
            .await?;
        self.entries_written += 1;
        let code = u64::from_le_bytes(v.try_into().unwrap_or([0; 8]));
        match ConfigError::from_code(code) {
            Some(e) => Err(NagareLibError::Refused(e)),
            None => Ok(()),
        }
    }

    /// A stream id neither in the switch's table nor handed out before
    /// (other processes' chains share the table).
    fn stream_id(&mut self) -> Result<u16, NagareLibError> {
        let sw = self.switch.borrow();
        let max = sw.config().max_streams;
        while self.next_stream < max && sw.stream_in_use(self.next_stream) {
            self.next_stream += 1;
        }
        if self.next_stream >= max {
            return Err(NagareLibError::NoRoom("another stream"));
        }
        self.next_stream += 1;
        Ok(self.next_stream - 1)
    }

    fn writer(id: DeviceId) -> Result<WriterSet, NagareLibError> {
        writer_bit(id.0).ok_or(NagareLibError::Graph("device id beyond the writer set"))
    }

    /// Set up `hops` fed by `source`: program the switch and the devices'
    /// control planes. After this the CPU is off the data path.
    pub async fn create_chain(
        &mut self,
        source: Source,
        hops: &[Hop],
        configure_ring: &mut dyn FnMut(DeviceId, u64, u32) -> Result<(), String>,
    ) -> Result<Chain, NagareLibError> {
        if hops.is_empty() {
            return Err(NagareLibError::Graph("a chain needs at least one hop"));
        }
        for (i, h) in hops.iter().enumerate() {
            let last = i + 1 == hops.len();
            let terminal = matches!(
                h.via,
                Via::NicPush { .. } | Via::NicTx { .. } | Via::Host { .. }
            );
            if terminal != last {
                return Err(NagareLibError::Graph(
                    "NIC and host hops end a chain, and a chain ends with one",
                ));
            }
        }
        let streams: Vec<u16> = (0..hops.len())
            .map(|_| self.stream_id())
            .collect::<Result<_, _>>()?;
        let fabric = self.process.host().machine().fabric().clone();
        // Writers: the source for the first stream, each hop's device for
        // the next.
        let first_writer = match &source {
            Source::EnsoFlow { nic, .. } => Self::writer(nic.id)?,
            Source::Device(d) => Self::writer(*d)?,
            Source::Cpu => CPU_WRITER,
        };
        for i in (0..hops.len()).rev() {
            let h = &hops[i];
            let s = streams[i];
            let out = streams.get(i + 1).copied();
            let writers = if i == 0 {
                first_writer
            } else {
                Self::writer(hops[i - 1].device)?
            };
            let format = match (&source, i) {
                (Source::EnsoFlow { .. }, 0) => StreamFormat::EnsoFrames,
                _ => StreamFormat::Records,
            };
            let bar1 = |d: DeviceId| {
                fabric
                    .bar(d, 1)
                    .map(|w| w.base)
                    .ok_or(NagareLibError::Graph("the hop's device has no BAR1 window"))
            };
            let (action, target, ring_bytes, adapter) = match &h.via {
                Via::Stream => (Action::Stream, bar1(h.device)?, 0, 0),
                Via::NicPush { .. } => (Action::Frame, bar1(h.device)?, 0, 0),
                Via::Host { ring } => {
                    let bytes = u32::try_from(ring.len)
                        .map_err(|_| NagareLibError::Graph("host ring too large"))?;
                    (Action::Host, ring.iova, bytes, 0)
                }
                Via::CommandQueue { entries } => {
                    let doorbell =
                        self.registers(h.device)? + nextio_hw::accel::cmdq::TAIL_REGISTER;
                    let a = self
                        .adapter(h.device, AdapterKind::CommandQueue, *entries, doorbell)
                        .await?;
                    let ring = self.switch.borrow().adapter_ring(a).unwrap_or(0);
                    configure_ring(h.device, ring, *entries).map_err(|_| {
                        NagareLibError::Graph("the device refused its ring in switch memory")
                    })?;
                    (Action::Adapter, 0, 0, a)
                }
                Via::NicTx { entries, .. } => {
                    let Some(nic) = nic_of(&source) else {
                        return Err(NagareLibError::Graph(
                            "a legacy NIC hop needs the chain's NIC as its source",
                        ));
                    };
                    if nic.id != h.device {
                        return Err(NagareLibError::Graph(
                            "a legacy NIC hop must be the source NIC",
                        ));
                    }
                    let a = self.enso_tx_adapter(&nic, *entries).await?;
                    (Action::AdapterFrame, 0, 0, a)
                }
            };
            self.configure(&ConfigEntry::Stream {
                stream: s,
                format,
                writers,
                action,
                target,
                ring_bytes,
                out_stream: if matches!(action, Action::Stream | Action::Adapter) {
                    out
                } else {
                    None
                },
                adapter,
                op: h.op,
                param: h.param,
                state: h.state,
            })
            .await?;
            if let Via::NicPush { template } | Via::NicTx { template, .. } = &h.via {
                self.configure(&ConfigEntry::Template {
                    stream: s,
                    bytes: template.clone(),
                })
                .await?;
            }
        }
        if let Source::EnsoFlow { nic, flow } = source {
            self.bind_enso_source(&nic, flow, streams[0]).await?;
        }
        Ok(Chain { streams })
    }

    /// Configure a new adapter of `kind` for `dev`, ringing `doorbell`.
    async fn adapter(
        &mut self,
        dev: DeviceId,
        kind: AdapterKind,
        entries: u32,
        doorbell: u64,
    ) -> Result<u16, NagareLibError> {
        {
            let sw = self.switch.borrow();
            while self.next_adapter < sw.config().max_adapters
                && sw.adapter_in_use(self.next_adapter)
            {
                self.next_adapter += 1;
            }
            if self.next_adapter >= sw.config().max_adapters {
                return Err(NagareLibError::NoRoom("another adapter"));
            }
        }
        let a = self.next_adapter;
        self.next_adapter += 1;
        self.configure(&ConfigEntry::Adapter {
            adapter: a,
            kind,
            device: dev.0,
            doorbell,
            entries,
        })
        .await?;
        Ok(a)
    }

    fn registers(&self, dev: DeviceId) -> Result<u64, NagareLibError> {
        self.process
            .host()
            .machine()
            .fabric()
            .bar(dev, 0)
            .map(|w| w.base)
            .ok_or(NagareLibError::Graph("the device has no registers"))
    }

    /// An adapter driving `nic`'s TX through a notification buffer whose
    /// TX ring is in switch memory: configured once to place the ring,
    /// then again with the doorbell of the buffer registered on it.
    async fn enso_tx_adapter(
        &mut self,
        nic: &DeviceHandle<EnsoNic>,
        entries: u32,
    ) -> Result<u16, NagareLibError> {
        let regs0 = self.registers(nic.id)?;
        let a = self
            .adapter(nic.id, AdapterKind::EnsoTx, entries, regs0)
            .await?;
        let ring = self
            .switch
            .borrow()
            .adapter_ring(a)
            .ok_or(NagareLibError::NoRoom("the adapter's ring"))?;
        // The RX half stays empty (no pipe notifies through it).
        let rx = self.process.dma_alloc(nic.id, entries as u64 * 64)?;
        let nb = nic
            .borrow_mut()
            .register_notification_buffer(rx.iova, entries, ring, entries)?;
        let tail = nic
            .borrow()
            .register_offset(Register::TxNotificationTail(nb));
        self.configure(&ConfigEntry::Adapter {
            adapter: a,
            kind: AdapterKind::EnsoTx,
            device: nic.id.0,
            doorbell: regs0 + tail,
            entries,
        })
        .await?;
        Ok(a)
    }

    /// The Ensō NIC's pipe for `flow` is stream `s`'s window; its
    /// notifications go to the switch's sink for `s`.
    async fn bind_enso_source(
        &mut self,
        nic: &DeviceHandle<EnsoNic>,
        flow: FlowKey,
        s: u16,
    ) -> Result<(), NagareLibError> {
        let (window, sink) = {
            let sw = self.switch.borrow();
            (sw.window(s), sw.sram_addr(sink_offset(s)))
        };
        let entries = SINK_ENTRIES as u32;
        // The TX half is never used: a host buffer keeps the NIC content.
        let tx = self.process.dma_alloc(nic.id, entries as u64 * 64)?;
        let nb = nic
            .borrow_mut()
            .register_notification_buffer(sink, entries, tx.iova, entries)?;
        let pipe = nic.borrow_mut().register_pipe(window, nb)?;
        nic.borrow_mut().bind_flow(flow, pipe.id)?;
        let fabric = self.process.host().machine().fabric().clone();
        let regs0 = fabric
            .bar(nic.id, 0)
            .map(|w| w.base)
            .ok_or(NagareLibError::Graph("the NIC has no registers"))?;
        let (ph, nh) = {
            let n = nic.borrow();
            (
                n.register_offset(Register::PipeHead(pipe.id)),
                n.register_offset(Register::RxNotificationHead(nb)),
            )
        };
        self.configure(&ConfigEntry::EnsoRx {
            stream: s,
            pipe_head: regs0 + ph,
            nb_head: regs0 + nh,
            nb_entries: entries,
        })
        .await
    }

    /// Push `len` bytes of host memory at `src` (a DMA buffer the switch
    /// may read) into stream `stream` with one MMIO write (§4.5).
    pub async fn push(&mut self, src: u64, len: u32, stream: u16) -> Result<(), NagareLibError> {
        self.push_command(PushCommand {
            src,
            len,
            stream: Some(stream),
            dst: 0,
            done: 0,
        })
        .await
    }

    /// Copy `len` bytes from `src` to `dst` in host memory, then write 1
    /// to `done` (if non-zero), with one MMIO write.
    pub async fn copy(
        &mut self,
        src: u64,
        dst: u64,
        len: u32,
        done: u64,
    ) -> Result<(), NagareLibError> {
        self.push_command(PushCommand {
            src,
            len,
            stream: None,
            dst,
            done,
        })
        .await
    }

    async fn push_command(&mut self, cmd: PushCommand) -> Result<(), NagareLibError> {
        self.ctx
            .cycles(Category::Driver, self.costs.push_command_cycles);
        self.ctx
            .mmio_write(self.regs.offset(regs::PUSH), &cmd.emit(), "push")
            .await?;
        Ok(())
    }

    /// The switch's error log: how many entries were ever logged, and the
    /// latest ones (up to the log's size), oldest first.
    pub async fn errors(&mut self) -> Result<(u64, Vec<ErrorEntry>), NagareLibError> {
        let raw = self
            .ctx
            .mmio_read(
                self.regs.offset(regs::ERROR_COUNT),
                8,
                "error-log",
                Category::Driver,
            )
            .await?;
        let count = u64::from_le_bytes(raw.try_into().unwrap_or([0; 8]));
        let n = count.min(regs::ERROR_LOG_ENTRIES);
        let mut out = Vec::new();
        for k in count - n..count {
            let slot = k % regs::ERROR_LOG_ENTRIES;
            let b = self
                .ctx
                .mmio_read(
                    self.regs
                        .offset(regs::ERROR_LOG + slot * ENTRY_BYTES as u64),
                    ENTRY_BYTES as u64,
                    "error-log",
                    Category::Driver,
                )
                .await?;
            if let Some(e) = ErrorEntry::parse(&b) {
                out.push(e);
            }
        }
        Ok((count, out))
    }
}
