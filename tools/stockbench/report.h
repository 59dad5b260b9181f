// The end-of-run report: a table on stdout, or one JSON object (--json).
#pragma once

#include <nlohmann/json.hpp>

#include "config.h"
#include "driver.h"
#include "target.h"

namespace stockd::bench {

nlohmann::json report_json(const Config& c, const RunResult& r, const Verdict& v);
void print_table(const Config& c, const RunResult& r, const Verdict& v);

}  // namespace stockd::bench
