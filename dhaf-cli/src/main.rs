//! dhaf-cli.
fn main() {}
