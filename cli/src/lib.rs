//! The `deepmark` program's own parts, beside the `deepmark` library: choosing a backend by name
//! and the GPU kernel cache ([`backend`]), the fuzz harness of every parser a user feeds
//! ([`fuzzing`]), and video in and out through FFmpeg ([`video`]). The binary (`src/main.rs`, `cmd/`, `ui.rs`) is built on them; the benches and
//! the integration tests use them too.

pub mod backend;
pub mod fuzzing;
pub mod video;
