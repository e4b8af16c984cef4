//! Whether the client of a request is still there.
//!
//! actix-web runs a handler to its end even after its client has hung up:
//! it notices a closed connection only when it writes the answer. A
//! `?wait=` publish would go on holding its waiter slot (`--max-waiters`)
//! and its share of the Job watch for the whole wait. Each connection keeps
//! a duplicate of its socket (one more file descriptor per connection) so a
//! handler can look, without reading anything, whether the peer closed it,
//! whatever else the peer sent first.

#[cfg(not(target_os = "linux"))]
use std::mem::MaybeUninit;
use std::os::fd::AsFd;
use std::time::Duration;

use actix_web::dev::Extensions;
use actix_web::HttpRequest;

/// How often a waiting handler looks at its connection.
const LOOK_EVERY: Duration = Duration::from_millis(500);

/// The connection's socket, for [`gone`].
struct Peer(socket2::Socket);

/// For `HttpServer::on_connect`: keeps a duplicate of each TCP connection's
/// socket in the connection's data. A connection of another kind (or a
/// failed `dup`) keeps none, and [`gone`] never fires for it.
pub fn on_connect(connection: &dyn std::any::Any, data: &mut Extensions) {
    if let Some(stream) = connection.downcast_ref::<actix_web::rt::net::TcpStream>() {
        if let Ok(fd) = stream.as_fd().try_clone_to_owned() {
            data.insert(Peer(socket2::Socket::from(fd)));
        }
    }
}

/// Resolves once the client of `req` has closed its connection (or reset
/// it); pending forever when that cannot be known.
pub async fn gone(req: &HttpRequest) {
    let Some(peer) = req.conn_data::<Peer>() else {
        return std::future::pending().await;
    };
    loop {
        tokio::time::sleep(LOOK_EVERY).await;
        if closed(&peer.0) {
            return;
        }
    }
}

/// Whether the peer has closed its side (or reset the connection), read
/// from the socket's state without reading anything. On Linux, `poll` with
/// `POLLRDHUP` sees the peer's FIN even behind bytes nobody read: a
/// pipelined request (or a body actix stopped reading) must not hide that
/// the client left. Elsewhere, a peek: end of stream or an error is closed.
#[cfg(target_os = "linux")]
fn closed(socket: &socket2::Socket) -> bool {
    use std::os::fd::AsRawFd;
    let mut fd = libc::pollfd {
        fd: socket.as_raw_fd(),
        events: libc::POLLRDHUP,
        revents: 0,
    };
    // SAFETY: one valid pollfd for the duration of the call, a timeout of
    // 0: poll only reports the state of a descriptor this value owns.
    let ready = unsafe { libc::poll(&mut fd, 1, 0) };
    ready > 0
        && fd.revents & (libc::POLLRDHUP | libc::POLLHUP | libc::POLLERR | libc::POLLNVAL) != 0
}

#[cfg(not(target_os = "linux"))]
fn closed(socket: &socket2::Socket) -> bool {
    let mut byte = [MaybeUninit::<u8>::uninit(); 1];
    match socket.peek(&mut byte) {
        Ok(0) => true,
        Ok(_) => false,
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => false,
        Err(e) if e.kind() == std::io::ErrorKind::Interrupted => false,
        Err(_) => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn pair() -> (std::net::TcpStream, socket2::Socket) {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let client =
            std::net::TcpStream::connect(listener.local_addr().expect("addr")).expect("connect");
        let (server, _) = listener.accept().expect("accept");
        server.set_nonblocking(true).expect("nonblocking");
        let dup = server.as_fd().try_clone_to_owned().expect("dup");
        // The original stays open, as actix keeps it.
        std::mem::forget(server);
        (client, socket2::Socket::from(dup))
    }

    #[test]
    fn an_open_connection_is_not_closed_with_or_without_unread_bytes() {
        let (mut client, socket) = pair();
        assert!(!closed(&socket));
        client.write_all(b"GET / HTTP/1.1\r\n").expect("write");
        std::thread::sleep(Duration::from_millis(50));
        assert!(!closed(&socket));
        assert!(!closed(&socket), "peeking reads nothing away");
    }

    #[test]
    fn a_connection_closed_behind_bytes_nobody_read_is_closed() {
        let (mut client, socket) = pair();
        // A pipelined request with a large body, cut short, then the FIN.
        client
            .write_all(b"POST /x HTTP/1.1\r\nContent-Length: 10000000\r\n\r\n")
            .expect("write");
        client.write_all(&[b'a'; 64 * 1024]).expect("write");
        drop(client);
        std::thread::sleep(Duration::from_millis(50));
        assert!(closed(&socket), "the unread bytes do not hide the FIN");
    }

    #[test]
    fn a_connection_its_client_closed_is_closed() {
        let (client, socket) = pair();
        drop(client);
        std::thread::sleep(Duration::from_millis(50));
        assert!(closed(&socket));
    }
}
