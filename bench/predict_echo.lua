-- predict_echo: POST /predict on the built-in echo model, authenticated with the dev key.
-- Used for both the engine and the ref-axum reference (which ignores the X-API-Key header).
--
-- There is deliberately no response() callback: defining one makes wrk parse every response
-- through Lua, which costs client CPU on this small machine. Non-2xx responses are counted by
-- wrk itself (summary.errors.status, the same number as its "Non-2xx or 3xx responses" line).
--

wrk.method = "POST"
wrk.body = '{"model":"echo","version":"v1","data":"hello"}'
wrk.headers["Content-Type"] = "application/json"
wrk.headers["X-API-Key"] = "dev-key"

-- done(): the BENCH_RESULT line, from bench_result.lua next to this script.
dofile((debug.getinfo(1, "S").source:match("^@(.*/)") or "./") .. "bench_result.lua")
