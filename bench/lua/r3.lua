-- R3: GET page 50 of a long list through its cursor (paths collected by bench/cursors.py).
--   wrk ... -s lua/r3.lua URL -- <path_file> [seed]
local common = dofile((debug.getinfo(1, "S").source:match("^@(.*/)") or "./") .. "common.lua")
local paths
function init(args)
  paths = common.read_lines(args[1])
  math.randomseed(tonumber(args[2] or "42"))
end
function request()
  return wrk.format("GET", paths[math.random(1, #paths)])
end
function response(status) common.count(status) end
setup, done = common.setup, common.done
