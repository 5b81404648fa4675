-- R2: GET the 20 newest posts of a random author.
--   wrk ... -s lua/r2.lua URL -- <path_fmt> <account_id_file> [seed]
--   path_fmt: /posts?author=%s&limit=20, or charpente's URL-encoded filter (see bench/run)
local common = dofile((debug.getinfo(1, "S").source:match("^@(.*/)") or "./") .. "common.lua")
local fmt, ids
function init(args)
  fmt, ids = args[1], common.read_lines(args[2])
  math.randomseed(tonumber(args[3] or "42"))
end
function request()
  return wrk.format("GET", string.format(fmt, ids[math.random(1, #ids)]))
end
function response(status) common.count(status) end
setup, done = common.setup, common.done
