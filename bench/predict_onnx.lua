-- predict_onnx: POST /predict on the demo MLP (784 float features), authenticated with the dev
-- key. The model name comes from BENCH_MODEL (predict_onnx.sh serves the same ONNX file as
-- `mlp_batched` and `mlp_unbatched`). Every request sends the same example; each connection
-- could vary it, but the model's cost does not depend on the values.

local features = {}
for i = 0, 783 do
  features[#features + 1] = string.format("%.4f", ((i * 7) % 97) / 97.0 - 0.5)
end
local model = os.getenv("BENCH_MODEL") or "mlp"

wrk.method = "POST"
wrk.body = '{"model":"' .. model .. '","version":"v1","data":[' .. table.concat(features, ",") .. ']}'
wrk.headers["Content-Type"] = "application/json"
wrk.headers["X-API-Key"] = "dev-key"

-- done(): the BENCH_RESULT line, from bench_result.lua next to this script.
dofile((debug.getinfo(1, "S").source:match("^@(.*/)") or "./") .. "bench_result.lua")
