-- wrk script: GET /authorize with an SSO cookie (the space-separated $SSO_COOKIES in turn, so
-- the codes belong to those sessions' users) and a fixed request ($AUTHORIZE_QUERY); every
-- code the redirects carry is appended to $CODES_FILE. With no cookie, the login page.
local out

function init(args)
  out = assert(io.open(os.getenv("CODES_FILE"), "a"))
  cookies = {}
  for c in os.getenv("SSO_COOKIES"):gmatch("%S+") do cookies[#cookies + 1] = c end
  reqs = {}
  for i, c in ipairs(cookies) do
    reqs[i] = wrk.format("GET", "/authorize?" .. os.getenv("AUTHORIZE_QUERY"), { ["Cookie"] = c })
  end
  if #reqs == 0 then
    -- No cookie: every request gets the login page.
    reqs[1] = wrk.format("GET", "/authorize?" .. os.getenv("AUTHORIZE_QUERY"))
  end
  turn = 0
end

function request()
  turn = turn + 1
  return reqs[(turn % #reqs) + 1]
end

function response(status, headers, body)
  local loc = headers["location"] or headers["Location"]
  if loc then
    local code = loc:match("[?&]code=([^&]+)")
    if code then out:write(code, "\n") out:flush() end
  end
end
