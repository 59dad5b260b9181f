// Secrets from files: how stockd, stockd-outbox, stockctl and stockbench read a token (or the
// SQL URL) given as --*-file, so that no secret has to be typed on a command line (every local
// user sees those in ps). Any thread; no state.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

#include "stockd/status.h"

namespace stockd {

// Reads a one-line secret from `path`: the whole file, without a leading UTF-8 byte order mark
// and trailing line breaks, spaces and tabs (what editors and `echo` add). Returns ok and sets
// `secret`, or why not (missing, unreadable, empty, more than one line, over `max_bytes`).
// `warning` is set (else cleared) when the file is open to other users (group or other permission
// bits): it is still used, since container runtimes mount secrets 0444/0644 and rely on the
// directory, but the operator is told.
Status read_secret_file(const std::string& path, std::string& secret, std::string& warning,
                        size_t max_bytes = 256);

// True if `flag` was typed on the command line ("--flag V" or "--flag=V"), where every local
// user sees its value in ps (a value from the environment or a file is not).
bool on_command_line(int argc, char** argv, std::string_view flag);

}  // namespace stockd
