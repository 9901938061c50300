//! UDP socket settings shared by the server, the network simulator and the load generator.

/// Raises a UDP socket's send and receive buffers (best effort: the OS may cap them). 0 leaves
/// the OS defaults.
pub fn set_socket_buffers(socket: &std::net::UdpSocket, bytes: usize) {
    if bytes == 0 {
        return;
    }
    let sock = quinn::udp::UdpSockRef::from(socket);
    match quinn::udp::UdpSocketState::new(sock) {
        Ok(state) => {
            let _ = state.set_send_buffer_size(quinn::udp::UdpSockRef::from(socket), bytes);
            let _ = state.set_recv_buffer_size(quinn::udp::UdpSockRef::from(socket), bytes);
        }
        Err(e) => tracing::warn!(error = %e, "could not set socket buffers"),
    }
}
