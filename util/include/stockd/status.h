// Status and Result<T>: how every layer of stockd says that an operation failed, and why.
//
// Three kinds of failure, three mechanisms (STYLE.md): business outcomes (SOLD_OUT, ...) are
// enum values sent to the client; I/O and bad input are these values; programmer errors stop the
// process (check.h). Nothing throws across the loop.
//
// A Status is ok, or a code plus a message for the operator that names the thing that failed
// and why ("data dir /d: log group 17: checksum mismatch"). Both types are [[nodiscard]]: an
// ignored failure is a compile error. Layers add what they know in front with context():
//
//   if (Status s = store.write(batch, true); !s.ok()) return s.context("group 17");
//   Result<Config> c = parse(argv);  if (!c.ok()) return c.status();  use(*c);
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>

#include "stockd/check.h"

namespace stockd {

class [[nodiscard]] Status {
 public:
  enum class Code : uint8_t {
    kOk = 0,
    kInvalid,     // the input is malformed or out of range (a flag, a file, a frame): fix it
    kCorruption,  // bytes that were written or sent fail their check: the data is damaged
    kIo,          // the system or a library failed (disk, socket, TLS, SQL): it may pass
    kRefused,     // well-formed, but the state says no (a lost log, a step out of order)
  };

  Status() = default;  // ok
  static Status Ok() { return Status(); }
  static Status Invalid(std::string message) { return {Code::kInvalid, std::move(message)}; }
  static Status Corruption(std::string message) { return {Code::kCorruption, std::move(message)}; }
  static Status Io(std::string message) { return {Code::kIo, std::move(message)}; }
  static Status Refused(std::string message) { return {Code::kRefused, std::move(message)}; }

  bool ok() const { return code_ == Code::kOk; }
  Code code() const { return code_; }
  // What failed and why; "" when ok.
  const std::string& message() const { return message_; }

  // The same failure with `what` in front ("what: message"); an ok status stays ok.
  Status context(std::string_view what) const& {
    Status s = *this;
    return std::move(s).context(what);
  }
  Status context(std::string_view what) && {
    if (!ok()) message_.insert(0, std::string(what) + ": ");
    return std::move(*this);
  }

  // The code's name in lower case ("corruption"), for logs and --json.
  static const char* name(Code code);

 private:
  Status(Code code, std::string message) : code_(code), message_(std::move(message)) {
    if (message_.empty()) message_ = "unknown error";
  }
  Code code_ = Code::kOk;
  std::string message_;
};

// A value or the Status saying why there is none. Reading the value of a failed Result is a
// programmer error and stops the process.
template <class T>
class [[nodiscard]] Result {
 public:
  Result(T value) : value_(std::move(value)) {}  // NOLINT: implicit, as `return value;` reads
  Result(Status status) : status_(std::move(status)) {  // NOLINT: implicit, `return status;`
    STOCKD_CHECK(!status_.ok(), "a Result needs a value or a failed Status");
  }

  bool ok() const { return value_.has_value(); }
  const Status& status() const { return status_; }  // ok() when there is a value

  T& value() & {
    STOCKD_CHECK(ok(), "the value of a failed Result was read");
    return *value_;
  }
  const T& value() const& {
    STOCKD_CHECK(ok(), "the value of a failed Result was read");
    return *value_;
  }
  T&& value() && {
    STOCKD_CHECK(ok(), "the value of a failed Result was read");
    return std::move(*value_);
  }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }
  T&& operator*() && { return std::move(*this).value(); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }

 private:
  std::optional<T> value_;
  Status status_;
};

}  // namespace stockd
