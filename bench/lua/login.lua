-- LOGIN: password sign-ins of random accounts, from random client addresses.
--   wrk ... -s lua/login.lua URL -- <path> <email_file> <password_file> [seed]
--   POST <path> (the OAuth token endpoint) with grant_type=password. Each request says it
--   comes from another address (X-Forwarded-For 10.a.b.c; the server trusts 127.0.0.1 as
--   a proxy): a storm from many addresses, which a per-address rate limit lets through,
--   so every request is a full argon2id check.
local common = dofile((debug.getinfo(1, "S").source:match("^@(.*/)") or "./") .. "common.lua")
local path, emails, password
function init(args)
  local _, seed
  path, emails = args[1], common.read_lines(args[2])
  password = common.read_lines(args[3])[1]
  _, seed = common.extras(args, 4)
  math.randomseed(seed)
  wrk.headers["Content-Type"] = "application/x-www-form-urlencoded"
end
function request()
  local email = emails[math.random(1, #emails)]:gsub("@", "%%40")
  local body = "grant_type=password&username=" .. email .. "&password=" .. password
  local ip = string.format("10.%d.%d.%d", math.random(1, 199), math.random(0, 255),
                           math.random(1, 254))
  return wrk.format("POST", path, common.headers(nil, {["X-Forwarded-For"] = ip}), body)
end
function response(status) common.count(status) end
setup, done = common.setup, common.done
