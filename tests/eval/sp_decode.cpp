// eval_sp_decode MODEL: reads whitespace-separated token ids from stdin and writes
// sentencepiece's decoding of them to stdout (no newline added).
//
// A separate process on purpose: Debian's libsentencepiece (0.1.97) carries its own copy of
// protobuf 3.14 with exported symbols, and libtorch loads the system libprotobuf (3.21). In one
// process the two collide in the global symbol scope: a crash in libprotobuf's static
// initialisation when libsentencepiece comes first, a protobuf version check failure when it
// comes second. So the eval tests (which link libtorch) decode through this helper.
#include <sentencepiece_processor.h>

#include <cstdio>
#include <iostream>
#include <string>
#include <vector>

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: %s TOKENIZER.model < ids\n", argv[0]);
    return 2;
  }
  sentencepiece::SentencePieceProcessor sp;
  const auto st = sp.Load(argv[1]);
  if (!st.ok()) {
    std::fprintf(stderr, "%s: %s\n", argv[1], st.ToString().c_str());
    return 3;
  }
  std::vector<int> ids;
  for (int id; std::cin >> id;) ids.push_back(id);
  std::string text;
  const auto dt = sp.Decode(ids, &text);
  if (!dt.ok()) {
    std::fprintf(stderr, "decode: %s\n", dt.ToString().c_str());
    return 3;
  }
  std::fwrite(text.data(), 1, text.size(), stdout);
  return 0;
}
