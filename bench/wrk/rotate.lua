-- wrk script: every request carries the next token of a file, rotating.
--   wrk ... -s bench/wrk/rotate.lua URL -- TOKENS_FILE [OFFSET]
-- The requests are formatted once in init(), so the generator's cost per request is the
-- same whatever the mix (one hot token, a warm set, or a pool of never-seen tokens).
local reqs = {}
local n = 0
local i = 0

function init(args)
    local file = args[1]
    local offset = tonumber(args[2] or "0")
    for line in io.lines(file) do
        if #line > 0 then
            n = n + 1
            reqs[n] = wrk.format("GET", nil, { ["Authorization"] = "Bearer " .. line })
        end
    end
    if n == 0 then
        error("no tokens in " .. file)
    end
    i = offset % n
end

function request()
    i = i + 1
    if i > n then
        i = 1
    end
    return reqs[i]
end
