-- R2: GET the 20 newest posts of a random author (R2A: with a random bearer token).
--   wrk ... -s lua/r2.lua URL -- <path_fmt> <account_id_file> [token_file] [seed]
--   path_fmt: /posts?author=%s&limit=20, or charpente's URL-encoded filter (see bench/run)
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
