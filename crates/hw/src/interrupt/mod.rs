//! CPU interrupt hardware for user interrupts: Intel UIPI and the xUI
//! extensions (Aydogmus et al., ASPLOS '25).
//!
//! * [`uipi`] — UPID, UITT, the thread's UIRR/UIF registers and the
//!   `senduipi`/`uiret`/`clui`/`stui`/`testui` semantics;
//! * [`apic`] — the local APIC with UINV, interrupt forwarding registers and
//!   the KB_Timer;
//! * [`pipeline`] — flush, drain and tracked delivery, costed from the
//!   pipeline mechanism and the Table 2 / Fig. 2 microcode costs;
//! * [`line`] — the interrupt line into a core and interruptible compute.

pub mod apic;
pub mod line;
pub mod pipeline;
pub mod uipi;
