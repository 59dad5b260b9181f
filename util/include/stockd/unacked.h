// How much of what a TCP socket sent its peer has not been acknowledged yet: what the client
// port's linger and the sidecar's metrics port ask before closing a socket whose answer is
// written, since closing with input unread sends a reset, and a reset destroys what the peer's
// kernel has not taken yet. Any thread; no state.
#pragma once

namespace stockd {

// Bytes the kernel holds for the peer that the peer's kernel has not acknowledged, sent or not
// (SIOCOUTQ; a FIN counts one); -1 if it cannot tell (not a TCP socket).
int unacked_bytes(int fd);

}  // namespace stockd
