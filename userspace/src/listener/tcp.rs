//! Syslog over TCP (RFC 6587 framing): binding the socket; the connections are served by
//! the shared stream loop in [`super::stream`].

use std::net::SocketAddr;

use socket2::{Domain, Protocol, Socket, Type};

use super::ListenerKind;
use crate::{Error, Result};

const BACKLOG: i32 = 1024;

/// Binds a listening TCP socket (syslog over TCP or TLS), non-blocking.
pub(crate) fn bind_tcp(kind: ListenerKind, address: SocketAddr) -> Result<std::net::TcpListener> {
    let socket = Socket::new(Domain::for_address(address), Type::STREAM, Some(Protocol::TCP))
        .map_err(|source| Error::Bind { listener: kind, address, source })?;
    let option_error = |source| Error::SocketOption { listener: kind, source };
    socket.set_reuse_address(true).map_err(option_error)?;
    socket.bind(&address.into()).map_err(|source| Error::Bind { listener: kind, address, source })?;
    socket.listen(BACKLOG).map_err(|source| Error::Bind { listener: kind, address, source })?;
    socket.set_nonblocking(true).map_err(option_error)?;
    Ok(socket.into())
}
