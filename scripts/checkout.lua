-- wrk script for scripts/bench-split.sh and scripts/bench-perf.sh: every request is one
-- checkout, POST /api/orders.
--
-- From the environment: BENCH_TOKENS (customers' access tokens, space-separated),
-- BENCH_PRODUCTS (product ids, space-separated), BENCH_RUN (a prefix that makes every
-- Idempotency-Key unique across runs). Requests take the customers and products in turn,
-- one unit each, paid with tok_visa, each with an Idempotency-Key of its own.
--
-- At the end it prints one line that the script parses:
--   checkout-result requests=N seconds=S p50_ms=X p99_ms=Y confirmed=N other_2xx=N
--                   non_2xx=N socket_errors=N statuses=CODE:N,...

local threads = {}

function setup(thread)
    thread:set("thread_id", #threads + 1)
    table.insert(threads, thread)
end

local function words(text)
    local list = {}
    for word in string.gmatch(text or "", "%S+") do
        table.insert(list, word)
    end
    return list
end

function init(args)
    tokens = words(os.getenv("BENCH_TOKENS"))
    run = os.getenv("BENCH_RUN") or "run"
    bodies = {}
    for _, product in ipairs(words(os.getenv("BENCH_PRODUCTS"))) do
        table.insert(bodies, '{"lines": [{"product_id": "' .. product .. '", "quantity": 1}],'
            .. ' "payment_token": "tok_visa", "shipping_address": {"name": "Bench",'
            .. ' "line1": "1 Load Street", "city": "Benchville", "postal_code": "B1",'
            .. ' "country": "GB"}}')
    end
    if #tokens == 0 or #bodies == 0 then
        error("BENCH_TOKENS and BENCH_PRODUCTS must name at least one token and one product")
    end
    sent = 0
    confirmed = 0
    other_2xx = 0
    non_2xx = 0
    statuses = {}
end

function request()
    sent = sent + 1
    local headers = {
        ["Content-Type"] = "application/json",
        ["Authorization"] = "Bearer " .. tokens[(sent % #tokens) + 1],
        ["Idempotency-Key"] = run .. "-" .. thread_id .. "-" .. sent,
    }
    return wrk.format("POST", "/api/orders", headers, bodies[(sent % #bodies) + 1])
end

function response(status, headers, body)
    statuses[status] = (statuses[status] or 0) + 1
    if status == 201 and string.find(body, '"status":"confirmed"', 1, true) then
        confirmed = confirmed + 1
    elseif status >= 200 and status < 300 then
        other_2xx = other_2xx + 1
    else
        non_2xx = non_2xx + 1
    end
end

function done(summary, latency, requests)
    local totals = { confirmed = 0, other_2xx = 0, non_2xx = 0 }
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
        "checkout-result requests=%d seconds=%.3f p50_ms=%.3f p99_ms=%.3f confirmed=%d"
            .. " other_2xx=%d non_2xx=%d socket_errors=%d statuses=%s\n",
        summary.requests, summary.duration / 1e6,
        latency:percentile(50) / 1000, latency:percentile(99) / 1000,
        totals.confirmed, totals.other_2xx, totals.non_2xx,
        errors.connect + errors.read + errors.write + errors.timeout,
        table.concat(listed, ",")))
end
