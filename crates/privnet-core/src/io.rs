//! The I/O shell around the sans-IO core (feature `driver`): the operating-system interfaces the
//! driver uses (TUN, rtnetlink, network namespaces, UDP with GSO/GRO), busy polling, turn-taking
//! between inputs and the batch hold.
//!
//! This module is the only part of the crate that touches the operating system: it reads clocks,
//! opens sockets and devices and, in [`sys`], calls `libc` with `unsafe` (each block with a
//! `// SAFETY:` comment).

pub mod busypoll;
pub mod hold;
pub mod sys;
pub mod turns;
