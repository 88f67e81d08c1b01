-- Move up to ARGV[2] messages from the pending list into the worker's
-- in-flight list (Redis "reliable queue" pattern, batched), if the worker
-- holds its lease. One LPOP with a count and one RPUSH per 1 000 messages
-- (Lua's unpack() limit) do what an LMOVE per message would, in the same
-- order, with a fraction of the per-call cost.
-- KEYS[1] pending, KEYS[2] inflight, KEYS[3] workers; ARGV[1] worker id, ARGV[2] max.
-- Returns the messages (possibly none), or false when the lease was lost.
if not holds_lease(KEYS[3], ARGV[1]) then return false end
local out = redis.call('LPOP', KEYS[1], ARGV[2])
if not out then return {} end
for i = 1, #out, 1000 do
  redis.call('RPUSH', KEYS[2], unpack(out, i, math.min(i + 999, #out)))
end
return out
