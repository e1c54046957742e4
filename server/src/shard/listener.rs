//! `SO_REUSEPORT` listeners: one per shard, all bound to the same address, so the kernel spreads
//! new connections over the shards and no connection crosses threads at accept time.

use std::io;
use std::net::SocketAddr;

use socket2::{Domain, Protocol, Socket, Type};

/// Listen backlog of each shard's socket.
const BACKLOG: i32 = 4096;

/// Binds one non-blocking listener with `SO_REUSEADDR` + `SO_REUSEPORT`.
fn bind_one(addr: SocketAddr) -> io::Result<std::net::TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    #[cfg(unix)]
    socket.set_reuse_port(true)?;
    socket.set_tcp_nodelay(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(BACKLOG)?;
    Ok(socket.into())
}

/// Binds `count` listeners: the first to `addr` (port 0 allowed), the others to the port the
/// first one got. Returns the listeners and the resolved address.
pub fn bind_shared(
    addr: SocketAddr,
    count: usize,
) -> io::Result<(Vec<std::net::TcpListener>, SocketAddr)> {
    let first = bind_one(addr)?;
    let resolved = first.local_addr()?;
    let mut listeners = Vec::with_capacity(count.max(1));
    listeners.push(first);
    for _ in 1..count {
        listeners.push(bind_one(resolved)?);
    }
    Ok((listeners, resolved))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn binds_all_to_the_resolved_port() {
        let (listeners, addr) = bind_shared("127.0.0.1:0".parse().unwrap(), 3).unwrap();
        assert_eq!(listeners.len(), 3);
        assert_ne!(addr.port(), 0);
        for l in &listeners {
            assert_eq!(l.local_addr().unwrap(), addr);
        }
    }
}
