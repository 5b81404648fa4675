-- W2: PATCH a post's body with an optimistic version check.
--   wrk ... -s lua/w2.lua URL -- <mode> <path_fmt> <post_id_file> [token_file] [tag]
--   mode "if-match": the version goes in `If-Match: "<v>"` and comes back in ETag (412 when stale)
--   mode "body":     the version goes in the body's "version" and comes back in it (409 when stale)
-- Cycles through the ids of the file (the harness resets their versions before each
-- run). The version sent is the one read from the last response for that id, so a
-- request only fails if versions get out of step. With many more ids than connections
-- an id is never in flight twice. The body carries a counter so every PATCH really
-- changes the row (an ORM skips an UPDATE that changes nothing).
-- With a token file, each line of the id file is "<id> <n>": the post is patched with the
-- n-th token, its author's (only the author may edit a post of the social template).
local common = dofile((debug.getinfo(1, "S").source:match("^@(.*/)") or "./") .. "common.lua")
local mode, fmt, ids, i, tag = "body", "/posts/%s", nil, 0, 0
local versions, owners, bearers = {}, {}, nil
local filler = string.rep("edited post body text ", 8):sub(1, 180)
function init(args)
  mode, fmt, ids = args[1], args[2], common.read_lines(args[3])
  bearers, tag = common.extras(args, 4)
  for k, line in ipairs(ids) do
    local id, owner = string.match(line, "^(%S+)%s*(%d*)$")
    ids[k], owners[id] = id, tonumber(owner)
  end
  wrk.headers["Content-Type"] = "application/json"
end
function request()
  local id = ids[(i % #ids) + 1]
  i = i + 1
  local v = versions[id] or 1
  if mode == "if-match" then
    local body = string.format('{"body":"%s run %d edit %08d"}', filler, tag, i)
    local headers = {["If-Match"] = '"' .. v .. '"', ["Content-Type"] = "application/json"}
    if bearers then headers["Authorization"] = bearers[owners[id]] end
    return wrk.format("PATCH", string.format(fmt, id), headers, body)
  end
  local body = string.format('{"body":"%s run %d edit %08d","version":%d}', filler, tag, i, v)
  return wrk.format("PATCH", string.format(fmt, id), nil, body)
end
function response(status, headers, body)
  common.count(status)
  if status ~= 200 then return end
  local id = string.match(body, '"id":%s*"([0-9a-fA-F-]+)"')
  local v
  if mode == "if-match" then
    local etag = headers["ETag"] or headers["etag"] or headers["Etag"]
    v = etag and tonumber(string.match(etag, '(%d+)'))
  else
    v = tonumber(string.match(body, '"version":%s*(%d+)'))
  end
  if id and v then versions[id] = v end
end
setup, done = common.setup, common.done
