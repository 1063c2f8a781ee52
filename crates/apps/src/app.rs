//! The contract between a packet-processing application (Maglev, the
//! NitroSketch monitor, the MICA store, the log monitor) and the NIC
//! interface it runs on, so that one implementation of each application
//! serves both the Ensō pipes and the packetized mbufs (Ensō paper §3.3.3:
//! "the same processing logic for both DPDK and Ensō-based
//! implementations, changing only the wrapper code").
//!
//! An application sees a frame's leading bytes as a byte slice it may
//! rewrite in place, and its own tables through [`AppMemory`]: loads and
//! stores by offset into one region of the process's memory. On a
//! simulated core that region is real simulated memory reached through the
//! core's cache model ([`CoreMemory`]), so a table larger than the caches
//! misses by itself; in functional tests it is a plain vector
//! ([`VecMemory`]). Compute — hashing, parsing, checksum words — is
//! charged by the application as cycles, each from a documented primitive.
//!
//! Invariants: an application never reaches memory outside its region (an
//! access that would is refused and counted, never a panic); every frame it
//! is handed is transmitted, rewritten or not, and counted under exactly
//! one verdict (a streaming application's batch too: one verdict per
//! frame); a rewritten frame keeps valid IPv4 and UDP checksums.

use std::cell::Cell;

use nextio_engine::{Category, Counters};
use nextio_hw::cpu::CoreCtx;
use nextio_hw::mem::VirtAddr;
use nextio_hw::trafficgen::STAMP_BYTES;

/// Where an application's own bytes start in a UDP payload: after the
/// traffic generator's stamp (sequence, timestamp, counter), which every
/// frame of the bench carries and the applications leave alone.
pub const APP_PAYLOAD_OFFSET: usize = STAMP_BYTES;
/// Ethernet II header bytes.
pub const ETH_BYTES: usize = 14;

/// An application's table memory: byte offsets into its own region.
pub trait AppMemory {
    /// Read `buf.len()` bytes at `at` (costed on a simulated core).
    fn load(&mut self, at: u64, buf: &mut [u8]);
    /// Write `data` at `at` (costed on a simulated core).
    fn store(&mut self, at: u64, data: &[u8]);
    /// Charge `cycles` of the application's own compute.
    fn compute(&mut self, cycles: u64);

    fn load_u16(&mut self, at: u64) -> u16 {
        let mut b = [0u8; 2];
        self.load(at, &mut b);
        u16::from_le_bytes(b)
    }
    fn load_u32(&mut self, at: u64) -> u32 {
        let mut b = [0u8; 4];
        self.load(at, &mut b);
        u32::from_le_bytes(b)
    }
    fn load_u64(&mut self, at: u64) -> u64 {
        let mut b = [0u8; 8];
        self.load(at, &mut b);
        u64::from_le_bytes(b)
    }
    fn store_u16(&mut self, at: u64, v: u16) {
        self.store(at, &v.to_le_bytes());
    }
    fn store_u32(&mut self, at: u64, v: u32) {
        self.store(at, &v.to_le_bytes());
    }
    fn store_u64(&mut self, at: u64, v: u64) {
        self.store(at, &v.to_le_bytes());
    }
}

/// What an application did with a frame (it is transmitted either way:
/// on Ensō's RX/TX pipes a frame is sent back from where it sits).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Processed (and possibly rewritten).
    Done,
    /// Processed, and to leave through output `port` of an application
    /// with [`PacketApp::outputs`] outputs (a switch's demultiplexing).
    Forward(usize),
    /// Not for this application (not IPv4/UDP, too short, unknown
    /// request): passed on unchanged and counted under this reason, a
    /// `skipped.*` name.
    Skipped(&'static str),
}

