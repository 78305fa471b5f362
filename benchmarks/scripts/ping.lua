-- Scenario `ping`: GET the URL's path (/healthz) with no credentials: the ingress and the gateway alone.
package.path = os.getenv("BENCH_LUA_DIR") .. "/?.lua;" .. package.path
local report = require("report")
setup = report.setup
response = report.response
done = report.done
