// wfm: the single command-line tool. Subcommands live in tools/cmd_*.cc and register themselves; this file
// dispatches `wfm WORD [WORD] ...` to the longest registered command path and prints the overview.
#include <algorithm>
#include <cstring>
#include <iostream>
#include <string>
#include <vector>

#include "absl/strings/str_split.h"
#include "cli.h"
#include "wfm/core/runtime.h"

namespace {

void PrintOverview(std::ostream& out) {
  auto cmds = wfm::cli::Registry();
  std::sort(cmds.begin(), cmds.end(), [](const auto& a, const auto& b) { return a.path < b.path; });
  out << "usage: wfm COMMAND [options]   (wfm COMMAND --help for details)\n\n"
         "wfm: video world foundation models — tokenizer, autoregressive and diffusion world models, curation.\n\n"
         "commands:\n";
  for (const auto& c : cmds) {
    out << "  " << c.path << std::string(c.path.size() < 24 ? 24 - c.path.size() : 1, ' ') << c.summary << "\n";
  }
  out << "\nexit codes: 0 ok, 1 failure, 2 usage error. Environment: WFM_NUM_THREADS, WFM_LOG_LEVEL,\n"
         "WFM_CPU_ALLOCATOR (default|large-block), WFM_CPU_CACHE_MB.\n";
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2 || !std::strcmp(argv[1], "--help") || !std::strcmp(argv[1], "-h") || !std::strcmp(argv[1], "help")) {
    PrintOverview(argc < 2 ? std::cerr : std::cout);
    return argc < 2 ? wfm::cli::kExitUsage : wfm::cli::kExitOk;
  }
  if (!std::strcmp(argv[1], "--version")) {
    wfm::InitThreads();
    std::cout << "wfm 0.1.0 (" << wfm::RuntimeSummary() << ")\n";
    return 0;
  }
  const wfm::cli::Command* best = nullptr;
  size_t best_words = 0;
  for (const auto& c : wfm::cli::Registry()) {
    std::vector<std::string> words = absl::StrSplit(c.path, ' ');
    if (static_cast<int>(words.size()) > argc - 1) continue;
    bool match = true;
    for (size_t i = 0; i < words.size() && match; ++i) match = words[i] == argv[1 + i];
    if (match && words.size() > best_words) {
      best = &c;
      best_words = words.size();
    }
  }
  if (!best) {
    // A group word alone ("wfm tokenizer"): list its subcommands.
    std::string group = argv[1];
    bool any = false;
    for (const auto& c : wfm::cli::Registry()) {
      if (c.path.rfind(group + " ", 0) == 0) {
        if (!any) std::cerr << "usage: wfm " << group << " SUBCOMMAND [options]\n\nsubcommands:\n";
        any = true;
        std::cerr << "  " << c.path << "    " << c.summary << "\n";
      }
    }
    if (!any) std::cerr << "wfm: unknown command '" << group << "' (run 'wfm --help')\n";
    return wfm::cli::kExitUsage;
  }
  // Big activations reuse huge-page blocks instead of faulting fresh pages in (see runtime.h).
  wfm::InstallLargeBlockCpuAllocator();
  // Hand the command argv starting at its last path word, so argv[0] names it.
  return best->run(argc - static_cast<int>(best_words), argv + best_words);
}
