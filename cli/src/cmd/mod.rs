//! One file per command group.

pub mod data;
pub mod eval;
pub mod fuzz;
pub mod infer;
pub mod model;
pub mod plot;
pub mod profile;
pub mod refine;
pub mod topdown;
pub mod train;
pub mod tune;