/// One application instance (one per core: its tables are its own).
pub trait PacketApp {
    fn name(&self) -> &'static str;
    /// Bytes of table memory the application keeps.
    fn memory_bytes(&self) -> u64;
    /// Fill the tables before the run (set-up: untimed memory).
    fn init(&mut self, mem: &mut dyn AppMemory);
    /// How many leading bytes of a `frame_len`-byte frame it reads.
    fn reads(&self, frame_len: usize) -> usize;
    /// Outputs a demultiplexing application sends frames to (its verdicts
    /// are [`Verdict::Forward`]); 0 for one that sends every frame back
    /// where it came from. On an interface whose receive buffer is
    /// consumed in order (Ensō's pipes) each forwarded frame is copied to
    /// its output (Ensō paper §3.2); packetized buffers are handed on.
    fn outputs(&self) -> usize {
        0
    }
    /// Process `frame` (its first [`PacketApp::reads`] bytes; the whole
    /// frame is `frame_len` bytes), rewriting it in place.
    fn process(
        &mut self,
        frame: &mut [u8],
        frame_len: usize,
        mem: &mut dyn AppMemory,
        counters: &mut Counters,
    ) -> Verdict;
    /// Whether the application consumes a batch of received bytes as one
    /// stream ([`PacketApp::process_stream`]) where the interface delivers
    /// them contiguously (Ensō's pipes), instead of frame by frame.
    fn streams(&self) -> bool {
        false
    }
    /// Consume `batch`, a batch of received bytes as they lie contiguously
    /// in the receive buffer, holding the frames at `frames` (ranges into
    /// `batch`, in arrival order), without rewriting it; one verdict per
    /// frame, in order. Only called when [`PacketApp::streams`].
    fn process_stream(
        &mut self,
        _batch: &[u8],
        frames: &[std::ops::Range<usize>],
        _mem: &mut dyn AppMemory,
        _counters: &mut Counters,
    ) -> Vec<Verdict> {
        vec![Verdict::Skipped("skipped.no_stream"); frames.len()]
    }
}

/// What [`AppInstance::process`] did with a frame.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Processed {
    /// The range of the frame's leading bytes the application changed.
    pub changed: Option<std::ops::Range<usize>>,
    /// The output a demultiplexing application chose.
    pub output: Option<usize>,
}

/// Builds one application instance per core.
pub type AppFactory = std::rc::Rc<dyn Fn(usize) -> Box<dyn PacketApp>>;

/// An application running on one simulated core: its tables in a region
/// of the process's memory, and the frame bytes the NIC wrapper loaded
/// for it. The wrapper loads [`AppInstance::reads`] bytes of each frame
/// into [`AppInstance::frame`] (cache-costed, from a pipe or an mbuf),
/// calls [`AppInstance::process`], and stores back the changed range.
pub struct AppInstance {
    app: Box<dyn PacketApp>,
    base: VirtAddr,
    bytes: u64,
    faults: Cell<u64>,
    /// The frame's leading bytes, for the application to rewrite.
    pub frame: Vec<u8>,
    before: Vec<u8>,
}

