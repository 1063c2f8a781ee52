//! The closed-form PCIe bandwidth model of pcie-bench (Neugebauer et al.,
//! "Understanding PCIe performance for end host networking", SIGCOMM'18,
//! §3), written from its formulas: the spec constants it uses (line rates,
//! encodings, TLP overheads, Ack/UpdateFC rates, SKIP ordered sets) and the
//! effective bandwidth of back-to-back DMA writes and reads. The DLLP
//! share follows the link's [`DllpSchedule`]: pcie-bench's (one Ack and
//! one UpdateFC per interval of every lane's own stream, N symbol times
//! read as N bytes) or the spec's (a lane carries one Ack per interval for
//! a busy opposite lane, one UpdateFC per credit type that lane used, and
//! an interval of N symbol times is N × lanes bytes).
//!
//! The simulated link in the parent module uses the same constants but
//! never these formulas: its throughput emerges from the TLP stream, and the
//! `pcie-bandwidth` experiment checks the two agree.
//!
//! Invariants: every function here is pure and total over a validated
//! [`PcieConfig`]; bandwidths are in Gb/s of 10⁹ bits per second, as in
//! pcie-bench.

use super::{DllpSchedule, PcieConfig};

/// Physical-layer framing plus data-link sequence number and LCRC that wrap
/// every TLP: 2 B framing + 2 B sequence number + 4 B LCRC.
pub const TLP_FRAMING_BYTES: u64 = 8;
/// The first header doubleword every TLP carries (type, length, …).
pub const TLP_COMMON_HEADER_BYTES: u64 = 4;
/// Rest of a memory request header with a 64-bit address (4 DW header).
pub const MEM_REQ_ADDR64_BYTES: u64 = 12;
/// Rest of a memory request header with a 32-bit address (3 DW header).
pub const MEM_REQ_ADDR32_BYTES: u64 = 8;
/// Rest of a completion header (3 DW header).
pub const CPL_HEADER_REST_BYTES: u64 = 8;
/// Optional end-to-end CRC digest.
pub const ECRC_BYTES: u64 = 4;
/// An Ack or UpdateFC DLLP on the wire: 2 B framing + 4 B DLLP + 2 B CRC.
pub const DLLP_BYTES: u64 = 8;
/// A SKIP ordered set, in bytes of the symbol stream.
pub const SKIP_BYTES: u64 = 4;
/// Symbol times between SKIP ordered sets (pcie-bench's constant).
pub const SKIP_INTERVAL_SYMBOLS: u64 = 1538;

/// Lane counts the spec defines.
pub const LANES: [u8; 6] = [1, 2, 4, 8, 16, 32];
/// Maximum payload sizes the spec defines (also the valid MRRS values).
pub const MPS_BYTES: [u32; 6] = [128, 256, 512, 1024, 2048, 4096];

/// Gigatransfers per second of one lane, in units of 10⁸ transfers per
/// second so that gen1's 2.5 GT/s stays an integer.
fn transfers_per_100ms(generation: u8) -> Option<u64> {
    match generation {
        1 => Some(25),
        2 => Some(50),
        3 => Some(80),
        4 => Some(160),
        5 => Some(320),
        _ => None,
    }
}

/// Line code of `generation` as (payload bits, coded bits): 8b/10b for gen1–2,
/// 128b/130b for gen3–5.
pub fn encoding(generation: u8) -> (u64, u64) {
    if generation <= 2 { (8, 10) } else { (128, 130) }
}

/// Raw signalling rate of the link in bits per second, before line coding.
pub fn signalling_bits_per_s(generation: u8, lanes: u8) -> Option<u64> {
    transfers_per_100ms(generation).map(|t| t * 100_000_000 * lanes as u64)
}

fn lane_index(lanes: u8) -> Option<usize> {
    LANES.iter().position(|&l| l == lanes)
}

fn mps_index(mps_bytes: u32) -> Option<usize> {
    MPS_BYTES.iter().position(|&m| m == mps_bytes)
}

/// Ack latency limits in symbol times, PCIe Base Spec rev 5.0 Tables
/// 3-7 (2.5 GT/s), 3-8 (5 GT/s) and 3-9 (8 GT/s and above), indexed by
/// [lanes][MPS] in the order of [`LANES`] and [`MPS_BYTES`].
const ACK_GEN1: [[u64; 6]; 6] = [
    [237, 416, 559, 1071, 2095, 4143],
    [128, 217, 289, 545, 1057, 2081],
    [73, 118, 154, 282, 538, 1050],
    [67, 107, 86, 150, 278, 534],
    [48, 72, 86, 150, 278, 534],
    [33, 45, 52, 84, 148, 276],
];
const ACK_GEN2: [[u64; 6]; 6] = [
    [288, 467, 610, 1122, 2146, 4194],
    [179, 268, 340, 596, 1108, 2132],
    [124, 169, 205, 333, 589, 1101],
    [118, 158, 137, 201, 329, 585],
    [99, 123, 137, 201, 329, 585],
    [84, 96, 103, 135, 199, 237],
];
const ACK_GEN3: [[u64; 6]; 6] = [
    [333, 512, 655, 1167, 2191, 4239],
    [224, 313, 385, 641, 1153, 2177],
    [169, 214, 250, 378, 634, 1146],
    [163, 203, 182, 246, 374, 630],
    [144, 168, 182, 246, 374, 630],
    [129, 141, 148, 180, 244, 372],
];

