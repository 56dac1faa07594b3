// tests/raw_zmtp.h — a peer that speaks ZMTP 3.0 by hand over a TCP socket, to send what ZeroMQ's
// own sockets never would: a frame that declares more bytes than the server accepts.
#pragma once

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdint>
#include <functional>
#include <string>
#include <thread>

namespace fe::test {

// Connects to 127.0.0.1:port as a DEALER (NULL security), declares one frame of `declared` bytes,
// then sends its body in 1 MiB chunks, at most max_chunks of them, calling between_chunks after
// each (an in-process server receives there). True when the server closed the connection before
// the chunks ran out: it refused the frame instead of buffering it.
inline bool server_closes_oversized_frame(int port, uint64_t declared, int max_chunks,
                                          const std::function<void()>& between_chunks = {}) {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_port = htons(static_cast<uint16_t>(port));
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (connect(fd, reinterpret_cast<sockaddr*>(&address), sizeof address) != 0) {
    close(fd);
    return false;
  }
  std::string greeting(64, '\0');
  greeting[0] = '\xff';
  greeting[9] = '\x7f';
  greeting[10] = 3;  // version 3.0
  greeting.replace(12, 4, "NULL");
  const std::string ready = std::string("\x05READY") + "\x0bSocket-Type" + std::string("\0\0\0\x06", 4) + "DEALER";
  std::string frames = greeting + "\x04" + static_cast<char>(ready.size()) + ready;
  frames += "\x02";  // a long frame, the last of its message: an 8-byte big-endian size follows
  for (int shift = 56; shift >= 0; shift -= 8) frames += static_cast<char>(declared >> shift & 0xff);
  bool closed = send(fd, frames.data(), frames.size(), MSG_NOSIGNAL) != static_cast<ssize_t>(frames.size());
  const std::string body(1 << 20, 'x');
  for (int i = 0; i < max_chunks && !closed; ++i) {
    if (between_chunks) between_chunks();
    char buffer[4096];
    if (send(fd, body.data(), body.size(), MSG_NOSIGNAL | MSG_DONTWAIT) < 0 && errno != EAGAIN) closed = true;
    const ssize_t n = recv(fd, buffer, sizeof buffer, MSG_DONTWAIT);
    if (n == 0 || (n < 0 && errno != EAGAIN)) closed = true;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  close(fd);
  return closed;
}

}  // namespace fe::test
