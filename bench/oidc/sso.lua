-- wrk script: an SSO re-authorization per two requests: GET /authorize with an SSO cookie
-- (the space-separated $SSO_COOKIES in turn; no login page: a redirect with a code), then the
-- code's exchange at /token.
function init(args)
  code = nil
  query = os.getenv("AUTHORIZE_QUERY")
  cookies = {}
  for c in os.getenv("SSO_COOKIES"):gmatch("%S+") do cookies[#cookies + 1] = c end
  turn = 0
  body_tail = "&code_verifier=" .. os.getenv("VERIFIER") ..
    "&redirect_uri=" .. os.getenv("REDIRECT_URI_ENC") .. "&client_id=web"
end

function request()
  if code then
    local c = code
    code = nil
    return wrk.format("POST", "/token", { ["Content-Type"] = "application/x-www-form-urlencoded" },
      "grant_type=authorization_code&code=" .. c .. body_tail)
  end
  turn = turn + 1
  return wrk.format("GET", "/authorize?" .. query, { ["Cookie"] = cookies[(turn % #cookies) + 1] })
end

function response(status, headers, body)
  local loc = headers["location"] or headers["Location"]
  if loc then code = loc:match("[?&]code=([^&]+)") end
end
