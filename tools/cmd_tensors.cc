// `wfm tensors FILE`: lists the tensors of any checkpoint wfm reads (safetensors, torch.save .pt/.bin, legacy
// torch files, TorchScript .jit, *.index.json shards, or a directory holding one) — names, dtypes, shapes,
// byte sizes and totals, without reading tensor data. `--rules` shows what each name maps to at load time.
#include <algorithm>
#include <cstdio>
#include <iostream>
#include <map>
#include <set>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "cli.h"
#include "wfm/core/checkpoint.h"
#include "wfm/core/tensor_file.h"

namespace wfm {
namespace {

std::string Shape(const std::vector<int64_t>& s) { return absl::StrCat("[", absl::StrJoin(s, ", "), "]"); }

std::string Bytes(uint64_t n) {
  if (n >= 1000000000ull) return absl::StrFormat("%.2f GB", n / 1e9);
  if (n >= 1000000ull) return absl::StrFormat("%.1f MB", n / 1e6);
  if (n >= 1000ull) return absl::StrFormat("%.1f KB", n / 1e3);
  return absl::StrCat(n, " B");
}

int RunTensors(int argc, char** argv) {
  std::string path, filter, rules_text, sort = "file";
  bool json = false;
  cli::ArgParser p("wfm tensors", "List the tensors of a checkpoint: names, dtypes, shapes and byte sizes, with totals.");
  p.Positional("FILE", &path, "safetensors, .pt/.bin/.ckpt (torch.save), .jit (TorchScript), *.index.json, or a directory")
      .Flag("json", &json, "print JSON instead of a table")
      .Option("filter", &filter, "only names containing this text")
      .Option("sort", &sort, "order: file (as stored), name, size")
      .Option("rules", &rules_text,
              "also show each name as the loader maps it: a preset (default, ema, cosmos-jit, none), a JSON rule "
              "array, or @rules.json")
      .Epilog(
          "examples:\n"
          "  wfm tensors Cosmos-Tokenize1-CV8x8x8-720p/encoder.jit\n"
          "  wfm tensors model.pt --rules ema --filter encoder.conv_in\n"
          "  wfm tensors model.safetensors.index.json --json");
  if (auto rc = p.Parse(argc, argv)) return *rc;
  if (sort != "file" && sort != "name" && sort != "size") return p.UsageError("--sort must be file, name or size");
  NameRules rules;
  if (p.Given("rules")) {
    auto r = ParseNameRules(rules_text);
    if (!r.ok()) return p.UsageError(std::string(r.status().message()));
    rules = *r;
  }

  auto listed = ListTensorFile(path);
  if (!listed.ok()) return cli::ReportError(listed.status());
  TensorFileIndex& index = *listed;
  std::vector<const TensorInfo*> shown;
  for (const auto& t : index.tensors)
    if (filter.empty() || absl::StrContains(t.name, filter)) shown.push_back(&t);
  if (sort == "name") {
    std::sort(shown.begin(), shown.end(), [](auto* a, auto* b) { return a->name < b->name; });
  } else if (sort == "size") {
    std::stable_sort(shown.begin(), shown.end(), [](auto* a, auto* b) { return a->nbytes() > b->nbytes(); });
  }
  std::map<std::string, std::string> mapped;
  std::set<std::string> dropped;
  if (p.Given("rules")) {
    std::vector<std::string> names;
    for (const auto& t : index.tensors) names.push_back(t.name);
    auto m = MapNames(names, rules);
    if (!m.ok()) return cli::ReportError(m.status());
    mapped = m->renamed;
    dropped.insert(m->dropped.begin(), m->dropped.end());
  }
  const bool sharded = index.format == TensorFileFormat::kShardedIndex;

  // Totals over the shown tensors, per dtype too.
  struct Total {
    int64_t tensors = 0, numel = 0;
    uint64_t bytes = 0;
  };
  Total total;
  std::map<std::string, Total> by_dtype;
  for (const TensorInfo* t : shown) {
    for (Total* x : {&total, &by_dtype[DtypeShortName(t->dtype)]}) {
      ++x->tensors;
      x->numel += t->numel();
      x->bytes += t->nbytes();
    }
  }

  if (json) {
    nlohmann::ordered_json j;
    j["path"] = index.path;
    j["format"] = TensorFileFormatName(index.format);
    j["tensors"] = nlohmann::ordered_json::array();
    for (const TensorInfo* t : shown) {
      nlohmann::ordered_json e;
      e["name"] = t->name;
      e["dtype"] = DtypeShortName(t->dtype);
      e["shape"] = t->shape;
      e["numel"] = t->numel();
      e["bytes"] = t->nbytes();
      if (sharded) e["file"] = t->file;
      if (p.Given("rules")) e["mapped"] = dropped.count(t->name) ? nlohmann::ordered_json(nullptr) : nlohmann::ordered_json(mapped[t->name]);
      j["tensors"].push_back(e);
    }
    j["total"] = {{"tensors", total.tensors}, {"numel", total.numel}, {"bytes", total.bytes}};
    for (const auto& [dtype, x] : by_dtype) {
      j["by_dtype"][dtype] = {{"tensors", x.tensors}, {"numel", x.numel}, {"bytes", x.bytes}};
    }
    j["metadata"] = index.metadata;
    j["skipped_entries"] = index.skipped_entries;
    std::cout << j.dump(2) << "\n";
    return cli::kExitOk;
  }

  size_t name_w = 4, shape_w = 5, map_w = 6;
  for (const TensorInfo* t : shown) {
    name_w = std::max(name_w, t->name.size());
    shape_w = std::max(shape_w, Shape(t->shape).size());
    if (p.Given("rules")) map_w = std::max(map_w, dropped.count(t->name) ? 9 : mapped[t->name].size());
  }
  name_w = std::min<size_t>(name_w, 90);
  std::string header = absl::StrFormat("%-*s  %-5s  %-*s  %12s", name_w, "NAME", "DTYPE", shape_w, "SHAPE", "BYTES");
  if (p.Given("rules")) absl::StrAppendFormat(&header, "  %-*s", map_w, "LOADS AS");
  if (sharded) absl::StrAppend(&header, "  SHARD");
  std::cout << header << "\n";
  for (const TensorInfo* t : shown) {
    std::string line = absl::StrFormat("%-*s  %-5s  %-*s  %12d", name_w, t->name, DtypeShortName(t->dtype), shape_w,
                                       Shape(t->shape), t->nbytes());
    if (p.Given("rules")) absl::StrAppendFormat(&line, "  %-*s", map_w, dropped.count(t->name) ? "(dropped)" : mapped[t->name]);
    if (sharded) absl::StrAppend(&line, "  ", t->file.substr(t->file.find_last_of('/') + 1));
    std::cout << line << "\n";
  }
  std::vector<std::string> dtypes;
  for (const auto& [dtype, x] : by_dtype) dtypes.push_back(absl::StrCat(dtype, ": ", x.tensors, " (", Bytes(x.bytes), ")"));
  std::cout << "\n"
            << total.tensors << (filter.empty() ? "" : absl::StrCat(" of ", index.tensors.size())) << " tensors, "
            << total.numel << " values, " << total.bytes << " bytes (" << Bytes(total.bytes) << ")"
            << (dtypes.empty() ? "" : absl::StrCat("; ", absl::StrJoin(dtypes, ", "))) << "\n"
            << "format: " << TensorFileFormatName(index.format) << " (" << index.path << ")\n";
  if (index.skipped_entries > 0) {
    std::cout << index.skipped_entries << " non-tensor entries skipped (e.g. "
              << absl::StrJoin(index.skipped_examples, ", ") << ")\n";
  }
  for (const auto& [k, v] : index.metadata) std::cout << "metadata " << k << ": " << v << "\n";
  return cli::kExitOk;
}

}  // namespace
}  // namespace wfm

WFM_REGISTER_COMMAND("tensors", "list a checkpoint's tensors (safetensors/pt/jit/index): names, dtypes, shapes, sizes",
                     wfm::RunTensors);
