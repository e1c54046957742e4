//! Free loopback ports for tests that must know their servers' addresses before starting them.

/// `n` free loopback ports (bound, read, released together, so they differ), e.g. for nodes that
/// each list the others at start.
pub(crate) fn free_ports(n: usize) -> Vec<u16> {
    let listeners: Vec<_> = (0..n)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0").expect("a free loopback port"))
        .collect();
    listeners
        .iter()
        .map(|l| l.local_addr().expect("its address").port())
        .collect()
}
