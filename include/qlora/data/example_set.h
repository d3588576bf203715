// Tokenized examples and where they live: in memory (a std::vector<Example>), or in a token file on disk
// that is read back per batch, so that a training set larger than RAM can be used. Either way the set
// answers what the sampler needs without touching the tokens (length for group_by_length, token count for
// packing), and hands out whole examples by index.
#pragma once
#include <cstdint>
#include <iterator>
#include <memory>
#include <string>
#include <vector>

namespace qlora::data {

constexpr int32_t kIgnoreIndex = -100;  // label of positions without loss (torch CrossEntropy ignore_index)

struct Example {
  std::vector<int32_t> input_ids;  // (L,)
  std::vector<int32_t> labels;     // (L,) kIgnoreIndex where no loss
  int32_t num_source_tokens = 0;   // BOS + source tokens kept
  int64_t length = 0;              // the reference's `length` column: characters (code points) of source +
                                   // target, what group_by_length sorts by
};

class ExampleSet {
 public:
  ExampleSet() = default;
  // Implicit on purpose: every function over examples takes an ExampleSet, and a vector converts.
  ExampleSet(const std::vector<Example>& examples);  // a view: `examples` must outlive the set and its copies
  ExampleSet(std::vector<Example>&& examples);       // owns them

  size_t size() const;
  bool empty() const { return size() == 0; }
  int64_t length(size_t i) const;      // Example::length
  int64_t num_tokens(size_t i) const;  // input_ids.size()
  Example operator[](size_t i) const;  // a copy (from the token file: one pread)
  bool on_disk() const;

  // Iteration by value (range-for over a set reads every example once).
  class const_iterator {
   public:
    using iterator_category = std::input_iterator_tag;
    using value_type = Example;
    using difference_type = std::ptrdiff_t;
    using pointer = void;
    using reference = Example;
    const_iterator(const ExampleSet* set, size_t i) : set_(set), i_(i) {}
    Example operator*() const { return (*set_)[i_]; }
    const_iterator& operator++() { return ++i_, *this; }
    bool operator!=(const const_iterator& o) const { return i_ != o.i_; }
    bool operator==(const const_iterator& o) const { return i_ == o.i_; }

   private:
    const ExampleSet* set_;
    size_t i_;
  };
  const_iterator begin() const { return {this, 0}; }
  const_iterator end() const { return {this, size()}; }

  struct Storage;  // shared by copies: copying a set is cheap

 private:
  friend class TokenFileWriter;
  std::shared_ptr<const Storage> storage_;
};

// Writes examples into a token file: one slot per example, filled in any order (a shuffled split is written
// while the dataset streams in file order); the set has as many examples as the highest slot put + 1. Only input ids go to disk (4 bytes a token); labels follow from
// the number of source tokens (kIgnoreIndex on the source unless train_on_source, as tokenize_example makes
// them), and lengths stay in memory (24 bytes an example). The file is created in `dir` and unlinked at once:
// it needs no cleanup after a crash and is never reused (nothing to invalidate); its disk space is freed when
// the last set reading it goes.
class TokenFileWriter {
 public:
  TokenFileWriter(const std::string& dir, bool train_on_source);
  ~TokenFileWriter();
  TokenFileWriter(const TokenFileWriter&) = delete;
  TokenFileWriter& operator=(const TokenFileWriter&) = delete;
  void reserve(size_t num_slots);  // when the count is known: no reallocation (and its transient 3x) later
  void put(size_t slot, const Example& example);  // example.labels must be what train_on_source implies
  ExampleSet finish();  // Internal error when a slot was never put

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace qlora::data
