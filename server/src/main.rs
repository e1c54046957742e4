//! The `chatwire` binary.
fn main() {}
