// Fuzz target over the readers of untrusted input: safetensors headers, train configs (JSON and YAML) and
// dataset files (JSON Lines and JSON arrays, every dataset format). The first input byte picks the reader
// (and, for datasets, the format); the rest is the file. Any outcome but success or a qlora Input error
// (exit code 2: one message naming the file) is a finding: an Internal error, another exception, a crash or
// a sanitizer report.
//
// Built two ways from this one file:
//   - with libFuzzer (clang -fsanitize=fuzzer, scripts/fuzz.sh): LLVMFuzzerTestOneInput is the entry point;
//   - as a plain program (every build; ctest runs it as fuzz.readers): a bounded random mutator. Its seeds
//     are a small safetensors file and a YAML config made here, plus the files of tests/fuzz/seeds.txt
//     (--seed-list); it mutates them with a fixed seed for a fixed number of iterations and runs each
//     mutant; on a finding it writes the input to fuzz-finding.bin and aborts. --write-corpus DIR writes
//     the seeds (with their reader byte) as a libFuzzer corpus instead.
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <random>
#include <string>
#include <vector>

#include "qlora/common/error.h"
#include "qlora/config/train_config.h"
#include "qlora/data/dataset.h"
#include "qlora/io/safetensors.h"

namespace {

enum Reader : uint8_t { kSafetensors = 0, kConfigJson = 1, kConfigYaml = 2, kDataset = 3, kNumReaders = 4 };

// One scratch directory per process; every input is written to a file there (the readers take paths).
const std::string& scratch_dir() {
  static const std::string dir = [] {
    // /dev/shm when there is one: thousands of small files a second should not wait on a disk.
    std::string tmpl = std::filesystem::is_directory("/dev/shm") ? "/dev/shm/qlora_fuzz_XXXXXX" : "/tmp/qlora_fuzz_XXXXXX";
    const char* d = ::mkdtemp(tmpl.data());
    if (!d) std::abort();
    return std::string(d);
  }();
  return dir;
}

std::string write_input(const char* name, const uint8_t* data, size_t size) {
  const std::string path = scratch_dir() + "/" + name;
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(reinterpret_cast<const char*>(data), static_cast<std::streamsize>(size));
  return path;
}

void run_reader(const uint8_t* data, size_t size) {
  if (size < 1) return;
  const uint8_t selector = data[0];
  const uint8_t* body = data + 1;
  const size_t n = size - 1;
  switch (selector % kNumReaders) {
    case kSafetensors: {
      const auto f = qlora::safetensors::File::open(write_input("x.safetensors", body, n));
      for (const auto& t : f->tensors()) {
        if (f->data(t.name) + t.nbytes() < f->data(t.name)) std::abort();  // views stay inside the mapping
      }
      break;
    }
    case kConfigJson:
      qlora::load_config(write_input("c.json", body, n));
      break;
    case kConfigYaml:
      qlora::load_config(write_input("c.yaml", body, n));
      break;
    case kDataset: {
      // The high bits pick the format: 0 infers it, else one of the named formats.
      const auto names = qlora::data::dataset_format_names();
      const size_t pick = (selector / kNumReaders) % (names.size() + 1);
      qlora::data::DatasetLoadOptions options;
      options.format = qlora::data::parse_dataset_format(pick == 0 ? "" : names[pick - 1]);
      options.unnatural_reformulations = (selector & 0x80) != 0;
      qlora::data::load_dataset(write_input("d.jsonl", body, n), options);
      break;
    }
  }
}

// Outcomes per reader, for the summary: inputs read without error, refused with an Input error.
int64_t g_accepted[kNumReaders] = {}, g_refused[kNumReaders] = {};

// 0: accepted or an Input error; else a finding (described on stderr).
int run_one(const uint8_t* data, size_t size) {
  const int reader = size > 0 ? data[0] % kNumReaders : 0;
  try {
    run_reader(data, size);
    ++g_accepted[reader];
  } catch (const qlora::Error& e) {
    if (e.kind() == qlora::ErrorKind::Input) return ++g_refused[reader], 0;
    std::cerr << "finding: internal error on input: " << e.what() << " (" << e.where() << ")\n";
    return 1;
  } catch (const std::exception& e) {
    std::cerr << "finding: exception other than an Input error: " << e.what() << "\n";
    return 1;
  }
  return 0;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (run_one(data, size) != 0) std::abort();
  return 0;
}

#ifndef QLORA_LIBFUZZER
namespace {

// Tokens that reach the readers' interesting branches when spliced in: structure, huge and negative numbers,
// escapes, invalid UTF-8, keys of every dataset format and of safetensors headers.
const char* const kTokens[] = {
    "[", "]", "{", "}", "\"", ",", ":", "\\", "\\u0000", "\\ud800", "\n", "\r\n", "\xff", "\xc3\x28", "\xef\xbb\xbf",
    "null", "true", "-1", "0", "1e999", "18446744073709551615", "4611686018427387905", "9223372036854775808",
    "\"dtype\"", "\"shape\"", "\"data_offsets\"", "\"__metadata__\"", "\"F32\"", "\"BF16\"", "\"U8\"",
    "\"instruction\"", "\"output\"", "\"input\"", "\"text\"", "\"prompt\"", "\"replies\"", "\"message_id\"",
    "\"parent_id\"", "\"role\"", "\"rank\"", "\"deleted\"", "\"conversations\"", "\"from\"", "\"value\"",
    "\"instances\"", "\"reformulations\"", "\"chosen\"", "\"completion\"", "\"inputs\"", "\"targets\"",
    "\"base\"", "\"lora_r\"", "\"lora_modules\"", "- ", ": ", "&a ", "*a", "!!binary ", "'", "\t",
};

class Mutator {
 public:
  explicit Mutator(uint64_t seed) : rng_(seed) {}

