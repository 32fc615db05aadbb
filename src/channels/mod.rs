//! Channel adapters: each turns a platform's updates into [`crate::core::Inbound`] and the
//! core's [`crate::core::Outbound`] actions back into platform calls. Nothing in here
//! decides anything.

pub mod backlog;
pub mod console;
pub mod pace;
pub mod telegram;
pub mod wecom;
