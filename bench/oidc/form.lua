-- wrk script: POST the same form ($FORM_BODY) to $FORM_PATH with $FORM_COOKIE and an Origin,
-- waiting $DELAY_MS between two requests of a connection (0: a closed loop).
function init(args)
  path = os.getenv("FORM_PATH")
  body = os.getenv("FORM_BODY")
  headers = { ["Content-Type"] = os.getenv("FORM_TYPE") or "application/x-www-form-urlencoded",
              ["Cookie"] = os.getenv("FORM_COOKIE") or "",
              ["Origin"] = os.getenv("FORM_ORIGIN") or "" }
  wait = tonumber(os.getenv("DELAY_MS") or "0")
end

function request()
  return wrk.format("POST", path, headers, body)
end

function delay()
  return wait
end