/// Recommended Ack DLLP interval in symbol times (gen4 and gen5 use the
/// 8 GT/s table, as pcie-bench does).
pub fn ack_interval_symbols(generation: u8, lanes: u8, mps_bytes: u32) -> Option<u64> {
    let (l, m) = (lane_index(lanes)?, mps_index(mps_bytes)?);
    match generation {
        1 => Some(ACK_GEN1[l][m]),
        2 => Some(ACK_GEN2[l][m]),
        3..=5 => Some(ACK_GEN3[l][m]),
        _ => None,
    }
}

/// Recommended UpdateFC DLLP interval in symbol times, PCIe Base Spec rev
/// 5.0 Tables 2-46..2-48. They equal the Ack tables except in two x32 cells.
pub fn fc_interval_symbols(generation: u8, lanes: u8, mps_bytes: u32) -> Option<u64> {
    match (generation, lanes, mps_bytes) {
        (1, 32, 2048) => Some(248),
        (2, 32, 4096) => Some(327),
        _ => ack_interval_symbols(generation, lanes, mps_bytes),
    }
}

/// Bytes a memory write or read request TLP occupies on the wire besides
/// its payload.
pub fn mem_request_overhead_bytes(addr64: bool, ecrc: bool) -> u64 {
    let addr = if addr64 {
        MEM_REQ_ADDR64_BYTES
    } else {
        MEM_REQ_ADDR32_BYTES
    };
    TLP_FRAMING_BYTES + TLP_COMMON_HEADER_BYTES + addr + if ecrc { ECRC_BYTES } else { 0 }
}

/// Bytes a completion-with-data TLP occupies on the wire besides its data.
pub fn completion_overhead_bytes(ecrc: bool) -> u64 {
    TLP_FRAMING_BYTES
        + TLP_COMMON_HEADER_BYTES
        + CPL_HEADER_REST_BYTES
        + if ecrc { ECRC_BYTES } else { 0 }
}

/// Line rate after line coding, in Gb/s.
pub fn raw_gbps(cfg: &PcieConfig) -> f64 {
    let (num, den) = encoding(cfg.generation);
    let bits = signalling_bits_per_s(cfg.generation, cfg.lanes).unwrap_or(0);
    bits as f64 * num as f64 / den as f64 / 1e9
}

/// Fraction of one lane's symbol stream that DLLPs take. `opposite_busy`:
/// the opposite lane delivers at least one TLP per interval; `fc_types`:
/// how many credit types (posted, non-posted) those TLPs use.
pub fn dllp_share(cfg: &PcieConfig, opposite_busy: bool, fc_types: u32) -> f64 {
    let ack =
        ack_interval_symbols(cfg.generation, cfg.lanes, cfg.mps_bytes).unwrap_or(u64::MAX) as f64;
    let fc =
        fc_interval_symbols(cfg.generation, cfg.lanes, cfg.mps_bytes).unwrap_or(u64::MAX) as f64;
    let dllp = DLLP_BYTES as f64;
    match cfg.dllp_schedule {
        DllpSchedule::PcieBench => dllp / ack + dllp / fc,
        DllpSchedule::Spec if opposite_busy => {
            let lanes = cfg.lanes as f64;
            dllp / (ack * lanes) + fc_types as f64 * dllp / (fc * lanes)
        }
        DllpSchedule::Spec => 0.0,
    }
}

/// Fraction of the symbol stream left for TLPs once DLLPs (as
/// [`dllp_share`]) and SKIP ordered sets are taken out.
pub fn tlp_share(cfg: &PcieConfig, opposite_busy: bool, fc_types: u32) -> f64 {
    1.0 - dllp_share(cfg, opposite_busy, fc_types)
        - SKIP_BYTES as f64 / SKIP_INTERVAL_SYMBOLS as f64
}

/// Bandwidth usable by TLPs in one direction, in Gb/s (arguments as
/// [`tlp_share`]).
pub fn tlp_gbps(cfg: &PcieConfig, opposite_busy: bool, fc_types: u32) -> f64 {
    raw_gbps(cfg) * tlp_share(cfg, opposite_busy, fc_types)
}

/// Effective (payload) bandwidth of back-to-back DMA writes of `size_bytes`
/// each, in Gb/s: every write is cut into MPS-sized MWr TLPs, and the
/// opposite direction carries nothing but their Acks and UpdateFCs.
pub fn write_gbps(cfg: &PcieConfig, size_bytes: u64) -> f64 {
    if size_bytes == 0 {
        return 0.0;
    }
    let tlps = size_bytes.div_ceil(cfg.mps_bytes as u64);
    let wire_bytes = tlps * mem_request_overhead_bytes(cfg.addr64, cfg.ecrc) + size_bytes;
    size_bytes as f64 * tlp_gbps(cfg, false, 0) / wire_bytes as f64
}

