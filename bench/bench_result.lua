-- The done() callback shared by the wrk scripts: prints one machine-readable line that
-- bench/lib.sh parses:
--   BENCH_RESULT requests=N duration_s=S rps=R p50_ms=A p99_ms=B non2xx=K
--                connect_errors=.. read_errors=.. write_errors=.. timeouts=..
-- Non-2xx responses are counted by wrk itself (summary.errors.status). Loaded with dofile() by
-- the scenario scripts.

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
