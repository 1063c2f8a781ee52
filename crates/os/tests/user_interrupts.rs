//! The user-interrupt state machines as the xUI paper describes them,
//! driven through the kernel's system calls and instructions.

use nextio_engine::Sim;
use nextio_hw::interrupt::apic::{LocalApic, TimerMode};
use nextio_hw::interrupt::uipi::{SendOutcome, UiFault};
use nextio_hw::machine::{Machine, MachineSpec};
use nextio_hw::mem::VirtAddr;
use nextio_os::kernel::SIGSEGV;
use nextio_os::{DeliveryPath, Kernel, OsCosts, OsError, ThreadState};

fn kernel() -> Kernel {
    let machine = Machine::new(&Sim::new(), MachineSpec::xui_server(4)).unwrap();
    Kernel::new(&machine, OsCosts::default()).unwrap()
}

#[test]
fn suppressed_target_gets_no_ipi_and_receives_on_resume() {
    let mut k = kernel();
    let p = k.create_process().unwrap();
    let recv = k.create_thread(p, 1).unwrap();
    let other = k.create_thread(p, 1).unwrap();
    let send = k.create_thread(p, 0).unwrap();
    k.schedule(0, 0).unwrap();
    k.schedule(1, 0).unwrap();
    assert_eq!(k.current(1), Some(recv));
    k.sys_register_handler(recv, 0x1000).unwrap();
    let fd = k.sys_uintr_create_fd(recv, 5).unwrap();
    let idx = k.sys_register_sender(send, fd).unwrap();

    // Running: a real IPI, delivered on the fast path.
    let out = k.senduipi(send, idx).unwrap();
    assert_eq!(
        out,
        SendOutcome::Ipi {
            ndst: 1,
            nv: LocalApic::DEFAULT_UINV
        }
    );
    let d = k.interrupt(1, LocalApic::DEFAULT_UINV, false).unwrap();
    assert_eq!(d.len(), 1);
    assert_eq!((d[0].uv, d[0].path), (5, DeliveryPath::Fast));

    // Descheduled: SN is set, the send posts but no IPI goes out.
    k.schedule(1, 0).unwrap();
    assert_eq!(k.current(1), Some(other));
    assert!(k.upid(recv).unwrap().sn());
    let out = k.senduipi(send, idx).unwrap();
    assert_eq!(out, SendOutcome::Posted { suppressed: true });
    assert_eq!(k.counters().get("uipi.ipi"), 1);
    assert_eq!(k.deliveries().len(), 1);

    // Resumed: the kernel reposts and the handler runs (slow path).
    k.schedule(1, 0).unwrap();
    assert_eq!(k.current(1), Some(recv));
    let last = *k.deliveries().last().unwrap();
    assert_eq!(k.deliveries().len(), 2);
    assert_eq!(
        (last.tid, last.uv, last.path),
        (recv, 5, DeliveryPath::Slow)
    );
    assert!(!k.upid(recv).unwrap().sn());
    assert!(!k.upid(recv).unwrap().on());
    assert_eq!(k.counters().get("uipi.reposted"), 1);
}

#[test]
fn an_ipi_racing_a_context_switch_is_not_lost() {
    let mut k = kernel();
    let p = k.create_process().unwrap();
    let recv = k.create_thread(p, 1).unwrap();
    let _other = k.create_thread(p, 1).unwrap();
    let send = k.create_thread(p, 0).unwrap();
    k.schedule(0, 0).unwrap();
    k.schedule(1, 0).unwrap();
    k.sys_register_handler(recv, 0x1000).unwrap();
    let fd = k.sys_uintr_create_fd(recv, 3).unwrap();
    let idx = k.sys_register_sender(send, fd).unwrap();
    assert!(matches!(
        k.senduipi(send, idx).unwrap(),
        SendOutcome::Ipi { .. }
    ));
    // The receiver is switched out while the IPI is in flight.
    k.schedule(1, 0).unwrap();
    assert!(
        k.interrupt(1, LocalApic::DEFAULT_UINV, false)
            .unwrap()
            .is_empty()
    );
    k.schedule(1, 0).unwrap();
    assert_eq!(k.deliveries().len(), 1);
    assert_eq!(k.deliveries()[0].path, DeliveryPath::Slow);
}

