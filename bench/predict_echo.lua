-- predict_echo: POST /predict on the built-in echo model, authenticated with the dev key.
-- Used for both the engine and the ref-axum reference (which ignores the X-API-Key header).
--
-- There is deliberately no response() callback: defining one makes wrk parse every response
-- through Lua, which costs client CPU on this small machine. Non-2xx responses are counted by
-- wrk itself (summary.errors.status, the same number as its "Non-2xx or 3xx responses" line).
--
-- done() prints one machine-readable line that bench/run.sh parses:
--   BENCH_RESULT requests=N duration_s=S rps=R p50_ms=A p99_ms=B non2xx=K
--                connect_errors=.. read_errors=.. write_errors=.. timeouts=..

wrk.method = "POST"
wrk.body = '{"model":"echo","version":"v1","data":"hello"}'
wrk.headers["Content-Type"] = "application/json"
wrk.headers["X-API-Key"] = "dev-key"

function done(summary, latency, requests)
  local duration_s = summary.duration / 1e6
  local rps = 0
  if duration_s > 0 then
    rps = summary.requests / duration_s
  end
  local e = summary.errors
  io.write(string.format(
    "BENCH_RESULT requests=%d duration_s=%.3f rps=%.1f p50_ms=%.3f p99_ms=%.3f non2xx=%d"
      .. " connect_errors=%d read_errors=%d write_errors=%d timeouts=%d\n",
    summary.requests, duration_s, rps,
    latency:percentile(50) / 1000, latency:percentile(99) / 1000,
    e.status, e.connect, e.read, e.write, e.timeout))
end
