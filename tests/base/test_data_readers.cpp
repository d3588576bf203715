// Dataset file readers: JSON arrays, JSON Lines, gzip; line numbers; malformed records named by file, line
// and field (Input errors, exit code 2).
#include <zlib.h>

#include "qlora/data/dataset.h"
#include "qlora/data/json_records.h"
#include "test_data_common.h"

namespace qlora::data {
namespace {

using testing::expect_input_error;
using testing::fixture;
using testing::TempDir;

std::string gzip_file(const TempDir& dir, const std::string& name, const std::string& content) {
  const std::string p = dir.path() + "/" + name;
  gzFile gz = gzopen(p.c_str(), "wb");
  gzwrite(gz, content.data(), static_cast<unsigned>(content.size()));
  gzclose(gz);
  return p;
}

std::string slurp(const std::string& path) {
  FILE* f = std::fopen(path.c_str(), "rb");
  std::string s;
  char buf[4096];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof buf, f)) > 0) s.append(buf, n);
  std::fclose(f);
  return s;
}

TEST(JsonRecords, JsonLinesWithBlankLinesAndCrlf) {
  TempDir dir;
  const auto p = dir.file("a.jsonl", "{\"a\": 1}\r\n\n  \n{\"a\": 2}\n{\"a\": 3}");  // no final newline
  const auto recs = read_json_records(p);
  ASSERT_EQ(recs.size(), 3u);
  EXPECT_EQ(recs[0].value["a"], 1);
  EXPECT_EQ(recs[0].line, 1);
  EXPECT_EQ(recs[1].line, 4);
  EXPECT_EQ(recs[2].line, 5);
}

TEST(JsonRecords, JsonArrayRecordsKnowTheirLines) {
  TempDir dir;
  const auto p = dir.file("a.json", "\xEF\xBB\xBF\n[\n  {\"a\": \"x\\n]\"},\n  {\n    \"a\": [1, {\"b\": 2}]\n  }, {\"a\": 3}\n]\n");
  JsonRecordReader reader(p);
  EXPECT_TRUE(reader.is_json_array());
  std::vector<JsonRecord> recs;
  JsonRecord r;
  while (reader.next(r)) recs.push_back(r);
  ASSERT_EQ(recs.size(), 3u);
  EXPECT_EQ(recs[0].value["a"], "x\n]");
  EXPECT_EQ(recs[0].line, 3);
  EXPECT_EQ(recs[1].line, 4);
  EXPECT_EQ(recs[2].line, 6);
}

TEST(JsonRecords, GzipJsonLinesEqualPlain) {
  TempDir dir;
  const std::string plain = fixture("datasets/hh-rlhf/harmless-base-test.head200.jsonl");
  const std::string gz = gzip_file(dir, "hh.jsonl.gz", slurp(plain));
  const auto a = read_json_records(plain);
  const auto b = read_json_records(gz);
  ASSERT_EQ(a.size(), 200u);
  ASSERT_EQ(b.size(), a.size());
  for (size_t i = 0; i < a.size(); ++i) {
    EXPECT_EQ(a[i].value, b[i].value);
    EXPECT_EQ(a[i].line, b[i].line);
  }
  // The dataset loader reads it too (format inferred from the records, not the name).
  const auto ds = load_dataset(gz);
  EXPECT_EQ(ds.format, DatasetFormat::HhRlhf);
  EXPECT_EQ(ds.samples.size(), 200u);
  EXPECT_EQ(ds.samples[9].target, a[9].value["chosen"].get<std::string>());
}

TEST(JsonRecords, GzipJsonArray) {
  TempDir dir;
  const std::string plain = fixture("datasets/written/alpaca_missing_input.json");
  const auto ds = load_dataset(gzip_file(dir, "a.json.gz", slurp(plain)));
  EXPECT_EQ(ds.format, DatasetFormat::Alpaca);
  EXPECT_EQ(ds.samples.size(), 3u);
}