/// Effective bandwidth of back-to-back DMA reads of `size_bytes` each, in
/// Gb/s: MRRS-sized requests go upstream, MPS- (or RCB-) sized completions
/// come back, and whichever direction fills first sets the rate. The
/// request lane also carries the Acks for the completions; the completion
/// lane, the Acks and non-posted UpdateFCs for the requests.
pub fn read_gbps(cfg: &PcieConfig, size_bytes: u64) -> f64 {
    if size_bytes == 0 {
        return 0.0;
    }
    let requests = size_bytes.div_ceil(cfg.mrrs_bytes as u64);
    let upstream_bytes = requests * mem_request_overhead_bytes(cfg.addr64, cfg.ecrc);
    let chunk = if cfg.rcb_chunks {
        cfg.rcb_bytes
    } else {
        cfg.mps_bytes
    } as u64;
    let completions = size_bytes.div_ceil(chunk);
    let downstream_bytes = completions * completion_overhead_bytes(cfg.ecrc) + size_bytes;
    let up_bits_per_s = tlp_gbps(cfg, true, 0) * 1e9;
    let down_bits_per_s = tlp_gbps(cfg, true, 1) * 1e9;
    let reads_per_s = (down_bits_per_s / (8 * downstream_bytes) as f64)
        .min(up_bits_per_s / (8 * upstream_bytes) as f64);
    reads_per_s * (8 * size_bytes) as f64 / 1e9
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gen3x16(dllp_schedule: DllpSchedule) -> PcieConfig {
        PcieConfig {
            generation: 3,
            lanes: 16,
            dllp_schedule,
            ..PcieConfig::default()
        }
    }

    #[test]
    fn header_sizes_match_pcie_bench() {
        assert_eq!(mem_request_overhead_bytes(true, false), 24);
        assert_eq!(mem_request_overhead_bytes(false, false), 20);
        assert_eq!(mem_request_overhead_bytes(true, true), 28);
        assert_eq!(completion_overhead_bytes(false), 20);
        assert_eq!(completion_overhead_bytes(true), 24);
    }

    #[test]
    fn gen3_x16_rates_under_pcie_bench() {
        let cfg = gen3x16(DllpSchedule::PcieBench);
        assert!((raw_gbps(&cfg) - 126.030_769).abs() < 1e-5);
        // 1 − 8/168 − 8/168 − 4/1538 at MPS 256, busy or not.
        let share = 1.0 - 16.0 / 168.0 - 4.0 / 1538.0;
        assert!((tlp_share(&cfg, false, 0) - share).abs() < 1e-12);
        assert!((tlp_share(&cfg, true, 2) - share).abs() < 1e-12);
        let w = write_gbps(&cfg, 4096);
        assert!((w - 4096.0 * raw_gbps(&cfg) * share / (4096.0 + 16.0 * 24.0)).abs() < 1e-9);
    }

    #[test]
    fn gen3_x16_rates_under_the_spec() {
        let cfg = gen3x16(DllpSchedule::Spec);
        let skip = 4.0 / 1538.0;
        // Nothing to acknowledge: SKIPs only.
        assert!((tlp_share(&cfg, false, 0) - (1.0 - skip)).abs() < 1e-12);
        // One Ack and one UpdateFC per 168 symbol times of 16 lanes.
        let share = 1.0 - 8.0 / (168.0 * 16.0) - 8.0 / (168.0 * 16.0) - skip;
        assert!((tlp_share(&cfg, true, 1) - share).abs() < 1e-12);
    }

    #[test]
    fn reads_are_limited_by_the_fuller_direction() {
        for schedule in [DllpSchedule::PcieBench, DllpSchedule::Spec] {
            let cfg = gen3x16(schedule);
            // 64 B reads: completions (84 B) dominate the 24 B request.
            let r = read_gbps(&cfg, 64);
            assert!((r - 64.0 / 84.0 * tlp_gbps(&cfg, true, 1)).abs() < 1e-9);
            // 4 KiB reads: 16 completions of 20 B overhead, still downstream-bound.
            let r = read_gbps(&cfg, 4096);
            let expected = 4096.0 / (4096.0 + 16.0 * 20.0) * tlp_gbps(&cfg, true, 1);
            assert!((r - expected).abs() < 1e-9);
        }
    }

    #[test]
    fn fc_table_differs_only_where_the_spec_does() {
        assert_eq!(fc_interval_symbols(1, 32, 2048), Some(248));
        assert_eq!(ack_interval_symbols(1, 32, 2048), Some(148));
        assert_eq!(fc_interval_symbols(2, 32, 4096), Some(327));
        assert_eq!(ack_interval_symbols(2, 32, 4096), Some(237));
        assert_eq!(fc_interval_symbols(5, 8, 512), Some(182));
        assert_eq!(ack_interval_symbols(6, 8, 512), None);
    }
}