#[test]
fn unauthorised_sender_faults() {
    let mut k = kernel();
    let victim_p = k.create_process().unwrap();
    let attacker_p = k.create_process().unwrap();
    let victim = k.create_thread(victim_p, 1).unwrap();
    let attacker = k.create_thread(attacker_p, 0).unwrap();
    k.schedule(0, 0).unwrap();
    k.schedule(1, 0).unwrap();
    k.sys_register_handler(victim, 0x1000).unwrap();
    let fd = k.sys_uintr_create_fd(victim, 1).unwrap();

    // Without the capability, no UITT entry can be made...
    assert_eq!(
        k.sys_register_sender(attacker, fd),
        Err(OsError::NotPermitted(fd))
    );
    // ...nor stolen by "sharing" it from a process that does not hold it.
    assert_eq!(
        k.sys_share_fd(attacker_p, fd, attacker_p),
        Err(OsError::NotPermitted(fd))
    );
    // ...and senduipi with a guessed index faults, raising SIGSEGV.
    for idx in [0, 1, 7, usize::MAX] {
        assert_eq!(
            k.senduipi(attacker, idx),
            Err(OsError::Fault(UiFault::InvalidUittEntry(idx)))
        );
    }
    assert_ne!(k.signals_pending(attacker).unwrap() & (1 << SIGSEGV), 0);
    assert_eq!(k.upid(victim).unwrap().pir(), 0, "victim's UPID untouched");
    assert!(k.deliveries().is_empty());

    // Once granted, it works.
    k.sys_share_fd(victim_p, fd, attacker_p).unwrap();
    let idx = k.sys_register_sender(attacker, fd).unwrap();
    assert!(matches!(
        k.senduipi(attacker, idx),
        Ok(SendOutcome::Ipi { .. })
    ));
}

#[test]
fn kb_timer_survives_a_context_switch() {
    let mut k = kernel();
    let p = k.create_process().unwrap();
    let a = k.create_thread(p, 0).unwrap();
    let b = k.create_thread(p, 0).unwrap();
    k.schedule(0, 0).unwrap();
    k.sys_register_handler(a, 0x1000).unwrap();
    k.sys_enable_kb_timer(a, 9).unwrap();
    assert!(k.set_timer(a, 0, 1000, TimerMode::Periodic).unwrap());
    assert_eq!(k.kb_deadline(0), Some(1000));
    assert_eq!(k.kb_timer_tick(0, 1000, false).unwrap().len(), 1);
    assert_eq!(k.kb_deadline(0), Some(2000));

    // Switch to b at 1500: the timer leaves with a and does not fire for b.
    k.schedule(0, 1500).unwrap();
    assert_eq!(k.current(0), Some(b));
    assert_eq!(k.kb_deadline(0), None);
    assert!(k.kb_timer_tick(0, 2000, false).unwrap().is_empty());

    // Back to a at 1800: same deadline, same period.
    k.schedule(0, 1800).unwrap();
    assert_eq!(k.current(0), Some(a));
    assert_eq!(k.kb_deadline(0), Some(2000));
    let d = k.kb_timer_tick(0, 2000, false).unwrap();
    assert_eq!((d[0].tid, d[0].uv), (a, 9));
    assert_eq!(k.kb_deadline(0), Some(3000));

    // Switched out across a deadline: delivered on resume (slow path).
    k.schedule(0, 2500).unwrap();
    k.schedule(0, 3500).unwrap();
    let last = *k.deliveries().last().unwrap();
    assert_eq!((last.tid, last.path), (a, DeliveryPath::Slow));
    assert_eq!(k.deliveries().len(), 3);
}

