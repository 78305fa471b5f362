-- Scenarios `item-get` and `item-list`: each request is a bearer token and a path, both from the environment, as
-- benchmarks/_reads.py writes them after creating each user's collection and items through the target's API:
-- BENCH_TOKENS, comma-separated, and BENCH_REQUESTS, comma-separated entries "<token number, from 1> <path>" (each
-- token travels once, however many paths use it). Each thread rotates through the requests from its own offset.
package.path = os.getenv("BENCH_LUA_DIR") .. "/?.lua;" .. package.path
local report = require("report")
response = report.response
done = report.done

local counter = 0

function setup(thread)
  report.setup(thread)
  thread:set("offset", counter)
  counter = counter + 1
end

local requests = {}
local next_index = 1

function init(args)
  local tokens = {}
  for token in string.gmatch(os.getenv("BENCH_TOKENS") or "", "[^,]+") do
    tokens[#tokens + 1] = token
  end
  for entry in string.gmatch(os.getenv("BENCH_REQUESTS") or "", "[^,]+") do
    local number, path = string.match(entry, "^(%d+) (%S+)$")
    local token = number and tokens[tonumber(number)]
    if token == nil then
      error("BENCH_REQUESTS: no token for the entry " .. entry)
    end
    requests[#requests + 1] = wrk.format("GET", path, { ["Authorization"] = "Bearer " .. token })
  end
  if #requests == 0 then
    error("BENCH_REQUESTS is empty")
  end
  next_index = (offset or 0) % #requests + 1
end

function request()
  local r = requests[next_index]
  next_index = next_index % #requests + 1
  return r
end
