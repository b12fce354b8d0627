#include "core/train/stop_signal.h"

#include <signal.h>

#include "common/check.h"

namespace dape {

namespace {

volatile sig_atomic_t g_stop_signal = 0;
struct sigaction g_previous_term, g_previous_usr1;
bool g_installed = false;

extern "C" void on_stop_signal(int sig) {
  g_stop_signal = sig;
}

}  // namespace

StopSignal::StopSignal() {
  DAPE_CHECK(!g_installed, "only one StopSignal may exist at a time");
  g_stop_signal = 0;
  struct sigaction sa = {};
  sa.sa_handler = on_stop_signal;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = SA_RESTART;
  sigaction(SIGTERM, &sa, &g_previous_term);
  sigaction(SIGUSR1, &sa, &g_previous_usr1);
  g_installed = true;
}

StopSignal::~StopSignal() {
  sigaction(SIGTERM, &g_previous_term, nullptr);
  sigaction(SIGUSR1, &g_previous_usr1, nullptr);
  g_installed = false;
}

bool StopSignal::requested() const {
  return g_stop_signal != 0;
}

int StopSignal::signal() const {
  return g_stop_signal;
}

}  // namespace dape
