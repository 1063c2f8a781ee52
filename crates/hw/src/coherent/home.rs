//! The device's side of a coherent link: a device that homes a window of
//! physical memory implements [`CoherentHome`] and is told of every
//! request the chip makes for one of its lines; it answers through the
//! [`HomePort`] it was given when it was attached — at once, or later:
//! a load stays held until the home answers (or the core's memory system
//! times out). The home can also invalidate lines the chip holds, with or
//! without fetching their data back (clean-invalidate).
//!
//! Like every device action, a [`HomePort`] call only schedules messages
//! on the link; nothing reaches the chip (or comes back to the device)
//! within the call, so a device handler is never re-entered.

use std::rc::Weak;

use crate::device::{Device, DeviceCtx};
use crate::mem::PhysAddr;

use super::Inner;

/// A window of physical memory a device homes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HomeWindow {
    pub base: PhysAddr,
    pub bytes: u64,
}

impl HomeWindow {
    /// Whether `pa` lies in the window.
    pub fn contains(&self, pa: PhysAddr) -> bool {
        pa.0 >= self.base.0 && pa.0 - self.base.0 < self.bytes
    }
    /// The offset of `pa` in the window (`pa` must lie in it).
    pub fn offset_of(&self, pa: PhysAddr) -> u64 {
        pa.0 - self.base.0
    }
}

/// What a core wants a line for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Intent {
    /// A load missed.
    Read,
    /// A store needs the line exclusively (a read for ownership, or an
    /// upgrade of a shared copy).
    Write,
}

/// What the home grants with its data.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Grant {
    /// A read-only copy: a store must ask again.
    Shared,
    /// The only copy: the chip may write it without asking (and the home
    /// must recall it to see what was written).
    Exclusive,
}

/// A request of the chip for one line, as the home sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LineRequest {
    /// Answer with this id.
    pub id: u64,
    /// The line's physical address (line-aligned).
    pub line: PhysAddr,
    /// Its offset in the home's window.
    pub offset: u64,
    /// The core whose access missed. ECI and CXL carry the requester's
    /// identity only as far as the socket; homes that care which core
    /// asked (Lauberhorn) tell cores apart by the lines they use.
    pub core: usize,
    pub intent: Intent,
}

/// How a home invalidates a line the chip may hold.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Invalidate {
    /// Drop every copy; modified data is discarded.
    Discard,
    /// Drop every copy and send modified data back to the home.
    Clean,
}

/// What a home is told.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HomeEvent {
    /// The chip asks for a line.
    Request(LineRequest),
    /// An invalidation the home issued with `token` is done: the chip
    /// holds no copy. `data` is the line as the chip last wrote it if the
    /// chip held it modified and the invalidation was [`Invalidate::Clean`].
    Invalidated {
        token: u64,
        line: PhysAddr,
        data: Option<Vec<u8>>,
    },
    /// The chip evicted a modified line and wrote it back.
    WrittenBack { line: PhysAddr, data: Vec<u8> },
}

/// Why a home's action was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum HomeError {
    #[error("no outstanding request {0}")]
    NoSuchRequest(u64),
    #[error("the response to request {id} has {got} bytes, a line has {line}")]
    BadLength { id: u64, got: usize, line: u64 },
    #[error("line {:#x} is not in this home's window", .0.0)]
    NotMine(PhysAddr),
    #[error("request {0} wants to write: it needs an exclusive grant")]
    NeedsExclusive(u64),
    #[error("the coherent link is gone")]
    Gone,
}

/// A device model that homes memory on a coherent link.
pub trait CoherentHome: Device {
    /// The device was attached as the home of `window`; `port` is how it
    /// answers and invalidates.
    fn home_attached(&mut self, port: HomePort, window: HomeWindow);
    /// Something happened on the link for this home.
    fn coherent_event(&mut self, cx: &mut DeviceCtx<'_>, event: HomeEvent);
}

/// A home's handle on its link.
#[derive(Clone)]
pub struct HomePort {
    pub(super) inner: Weak<Inner>,
    pub(super) home: usize,
}

impl HomePort {
    /// Answer request `id` with the line's `data` and `grant`; the data
    /// reaches the chip one link crossing (and its serialisation) later.
    pub fn respond(&self, id: u64, data: &[u8], grant: Grant) -> Result<(), HomeError> {
        let inner = self.inner.upgrade().ok_or(HomeError::Gone)?;
        inner.respond(self.home, id, data, grant)
    }

    /// Invalidate `line` in the chip; [`HomeEvent::Invalidated`] with
    /// `token` follows once the chip has dropped it.
    pub fn invalidate(&self, line: PhysAddr, how: Invalidate, token: u64) -> Result<(), HomeError> {
        let inner = self.inner.upgrade().ok_or(HomeError::Gone)?;
        inner.invalidate(self.home, line, how, token)
    }

    /// The link's line size.
    pub fn line_bytes(&self) -> u64 {
        self.inner.upgrade().map_or(0, |i| i.cfg.line_bytes)
    }
}
