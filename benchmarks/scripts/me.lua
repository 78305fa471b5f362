-- Scenario `me`: GET the URL's path (/v1/users/me) with a bearer token. The tokens come from the
-- environment (BENCH_TOKENS, comma-separated; benchmarks/run.py registers and logs in those users
-- through the target's real API before the run), and each thread rotates through them.
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
  for token in string.gmatch(os.getenv("BENCH_TOKENS") or "", "[^,]+") do
    requests[#requests + 1] = wrk.format("GET", nil, { ["Authorization"] = "Bearer " .. token })
  end
  if #requests == 0 then
    error("BENCH_TOKENS is empty")
  end
  next_index = (offset or 0) % #requests + 1
end

function request()
  local r = requests[next_index]
  next_index = next_index % #requests + 1
  return r
end