TEST(JsonRecords, TruncatedGzipIsInputError) {
  TempDir dir;
  const std::string content = slurp(fixture("datasets/hh-rlhf/harmless-base-test.head200.jsonl"));
  const std::string whole = slurp(gzip_file(dir, "x.gz", content));
  const auto cut = dir.file("cut.jsonl.gz", whole.substr(0, whole.size() / 2));
  expect_input_error([&] { read_json_records(cut); }, {cut});
}

TEST(JsonRecords, EmptyAndMissingFiles) {
  TempDir dir;
  const auto empty = dir.file("empty.jsonl", "");
  expect_input_error([&] { read_json_records(empty); }, {empty + ":1: empty file"});
  const auto blank = dir.file("blank.jsonl", "\n  \n");
  expect_input_error([&] { read_json_records(blank); }, {blank + ":1: empty file"});
  expect_input_error([&] { read_json_records(dir.path() + "/none.jsonl"); }, {"none.jsonl: dataset file not found"});
  const auto arr = dir.file("empty.json", "[ ]");
  expect_input_error([&] { load_dataset(arr); }, {arr, "no records"});
}

// The `dataset` key takes .csv and .tsv files, as the reference's pandas.read_csv: a header row names the fields.
TEST(TableDatasets, CsvAndTsvRowsAreRecords) {
  TempDir dir;
  const auto csv = dir.file("a.csv",
                            "instruction,input,output\n"
                            "Add the numbers,\"1, 2\",3\n"
                            "\"Say\nhi\",,\"hi \"\"there\"\"\"\n");
  const auto recs = read_json_records(csv);
  ASSERT_EQ(recs.size(), 2u);
  EXPECT_EQ(recs[0].line, 2);
  EXPECT_EQ(recs[0].value, nlohmann::json({{"instruction", "Add the numbers"}, {"input", "1, 2"}, {"output", "3"}}));
  EXPECT_EQ(recs[1].line, 3);
  EXPECT_EQ(recs[1].value["instruction"], "Say\nhi");
  EXPECT_TRUE(recs[1].value["input"].is_null());  // empty = missing, as pandas' NaN
  EXPECT_EQ(recs[1].value["output"], "hi \"there\"");

  // Mapped as alpaca: the empty input takes the no-input template, exactly as the same JSON record would.
  const auto ds = load_dataset(csv, {DatasetFormat::Alpaca});
  const auto js = load_dataset(
      dir.file("a.jsonl",
               "{\"instruction\": \"Add the numbers\", \"input\": \"1, 2\", \"output\": \"3\"}\n"
               "{\"instruction\": \"Say\\nhi\", \"input\": \"\", \"output\": \"hi \\\"there\\\"\"}\n"),
      {DatasetFormat::Alpaca});
  ASSERT_EQ(ds.samples.size(), 2u);
  ASSERT_EQ(js.samples.size(), 2u);
  for (size_t i = 0; i < 2; ++i) {
    EXPECT_EQ(ds.samples[i].source, js.samples[i].source) << i;
    EXPECT_EQ(ds.samples[i].target, js.samples[i].target) << i;
  }

  const auto tsv = dir.file("b.tsv", "input\toutput\nQ: 1, 2?\tA\n");
  const auto t = load_dataset(tsv);  // auto: input-output
  ASSERT_EQ(t.samples.size(), 1u);
  EXPECT_EQ(t.samples[0].source, "Q: 1, 2?");
  EXPECT_EQ(t.samples[0].target, "A");
  // gzip-compressed tables are read too (named .csv.gz).
  const auto gz = load_dataset(gzip_file(dir, "b.tsv.gz", "input\toutput\nQ\tA\n"));
  ASSERT_EQ(gz.samples.size(), 1u);
  EXPECT_EQ(gz.samples[0].target, "A");
}

