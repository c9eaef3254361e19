-- predict_onnx: POST /predict on the demo MLP (784 float features), authenticated with the dev
-- key. The model name comes from BENCH_MODEL (predict_onnx.sh serves the same ONNX file as
-- `mlp_batched` and `mlp_unbatched`). Every request sends the same example; each connection
-- could vary it, but the model's cost does not depend on the values.
--
-- done() prints the BENCH_RESULT line bench/lib.sh parses (see predict_echo.lua).

local features = {}
for i = 0, 783 do
  features[#features + 1] = string.format("%.4f", ((i * 7) % 97) / 97.0 - 0.5)
end
local model = os.getenv("BENCH_MODEL") or "mlp"

wrk.method = "POST"
wrk.body = '{"model":"' .. model .. '","version":"v1","data":[' .. table.concat(features, ",") .. ']}'
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
