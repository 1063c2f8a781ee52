//! Placeholder: the echo host on the packetized NIC lands here.

use std::rc::Rc;

use nextio_engine::{Mailbox, Sim};
use nextio_hw::ethernet::Wire;
use nextio_hw::packet::Frame;

use super::{EchoConfig, EchoError, EchoSystem};

pub fn build(
    _sim: &Sim,
    _config: &EchoConfig,
    _from_wire: Rc<Mailbox<Frame>>,
    _to_wire: Rc<Wire>,
) -> Result<EchoSystem, EchoError> {
    Err(EchoError::Config(
        "the packetized NIC is not built yet".into(),
    ))
}
