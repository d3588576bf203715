// The local launcher of `qlora-train --nproc-per-node N` (see qlora/dist/launcher.h).
#include "qlora/dist/launcher.h"

#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <thread>

#include "qlora/common/error.h"
#include "qlora/common/log.h"

namespace qlora::dist {

namespace {

volatile sig_atomic_t g_forwarded = 0;  // a SIGINT/SIGTERM reached the launcher and went to the ranks
std::vector<pid_t> g_children;          // written before the handler is installed, read-only afterwards

extern "C" void forward_signal(int sig) {
  g_forwarded = 1;
  for (pid_t pid : g_children)
    if (pid > 0) ::kill(pid, sig);
}

// A port the kernel says is free now (bind to port 0). Another process could take it before rank 0
// binds it; set MASTER_PORT to choose one.
int free_port() {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  QLORA_CHECK(fd >= 0, "socket() for a free port");
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  socklen_t len = sizeof(addr);
  const bool ok = ::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0 &&
                  ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) == 0;
  ::close(fd);
  QLORA_CHECK(ok, "no free TCP port on the loopback interface");
  return ntohs(addr.sin_port);
}

int exit_code_of(int status) { return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status); }

std::string describe(int status) {
  return WIFEXITED(status) ? str("exited with code ", WEXITSTATUS(status))
                           : str("was killed by signal ", WTERMSIG(status));
}

}  // namespace

int launch_local_ranks(int nproc, const std::vector<std::string>& args, int grace_seconds) {
  QLORA_INPUT_CHECK(nproc >= 1 && nproc <= 1024, "--nproc-per-node ", nproc, ": expected 1..1024");
  const std::string port = std::getenv("MASTER_PORT") ? std::getenv("MASTER_PORT") : std::to_string(free_port());
  if (std::getenv("OMP_NUM_THREADS") == nullptr) {
    const unsigned cores = std::max(1u, std::thread::hardware_concurrency());
    const std::string threads = std::to_string(std::max(1u, cores / static_cast<unsigned>(nproc)));
    ::setenv("OMP_NUM_THREADS", threads.c_str(), 1);
    log::info(str("OMP_NUM_THREADS unset: ", threads, " per rank (", cores, " cores / ", nproc, " ranks)"));
  }
  log::info(str("starting ", nproc, " ranks (MASTER_ADDR 127.0.0.1, MASTER_PORT ", port, ")"));

  std::vector<std::string> argv_s;
  argv_s.push_back("/proc/self/exe");
  argv_s.insert(argv_s.end(), args.begin(), args.end());
  g_children.assign(static_cast<size_t>(nproc), -1);
  for (int r = 0; r < nproc; ++r) {
    const pid_t pid = ::fork();
    QLORA_CHECK(pid >= 0, "fork() of rank ", r);
    if (pid == 0) {
      ::setenv("RANK", std::to_string(r).c_str(), 1);
      ::setenv("LOCAL_RANK", std::to_string(r).c_str(), 1);
      ::setenv("WORLD_SIZE", std::to_string(nproc).c_str(), 1);
      ::setenv("LOCAL_WORLD_SIZE", std::to_string(nproc).c_str(), 1);
      ::setenv("MASTER_ADDR", "127.0.0.1", 1);
      ::setenv("MASTER_PORT", port.c_str(), 1);
      std::vector<char*> argv;
      for (auto& a : argv_s) argv.push_back(a.data());
      argv.push_back(nullptr);
      ::execv(argv[0], argv.data());
      std::perror("qlora-train: execv of a rank");
      std::_Exit(127);
    }
    g_children[static_cast<size_t>(r)] = pid;
  }
  struct sigaction sa {};
  sa.sa_handler = forward_signal;
  sigemptyset(&sa.sa_mask);
  ::sigaction(SIGINT, &sa, nullptr);
  ::sigaction(SIGTERM, &sa, nullptr);

  int result = 0, running = nproc;
  bool stopping = false;
  auto deadline = std::chrono::steady_clock::time_point::max();
  while (running > 0) {
    int status = 0;
    const pid_t pid = ::waitpid(-1, &status, WNOHANG);
    if (pid == 0 || (pid < 0 && errno == EINTR)) {
      if (stopping && std::chrono::steady_clock::now() > deadline) {
        log::warn(str("ranks still running ", grace_seconds, " s after SIGTERM: SIGKILL"));
        for (pid_t c : g_children)
          if (c > 0) ::kill(c, SIGKILL);
        deadline = std::chrono::steady_clock::time_point::max();
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
      continue;
    }
    if (pid < 0) break;  // no children left
    int rank = 0;
    while (rank < nproc && g_children[static_cast<size_t>(rank)] != pid) ++rank;
    if (rank == nproc) continue;
    g_children[static_cast<size_t>(rank)] = -1;
    --running;
    if (exit_code_of(status) == 0) continue;
    if (result == 0) result = exit_code_of(status);
    if (!stopping && !g_forwarded && running > 0) {
      log::error(str("rank ", rank, " (pid ", pid, ") ", describe(status), "; stopping the other ranks"));
      stopping = true;
      for (pid_t c : g_children)
        if (c > 0) ::kill(c, SIGTERM);
      deadline = std::chrono::steady_clock::now() + std::chrono::seconds(grace_seconds);
    }
  }
  ::signal(SIGINT, SIG_DFL);
  ::signal(SIGTERM, SIG_DFL);
  return result;
}

}  // namespace qlora::dist
