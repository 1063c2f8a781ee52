//! nextio's applications, and the hosts they run on assembled as systems
//! under test.
//!
//! * [`echo`] — the echo server of the Ensō evaluation (receive, increment a
//!   payload byte, send back) on either NIC interface, behind one
//!   [`echo::EchoSystem`] shape so experiments can compare them.

pub mod echo;
