-- R1: GET one post by a random id (R1A: with a random bearer token from the token file).
--   wrk ... -s lua/r1.lua URL -- <path_fmt> <post_id_file> [token_file] [seed]   e.g. /v1/posts/%s
local common = dofile((debug.getinfo(1, "S").source:match("^@(.*/)") or "./") .. "common.lua")
local fmt, ids, bearers, seed
function init(args)
  fmt, ids = args[1], common.read_lines(args[2])
  bearers, seed = common.extras(args, 3)
  math.randomseed(seed)
end
function request()
  local path = string.format(fmt, ids[math.random(1, #ids)])
  if bearers then return wrk.format("GET", path, common.headers(bearers)) end
  return wrk.format("GET", path)
end
function response(status) common.count(status) end
setup, done = common.setup, common.done
