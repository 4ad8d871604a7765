-- wrk script for scripts/bench-perf.sh: GET requests over a list of paths, taken in turn.
--
-- From the environment: BENCH_PATHS (URL paths, space-separated, e.g. the
-- /api/catalog/products/{id} of every bench product, or just /healthz), and BENCH_NO_CACHE:
-- when 1, every request carries `Cache-Control: no-cache`, which makes the product read skip
-- the shop's in-process catalog cache and read the database (to measure the uncached read
-- in the same process as the cached one).
--
-- At the end it prints one line that the script parses:
--   get-result requests=N seconds=S p50_ms=X p99_ms=Y ok=N non_2xx=N socket_errors=N
--              statuses=CODE:N,...

local threads = {}

function setup(thread)
    table.insert(threads, thread)
end

function init(args)
    paths = {}
    for path in string.gmatch(os.getenv("BENCH_PATHS") or "", "%S+") do
        table.insert(paths, path)
    end
    if #paths == 0 then
        error("BENCH_PATHS must name at least one path")
    end
    local headers = nil
    if os.getenv("BENCH_NO_CACHE") == "1" then
        headers = { ["Cache-Control"] = "no-cache" }
    end
    requests = {}
    for i, path in ipairs(paths) do
        requests[i] = wrk.format("GET", path, headers)
    end
    sent = 0
    ok = 0
    non_2xx = 0
    statuses = {}
end

function request()
    sent = sent + 1
    return requests[(sent % #requests) + 1]
end

function response(status, headers, body)
    statuses[status] = (statuses[status] or 0) + 1
    if status >= 200 and status < 300 then
        ok = ok + 1
    else
        non_2xx = non_2xx + 1
    end
end

function done(summary, latency, requests)
    local totals = { ok = 0, non_2xx = 0 }
    local codes = {}
    for _, thread in ipairs(threads) do
        for name, _ in pairs(totals) do
            totals[name] = totals[name] + (thread:get(name) or 0)
        end
        for code, count in pairs(thread:get("statuses") or {}) do
            codes[code] = (codes[code] or 0) + count
        end
    end
    local listed = {}
    for code, count in pairs(codes) do
        table.insert(listed, code .. ":" .. count)
    end
    table.sort(listed)
    local errors = summary.errors
    io.write(string.format(
        "get-result requests=%d seconds=%.3f p50_ms=%.3f p99_ms=%.3f ok=%d non_2xx=%d"
            .. " socket_errors=%d statuses=%s\n",
        summary.requests, summary.duration / 1e6,
        latency:percentile(50) / 1000, latency:percentile(99) / 1000,
        totals.ok, totals.non_2xx,
        errors.connect + errors.read + errors.write + errors.timeout,
        table.concat(listed, ",")))
end