  std::string mutate(std::string s, const std::vector<std::string>& corpus) {
    // Few edits (1 half the time, 2 a quarter, ...): most mutants should stay close enough to a valid file to
    // get past the JSON parser into the readers' own checks.
    int edits = 1;
    while (edits < 8 && below(2)) ++edits;
    for (int e = 0; e < edits; ++e) {
      const size_t pos = s.empty() ? 0 : below(s.size() + 1);
      switch (below(9)) {
        case 0:  // flip a bit
          if (!s.empty()) s[below(s.size())] ^= static_cast<char>(1u << below(8));
          break;
        case 1:  // random byte
          if (!s.empty()) s[below(s.size())] = static_cast<char>(below(256));
          break;
        case 2:  // delete a run
          if (!s.empty()) s.erase(below(s.size()), 1 + below(16));
          break;
        case 3:  // insert a token
          s.insert(pos, kTokens[below(sizeof(kTokens) / sizeof(kTokens[0]))]);
          break;
        case 4: {  // duplicate a chunk
          if (s.empty()) break;
          const size_t from = below(s.size());
          s.insert(pos, s.substr(from, 1 + below(64)));
          break;
        }
        case 5: {  // deep nesting
          const size_t depth = 1 + below(3000);
          s.insert(pos, std::string(depth, below(2) ? '[' : '{'));
          break;
        }
        case 6:  // truncate
          s.resize(pos);
          break;
        case 7: {  // splice in part of another input
          const std::string& o = corpus[below(corpus.size())];
          if (!o.empty()) s.insert(pos, o.substr(below(o.size()), 1 + below(256)));
          break;
        }
        case 8: {  // change a number in place
          const size_t d = s.find_first_of("0123456789", pos);
          if (d != std::string::npos) s.replace(d, 1, std::to_string(static_cast<int64_t>(rng_())));
          break;
        }
      }
    }
    // The safetensors length prefix: sometimes keep it consistent with the header so that mutants get past it.
    if (!s.empty() && static_cast<uint8_t>(s[0]) % kNumReaders == kSafetensors && s.size() > 9 && below(2)) {
      const size_t json_end = s.rfind('}');
      const uint64_t len = json_end == std::string::npos || json_end < 9 ? s.size() - 9 : json_end - 8;
      for (int i = 0; i < 8; ++i) s[1 + i] = static_cast<char>((len >> (8 * i)) & 0xff);
    }
    return s;
  }

