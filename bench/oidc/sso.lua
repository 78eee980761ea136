-- wrk script: an SSO re-authorization per two requests: GET /authorize with the SSO cookie
-- (no login page: a redirect with a code), then the code's exchange at /token.
function init(args)
  code = nil
  query = os.getenv("AUTHORIZE_QUERY")
  cookie = os.getenv("SSO_COOKIE")
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
  return wrk.format("GET", "/authorize?" .. query, { ["Cookie"] = cookie })
end

function response(status, headers, body)
  local loc = headers["location"] or headers["Location"]
  if loc then code = loc:match("[?&]code=([^&]+)") end
end
