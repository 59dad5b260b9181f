// stockctl output: protocol answers as JSON objects (--json) and as short human text.
//
// JSON field names are the protocol struct fields; enums are their names ("HELD", "OK").
#pragma once

#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "stockd/client.h"
#include "stockd/protocol.h"

namespace stockd::ctl {

using Json = nlohmann::ordered_json;

Json to_json(const proto::PingResp& r);
Json to_json(const proto::SkuView& r);
Json to_json(const proto::SkuListResp& r);
Json to_json(const proto::ReserveResp& r);
Json to_json(const proto::HoldView& r);
Json to_json(const proto::ClaimResp& r);
Json to_json(const proto::StatsResp& r);  // {"stats": {"name": value, ...}}
Json to_json(const proto::CodesLoadResp& r);
Json to_json(const proto::OutboxStatusResp& r);

// {"status": "OK", ...body fields}; error statuses (>= 64) carry {"status", "error"} only.
Json envelope_json(proto::Status status, const std::string& error, const Json& body);
template <class T>
Json envelope(const Reply<T>& r) {
  Json j = envelope_json(r.status, r.error,
                         proto::is_error_status(r.status) ? Json::object() : to_json(r.body));
  if (r.resent) j["resent"] = true;  // answered on a resend: the first send's answer was lost
  return j;
}

// One line of JSON; bytes that are not UTF-8 are replaced, never thrown about.
std::string dump(const Json& j);

std::string sku_text(const proto::SkuView& v);  // "A1: total=100 available=90 ..."
std::string sku_table(const std::vector<proto::SkuView>& skus);
std::string reserve_text(const proto::ReserveResp& r);
std::string hold_text(const proto::HoldView& h);
std::string claim_text(const proto::ClaimResp& r);
std::string stats_text(const proto::StatsResp& r);
std::string outbox_text(const proto::OutboxStatusResp& r);

}  // namespace stockd::ctl
