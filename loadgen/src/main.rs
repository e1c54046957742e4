//! chatwire load generator.
fn main() {}