impl AppInstance {
    /// Map `app`'s table memory into `process` (hugepages, as DPDK and
    /// Ensō applications allocate theirs) and fill it, untimed.
    pub fn new(
        mut app: Box<dyn PacketApp>,
        process: &nextio_os::Process,
        ctx: &CoreCtx,
    ) -> Result<AppInstance, nextio_os::OsError> {
        let bytes = app.memory_bytes().max(1);
        let base = process.mmap(bytes, true)?;
        let faults = Cell::new(0);
        app.init(&mut CoreMemory::setup(ctx, base, bytes, &faults));
        Ok(AppInstance {
            app,
            base,
            bytes,
            faults,
            frame: Vec::new(),
            before: Vec::new(),
        })
    }
    pub fn name(&self) -> &'static str {
        self.app.name()
    }
    /// Leading bytes of a `frame_len`-byte frame the application reads.
    pub fn reads(&self, frame_len: usize) -> usize {
        self.app.reads(frame_len).min(frame_len)
    }
    /// Outputs of a demultiplexing application (0: it sends frames back).
    pub fn outputs(&self) -> usize {
        self.app.outputs()
    }
    /// Run the application on [`AppInstance::frame`] (a `frame_len`-byte
    /// frame's leading bytes), counting its verdict; returns the range of
    /// the frame it changed, for the wrapper to store back, and the output
    /// it chose. A frame an application with outputs did not forward (it
    /// skipped it) leaves through output 0.
    pub fn process(
        &mut self,
        ctx: &CoreCtx,
        frame_len: usize,
        counters: &mut Counters,
    ) -> Processed {
        self.before.clone_from(&self.frame);
        let mut mem = CoreMemory::timed(ctx, self.base, self.bytes, &self.faults);
        let mut output = (self.app.outputs() > 0).then_some(0);
        match self
            .app
            .process(&mut self.frame, frame_len, &mut mem, counters)
        {
            Verdict::Done => counters.inc("processed"),
            Verdict::Forward(port) if port < self.app.outputs() => {
                counters.inc("processed");
                output = Some(port);
            }
            Verdict::Forward(_) => counters.inc("error.no_such_output"),
            Verdict::Skipped(why) => counters.inc(why),
        }
        let faults = self.faults.replace(0);
        if faults > 0 {
            counters.add("error.table_access", faults);
        }
        let first = self
            .frame
            .iter()
            .zip(&self.before)
            .position(|(a, b)| a != b);
        let last = self
            .frame
            .iter()
            .zip(&self.before)
            .rposition(|(a, b)| a != b);
        Processed {
            changed: first.zip(last).map(|(a, b)| a..b + 1),
            output,
        }
    }
}

impl AppInstance {
    /// Whether the application consumes batches as streams.
    pub fn streams(&self) -> bool {
        self.app.streams()
    }
    /// Run a streaming application on a batch's bytes (loaded by the
    /// wrapper), counting one verdict per frame of `frames` (a missing
    /// verdict counts `error.no_verdict`, so every frame is still counted
    /// once).
    pub fn process_stream(
        &mut self,
        ctx: &CoreCtx,
        batch: &[u8],
        frames: &[std::ops::Range<usize>],
        counters: &mut Counters,
    ) {
        let mut mem = CoreMemory::timed(ctx, self.base, self.bytes, &self.faults);
        let verdicts = self.app.process_stream(batch, frames, &mut mem, counters);
        for i in 0..frames.len() {
            match verdicts.get(i) {
                Some(Verdict::Done) => counters.inc("processed"),
                Some(Verdict::Skipped(why)) => counters.inc(why),
                Some(Verdict::Forward(_)) => counters.inc("error.no_such_output"),
                None => counters.inc("error.no_verdict"),
            }
        }
        let faults = self.faults.replace(0);
        if faults > 0 {
            counters.add("error.table_access", faults);
        }
    }
}

/// Table memory as a plain vector: functional tests, no time.
#[derive(Clone, Debug, Default)]
pub struct VecMemory {
    pub bytes: Vec<u8>,
    /// Accesses refused for reaching outside the region.
    pub faults: u64,
    /// Cycles charged so far.
    pub cycles: u64,
    pub loads: u64,
    pub stores: u64,
}

impl VecMemory {
    pub fn new(bytes: u64) -> VecMemory {
        VecMemory {
            bytes: vec![0; bytes as usize],
            ..VecMemory::default()
        }
    }
    fn range(&mut self, at: u64, len: usize) -> Option<std::ops::Range<usize>> {
        let r = usize::try_from(at)
            .ok()
            .and_then(|start| Some(start..start.checked_add(len)?))
            .filter(|r| r.end <= self.bytes.len());
        if r.is_none() {
            self.faults += 1;
        }
        r
    }
}

