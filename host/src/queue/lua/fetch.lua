-- Move up to ARGV[2] messages from the pending list into the worker's
-- in-flight list (Redis "reliable queue" pattern, batched), if the worker
-- holds its lease.
-- KEYS[1] pending, KEYS[2] inflight, KEYS[3] workers; ARGV[1] worker id, ARGV[2] max.
-- Returns the messages (possibly none), or false when the lease was lost.
if not holds_lease(KEYS[3], ARGV[1]) then return false end
local out = {}
for _ = 1, tonumber(ARGV[2]) do
  local msg = redis.call('LMOVE', KEYS[1], KEYS[2], 'LEFT', 'RIGHT')
  if not msg then break end
  out[#out + 1] = msg
end
return out
