// Option parsing and the command registry of the `wfm` tool (see cli.h).
#include "cli.h"

#include <cstdio>
#include <iostream>
#include <sstream>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/match.h"
#include "wfm/core/logging.h"
#include "wfm/core/runtime.h"

namespace wfm::cli {

ArgParser::ArgParser(std::string program, std::string description)
    : program_(std::move(program)), description_(std::move(description)) {
  Add("threads", Kind::kInt, &threads_, "intra-op threads (default: $WFM_NUM_THREADS or all cores)", false);
  Add("log-level", Kind::kString, &log_level_, "debug|info|warning|error (default: $WFM_LOG_LEVEL or info)", false);
}

ArgParser& ArgParser::Add(const std::string& name, Kind kind, void* out, const std::string& help, bool required) {
  opts_.push_back(Opt{name, help, kind, out, required});
  return *this;
}
ArgParser& ArgParser::Flag(const std::string& n, bool* o, const std::string& h) { return Add(n, Kind::kFlag, o, h, false); }
ArgParser& ArgParser::Option(const std::string& n, std::string* o, const std::string& h, bool r) { return Add(n, Kind::kString, o, h, r); }
ArgParser& ArgParser::Option(const std::string& n, int64_t* o, const std::string& h, bool r) { return Add(n, Kind::kInt64, o, h, r); }
ArgParser& ArgParser::Option(const std::string& n, int* o, const std::string& h, bool r) { return Add(n, Kind::kInt, o, h, r); }
ArgParser& ArgParser::Option(const std::string& n, double* o, const std::string& h, bool r) { return Add(n, Kind::kDouble, o, h, r); }
ArgParser& ArgParser::MultiOption(const std::string& n, std::vector<std::string>* o, const std::string& h, bool r) {
  return Add(n, Kind::kMulti, o, h, r);
}
ArgParser& ArgParser::Positional(const std::string& n, std::string* o, const std::string& h, bool r) {
  pos_.push_back(Pos{n, h, o, nullptr, r, r ? 1 : 0});
  return *this;
}
ArgParser& ArgParser::Positionals(const std::string& n, std::vector<std::string>* o, const std::string& h, int min) {
  pos_.push_back(Pos{n, h, nullptr, o, min > 0, min});
  return *this;
}
ArgParser& ArgParser::Epilog(const std::string& text) {
  epilog_ = text;
  return *this;
}

ArgParser::Opt* ArgParser::FindOpt(const std::string& name) {
  for (auto& o : opts_)
    if (o.name == name) return &o;
  return nullptr;
}

bool ArgParser::Given(const std::string& name) const {
  for (const auto& o : opts_)
    if (o.name == name) return o.given;
  return false;
}

std::optional<std::string> ArgParser::Assign(Opt& opt, const std::string& value) {
  switch (opt.kind) {
    case Kind::kString:
      *static_cast<std::string*>(opt.out) = value;
      return std::nullopt;
    case Kind::kInt64: {
      int64_t v;
      if (!absl::SimpleAtoi(value, &v)) return absl::StrCat("--", opt.name, " expects an integer, got '", value, "'");
      *static_cast<int64_t*>(opt.out) = v;
      return std::nullopt;
    }
    case Kind::kInt: {
      int v;
      if (!absl::SimpleAtoi(value, &v)) return absl::StrCat("--", opt.name, " expects an integer, got '", value, "'");
      *static_cast<int*>(opt.out) = v;
      return std::nullopt;
    }
    case Kind::kDouble: {
      double v;
      if (!absl::SimpleAtod(value, &v)) return absl::StrCat("--", opt.name, " expects a number, got '", value, "'");
      *static_cast<double*>(opt.out) = v;
      return std::nullopt;
    }
    case Kind::kMulti:
      static_cast<std::vector<std::string>*>(opt.out)->push_back(value);
      return std::nullopt;
    case Kind::kFlag:
      break;
  }
  return std::string("internal: flag given a value");
}

std::optional<int> ArgParser::Parse(int argc, char** argv) {
  std::vector<std::string> positional;
  std::vector<std::string> multi_cleared;
  bool only_positional = false;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (!only_positional && a == "--") {
      only_positional = true;
      continue;
    }
    if (!only_positional && (a == "--help" || a == "-h")) {
      std::cout << Usage();
      return kExitOk;
    }
    if (only_positional || a.size() < 3 || a.rfind("--", 0) != 0) {
      positional.push_back(a);
      continue;
    }
    std::string name = a.substr(2), value;
    bool has_value = false;
    if (auto eq = name.find('='); eq != std::string::npos) {
      value = name.substr(eq + 1);
      name = name.substr(0, eq);
      has_value = true;
    }
    Opt* opt = FindOpt(name);
    if (!opt && absl::StartsWith(name, "no-")) {
      Opt* neg = FindOpt(name.substr(3));
      if (neg && neg->kind == Kind::kFlag && !has_value) {
        *static_cast<bool*>(neg->out) = false;
        neg->given = true;
        continue;
      }
    }
    if (!opt) return UsageError(absl::StrCat("unknown option --", name));
    opt->given = true;
    if (opt->kind == Kind::kFlag) {
      if (has_value) {
        if (value == "1" || value == "true") *static_cast<bool*>(opt->out) = true;
        else if (value == "0" || value == "false") *static_cast<bool*>(opt->out) = false;
        else return UsageError(absl::StrCat("--", name, " takes no value (or true/false)"));
      } else {
        *static_cast<bool*>(opt->out) = true;
      }
      continue;
    }
    if (opt->kind == Kind::kMulti) {
      auto* vec = static_cast<std::vector<std::string>*>(opt->out);
      // The first use on the command line replaces any default values.
      if (std::find(multi_cleared.begin(), multi_cleared.end(), name) == multi_cleared.end()) {
        vec->clear();
        multi_cleared.push_back(name);
      }
      if (has_value) {
        vec->push_back(value);
        continue;
      }
      int taken = 0;
      while (i + 1 < argc && std::string(argv[i + 1]).rfind("--", 0) != 0) {
        vec->push_back(argv[++i]);
        ++taken;
      }
      if (taken == 0) return UsageError(absl::StrCat("--", name, " needs at least one value"));
      continue;
    }
    if (!has_value) {
      if (i + 1 >= argc) return UsageError(absl::StrCat("--", name, " needs a value"));
      value = argv[++i];
    }
    if (auto err = Assign(*opt, value)) return UsageError(*err);
  }
  for (const auto& o : opts_) {
    if (o.required && !o.given) return UsageError(absl::StrCat("missing required option --", o.name));
  }
  size_t next = 0;
  for (const auto& p : pos_) {
    if (p.one) {
      if (next < positional.size()) *p.one = positional[next++];
      else if (p.required) return UsageError(absl::StrCat("missing ", p.name));
    } else {
      size_t count = positional.size() - next;
      if (static_cast<int>(count) < p.min_count) return UsageError(absl::StrCat("missing ", p.name));
      p.many->assign(positional.begin() + next, positional.end());
      next = positional.size();
    }
  }
  if (next < positional.size()) return UsageError(absl::StrCat("unexpected argument '", positional[next], "'"));
  if (!log_level_.empty()) {
    LogLevel level;
    if (!ParseLogLevel(log_level_, &level)) return UsageError(absl::StrCat("unknown --log-level '", log_level_, "'"));
    SetLogLevel(level);
  }
  if (threads_ < 0) return UsageError("--threads must be >= 0");
  InitThreads(threads_);
  return std::nullopt;
}

