//! Placeholder: the echo host on the Ensō NIC lands here.

use std::rc::Rc;

use nextio_engine::{Mailbox, Sim};
use nextio_hw::ethernet::Wire;
use nextio_hw::packet::Frame;

use super::{EchoConfig, EchoError, EchoSystem, NotificationMode};

pub fn build(
    _sim: &Sim,
    _config: &EchoConfig,
    _mode: NotificationMode,
    _from_wire: Rc<Mailbox<Frame>>,
    _to_wire: Rc<Wire>,
) -> Result<EchoSystem, EchoError> {
    Err(EchoError::Config("the Ensō NIC is not built yet".into()))
}
