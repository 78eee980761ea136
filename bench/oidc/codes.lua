-- wrk script: GET /authorize with the SSO cookie ($SSO_COOKIE) and a fixed request
-- ($AUTHORIZE_QUERY); every code the redirects carry is appended to $CODES_FILE.
local out

function init(args)
  out = assert(io.open(os.getenv("CODES_FILE"), "a"))
end

function request()
  return wrk.format("GET", "/authorize?" .. os.getenv("AUTHORIZE_QUERY"),
    { ["Cookie"] = os.getenv("SSO_COOKIE") })
end

function response(status, headers, body)
  local loc = headers["location"] or headers["Location"]
  if loc then
    local code = loc:match("[?&]code=([^&]+)")
    if code then out:write(code, "\n") out:flush() end
  end
end