 private:
  size_t below(size_t n) { return n == 0 ? 0 : static_cast<size_t>(rng_() % n); }
  std::mt19937_64 rng_;
};

int selector_of(const std::string& kind) {
  if (kind == "st") return kSafetensors;
  if (kind == "config") return kConfigJson;
  if (kind == "yaml") return kConfigYaml;
  if (kind == "data") return kDataset;
  return -1;
}

void add_seed(std::vector<std::string>& corpus, int selector, const std::string& body) {
  // Datasets: the seed once per format selector (inferred, then each named format).
  const int copies = selector == kDataset ? static_cast<int>(qlora::data::dataset_format_names().size()) + 1 : 1;
  for (int c = 0; c < copies; ++c) corpus.push_back(std::string(1, static_cast<char>(selector + kNumReaders * c)) + body);
}

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

// A small valid safetensors file (three dtypes, an empty shape, metadata) and a YAML config.
void add_builtin_seeds(std::vector<std::string>& corpus) {
  namespace st = qlora::safetensors;
  const float a[6] = {1, 2, 3, 4, 5, 6};
  const uint16_t b[2] = {0x3f80, 0};
  const uint8_t c[1] = {7};
  const std::string path = scratch_dir() + "/seed.safetensors";
  st::write(path, {{"model.layers.0.w", st::Dtype::F32, {2, 3}, a, sizeof(a)},
                   {"b", st::Dtype::BF16, {2}, b, sizeof(b)},
                   {"c", st::Dtype::U8, {}, c, sizeof(c)}},
            {{"format", "pt"}});
  add_seed(corpus, kSafetensors, read_file(path));
  add_seed(corpus, kConfigYaml,
           "model_name_or_path: models/x\ndataset: data/x.jsonl\nlora_r: 8\nlearning_rate: 2.0e-4\n"
           "lora_modules: [q_proj, v_proj]\nbf16: true\nlr_scheduler_type: constant\n");
}

}  // namespace

int main(int argc, char** argv) {
  int64_t iterations = 20000;
  uint64_t seed = 1;
  std::string seed_list, root = ".", corpus_dir;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string a = argv[i], v = argv[i + 1];
    if (a == "--iterations") {
      iterations = std::atoll(v.c_str());
    } else if (a == "--seed") {
      seed = std::strtoull(v.c_str(), nullptr, 10);
    } else if (a == "--seed-list") {
      seed_list = v;
    } else if (a == "--root") {
      root = v;
    } else if (a == "--write-corpus") {
      corpus_dir = v;
    } else {
      std::cerr << "unknown argument " << a << "\n";
      return 2;
    }
  }
  if (argc % 2 == 0 || seed_list.empty()) {
    std::cerr << "usage: fuzz_readers --seed-list tests/fuzz/seeds.txt [--root REPO] [--iterations N] [--seed S] "
                 "[--write-corpus DIR]\n";
    return 2;
  }
  std::vector<std::string> corpus;
  std::ifstream list(seed_list);
  int line_no = 0;
  for (std::string line; std::getline(list, line);) {
    ++line_no;
    if (line.empty() || line[0] == '#') continue;
    const size_t sp = line.find(' ');
    const int sel = sp == std::string::npos ? -1 : selector_of(line.substr(0, sp));
    const std::string path = root + "/" + (sp == std::string::npos ? "" : line.substr(sp + 1));
    if (sel < 0 || !std::ifstream(path)) {
      std::cerr << seed_list << ":" << line_no << ": expected READER PATH (st, config, yaml, data; an existing file)\n";
      return 2;
    }
    add_seed(corpus, sel, read_file(path));
  }
  add_builtin_seeds(corpus);
  if (!corpus_dir.empty()) {
    std::filesystem::create_directories(corpus_dir);
    for (size_t i = 0; i < corpus.size(); ++i) std::ofstream(corpus_dir + "/seed" + std::to_string(i), std::ios::binary) << corpus[i];
    std::cout << corpus.size() << " seeds written to " << corpus_dir << "\n";
    return 0;
  }
  // The seeds themselves must be accepted or refused cleanly too.
  for (const auto& s : corpus) {
    if (run_one(reinterpret_cast<const uint8_t*>(s.data()), s.size()) != 0) return 1;
  }
  // Each reader gets the same share of the iterations, whatever its number of seeds.
  std::vector<std::vector<size_t>> by_reader(kNumReaders);
  for (size_t i = 0; i < corpus.size(); ++i) by_reader[static_cast<uint8_t>(corpus[i][0]) % kNumReaders].push_back(i);
  Mutator m(seed);
  std::mt19937_64 pick(seed ^ 0x5eed);
  for (int64_t it = 0; it < iterations; ++it) {
    const auto& seeds = by_reader[static_cast<size_t>(it % kNumReaders)];
    if (seeds.empty()) continue;
    const std::string input = m.mutate(corpus[seeds[pick() % seeds.size()]], corpus);
    if (run_one(reinterpret_cast<const uint8_t*>(input.data()), input.size()) != 0) {
      std::ofstream("fuzz-finding.bin", std::ios::binary) << input;
      std::cerr << "iteration " << it << ": finding written to fuzz-finding.bin\n";
      std::abort();
    }
  }
  std::cout << iterations << " mutated inputs over " << corpus.size() << " seeds: no finding\n";
  const char* names[kNumReaders] = {"safetensors", "config json", "config yaml", "dataset"};
  for (int r = 0; r < kNumReaders; ++r) {
    std::cout << "  " << names[r] << ": " << g_accepted[r] << " read, " << g_refused[r] << " refused (Input error)\n";
  }
  std::filesystem::remove_all(scratch_dir());
  return 0;
}
#endif
