#include "bench/relay.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <deque>
#include <random>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/status_macros.h"

namespace pice::bench {
namespace {

using Clock = std::chrono::steady_clock;
constexpr int kSegment = 1448;  // TCP payload per packet at a 1500-byte MTU

std::chrono::nanoseconds Ms(double ms) {
  return std::chrono::nanoseconds(static_cast<int64_t>(ms * 1e6));
}

bool WriteAll(int fd, const char* p, size_t n) {
  while (n > 0) {
    const ssize_t w = ::send(fd, p, n, MSG_NOSIGNAL);
    if (w <= 0) return false;
    p += w;
    n -= static_cast<size_t>(w);
  }
  return true;
}

}  // namespace

absl::Status LinkSpec::Read(const ConfigNode& parent, LinkSpec* out) {
  if (!parent.Has("link")) return absl::OkStatus();
  const ConfigNode l = parent.Child("link");
  PICE_RETURN_IF_ERROR(l.CheckKeys({"rtt", "jitter", "bandwidth_mbit", "loss", "rto"}));
  double rtt = out->rtt_ms / 1e3, jitter = out->jitter_ms / 1e3, rto = out->rto_ms / 1e3;
  PICE_RETURN_IF_ERROR(l.ReadSeconds("rtt", &rtt, 0, 10));
  PICE_RETURN_IF_ERROR(l.ReadSeconds("jitter", &jitter, 0, 10));
  PICE_RETURN_IF_ERROR(l.ReadSeconds("rto", &rto, 0, 10));
  out->rtt_ms = rtt * 1e3;
  out->jitter_ms = jitter * 1e3;
  out->rto_ms = rto * 1e3;
  PICE_RETURN_IF_ERROR(l.ReadDouble("bandwidth_mbit", &out->mbit, 0, 1e6));
  return l.ReadDouble("loss", &out->loss, 0, 0.5);
}

std::string LinkSpec::Describe() const {
  return absl::StrFormat("rtt %.1f ms, jitter %.1f ms, %s, loss %.2f %% (user-space relay)",
                         rtt_ms, jitter_ms,
                         mbit > 0 ? absl::StrFormat("%.0f Mbit/s", mbit) : "unlimited", loss * 100);
}

// One direction of one relayed connection: `from` is read as fast as it comes, each chunk
// is stamped with its arrival time on the emulated link, and the writer sends it then.
class LinkRelay::Pipe {
 public:
  Pipe(LinkRelay* relay, int from, int to, uint64_t seed)
      : relay_(relay), from_(from), to_(to), rng_(seed) {
    reader_ = std::thread([this] { Read(); });
    writer_ = std::thread([this] { Write(); });
  }
  ~Pipe() {
    Close();
    reader_.join();
    writer_.join();
  }
  void Close() {
    {
      std::lock_guard<std::mutex> l(mu_);
      closed_ = true;
    }
    cv_.notify_all();
    ::shutdown(from_, SHUT_RDWR);
    ::shutdown(to_, SHUT_RDWR);
  }

 private:
  struct Chunk {
    Clock::time_point due;
    std::string data;  // empty: end of stream
  };

  Clock::time_point Due(size_t bytes) {
    const LinkSpec& l = relay_->link_;
    const Clock::time_point now = Clock::now();
    Clock::time_point sent = std::max(now, link_free_);
    if (l.mbit > 0) sent += Ms(bytes * 8.0 / (l.mbit * 1e6) * 1e3);
    link_free_ = sent;
    double ms = l.rtt_ms / 2;
    if (l.jitter_ms > 0) {
      ms += std::uniform_real_distribution<double>(-l.jitter_ms, l.jitter_ms)(rng_);
    }
    Clock::time_point due = sent + Ms(std::max(0.0, ms));
    if (l.loss > 0) {
      const double segments = std::ceil(static_cast<double>(bytes) / kSegment);
      const double p = 1 - std::pow(1 - l.loss, segments);
      if (std::uniform_real_distribution<double>(0, 1)(rng_) < p) {
        due += Ms(l.rto_ms);
        ++relay_->stalls_;
      }
    }
    due = std::max(due, last_due_);  // in order
    last_due_ = due;
    return due;
  }