TEST(TableDatasets, BadTablesNameFileAndLine) {
  TempDir dir;
  const auto short_row = dir.file("s.csv", "input,output\nq,a\nonly one field\n");
  expect_input_error([&] { read_json_records(short_row); },
                     {short_row + ":3: 1 fields, but the header names 2 columns"});
  const auto dup = dir.file("d.csv", "input,input\nq,a\n");
  expect_input_error([&] { read_json_records(dup); }, {dup + ":1: column \"input\" is named twice"});
  const auto empty = dir.file("e.tsv", "");
  expect_input_error([&] { read_json_records(empty); }, {empty + ":1: empty file (expected a header row"});
  const auto header_only = dir.file("h.csv", "input,output\n");
  expect_input_error([&] { load_dataset(header_only); }, {header_only, "no records"});
  const auto missing = dir.file("m.csv", "input,output\nq,\n");
  expect_input_error([&] { load_dataset(missing); }, {missing + ":2", "output"});
  const auto utf8 = dir.file("u.csv", "input,output\nq,\xff\n");
  expect_input_error([&] { read_json_records(utf8); }, {utf8 + ":2: field \"output\": invalid UTF-8"});
}

TEST(JsonRecords, BadJsonNamesTheLine) {
  TempDir dir;
  const auto p = dir.file("bad.jsonl", "{\"a\": 1}\n{\"a\": 2}\n{\"a\": tru}\n");
  expect_input_error([&] { read_json_records(p); }, {p + ":3: invalid JSON"});
  const auto q = dir.file("bad.json", "[\n {\"a\": 1},\n {\"a\": 2}\n {\"a\": 3}\n]");
  expect_input_error([&] { read_json_records(q); }, {q + ":4: invalid JSON", "expected ',' or ']'"});
  const auto r = dir.file("open.json", "[\n {\"a\": 1},\n {\"a\": \"unterminated\n");
  expect_input_error([&] { read_json_records(r); }, {r + ":3: invalid JSON"});
  const auto s = dir.file("nobracket.json", "[\n {\"a\": 1}\n");
  expect_input_error([&] { read_json_records(s); }, {s + ":3: invalid JSON", "missing ']'"});
  const auto t = dir.file("multi.jsonl", "{\"a\":\n 1}\n");
  expect_input_error([&] { read_json_records(t); }, {t + ":1: invalid JSON", "one whole record per line"});
  // Found by the fuzz target: a number beyond a double is nlohmann's out_of_range, not a parse_error, and
  // escaped as an exception that was not an Input error.
  const auto u = dir.file("overflow.jsonl", "{\"a\": 1}\n{\"a\": 1e999}\n");
  expect_input_error([&] { read_json_records(u); }, {u + ":2: invalid JSON: number overflow parsing '1e999'"});
}

TEST(JsonRecords, InvalidUtf8NamesTheField) {
  TempDir dir;
  const auto p = dir.file("u.jsonl", "{\"instruction\": \"ok\", \"output\": \"ok\"}\n"
                                     "{\"instruction\": \"ok\", \"output\": \"bad \xC3\x28 byte\"}\n");
  expect_input_error([&] { read_json_records(p); }, {p + ":2: field \"output\": invalid UTF-8 (byte 0xc3)"});
  const auto q = dir.file("u.json", "[{\"conversations\": [{\"from\": \"human\", \"value\": \"ok\"},\n"
                                    " {\"from\": \"gpt\", \"value\": \"\xED\xA0\x80 surrogate\"}]}]");
  expect_input_error([&] { read_json_records(q); }, {q + ":2: field \"conversations[1].value\": invalid UTF-8"});
  const auto k = dir.file("k.jsonl", "{\"bad\xFFkey\": 1}\n");
  expect_input_error([&] { read_json_records(k); }, {k + ":1: field \"(a key)\": invalid UTF-8 (byte 0xff)"});
}

TEST(JsonRecords, Utf8Validation) {
  size_t bad = 0;
  EXPECT_TRUE(valid_utf8("a\xC3\xA9\xE4\xBD\xA0\xF0\x9F\x99\x82", 10));
  EXPECT_FALSE(valid_utf8("\xC0\xAF", 2, &bad));  // overlong '/'
  EXPECT_EQ(bad, 0u);
  EXPECT_FALSE(valid_utf8("ab\xED\xA0\x80", 5, &bad));  // UTF-16 surrogate
  EXPECT_EQ(bad, 2u);
  EXPECT_FALSE(valid_utf8("\xF4\x90\x80\x80", 4));  // above U+10FFFF
  EXPECT_FALSE(valid_utf8("\xE4\xBD", 2));          // cut sequence
  EXPECT_EQ(utf8_length("a\xC3\xA9\xE4\xBD\xA0\xF0\x9F\x99\x82"), 4);
}

