-- R1: GET one post by a random id.
--   wrk ... -s lua/r1.lua URL -- <path_fmt> <post_id_file> [seed]     e.g. /v1/posts/%s
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
