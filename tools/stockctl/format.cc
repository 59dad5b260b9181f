// stockctl output formatting. See format.h.
#include "format.h"

#include <algorithm>
#include <sstream>

#include "seed.h"

namespace stockd::ctl {

namespace {

std::string time_or_dash(int64_t ms) { return ms == 0 ? "-" : format_time(ms); }

std::string flags_text(uint8_t flags) {
  std::string out;
  if (flags & proto::kSkuFlagClosed) out += "closed";
  if (flags & proto::kSkuFlagCodePool) out += out.empty() ? "code_pool" : ",code_pool";
  return out.empty() ? "-" : out;
}

Json lines_json(const std::vector<proto::Line>& lines) {
  Json a = Json::array();
  for (const auto& l : lines) a.push_back(Json{{"sku", l.sku}, {"qty", l.qty}});
  return a;
}

Json codes_json(const std::vector<proto::SkuCode>& codes) {
  Json a = Json::array();
  for (const auto& c : codes) a.push_back(Json{{"sku", c.sku}, {"code", c.code}});
  return a;
}

void codes_text(const std::vector<proto::SkuCode>& codes, std::ostringstream& out) {
  for (const auto& c : codes) out << "\n  code " << c.sku << " " << c.code;
}

// Left-aligned columns, two spaces apart.
std::string table(const std::vector<std::vector<std::string>>& rows) {
  std::vector<size_t> width;
  for (const auto& row : rows) {
    width.resize(std::max(width.size(), row.size()));
    for (size_t i = 0; i < row.size(); ++i) width[i] = std::max(width[i], row[i].size());
  }
  std::ostringstream out;
  for (size_t r = 0; r < rows.size(); ++r) {
    std::string line;
    for (size_t i = 0; i < rows[r].size(); ++i) {
      line += rows[r][i];
      if (i + 1 < rows[r].size()) line += std::string(width[i] - rows[r][i].size() + 2, ' ');
    }
    out << line << (r + 1 < rows.size() ? "\n" : "");
  }
  return out.str();
}

}  // namespace

Json to_json(const proto::PingResp&) { return Json::object(); }

Json to_json(const proto::SkuView& v) {
  return Json{{"sku", v.sku},
              {"total", v.total},
              {"available", v.available},
              {"held", v.held},
              {"sold", v.sold},
              {"per_user_limit", v.per_user_limit},
              {"opens_at_ms", v.opens_at_ms},
              {"closes_at_ms", v.closes_at_ms},
              {"flags", v.flags},
              {"closed", (v.flags & proto::kSkuFlagClosed) != 0},
              {"code_pool", (v.flags & proto::kSkuFlagCodePool) != 0}};
}

Json to_json(const proto::SkuListResp& r) {
  Json a = Json::array();
  for (const auto& v : r.skus) a.push_back(to_json(v));
  return Json{{"skus", a}};
}

// A hold or order id, as a string: ids are random 64-bit numbers, which parsers that read JSON
// numbers as doubles (jq 1.6, JavaScript) round, and the rounded id names no hold.
namespace {
Json id_json(uint64_t id) { return std::to_string(id); }
}  // namespace

Json to_json(const proto::ReserveResp& r) {
  Json failed = r.failed_line == 0xFFFF ? Json(nullptr) : Json(r.failed_line);
  return Json{{"hold_id", id_json(r.hold_id)},    {"state", proto::hold_state_name(r.state)},
              {"expires_at_ms", r.expires_at_ms}, {"failed_line", failed},
              {"available", r.available},         {"codes", codes_json(r.codes)}};
}

Json to_json(const proto::HoldView& h) {
  return Json{{"hold_id", id_json(h.hold_id)},
              {"state", proto::hold_state_name(h.state)},
              {"user", h.user},
              {"key", h.key},
              {"created_at_ms", h.created_at_ms},
              {"expires_at_ms", h.expires_at_ms},
              {"lines", lines_json(h.lines)},
              {"codes", codes_json(h.codes)}};
}

Json to_json(const proto::ClaimResp& r) {
  return Json{{"order_id", id_json(r.order_id)}, {"code", r.code}, {"available", r.available}};
}

Json to_json(const proto::StatsResp& r) {
  Json stats = Json::object();
  for (const auto& s : r.stats) stats[s.name] = s.value;
  return Json{{"stats", stats}};
}

Json to_json(const proto::CodesLoadResp& r) {
  return Json{{"sku", to_json(r.sku)}, {"duplicate", r.duplicate}};
}

Json to_json(const proto::OutboxStatusResp& r) {
  const uint64_t lag = r.head_seq > r.acked_seq ? r.head_seq - r.acked_seq : 0;
  return Json{{"head_seq", r.head_seq},
              {"acked_seq", r.acked_seq},
              {"first_seq", r.first_seq},
              {"lag", lag}};
}

Json envelope_json(proto::Status status, const std::string& error, const Json& body) {
  Json j;
  j["status"] = proto::status_name(status);
  if (proto::is_error_status(status)) j["error"] = error;
  for (const auto& [key, value] : body.items()) j[key] = value;
  return j;
}

std::string dump(const Json& j) { return j.dump(-1, ' ', false, Json::error_handler_t::replace); }

std::string sku_text(const proto::SkuView& v) {
  std::ostringstream out;
  out << v.sku << ": total=" << v.total << " available=" << v.available << " held=" << v.held
      << " sold=" << v.sold << " per_user_limit="
      << (v.per_user_limit == 0 ? std::string("-") : std::to_string(v.per_user_limit))
      << " opens_at=" << time_or_dash(v.opens_at_ms)
      << " closes_at=" << time_or_dash(v.closes_at_ms) << " flags=" << flags_text(v.flags);
  return out.str();
}

std::string sku_table(const std::vector<proto::SkuView>& skus) {
  std::vector<std::vector<std::string>> rows{
      {"SKU", "TOTAL", "AVAILABLE", "HELD", "SOLD", "LIMIT", "OPENS_AT", "CLOSES_AT", "FLAGS"}};
  for (const auto& v : skus) {
    rows.push_back(
        {v.sku, std::to_string(v.total), std::to_string(v.available), std::to_string(v.held),
         std::to_string(v.sold), v.per_user_limit == 0 ? "-" : std::to_string(v.per_user_limit),
         time_or_dash(v.opens_at_ms), time_or_dash(v.closes_at_ms), flags_text(v.flags)});
  }
  return table(rows) + "\n(" + std::to_string(skus.size()) + " SKUs)";
}

std::string reserve_text(const proto::ReserveResp& r) {
  std::ostringstream out;
  if (r.state == proto::HoldState::kHeld) {
    out << "hold " << r.hold_id << " HELD until " << time_or_dash(r.expires_at_ms);
  } else {
    out << "order " << r.hold_id << " " << proto::hold_state_name(r.state);
  }
  codes_text(r.codes, out);
  return out.str();
}

std::string hold_text(const proto::HoldView& h) {
  std::ostringstream out;
  out << "hold " << h.hold_id << " " << proto::hold_state_name(h.state) << " user=" << h.user
      << " key=" << (h.key.empty() ? "-" : h.key) << " created_at=" << time_or_dash(h.created_at_ms)
      << " expires_at=" << time_or_dash(h.expires_at_ms);
  for (const auto& l : h.lines) out << "\n  line " << l.sku << " x" << l.qty;
  codes_text(h.codes, out);
  return out.str();
}

std::string claim_text(const proto::ClaimResp& r) {
  std::ostringstream out;
  out << "order " << r.order_id;
  if (!r.code.empty()) out << " code " << r.code;
  out << " (" << r.available << " left)";
  return out.str();
}

std::string stats_text(const proto::StatsResp& r) {
  std::vector<std::vector<std::string>> rows;
  for (const auto& s : r.stats) rows.push_back({s.name, std::to_string(s.value)});
  return rows.empty() ? "(no stats)" : table(rows);
}

std::string outbox_text(const proto::OutboxStatusResp& r) {
  const uint64_t lag = r.head_seq > r.acked_seq ? r.head_seq - r.acked_seq : 0;
  return "head_seq=" + std::to_string(r.head_seq) + " acked_seq=" + std::to_string(r.acked_seq) +
         " first_seq=" + std::to_string(r.first_seq) + " lag=" + std::to_string(lag);
}

}  // namespace stockd::ctl
