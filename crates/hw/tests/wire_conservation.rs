//! A seeded overload of an Ethernet wire: a sender offers frames faster than
//! the line can carry them, in bursts of random size. Every frame must end
//! in exactly one place — delivered intact and in order, or counted as a
//! drop — and the outcome must be identical for the same seed.

use std::cell::RefCell;
use std::net::Ipv4Addr;
use std::rc::Rc;

use nextio_engine::{Duration, Mailbox, Rate, Sim, SimRng, Time};
use nextio_hw::ethernet::{LinkConfig, Wire};
use nextio_hw::packet::{self, FlowKey, Frame, Macs};

struct Outcome {
    offered: u64,
    dropped: u64,
    delivered_ids: Vec<u64>,
}

fn overload(seed: u64) -> Outcome {
    let sim = Sim::new();
    let rx = Rc::new(Mailbox::new(&sim));
    let config = LinkConfig {
        rate: Rate::gbps(10),
        queue_frames: 8,
        propagation: Duration::from_ns(50),
    };
    let wire = Rc::new(Wire::new(&sim, config, rx.clone()));
    let flow = FlowKey {
        src_ip: Ipv4Addr::new(10, 1, 0, 1),
        dst_ip: Ipv4Addr::new(10, 1, 0, 2),
        src_port: 1,
        dst_port: 2,
    };

    let (s, w) = (sim.clone(), wire.clone());
    sim.spawn(async move {
        let mut rng = SimRng::new(seed);
        let mut id = 0u64;
        for _ in 0..200 {
            for _ in 0..rng.below(20) {
                let size = 64 + rng.below(1455) as usize;
                let bytes =
                    packet::build_udp(Macs::default(), flow, &id.to_be_bytes(), size).unwrap();
                let _ = w.send(Frame::new(bytes, id));
                id += 1;
            }
            s.sleep(Duration::from_ns(rng.below(5_000))).await;
        }
    });
    let got = Rc::new(RefCell::new(Vec::new()));
    let (r, g) = (rx.clone(), got.clone());
    sim.spawn(async move {
        loop {
            let f: Frame = r.recv().await;
            let v = packet::parse_udp(&f.bytes).expect("delivered frames are intact");
            assert_eq!(
                f.bytes[v.payload_offset..v.payload_offset + 8],
                f.id.to_be_bytes()
            );
            g.borrow_mut().push(f.id);
        }
    });
    sim.run_until(Time(Duration::from_ms(10).ps()));
    sim.shutdown();
    let c = wire.counters();
    let delivered_ids = got.borrow().clone();
    Outcome {
        offered: c.get("offered"),
        dropped: c.get("drop.queue_full"),
        delivered_ids,
    }
}

#[test]
fn every_frame_is_delivered_or_dropped() {
    let o = overload(11);
    assert!(o.dropped > 0, "the test must actually overload the wire");
    assert_eq!(o.offered, o.delivered_ids.len() as u64 + o.dropped);
    assert!(
        o.delivered_ids.windows(2).all(|w| w[0] < w[1]),
        "delivery keeps order"
    );
}

#[test]
fn same_seed_same_outcome() {
    let (a, b) = (overload(5), overload(5));
    assert_eq!(
        (a.offered, a.dropped, &a.delivered_ids),
        (b.offered, b.dropped, &b.delivered_ids)
    );
    let c = overload(6);
    assert_ne!(a.delivered_ids, c.delivered_ids);
}
