// The hex examples of docs/storage.md, for the tests that check them byte for byte.
#pragma once

#include <gtest/gtest.h>

#include <fstream>
#include <sstream>
#include <string>

namespace stockd::test {

// The bytes of the fenced block after `<!-- example: NAME -->` in `doc`'s file: per line, the hex
// pairs before an optional "#" comment.
inline std::string doc_example(const char* path, const std::string& name) {
  std::ifstream f(path);
  EXPECT_TRUE(f.good()) << "cannot open " << path;
  std::stringstream ss;
  ss << f.rdbuf();
  const std::string doc = ss.str();
  const size_t mark = doc.find("<!-- example: " + name + " -->");
  EXPECT_NE(mark, std::string::npos) << "no example " << name;
  if (mark == std::string::npos) return {};
  const size_t open = doc.find("```", mark);
  const size_t body = doc.find('\n', open) + 1;
  const size_t close = doc.find("```", body);
  std::istringstream lines(doc.substr(body, close - body));
  std::string out;
  for (std::string line; std::getline(lines, line);) {
    std::istringstream tokens(line.substr(0, line.find('#')));
    for (std::string t; tokens >> t;) {
      EXPECT_EQ(t.size(), 2u) << "bad hex token '" << t << "' in example " << name;
      out.push_back(static_cast<char>(std::stoul(t, nullptr, 16)));
    }
  }
  return out;
}

}  // namespace stockd::test