impl AppMemory for VecMemory {
    fn load(&mut self, at: u64, buf: &mut [u8]) {
        self.loads += 1;
        match self.range(at, buf.len()) {
            Some(r) => buf.copy_from_slice(&self.bytes[r]),
            None => buf.fill(0),
        }
    }
    fn store(&mut self, at: u64, data: &[u8]) {
        self.stores += 1;
        if let Some(r) = self.range(at, data.len()) {
            self.bytes[r].copy_from_slice(data);
        }
    }
    fn compute(&mut self, cycles: u64) {
        self.cycles += cycles;
    }
}

/// Table memory in a simulated process: a region mapped at `base`,
/// reached through the core's caches (`timed`) or, for set-up, without
/// time or cache effects.
pub struct CoreMemory<'a> {
    ctx: &'a CoreCtx,
    base: VirtAddr,
    len: u64,
    timed: bool,
    faults: &'a Cell<u64>,
}

impl<'a> CoreMemory<'a> {
    /// Costed accesses (the running application).
    pub fn timed(ctx: &'a CoreCtx, base: VirtAddr, len: u64, faults: &'a Cell<u64>) -> Self {
        CoreMemory {
            ctx,
            base,
            len,
            timed: true,
            faults,
        }
    }
    /// Untimed accesses (filling the tables before the run).
    pub fn setup(ctx: &'a CoreCtx, base: VirtAddr, len: u64, faults: &'a Cell<u64>) -> Self {
        CoreMemory {
            timed: false,
            ..CoreMemory::timed(ctx, base, len, faults)
        }
    }
    fn inside(&self, at: u64, len: usize) -> bool {
        let ok = at
            .checked_add(len as u64)
            .is_some_and(|end| end <= self.len);
        if !ok {
            self.faults.set(self.faults.get() + 1);
        }
        ok
    }
}

impl AppMemory for CoreMemory<'_> {
    fn load(&mut self, at: u64, buf: &mut [u8]) {
        if !self.inside(at, buf.len()) {
            buf.fill(0);
            return;
        }
        let va = self.base.offset(at);
        let r = if self.timed {
            self.ctx.load(va, buf, Category::Application)
        } else {
            self.ctx.peek(va, buf)
        };
        if r.is_err() {
            self.faults.set(self.faults.get() + 1);
            buf.fill(0);
        }
    }
    fn store(&mut self, at: u64, data: &[u8]) {
        if !self.inside(at, data.len()) {
            return;
        }
        let va = self.base.offset(at);
        let r = if self.timed {
            self.ctx.store(va, data, Category::Application)
        } else {
            self.ctx.poke(va, data)
        };
        if r.is_err() {
            self.faults.set(self.faults.get() + 1);
        }
    }
    fn compute(&mut self, cycles: u64) {
        if self.timed {
            self.ctx.cycles(Category::Application, cycles);
        }
    }
}

/// The IPv4/UDP layout of a frame's leading bytes, if it is one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UdpLayout {
    /// Offset of the UDP header.
    pub l4: usize,
    /// UDP length (header included).
    pub udp_len: usize,
}

impl UdpLayout {
    /// Offset of the UDP payload.
    pub fn payload(self) -> usize {
        self.l4 + 8
    }
    /// Offset of the application's bytes (after the generator's stamp).
    pub fn app_data(self) -> usize {
        self.payload() + APP_PAYLOAD_OFFSET
    }
    /// End of the UDP datagram in the frame.
    pub fn end(self) -> usize {
        self.l4 + self.udp_len
    }
}

/// Parse the Ethernet/IPv4/UDP headers at the start of `frame`.
pub fn udp_layout(frame: &[u8]) -> Option<UdpLayout> {
    if frame.len() < ETH_BYTES + 20 + 8 || frame[12..14] != [0x08, 0x00] {
        return None;
    }
    let vihl = frame[ETH_BYTES];
    let ihl = (vihl & 0x0f) as usize * 4;
    if vihl >> 4 != 4 || ihl < 20 || frame[ETH_BYTES + 9] != 17 {
        return None;
    }
    let l4 = ETH_BYTES + ihl;
    if frame.len() < l4 + 8 {
        return None;
    }
    let udp_len = u16::from_be_bytes([frame[l4 + 4], frame[l4 + 5]]) as usize;
    (udp_len >= 8).then_some(UdpLayout { l4, udp_len })
}

