-- wrk script: every thread (one connection each) keeps its own refresh-token chain, so every
-- request is a real rotation, never a grace-window retry. Tokens come from $TOKENS_FILE, one
-- per line, one per thread.
local counter = 0
local threads = {}

function setup(thread)
  counter = counter + 1
  thread:set("id", counter)
  table.insert(threads, thread)
end

function init(args)
  local f = assert(io.open(os.getenv("TOKENS_FILE"), "r"))
  local i = 0
  for line in f:lines() do
    i = i + 1
    if i == id then token = line end
  end
  f:close()
  bad = 0
end

function request()
  return wrk.format("POST", "/refresh", { ["Content-Type"] = "application/json" },
    '{"refresh_token":"' .. token .. '"}')
end

function response(status, headers, body)
  if status == 200 then
    local t = body:match('"refresh_token":"([^"]+)"')
    if t then token = t end
  else
    bad = bad + 1
  end
end

function done(summary, latency, requests)
  local non2xx = summary.errors.status
  io.write(string.format(
    '{"requests":%d,"seconds":%.3f,"p50_ms":%.3f,"p99_ms":%.3f,"non_2xx":%d,"socket_errors":%d}\n',
    summary.requests, summary.duration / 1e6, latency:percentile(50) / 1000,
    latency:percentile(99) / 1000, non2xx,
    summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout))
end