#[test]
fn forwarded_vector_reaches_running_thread_directly_and_descheduled_one_through_the_kernel() {
    let mut k = kernel();
    let p = k.create_process().unwrap();
    let net = k.create_thread(p, 2).unwrap();
    let other = k.create_thread(p, 2).unwrap();
    k.schedule(2, 0).unwrap();
    k.sys_register_handler(net, 0x1000).unwrap();
    k.sys_register_forward(net, 40, 4).unwrap();
    assert_eq!(
        k.sys_register_forward(other, 40, 4),
        Err(OsError::NoHandler(other))
    );

    let d = k.interrupt(2, 40, false).unwrap();
    assert_eq!((d[0].uv, d[0].path), (4, DeliveryPath::Fast));
    assert_eq!(k.counters().get("forward.fast"), 1);
    assert_eq!(k.upid(net).unwrap().pir(), 0, "the UPID is never touched");

    k.schedule(2, 0).unwrap();
    assert_eq!(k.current(2), Some(other));
    assert!(
        k.interrupt(2, 40, false).unwrap().is_empty(),
        "not for `other`"
    );
    assert_eq!(k.counters().get("forward.slow"), 1);
    assert_eq!(k.ui_state(other).unwrap().uirr, 0);

    k.schedule(2, 0).unwrap();
    let last = *k.deliveries().last().unwrap();
    assert_eq!((last.tid, last.uv, last.path), (net, 4, DeliveryPath::Slow));
}

#[test]
fn safepoint_mode_delivers_only_at_safepoints() {
    let mut k = kernel();
    let p = k.create_process().unwrap();
    let t = k.create_thread(p, 0).unwrap();
    k.schedule(0, 0).unwrap();
    k.sys_register_handler(t, 0x1000).unwrap();
    k.sys_enable_kb_timer(t, 2).unwrap();
    k.sys_set_safepoint_mode(t, true).unwrap();
    k.set_timer(t, 0, 100, TimerMode::OneShot).unwrap();
    assert!(k.kb_timer_tick(0, 100, false).unwrap().is_empty());
    assert_eq!(
        k.ui_state(t).unwrap().uirr,
        1 << 2,
        "pending, not delivered"
    );
    assert_eq!(k.safepoint(t).unwrap().len(), 1);
    assert_eq!(k.ui_state(t).unwrap().uirr, 0);
}

#[test]
fn clui_blocks_delivery_until_stui() {
    let mut k = kernel();
    let p = k.create_process().unwrap();
    let r = k.create_thread(p, 1).unwrap();
    let s = k.create_thread(p, 0).unwrap();
    k.schedule(0, 0).unwrap();
    k.schedule(1, 0).unwrap();
    k.sys_register_handler(r, 0x1000).unwrap();
    let fd = k.sys_uintr_create_fd(r, 1).unwrap();
    let idx = k.sys_register_sender(s, fd).unwrap();
    k.clui(r).unwrap();
    k.senduipi(s, idx).unwrap();
    assert!(
        k.interrupt(1, LocalApic::DEFAULT_UINV, false)
            .unwrap()
            .is_empty()
    );
    assert_eq!(k.stui(r).unwrap().len(), 1);
}

#[test]
fn futex_and_signals_follow_posix_semantics() {
    let mut k = kernel();
    let p = k.create_process().unwrap();
    let q = k.create_process().unwrap();
    let a = k.create_thread(p, 0).unwrap();
    let b = k.create_thread(p, 0).unwrap();
    k.schedule(0, 0).unwrap();
    // The futex word lives in the process's memory.
    let word = k.sys_mmap(p, 4096, false).unwrap();
    let qword = k.sys_mmap(q, 4096, false).unwrap();
    assert_eq!(word, qword, "the same address in two spaces");
    k.store(p, word, 1).unwrap();
    assert_eq!(k.futex_wait(0, word, 0, 0), Err(OsError::FutexAgain));
    k.futex_wait(0, word, 1, 0).unwrap();
    assert_eq!(k.state(a).unwrap(), ThreadState::Blocked);
    assert_eq!(k.current(0), Some(b));
    assert_eq!(k.futex_wake(q, qword, 1).unwrap(), 0, "other address space");
    assert_eq!(k.futex_wake(p, word, 1).unwrap(), 1);
    // An unmapped futex word is a fault, not a wait.
    assert!(matches!(
        k.futex_wait(0, VirtAddr(0x1000), 0, 0),
        Err(OsError::Access(_))
    ));
    assert_eq!(k.state(a).unwrap(), ThreadState::Ready);

    k.sys_setitimer(b, Some(1_000_000)).unwrap();
    k.itimer_expire(b).unwrap();
    let (sigs, cycles) = k.deliver_signals(b).unwrap();
    assert_eq!(sigs, vec![nextio_os::kernel::SIGALRM]);
    assert_eq!(cycles, 4800, "§2: ≈2.4 µs at 2 GHz");
}
