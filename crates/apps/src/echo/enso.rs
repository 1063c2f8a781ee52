//! The echo host on the Ensō NIC (Ensō paper §3.3.2): one echo thread per
//! core, each with its own notification buffer and one RX/TX pipe; flows
//! are spread over the pipes by the NIC's fallback hash. A thread takes the
//! next pipe with data, walks the packets in the received bytes, increments
//! the byte at [`ECHO_BYTE_OFFSET`] of each UDP payload, patches the UDP
//! checksum incrementally (RFC 1624) in software, and sends the batch back
//! in place, as Ensō's own echo does with an RX/TX pipe; the bytes are freed
//! when the NIC completes the send. In [`NotificationMode::Prefetch`] it
//! asks for the next pipe's notification before working on the current one.
//! An application that streams ([`crate::app::PacketApp::streams`]) is not
//! handed frames one by one: the walk loads each frame's bytes in order
//! into one buffer and the application consumes the batch in one call.
//!
//! Invariants: a frame leaves byte-identical to how it arrived except the
//! incremented byte and the UDP checksum (which stays valid); every packet
//! a thread walks is echoed (`echoed`) or counted under `skipped.*`.

use std::cell::RefCell;
use std::rc::Rc;

use nextio_engine::{Category, Counters, Sim};
use nextio_hw::device::Device as _;
use nextio_hw::nic::enso::{EnsoNic, EnsoNicConfig, FallbackPolicy, NotificationPolicy};
use nextio_hw::trafficgen::ECHO_BYTE_OFFSET;
use nextio_lib::enso::{Device, EnsoError, Packet, RxBatch, RxPipe, TxPipe};
use nextio_os::{Host, OsCosts};

use crate::app::{AppFactory, AppInstance};

use super::{EchoConfig, EchoError, EchoSystem, NotificationMode, Readiness, config_error};

/// One's-complement 16-bit addition.
fn ones_add(a: u16, b: u16) -> u16 {
    let s = a as u32 + b as u32;
    ((s & 0xffff) + (s >> 16)) as u16
}

/// RFC 1624 eqn. 3: the checksum after a 16-bit word of the summed data
/// changed from `old` to `new`. A zero UDP checksum means "none" and stays;
/// a computed zero is sent as 0xffff (RFC 768).
pub fn udp_checksum_adjust(checksum: u16, old: u16, new: u16) -> u16 {
    if checksum == 0 {
        return 0;
    }
    match !ones_add(ones_add(!checksum, !old), new) {
        0 => 0xffff,
        c => c,
    }
}

/// Echo one packet in place: bump the counter byte, patch the checksum.
fn echo_packet(
    dev: &Device,
    p: RxPipe,
    pkt: &Packet,
    app: &RefCell<Counters>,
) -> Result<(), EnsoError> {
    let mut h = [0u8; 14 + 20];
    dev.read(p, pkt.start, &mut h, Category::Application)?;
    let ihl = (h[14] & 0x0f) as u64 * 4;
    if h[14] >> 4 != 4 || h[23] != 17 || ihl < 20 {
        app.borrow_mut().inc("skipped.not_udp");
        return Ok(());
    }
    let l4 = 14 + ihl;
    let mut udp = [0u8; 8];
    dev.read(p, pkt.start + l4, &mut udp, Category::Application)?;
    let udp_len = u16::from_be_bytes([udp[4], udp[5]]) as u64;
    let rel = 8 + ECHO_BYTE_OFFSET as u64;
    if rel >= udp_len || l4 + rel >= pkt.len {
        app.borrow_mut().inc("skipped.short_payload");
        return Ok(());
    }
    let mut b = [0u8; 1];
    dev.read(p, pkt.start + l4 + rel, &mut b, Category::Application)?;
    let new = b[0].wrapping_add(1);
    // The byte's place in its 16-bit word, counted from the UDP header (the
    // other byte of the word cancels out of the difference).
    let shift = if rel.is_multiple_of(2) { 8 } else { 0 };
    let checksum = u16::from_be_bytes([udp[6], udp[7]]);
    let patched = udp_checksum_adjust(checksum, (b[0] as u16) << shift, (new as u16) << shift);
    dev.ctx().cycles(
        Category::Application,
        super::costs().packet_cycles + super::costs().checksum_patch_cycles,
    );
    dev.write(p, pkt.start + l4 + rel, &[new], Category::Application)?;
    dev.write(
        p,
        pkt.start + l4 + 6,
        &patched.to_be_bytes(),
        Category::Application,
    )?;
    app.borrow_mut().inc("echoed");
    Ok(())
}

/// Run a packet-processing application on one packet where it sits in
/// the pipe: load the bytes it reads, let it rewrite them, store back what
/// changed (all cache-costed).
fn app_packet(
    dev: &Device,
    p: RxPipe,
    pkt: &Packet,
    run: &mut AppInstance,
    app: &RefCell<Counters>,
) -> Result<(), EnsoError> {
    let len = pkt.len as usize;
    run.frame.resize(run.reads(len), 0);
    dev.read(p, pkt.start, &mut run.frame, Category::Application)?;
    let done = run.process(dev.ctx(), len, &mut app.borrow_mut());
    if let Some(r) = done.changed {
        dev.write(
            p,
            pkt.start + r.start as u64,
            &run.frame[r],
            Category::Application,
        )?;
    }
    Ok(())
}

