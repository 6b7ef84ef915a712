// The `wfm` tool's command framework: a small option parser with per-command --help, and a registry that
// lets each tools/cmd_*.cc file add subcommands ("info", "tokenizer encode", ...) without touching main.
//
//   int RunInfo(int argc, char** argv) {
//     std::vector<std::string> videos; bool exact = false;
//     cli::ArgParser p("wfm info", "Probe videos and print JSON.");
//     p.Positionals("VIDEO", &videos, "video files").Flag("exact", &exact, "count frames by decoding");
//     if (auto rc = p.Parse(argc, argv)) return *rc;   // --help (0) or usage error (2)
//     ...
//     return cli::kExitOk;
//   }
//   WFM_REGISTER_COMMAND("info", "probe videos (JSON)", RunInfo);
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"

namespace wfm::cli {

inline constexpr int kExitOk = 0;
inline constexpr int kExitFailure = 1;
inline constexpr int kExitUsage = 2;

class ArgParser {
 public:
  ArgParser(std::string program, std::string description);

  // --name (boolean switch; --no-name sets false).
  ArgParser& Flag(const std::string& name, bool* out, const std::string& help);
  // --name VALUE or --name=VALUE. `out` keeps its value as the default when the option is absent.
  ArgParser& Option(const std::string& name, std::string* out, const std::string& help, bool required = false);
  ArgParser& Option(const std::string& name, int64_t* out, const std::string& help, bool required = false);
  ArgParser& Option(const std::string& name, int* out, const std::string& help, bool required = false);
  ArgParser& Option(const std::string& name, double* out, const std::string& help, bool required = false);
  // --name A B C (values until the next --option) and/or repeated --name A --name B.
  ArgParser& MultiOption(const std::string& name, std::vector<std::string>* out, const std::string& help,
                         bool required = false);
  ArgParser& Positional(const std::string& name, std::string* out, const std::string& help, bool required = true);
  ArgParser& Positionals(const std::string& name, std::vector<std::string>* out, const std::string& help,
                         int min_count = 1);
  // Free text appended to --help (examples, notes).
  ArgParser& Epilog(const std::string& text);

  // Parses argv[1..] (argv[0] is the command name). Returns nullopt to continue, or the exit code to return
  // right away: 0 after printing --help, 2 after printing a usage error. Also handles the options every
  // command has: --threads N (intra-op threads; default WFM_NUM_THREADS or all cores), --log-level L.
  std::optional<int> Parse(int argc, char** argv);
  std::string Usage() const;
  // Prints "PROGRAM: usage error: MESSAGE" and the short usage; returns kExitUsage.
  int UsageError(const std::string& message) const;
  // Was --name given on the command line?
  bool Given(const std::string& name) const;

 private:
  enum class Kind { kFlag, kString, kInt64, kInt, kDouble, kMulti };
  struct Opt {
    std::string name, help;
    Kind kind;
    void* out;
    bool required;
    bool given = false;
  };
  struct Pos {
    std::string name, help;
    std::string* one = nullptr;
    std::vector<std::string>* many = nullptr;
    bool required;
    int min_count;
  };
  ArgParser& Add(const std::string& name, Kind kind, void* out, const std::string& help, bool required);
  std::optional<std::string> Assign(Opt& opt, const std::string& value);
  Opt* FindOpt(const std::string& name);

  std::string program_, description_, epilog_;
  std::vector<Opt> opts_;
  std::vector<Pos> pos_;
  int threads_ = 0;
  std::string log_level_;
};

// Prints "wfm: error: <status message>" to stderr and returns kExitFailure (or kExitUsage for
// InvalidArgument errors that came from the command line, when `usage` is true).
int ReportError(const absl::Status& status, bool usage = false);

using CommandFn = std::function<int(int argc, char** argv)>;
struct Command {
  std::string path;     // "info", "tokenizer encode", ...
  std::string summary;  // one line for `wfm --help`
  CommandFn run;
};
std::vector<Command>& Registry();
struct CommandRegistrar {
  CommandRegistrar(std::string path, std::string summary, CommandFn fn);
};

}  // namespace wfm::cli

#define WFM_CLI_CONCAT_INNER_(a, b) a##b
#define WFM_CLI_CONCAT_(a, b) WFM_CLI_CONCAT_INNER_(a, b)
#define WFM_REGISTER_COMMAND(path, summary, fn) \
  static ::wfm::cli::CommandRegistrar WFM_CLI_CONCAT_(wfm_command_registrar_, __LINE__)(path, summary, fn)