/// The 5-tuple of an IPv4/UDP frame as 13 bytes (source and destination
/// address, ports, protocol): what the applications hash and key on.
pub fn five_tuple(frame: &[u8], l: UdpLayout) -> [u8; 13] {
    let mut k = [0u8; 13];
    k[..8].copy_from_slice(&frame[ETH_BYTES + 12..ETH_BYTES + 20]);
    k[8..12].copy_from_slice(&frame[l.l4..l.l4 + 4]);
    k[12] = 17;
    k
}

/// One's-complement 16-bit addition.
fn ones_add(a: u16, b: u16) -> u16 {
    let s = a as u32 + b as u32;
    ((s & 0xffff) + (s >> 16)) as u16
}

/// RFC 1624 eqn. 3: a checksum after one summed 16-bit word changed.
fn adjust(checksum: u16, old: u16, new: u16) -> u16 {
    !ones_add(ones_add(!checksum, !old), new)
}

/// Overwrite `frame[at..at + new.len()]` with `new`, keeping the IPv4
/// header checksum and the UDP checksum valid by RFC 1624 incremental
/// updates (the UDP checksum covers the addresses through its
/// pseudo-header). Returns the 16-bit words patched, for costing. Bytes
/// outside the IPv4 header and UDP datagram are written without patching;
/// the checksum fields themselves must not be written this way.
pub fn rewrite(frame: &mut [u8], l: UdpLayout, at: usize, new: &[u8]) -> u64 {
    let end = (at + new.len()).min(frame.len());
    if at >= end {
        return 0;
    }
    let ip_csum = ETH_BYTES + 10;
    let udp_csum = l.l4 + 6;
    let word_at = |f: &[u8], w: usize, limit: usize| -> u16 {
        let hi = if w < limit { f[w] } else { 0 };
        let lo = if w + 1 < limit { f[w + 1] } else { 0 };
        u16::from_be_bytes([hi, lo])
    };
    // Frame offsets of words: the IPv4 header starts at 14 and the UDP
    // header at 14 + 4·IHL, both even, so words start at even offsets.
    let first = at & !1;
    let old: Vec<u16> = (first..end)
        .step_by(2)
        .map(|w| word_at(frame, w, frame.len().min(l.end())))
        .collect();
    frame[at..end].copy_from_slice(&new[..end - at]);
    let mut patched = 0;
    for (i, w) in (first..end).step_by(2).enumerate() {
        let new_word = word_at(frame, w, frame.len().min(l.end()));
        if new_word == old[i] {
            continue;
        }
        let in_ip = (ETH_BYTES..l.l4).contains(&w);
        let in_pseudo = (ETH_BYTES + 12..ETH_BYTES + 20).contains(&w);
        let in_udp = (l.l4..l.end()).contains(&w);
        if in_ip {
            let c = u16::from_be_bytes([frame[ip_csum], frame[ip_csum + 1]]);
            frame[ip_csum..ip_csum + 2].copy_from_slice(&adjust(c, old[i], new_word).to_be_bytes());
            patched += 1;
        }
        if (in_pseudo || in_udp) && frame.len() >= udp_csum + 2 {
            let c = u16::from_be_bytes([frame[udp_csum], frame[udp_csum + 1]]);
            // Zero means "no checksum" (RFC 768) and stays so; a computed
            // zero is sent as 0xffff.
            if c != 0 {
                let n = match adjust(c, old[i], new_word) {
                    0 => 0xffff,
                    n => n,
                };
                frame[udp_csum..udp_csum + 2].copy_from_slice(&n.to_be_bytes());
            }
            patched += 1;
        }
    }
    patched
}

