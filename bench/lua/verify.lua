-- POST /v1/keys/verify with a key picked at random from a file of keys, one per line.
-- Arguments after `--`: the keys file and the bearer token.
package.path = debug.getinfo(1, "S").source:match("@?(.*/)") .. "?.lua;" .. package.path
require("common")

local keys = {}

function init(args)
  for line in io.lines(args[1]) do
    keys[#keys + 1] = line
  end
  math.randomseed(os.time() * 1000 + (thread_id or 0))
  wrk.method = "POST"
  wrk.headers["Content-Type"] = "application/json"
  wrk.headers["Authorization"] = "Bearer " .. args[2]
end

function request()
  return wrk.format(nil, nil, nil, '{"key":"' .. keys[math.random(#keys)] .. '"}')
end
