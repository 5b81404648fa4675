-- W1: POST a new post (~200-byte body) for a random author.
--   wrk ... -s lua/w1.lua URL -- <path> <account_id_file> [seed]
local common = dofile((debug.getinfo(1, "S").source:match("^@(.*/)") or "./") .. "common.lua")
local path, ids, n = "/posts", nil, 0
local text = string.rep("benchmark post body text ", 8)   -- 200 bytes
function init(args)
  path, ids = args[1], common.read_lines(args[2])
  math.randomseed(tonumber(args[3] or "42"))
  wrk.headers["Content-Type"] = "application/json"
end
function request()
  n = n + 1
  local body = string.format('{"author":"%s","body":"%s","visibility":"public"}',
                             ids[math.random(1, #ids)], text)
  return wrk.format("POST", path, nil, body)
end
function response(status) common.count(status) end
setup, done = common.setup, common.done