TEST(JsonRecords, MalformedRecordsNameFileLineField) {
  TempDir dir;
  const auto missing = dir.file("m.jsonl", "{\"instruction\": \"a\", \"output\": \"b\"}\n{\"instruction\": \"a\"}\n");
  expect_input_error([&] { load_dataset(missing, {DatasetFormat::Alpaca}); }, {missing + ":2: field \"output\": missing"});
  const auto type = dir.file("t.jsonl", "{\"input\": \"a\", \"output\": 5}\n");
  expect_input_error([&] { load_dataset(type); }, {type + ":1: field \"output\": expected a string, got a number"});
  const auto notobj = dir.file("n.jsonl", "{\"input\": \"a\", \"output\": \"b\"}\n[1, 2]\n");
  expect_input_error([&] { load_dataset(notobj); }, {notobj + ":2: expected a JSON object per record, got an array"});
  const auto nested = dir.file("v.json", "[\n{\"conversations\": [{\"from\": \"human\", \"value\": \"hi\"},\n"
                                         " {\"from\": \"gpt\", \"value\": 7}]}\n]");
  expect_input_error([&] { load_dataset(nested); }, {nested + ":2: field \"conversations[1].value\": expected a string"});
  const auto unknown = dir.file("k.jsonl", "{\"question\": \"a\", \"answer\": \"b\"}\n");
  expect_input_error([&] { load_dataset(unknown); }, {unknown + ":1: cannot infer dataset_format", "[answer, question]"});
}

// Item 4 of issue 10: a record nested past kMaxRecordDepth is refused as FILE:LINE before nlohmann's
// recursive copies and dump() can overflow the stack (it used to load when the deep value sat in an
// unused field), in JSON Lines and in a JSON array alike.
TEST(JsonRecords, TooDeepRecordNamesTheLine) {
  TempDir dir;
  const std::string deep = std::string(200000, '[') + std::string(200000, ']');
  const auto p = dir.file("deep.jsonl", "{\"instruction\": \"a\", \"output\": \"b\"}\n"
                                        "{\"instruction\": \"a\", \"output\": \"b\", \"extra\": " + deep + "}\n");
  expect_input_error([&] { load_dataset(p); }, {p + ":2: record nested deeper than 1000 levels"});
  const auto q = dir.file("deep.json", "[\n{\"instruction\": \"a\", \"output\": \"b\"},\n"
                                       "{\"instruction\": \"a\",\n \"extra\": " + deep + "}]\n");
  expect_input_error([&] { load_dataset(q); }, {q + ":4: record nested deeper than 1000 levels"});
  // The limit itself still reads: the record object plus 999 arrays.
  const std::string edge = std::string(kMaxRecordDepth - 1, '[') + std::string(kMaxRecordDepth - 1, ']');
  EXPECT_EQ(read_json_records(dir.file("edge.jsonl", "{\"x\": " + edge + "}\n")).size(), 1u);
}

// Item 7 of issue 10: a JSON Lines record longer than kMaxLineBytes is an Input error naming its line,
// raised before more of it is buffered (it used to be read whole, however long).
TEST(JsonRecords, OverlongLineNamesTheLine) {
  TempDir dir;
  const std::string record = "{\"instruction\": \"a\", \"output\": \"" + std::string(kMaxLineBytes, 'x') + "\"}";
  const auto p = dir.file("long.jsonl", "{\"instruction\": \"a\", \"output\": \"b\"}\n" + record + "\n");
  expect_input_error([&] { load_dataset(p); }, {p + ":2: line longer than 67108864 bytes"});
  const auto q = dir.file("long_last.jsonl", "\n\n" + record);  // the last line, without a newline
  expect_input_error([&] { load_dataset(q); }, {q + ":3: line longer than 67108864 bytes"});
}

}  // namespace
}  // namespace qlora::data