/// Swap the frame's MAC addresses, IPv4 addresses and UDP ports (a reply
/// to its sender): the checksums are sums, so they do not change.
pub fn swap_endpoints(frame: &mut [u8], l: UdpLayout) {
    for i in 0..6 {
        frame.swap(i, 6 + i);
    }
    for i in 0..4 {
        frame.swap(ETH_BYTES + 12 + i, ETH_BYTES + 16 + i);
    }
    for i in 0..2 {
        frame.swap(l.l4 + i, l.l4 + 2 + i);
    }
}

/// A 64-bit hash of `bytes` under `seed`: FNV-1a over the bytes, then
/// MurmurHash3's 64-bit finaliser so every input bit reaches every output
/// bit (a stand-in for the CRC/xxHash family the applications use; its
/// cost is a primitive of each application, not of this code).
pub fn hash64(bytes: &[u8], seed: u64) -> u64 {
    let mut h = 0xcbf2_9ce4_8422_2325u64 ^ seed.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    for &b in bytes {
        h ^= b as u64;
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^ (h >> 33)
}

#[cfg(test)]
mod tests {
    use super::*;
    use nextio_hw::packet::{Macs, build_udp, parse_udp, refresh_udp_checksum};
    use nextio_hw::trafficgen::synthetic_flow;

    #[test]
    fn rewrites_keep_both_checksums_valid() {
        for size in [64usize, 65, 200, 1518] {
            let payload: Vec<u8> = (0..18u8).map(|i| i.wrapping_mul(37)).collect();
            let mut f = build_udp(Macs::default(), synthetic_flow(5), &payload, size).unwrap();
            let l = udp_layout(&f).unwrap();
            // The destination address (IPv4 header and pseudo-header), an
            // odd-aligned payload run, and a run past the payload.
            rewrite(&mut f, l, ETH_BYTES + 16, &[10, 9, 8, 7]);
            rewrite(&mut f, l, l.app_data() + 1, &[0xde, 0xad, 0xbe]);
            assert!(parse_udp(&f).is_ok(), "size {size}");
            let mut again = f.clone();
            refresh_udp_checksum(&mut again).unwrap();
            assert_eq!(f, again, "size {size}: patch differs from a recompute");
            assert_eq!(&f[ETH_BYTES + 16..ETH_BYTES + 20], &[10, 9, 8, 7]);
        }
    }

    #[test]
    fn swapping_endpoints_keeps_the_frame_valid() {
        let mut f = build_udp(Macs::default(), synthetic_flow(9), &[1; 30], 80).unwrap();
        let l = udp_layout(&f).unwrap();
        let before = five_tuple(&f, l);
        swap_endpoints(&mut f, l);
        assert!(parse_udp(&f).is_ok());
        let after = five_tuple(&f, l);
        assert_eq!(&before[..4], &after[4..8]);
        assert_eq!(&before[8..10], &after[10..12]);
    }

    #[test]
    fn memory_outside_the_region_is_refused_and_counted() {
        let mut m = VecMemory::new(64);
        let mut b = [1u8; 8];
        m.load(60, &mut b);
        assert_eq!(b, [0; 8]);
        m.store(u64::MAX - 2, &[1, 2, 3]);
        assert_eq!(m.faults, 2);
        m.store_u64(56, 7);
        assert_eq!(m.load_u64(56), 7);
    }

    #[test]
    fn frames_that_are_not_udp_have_no_layout() {
        let mut f = build_udp(Macs::default(), synthetic_flow(1), &[0; 18], 64).unwrap();
        assert!(udp_layout(&f).is_some());
        f[ETH_BYTES + 9] = 6;
        assert!(udp_layout(&f).is_none());
        assert!(udp_layout(&f[..20]).is_none());
    }
}
