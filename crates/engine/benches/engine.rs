//! Engine throughput: events per second for timer-driven tasks and for
//! callbacks, with a queue holding many pending events (as a busy model does).

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use nextio_engine::{Duration, Sim};

const TASKS: u64 = 1000;
const EVENTS: u64 = 1_000_000;

fn tasks_sleeping(c: &mut Criterion) {
    let mut g = c.benchmark_group("engine");
    g.throughput(Throughput::Elements(EVENTS));
    g.bench_function("task_wakeups", |b| {
        b.iter(|| {
            let sim = Sim::new();
            for i in 0..TASKS {
                let s = sim.clone();
                sim.spawn(async move {
                    for _ in 0..EVENTS / TASKS - 1 {
                        s.sleep(Duration(100 + i % 7)).await;
                    }
                });
            }
            sim.run();
            black_box(sim.events())
        })
    });
    g.bench_function("callbacks", |b| {
        b.iter(|| {
            let sim = Sim::new();
            fn chain(sim: &Sim, left: u64, step: u64) {
                if left > 0 {
                    let s = sim.clone();
                    sim.after(Duration(step), move || chain(&s, left - 1, step));
                }
            }
            for i in 0..TASKS {
                chain(&sim, EVENTS / TASKS, 100 + i % 7);
            }
            sim.run();
            black_box(sim.events())
        })
    });
    g.finish();
}

criterion_group!(benches, tasks_sleeping);
criterion_main!(benches);