/// Take one packet of a batch a streaming application consumes: its bytes
/// are loaded, as the packet walk reaches them, to their place in `bytes`
/// (the batch as it lies in the pipe, so the loads are one sequential pass
/// and a batch that wraps past the ring's end reaches the application as
/// the contiguous stream it is); `frames` records where it lies.
fn stream_packet(
    dev: &Device,
    p: RxPipe,
    pkt: &Packet,
    off: u64,
    bytes: &mut Vec<u8>,
    frames: &mut Vec<std::ops::Range<usize>>,
) -> Result<(), EnsoError> {
    let (at, end) = (off as usize, (off + pkt.len) as usize);
    bytes.resize(end, 0);
    dev.read(p, pkt.start, &mut bytes[at..end], Category::Application)?;
    frames.push(at..end);
    Ok(())
}

/// One output of a demultiplexing application: a TX pipe the thread copies
/// frames into, and the bytes copied since its last send.
struct Output {
    pipe: TxPipe,
    pending: u64,
}

/// Send what was copied into `out` since its last send.
async fn flush(dev: &mut Device, out: &mut Output) -> Result<(), EnsoError> {
    if out.pending > 0 {
        dev.send(out.pipe, std::mem::take(&mut out.pending)).await?;
    }
    Ok(())
}

/// Run a demultiplexing application on one packet and copy it into the
/// output it chose (Ensō paper §3.2: a pipe's bytes are consumed in order,
/// so a switch copies each frame to its destination): the whole frame is
/// loaded from the pipe, the application rewrites its leading bytes, and
/// the frame is stored at the output's TX tail, all cache-costed, plus the
/// core's copy throughput ([`nextio_lib::udma::UdmaLibCosts`]' CPU copy
/// rate, the model's one figure for a CPU copy).
async fn switch_packet(
    dev: &mut Device,
    p: RxPipe,
    pkt: &Packet,
    run: &mut AppInstance,
    outputs: &mut [Output],
    copy: &mut Vec<u8>,
    app: &RefCell<Counters>,
) -> Result<(), EnsoError> {
    let len = pkt.len as usize;
    copy.resize(len, 0);
    dev.read(p, pkt.start, copy, Category::Application)?;
    let reads = run.reads(len);
    run.frame.clear();
    run.frame.extend_from_slice(&copy[..reads]);
    let done = run.process(dev.ctx(), len, &mut app.borrow_mut());
    if let Some(r) = done.changed {
        copy[r.clone()].copy_from_slice(&run.frame[r]);
    }
    let out = &mut outputs[done.output.unwrap_or(0)];
    let padded = pkt.padded_len;
    // Behind what is pending if it fits there; else send what is pending
    // and start a buffer (wrapping to the ring's start if need be).
    let at = loop {
        let (tail, room) = dev.alloc_buf(out.pipe)?;
        if out.pending + padded <= room {
            break tail.offset(out.pending);
        }
        if out.pending > 0 {
            flush(dev, out).await?;
            continue;
        }
        match dev.alloc_contiguous(out.pipe, padded)? {
            Some(va) => break va,
            None => {
                if dev.process_completions().await? == 0 {
                    dev.wait_for_activity().await;
                }
            }
        }
    };
    dev.ctx().store(at, copy, Category::Application)?;
    dev.ctx().cycles(
        Category::Application,
        pkt.len
            .div_ceil(nextio_lib::udma::costs().cpu_copy_bytes_per_cycle.get()),
    );
    out.pending += padded;
    app.borrow_mut().inc("copied");
    Ok(())
}

async fn echo_thread(
    mut dev: Device,
    mode: NotificationMode,
    app: Rc<RefCell<Counters>>,
    mut run: Option<AppInstance>,
    mut outputs: Vec<Output>,
) -> Result<(), EnsoError> {
    let mut copy = Vec::new();
    let mut frames = Vec::new();
    loop {
        dev.process_completions().await?;
        let Some(p) = dev.next_rx_pipe_to_recv().await? else {
            dev.wait_for_activity().await;
            continue;
        };
        if mode == NotificationMode::Prefetch
            && let Some(next) = dev.next_pipe_hint()
        {
            dev.prefetch(next).await?;
        }
        let batch = dev.peek(p, super::costs().enso_batch_bytes.get())?;
        let mut off = 0;
        frames.clear();
        while let Some(pkt) = dev.packet_at(&batch, off)? {
            match run.as_mut() {
                Some(run) if run.streams() => {
                    stream_packet(&dev, p, &pkt, off, &mut copy, &mut frames)?
                }
                Some(run) if !outputs.is_empty() => {
                    switch_packet(&mut dev, p, &pkt, run, &mut outputs, &mut copy, &app).await?
                }
                Some(run) => app_packet(&dev, p, &pkt, run, &app)?,
                None => echo_packet(&dev, p, &pkt, &app)?,
            }
            off += pkt.padded_len;
        }
        if let Some(run) = run.as_mut().filter(|r| r.streams() && !frames.is_empty()) {
            // The whole batch's text in one call: no per-packet framing.
            run.process_stream(dev.ctx(), &copy, &frames, &mut app.borrow_mut());
        }
        dev.confirm_bytes(p, off)?;
        app.borrow_mut().inc("batches");
        if outputs.is_empty() {
            dev.send_and_free(RxBatch { len: off, ..batch }).await?;
            continue;
        }
        // Copied out: the received bytes are free at once.
        for out in &mut outputs {
            flush(&mut dev, out).await?;
        }
        dev.free(p, off).await?;
    }
}

