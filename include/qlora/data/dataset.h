// Dataset formats: every record becomes (source, target) strings exactly as the QLoRA reference's
// `format_dataset` / `extract_*` functions make its `input` / `output` columns (qlora.py @ 7f4e95a6,
// l.500-672; docs/qlora-reference.md sections 4.2-4.4 and 5). Where the reference has no loader
// (unnatural-instructions, flan-v2, longform, vicuna, raw OASST1 trees) the mapping is ours and documented
// next to its name below.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "qlora/common/enum_names.h"

namespace qlora::data {

enum class DatasetFormat {
  Auto,          // infer the format from the first record's keys (the reference's default for a local file)
  Alpaca,        // instruction/input/output -> the ALPACA_PROMPT_DICT template (with or without input); output
  AlpacaClean,   // same as alpaca (yahma/alpaca-cleaned has the same columns)
  SelfInstruct,  // prompt/completion -> verbatim (completion keeps its "<|endoftext|>")
  UnnaturalInstructions,  // instances[].instruction_with_input / instances[].output; one pair per instance
                          // (the reference's extract_unnatural_instructions_data; reformulations optional)
  FlanV2,        // inputs/targets -> verbatim (the reference has no loader; the Flan Collection's columns)
  Longform,      // input/output -> verbatim (akoksal/LongForm; the reference uses its columns as they are)
  Chip2,         // OIG text: source = the part before "\n<bot>: " with every "<human>: " removed;
                 // target = the part after it, up to the next "\n<bot>: " (later turns are dropped)
  HhRlhf,        // source "", target = `chosen`
  Oasst1,        // guanaco rows {"text"}: source "", target = text. Raw OASST1 message trees (flat messages
                 // or nested trees) are first reduced to the top-ranked path and rendered as guanaco text.
  Vicuna,        // ShareGPT/Vicuna {"conversations": [{"from", "value"}]}: rendered as guanaco text
                 // ("### Human: ...### Assistant: ..."), source "" (the reference raises NotImplementedError)
  InputOutput,   // {"input", "output"} used as they are (the reference's default for a local file)
};

// The names that config files, --set and --dataset-format use; "auto" infers the format.
inline constexpr EnumName<DatasetFormat> kDatasetFormatNames[] = {
    {DatasetFormat::Auto, "auto"},
    {DatasetFormat::Alpaca, "alpaca"},
    {DatasetFormat::AlpacaClean, "alpaca-clean"},
    {DatasetFormat::SelfInstruct, "self-instruct"},
    {DatasetFormat::UnnaturalInstructions, "unnatural-instructions"},
    {DatasetFormat::FlanV2, "flan-v2"},
    {DatasetFormat::Longform, "longform"},
    {DatasetFormat::Chip2, "chip2"},
    {DatasetFormat::HhRlhf, "hh-rlhf"},
    {DatasetFormat::Oasst1, "oasst1"},
    {DatasetFormat::Vicuna, "vicuna"},
    {DatasetFormat::InputOutput, "input-output"},
};
// A name above, "sharegpt" (= vicuna) or "" (= auto). Input error listing the names otherwise.
DatasetFormat parse_dataset_format(const std::string& name);
std::string dataset_format_name(DatasetFormat format);
std::vector<std::string> dataset_format_names();  // the formats themselves (every name above but "auto")

struct Sample {
  std::string source;  // the reference's `input` column (for alpaca: the filled-in prompt template)
  std::string target;  // the reference's `output` column
  int64_t line = 0;    // line of the record it came from (for messages)
};

struct DatasetLoadOptions {
  DatasetFormat format = DatasetFormat::Auto;  // Auto: inferred from the first record's keys
  bool unnatural_reformulations = false;  // also take instances from `reformulations` (reference default off)
};

struct LoadedDataset {
  DatasetFormat format = DatasetFormat::InputOutput;
  bool format_inferred = false;
  std::string layout;             // what the file held, e.g. "guanaco text rows", "OASST1 message trees (flat)"
  std::vector<Sample> samples;
  int64_t num_records = 0;        // records read from the file
  int64_t num_skipped = 0;        // records or OASST1 trees that gave no example (deleted root, no reply,
                                  // a conversation without a human turn)
  int64_t num_orphans = 0;        // OASST1 messages whose parent_id is not in the file (unreachable; skipped)
};

// Reads PATH (JSON array, JSON Lines, gzip-compressed either way) and maps every record to samples.
// Errors name the file, the line and the field (qlora::Error Input).
LoadedDataset load_dataset(const std::string& path, const DatasetLoadOptions& options = {});

// The samples of load_dataset one at a time, in the same order, so that a file larger than memory can be
// read: JSON Lines hold one record in memory at a time. A JSON array is read whole (json_records.h), and
// OASST1 message trees (flat or nested) are read whole when the stream opens, since a tree's path can only be
// chosen once all its messages are known. The format is known once the stream is open (first record).
class SampleStream {
 public:
  SampleStream(const std::string& path, const DatasetLoadOptions& options = {});
  ~SampleStream();
  SampleStream(const SampleStream&) = delete;
  SampleStream& operator=(const SampleStream&) = delete;
  bool next(Sample& out);  // false at the end
  // format, layout and the counts so far (records read, skipped, orphans); `samples` is empty.
  LoadedDataset info() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// The reference's ALPACA_PROMPT_DICT (qlora.py l.517-528): the with-input template when `input` is not
// empty. Both end with "### Response: " (with the trailing space: keep it for token parity).
std::string alpaca_prompt(const std::string& instruction, const std::string& input);

// Guanaco rendering of a conversation: "### Human: " + turn + "### Assistant: " + turn ..., no separators
// (the bytes of timdettmers/openassistant-guanaco rows). roles: true = human (prompter), false = assistant.
struct Turn {
  bool human = true;
  std::string text;
};
std::string render_guanaco(const std::vector<Turn>& turns);

}  // namespace qlora::data
