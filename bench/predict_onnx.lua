-- predict_onnx: POST /predict with the JSON body in the file BENCH_BODY (predict_onnx.sh writes
-- one per model), authenticated with the dev key. Every request sends the same body; the
-- models' cost does not depend on the values.

local path = os.getenv("BENCH_BODY") or error("BENCH_BODY names the request body's file")
local file = assert(io.open(path, "rb"))
wrk.method = "POST"
wrk.body = file:read("*a")
file:close()
wrk.headers["Content-Type"] = "application/json"
wrk.headers["X-API-Key"] = "dev-key"

-- done(): the BENCH_RESULT line, from bench_result.lua next to this script.
dofile((debug.getinfo(1, "S").source:match("^@(.*/)") or "./") .. "bench_result.lua")
