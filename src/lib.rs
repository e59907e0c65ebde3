//! `privnet`: private encrypted overlay networks for containers.
//!
//! This crate is a thin facade over [`privnet_core`]; it exists so that the workspace root owns the
//! criterion benches in `benches/` and the examples in `examples/`.
pub use privnet_core::*;
