-- wrk script: each connection exchanges its own share of the codes in $CODES_FILE (one per
-- line) at /token, each code once; a thread out of codes stops counting.
local counter = 0
function setup(thread)
  counter = counter + 1
  thread:set("id", counter)
  thread:set("threads", tonumber(os.getenv("THREADS")))
end

function init(args)
  codes = {}
  local i = 0
  for line in io.lines(os.getenv("CODES_FILE")) do
    i = i + 1
    if (i % threads) == (id - 1) then table.insert(codes, line) end
  end
  next_code = 1
  ok = 0
  bad = 0
  body_tail = "&code_verifier=" .. os.getenv("VERIFIER") ..
    "&redirect_uri=" .. os.getenv("REDIRECT_URI_ENC") .. "&client_id=web"
end

function request()
  local code = codes[next_code] or "exhausted"
  next_code = next_code + 1
  return wrk.format("POST", "/token", { ["Content-Type"] = "application/x-www-form-urlencoded" },
    "grant_type=authorization_code&code=" .. code .. body_tail)
end

function response(status, headers, body)
  if status == 200 then ok = ok + 1 else bad = bad + 1 end
end
