-- wrk script for /userinfo with many tokens, from $TOKENS_FILE (one per line). $MIX picks how:
--   zipf:   each request draws a token with a Zipf distribution (s = 1): a few hot, a long tail;
--   cycle:  each thread walks the tokens in order from its own offset (every token comes back
--           only after all the others: with more tokens than the cache holds, every request
--           misses);
--   forged: each request sends a distinct forgery (the first token with its signature's tail
--           replaced by a counter): refused, and never held.
local counter = 0

function setup(thread)
  counter = counter + 1
  thread:set("id", counter)
end

function init(args)
  tokens = {}
  for line in io.lines(os.getenv("TOKENS_FILE")) do
    if #line > 0 then tokens[#tokens + 1] = line end
  end
  n = #tokens
  -- Each token's request is formatted once, so the client spends its core on sending them.
  reqs = {}
  for i = 1, n do
    reqs[i] = wrk.format("GET", "/userinfo", { ["authorization"] = "Bearer " .. tokens[i] })
  end
  mix = os.getenv("MIX") or "zipf"
  if mix == "zipf" then
    cdf = {}
    local sum = 0
    for i = 1, n do sum = sum + 1 / i; cdf[i] = sum end
    for i = 1, n do cdf[i] = cdf[i] / sum end
  end
  math.randomseed(os.time() * 1000 + id)
  pos = (id - 1) * math.floor(n / 8)
  seq = id * 100000000
end

local alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"

local function b64(k)
  local s = ""
  for _ = 1, 8 do
    local d = k % 64
    s = s .. alphabet:sub(d + 1, d + 1)
    k = math.floor(k / 64)
  end
  return s
end

function request()
  if mix == "zipf" then
    local u, lo, hi = math.random(), 1, n
    while lo < hi do
      local mid = math.floor((lo + hi) / 2)
      if cdf[mid] < u then lo = mid + 1 else hi = mid end
    end
    return reqs[lo]
  elseif mix == "cycle" then
    pos = pos + 1
    return reqs[(pos % n) + 1]
  end
  seq = seq + 1
  -- The last character of a 64-byte signature carries padding bits: keep it.
  local t = tokens[1]:sub(1, -10) .. b64(seq) .. tokens[1]:sub(-1)
  return wrk.format("GET", "/userinfo", { ["authorization"] = "Bearer " .. t })
end

function done(summary, latency, requests)
  io.write(string.format(
    '{"requests":%d,"seconds":%.3f,"p50_ms":%.3f,"p99_ms":%.3f,"non_2xx":%d,"socket_errors":%d}\n',
    summary.requests, summary.duration / 1e6, latency:percentile(50) / 1000,
    latency:percentile(99) / 1000, summary.errors.status,
    summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout))
end
