-- Shared by the scenario scripts: reading id files, counting every response that is
-- not 2xx (by status), and one machine-readable result line printed by done().
--   BENCH_RESULT {"requests":..,"duration_us":..,"rps":..,"p50_us":..,"p99_us":..,
--                 "non2xx":..,"statuses":{"412":..},"socket_errors":{..}}
local M = {}
local threads = {}

bench_non2xx = 0      -- per thread (each thread has its own Lua state); read back in done()
bench_statuses = {}

function M.read_lines(path)
  local out = {}
  local f = assert(io.open(path, "r"), "cannot open " .. tostring(path))
  for line in f:lines() do
    if line ~= "" then out[#out + 1] = line end
  end
  f:close()
  assert(#out > 0, "no lines in " .. path)
  return out
end

-- The optional arguments after a script's own: a token file (one access token a line:
-- each request then carries one, picked at random) and a number (the random seed, which
-- bench/run appends last). Returns the Authorization values (nil without a file) and the seed.
function M.extras(args, first)
  local bearers, seed = nil, 42
  for i = first, #args do
    local n = tonumber(args[i])
    if n then
      seed = n
    else
      bearers = {}
      for _, token in ipairs(M.read_lines(args[i])) do
        bearers[#bearers + 1] = "Bearer " .. token
      end
    end
  end
  return bearers, seed
end

-- The headers of one request: wrk.headers, a random token's Authorization (with a token
-- file) and `extra`, in a new table (wrk.format uses a table it is given instead of
-- wrk.headers, and writes Host and Content-Length into it).
function M.headers(bearers, extra)
  local out = {}
  for k, v in pairs(wrk.headers) do out[k] = v end
  if bearers then out["Authorization"] = bearers[math.random(1, #bearers)] end
  for k, v in pairs(extra or {}) do out[k] = v end
  return out
end

function M.count(status)
  if status < 200 or status > 299 then
    bench_non2xx = bench_non2xx + 1
    local key = tostring(status)
    bench_statuses[key] = (bench_statuses[key] or 0) + 1
  end
end

function M.setup(thread)
  threads[#threads + 1] = thread
end

local function json_counts(t)
  local parts = {}
  for k, v in pairs(t) do parts[#parts + 1] = string.format('"%s":%d', k, v) end
  return "{" .. table.concat(parts, ",") .. "}"
end

function M.done(summary, latency, requests)
  local non2xx, statuses = 0, {}
  for _, t in ipairs(threads) do
    non2xx = non2xx + (t:get("bench_non2xx") or 0)
    for k, v in pairs(t:get("bench_statuses") or {}) do statuses[k] = (statuses[k] or 0) + v end
  end
  local e = summary.errors
  io.write(string.format(
    'BENCH_RESULT {"requests":%d,"duration_us":%d,"rps":%.2f,"p50_us":%d,"p90_us":%d,' ..
    '"p99_us":%d,"max_us":%d,"non2xx":%d,"statuses":%s,"socket_errors":' ..
    '{"connect":%d,"read":%d,"write":%d,"timeout":%d}}\n',
    summary.requests, summary.duration, summary.requests / (summary.duration / 1e6),
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max,
    non2xx, json_counts(statuses), e.connect, e.read, e.write, e.timeout))
end

return M
