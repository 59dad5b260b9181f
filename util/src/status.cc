#include "stockd/status.h"

namespace stockd {

const char* Status::name(Code code) {
  switch (code) {
    case Code::kOk:
      return "ok";
    case Code::kInvalid:
      return "invalid";
    case Code::kCorruption:
      return "corruption";
    case Code::kIo:
      return "io";
    case Code::kRefused:
      return "refused";
  }
  return "unknown";
}

}  // namespace stockd
