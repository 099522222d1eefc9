//! The `deepmark` program's own parts, beside the `deepmark` library: choosing a backend by name
//! and the GPU kernel cache ([`backend`]), and the fuzz harness of every parser a user feeds
//! ([`fuzzing`]). The binary (`src/main.rs`, `cmd/`, `ui.rs`) is built on them; the benches and
//! the integration tests use them too.

pub mod backend;
pub mod fuzzing;
