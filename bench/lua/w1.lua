-- W1: POST a new post (~200-byte body) for a random author.
--   wrk ... -s lua/w1.lua URL -- <path> <account_id_file> [token_file] [seed]
--   With a token file the post carries no author: the server makes the caller (a random
--   token's account) its author, as the social template's `default: auth.id` says.
local common = dofile((debug.getinfo(1, "S").source:match("^@(.*/)") or "./") .. "common.lua")
local path, ids, n, bearers = "/posts", nil, 0, nil
local text = string.rep("benchmark post body text ", 8)   -- 200 bytes
function init(args)
  local seed
  path, ids = args[1], common.read_lines(args[2])
  bearers, seed = common.extras(args, 3)
  math.randomseed(seed)
  wrk.headers["Content-Type"] = "application/json"
end
function request()
  n = n + 1
  if bearers then
    local body = string.format('{"body":"%s","visibility":"public"}', text)
    return wrk.format("POST", path, common.headers(bearers), body)
  end
  local body = string.format('{"author":"%s","body":"%s","visibility":"public"}',
                             ids[math.random(1, #ids)], text)
  return wrk.format("POST", path, nil, body)
end
function response(status) common.count(status) end
setup, done = common.setup, common.done