/// Build the Ensō echo host: the machine of `config`, the Ensō NIC in its
/// NIC slot with one notification buffer and one RX/TX pipe per core (all
/// pipes fallback pipes, flows spread by hash), and one echo process with
/// one thread per core.
pub fn build(
    sim: &Sim,
    config: &EchoConfig,
    mode: NotificationMode,
) -> Result<EchoSystem, EchoError> {
    build_app(sim, config, mode, None)
}

/// [`build`], with each thread running an instance of the application
/// `factory` makes (its tables mapped into the process) instead of the
/// echo: every frame is handed to it in place and sent back as it leaves
/// it.
pub fn build_app(
    sim: &Sim,
    config: &EchoConfig,
    mode: NotificationMode,
    factory: Option<AppFactory>,
) -> Result<EchoSystem, EchoError> {
    let host = Host::new(sim, config.machine.clone(), OsCosts::default()).map_err(config_error)?;
    let policy = match mode {
        NotificationMode::PerPacket => NotificationPolicy::PerPacket,
        NotificationMode::Reactive | NotificationMode::Prefetch => NotificationPolicy::Reactive,
    };
    let nic = EnsoNic::new(EnsoNicConfig {
        policy,
        fallback: FallbackPolicy::Hash,
        ..EnsoNicConfig::default()
    })
    .map_err(config_error)?;
    let nic = host.attach_nic(nic).map_err(config_error)?;
    let app = Rc::new(RefCell::new(Counters::new()));
    let process = host.create_process().map_err(config_error)?;
    for core in 0..config.cores() {
        let thread = process.thread(core).map_err(config_error)?;
        let mut dev = Device::open(
            thread.ctx,
            &process,
            nic.clone(),
            nextio_lib::enso::config().notification_entries,
        )
        .map_err(config_error)?;
        dev.alloc_rx_pipe(None, true).map_err(config_error)?;
        let run = match &factory {
            Some(f) => Some(AppInstance::new(f(core), &process, dev.ctx()).map_err(config_error)?),
            None => None,
        };
        let outputs = (0..run.as_ref().map_or(0, AppInstance::outputs))
            .map(|_| {
                Ok(Output {
                    pipe: dev.alloc_tx_pipe()?,
                    pending: 0,
                })
            })
            .collect::<Result<Vec<_>, EnsoError>>()
            .map_err(config_error)?;
        let app = app.clone();
        sim.spawn(async move {
            if echo_thread(dev, mode, app.clone(), run, outputs)
                .await
                .is_err()
            {
                app.borrow_mut().inc("thread_errors");
            }
        });
    }
    let handle = nic.clone();
    Ok(EchoSystem {
        host,
        nic: nic.id,
        nic_counters: Box::new(move || handle.borrow().counters().clone()),
        app,
        // Pipes and notification buffers are registered as the host is
        // built (control plane, no simulated time): ready at once.
        ready: Readiness::new(sim, 0),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use nextio_hw::packet::{Macs, build_udp, parse_udp, refresh_udp_checksum};
    use nextio_hw::trafficgen::synthetic_flow;

    #[test]
    fn incremental_checksum_matches_a_full_recompute() {
        for (size, fill) in [(64, 0u8), (65, 0xff), (200, 0x7f), (1518, 0xfe)] {
            let payload = vec![fill; 18];
            let mut bytes = build_udp(Macs::default(), synthetic_flow(3), &payload, size).unwrap();
            let o = parse_udp(&bytes).unwrap().payload_offset;
            let at = o + ECHO_BYTE_OFFSET;
            let old = bytes[at];
            let csum = u16::from_be_bytes([bytes[40], bytes[41]]);
            bytes[at] = old.wrapping_add(1);
            let patched = udp_checksum_adjust(csum, (old as u16) << 8, (bytes[at] as u16) << 8);
            refresh_udp_checksum(&mut bytes).unwrap();
            assert_eq!(
                patched,
                u16::from_be_bytes([bytes[40], bytes[41]]),
                "size {size}"
            );
        }
        assert_eq!(udp_checksum_adjust(0, 1, 2), 0, "no checksum stays none");
    }
}