  void Read() {
    char buf[16384];
    for (;;) {
      const ssize_t n = ::recv(from_, buf, sizeof buf, 0);
      std::lock_guard<std::mutex> l(mu_);
      if (n <= 0 || closed_) {
        queue_.push_back(Chunk{std::max(Clock::now(), last_due_), ""});
        cv_.notify_all();
        return;
      }
      relay_->bytes_ += static_cast<uint64_t>(n);
      queue_.push_back(Chunk{Due(static_cast<size_t>(n)), std::string(buf, static_cast<size_t>(n))});
      cv_.notify_all();
    }
  }

  void Write() {
    std::unique_lock<std::mutex> l(mu_);
    for (;;) {
      cv_.wait(l, [&] { return closed_ || !queue_.empty(); });
      if (closed_) return;
      const Clock::time_point due = queue_.front().due;
      if (cv_.wait_until(l, due, [&] { return closed_; })) return;
      Chunk c = std::move(queue_.front());
      queue_.pop_front();
      if (c.data.empty()) {
        ::shutdown(to_, SHUT_WR);  // the end of stream crosses too
        return;
      }
      l.unlock();
      const bool ok = WriteAll(to_, c.data.data(), c.data.size());
      l.lock();
      if (!ok) {
        ::shutdown(from_, SHUT_RDWR);
        return;
      }
    }
  }

  LinkRelay* relay_;
  int from_, to_;
  std::mt19937_64 rng_;  // the reader's
  Clock::time_point link_free_{}, last_due_{};
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<Chunk> queue_;
  bool closed_ = false;
  std::thread reader_, writer_;
};

absl::StatusOr<std::unique_ptr<LinkRelay>> LinkRelay::Start(const std::string& upstream,
                                                            const LinkSpec& link, uint64_t seed) {
  std::unique_ptr<LinkRelay> r(new LinkRelay());
  const size_t colon = upstream.rfind(':');
  if (colon == std::string::npos || !absl::SimpleAtoi(upstream.substr(colon + 1), &r->upstream_port_)) {
    return absl::InvalidArgumentError(absl::StrCat("relay: expected host:port, got ", upstream));
  }
  r->upstream_host_ = upstream.substr(0, colon);
  r->link_ = link;
  r->seed_ = seed;
  r->listen_fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
  const int one = 1;
  setsockopt(r->listen_fd_, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::bind(r->listen_fd_, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 ||
      ::listen(r->listen_fd_, 64) != 0) {
    return absl::UnavailableError("relay: cannot listen on 127.0.0.1");
  }
  socklen_t len = sizeof a;
  getsockname(r->listen_fd_, reinterpret_cast<sockaddr*>(&a), &len);
  r->port_ = ntohs(a.sin_port);
  r->acceptor_ = std::thread([p = r.get()] { p->AcceptLoop(); });
  return r;
}

void LinkRelay::AcceptLoop() {
  uint64_t n = 0;
  while (!stop_) {
    pollfd p{listen_fd_, POLLIN, 0};
    if (::poll(&p, 1, 100) <= 0) continue;
    const int down = ::accept(listen_fd_, nullptr, nullptr);
    if (down < 0) continue;
    const int up = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(static_cast<uint16_t>(upstream_port_));
    inet_pton(AF_INET, upstream_host_ == "localhost" ? "127.0.0.1" : upstream_host_.c_str(),
              &a.sin_addr);
    if (::connect(up, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
      ::close(up);
      ::close(down);
      continue;
    }
    const int one = 1;
    setsockopt(up, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    setsockopt(down, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    std::lock_guard<std::mutex> l(mu_);
    if (stop_) {
      ::close(up);
      ::close(down);
      return;
    }
    // The pipes own the two descriptors together; closed in Stop.
    pipes_.push_back(std::make_unique<Pipe>(this, down, up, seed_ + 2 * n));
    pipes_.push_back(std::make_unique<Pipe>(this, up, down, seed_ + 2 * n + 1));
    fds_.push_back(down);
    fds_.push_back(up);
    ++n;
  }
}

std::string LinkRelay::address() const { return absl::StrCat("127.0.0.1:", port_); }

void LinkRelay::Stop() {
  if (stop_.exchange(true)) return;
  if (acceptor_.joinable()) acceptor_.join();
  std::vector<std::unique_ptr<Pipe>> pipes;
  std::vector<int> fds;
  {
    std::lock_guard<std::mutex> l(mu_);
    pipes.swap(pipes_);
    fds.swap(fds_);
  }
  for (auto& p : pipes) p->Close();
  pipes.clear();  // joins
  for (int fd : fds) ::close(fd);
  ::close(listen_fd_);
}

LinkRelay::~LinkRelay() { Stop(); }

}  // namespace pice::bench