std::string ArgParser::Usage() const {
  std::ostringstream s;
  s << "usage: " << program_;
  for (const auto& o : opts_)
    if (o.required) s << " --" << o.name << " " << (o.kind == Kind::kMulti ? "V..." : "V");
  s << " [options]";
  for (const auto& p : pos_) s << " " << (p.required ? "" : "[") << p.name << (p.many ? "..." : "") << (p.required ? "" : "]");
  s << "\n\n" << description_ << "\n";
  if (!pos_.empty()) {
    s << "\narguments:\n";
    for (const auto& p : pos_) s << "  " << p.name << (p.many ? "..." : "") << "\n      " << p.help << "\n";
  }
  s << "\noptions:\n";
  for (const auto& o : opts_) {
    s << "  --" << o.name;
    switch (o.kind) {
      case Kind::kFlag: s << " (switch; --no-" << o.name << ")"; break;
      case Kind::kString: s << " STR"; break;
      case Kind::kInt64: case Kind::kInt: s << " INT"; break;
      case Kind::kDouble: s << " NUM"; break;
      case Kind::kMulti: s << " V..."; break;
    }
    std::string def;
    switch (o.kind) {
      case Kind::kFlag: def = *static_cast<bool*>(o.out) ? "on" : "off"; break;
      case Kind::kString: def = *static_cast<std::string*>(o.out); break;
      case Kind::kInt64: def = std::to_string(*static_cast<int64_t*>(o.out)); break;
      case Kind::kInt: def = std::to_string(*static_cast<int*>(o.out)); break;
      case Kind::kDouble: { std::ostringstream d; d << *static_cast<double*>(o.out); def = d.str(); break; }
      case Kind::kMulti: def = absl::StrJoin(*static_cast<std::vector<std::string>*>(o.out), " "); break;
    }
    s << (o.required ? "  (required)" : "") << "\n      " << o.help;
    if (!o.required && !def.empty() && o.name != "threads" && o.name != "log-level") s << " [default: " << def << "]";
    s << "\n";
  }
  if (!epilog_.empty()) s << "\n" << epilog_ << "\n";
  return s.str();
}

int ArgParser::UsageError(const std::string& message) const {
  std::cerr << program_ << ": usage error: " << message << "\n(run '" << program_ << " --help' for usage)\n";
  return kExitUsage;
}

int ReportError(const absl::Status& status, bool usage) {
  std::cerr << "wfm: error: " << status.message() << "\n";
  if (usage && status.code() == absl::StatusCode::kInvalidArgument) return kExitUsage;
  return kExitFailure;
}

std::vector<Command>& Registry() {
  static std::vector<Command> registry;
  return registry;
}

CommandRegistrar::CommandRegistrar(std::string path, std::string summary, CommandFn fn) {
  Registry().push_back(Command{std::move(path), std::move(summary), std::move(fn)});
}

}  // namespace wfm::cli
