//! The accelerator chain end to end on a host, in every mode: every reply
//! equals the software reference (decrypt, then classify) of its request,
//! nothing is lost or duplicated, and the devices' counters agree.

use nextio_apps::chain::{self, ChainConfig, ChainMode};
use nextio_engine::{Duration, Sim};
use nextio_hw::device::Device as _;
use nextio_hw::machine::MachineSpec;

fn run(mode: ChainMode, n: u64, interval_ns: u64) -> (chain::ClientOutcome, chain::ChainSystem) {
    let sim = Sim::new();
    let cfg = ChainConfig::new(MachineSpec::enso_testbed(2), mode);
    let sys = chain::build(&sim, &cfg).unwrap();
    let out = chain::run_client(
        &sim,
        &sys,
        n,
        1000,
        Duration::from_ns(interval_ns),
        Duration::from_us(2000),
    )
    .unwrap();
    (out, sys)
}

#[test]
fn every_mode_returns_the_reference_for_every_request() {
    for mode in ChainMode::ALL {
        let (out, sys) = run(mode, 30, 3000);
        assert_eq!(out.sent, 30, "{mode:?}");
        assert_eq!(out.wrong, 0, "{mode:?}");
        assert_eq!(out.replies.len(), 30, "{mode:?}: {:?}", sys.app.borrow());
        for dev in [
            sys.crypto.borrow().counters().clone(),
            sys.ml.borrow().counters().clone(),
        ] {
            assert_eq!(dev.get("accepted"), 30, "{mode:?}");
            assert_eq!(dev.get("completed"), 30, "{mode:?}");
            assert_eq!(dev.sum_prefix("drop."), 0, "{mode:?}");
        }
        if let Some(n) = &sys.nagare {
            assert_eq!(n.borrow().counters().sum_prefix("drop."), 0, "{mode:?}");
            n.borrow().conservation().unwrap();
        }
        let fabric = sys.host.machine().fabric().counters();
        assert_eq!(fabric.sum_prefix("drop."), 0, "{mode:?}: {fabric:?}");
    }
}

#[test]
fn a_burst_is_served_whole_in_every_mode() {
    for mode in ChainMode::ALL {
        let (out, sys) = run(mode, 200, 0);
        assert_eq!(out.wrong, 0, "{mode:?}");
        assert_eq!(out.replies.len(), 200, "{mode:?}");
        if let Some(n) = &sys.nagare {
            n.borrow().conservation().unwrap();
        }
    }
}
