-- Move up to ARGV[2] pending messages into the worker's in-flight list
-- (Redis "reliable queue" pattern, batched), if the worker holds its lease.
-- One LPOP with a count and one RPUSH per 1 000 messages (Lua's unpack()
-- limit) do what an LMOVE per message would, in the same order, with a
-- fraction of the per-call cost.
-- A message with an ordering_key (at most ARGV[3] bytes long: a longer one
-- is dead-lettered unparsed as too_large) runs only if it may hold its key
-- (see common_order.lua); else it is parked, and more messages are taken
-- in its place (at most 1 000 more per call).
-- KEYS[1] pending, KEYS[2] inflight, KEYS[3] workers, KEYS[4] order prefix
-- ('{Q}:order:'); ARGV[1] worker id, ARGV[2] max, ARGV[3] largest message
-- processed, bytes.
-- Returns the messages (possibly none), or false when the lease was lost.
if not holds_lease(KEYS[3], ARGV[1]) then return false end
local want, max_bytes = tonumber(ARGV[2]), tonumber(ARGV[3])
local out = {}
local budget = want + 1000
while #out < want and budget > 0 do
  local popped = redis.call('LPOP', KEYS[1], math.min(want - #out, budget))
  if not popped then break end
  budget = budget - #popped
  for _, msg in ipairs(popped) do
    local key = #msg <= max_bytes and order_key_of(msg)
    if not key or order_admit(KEYS[4], KEYS[3], ARGV[1], key, msg) then
      out[#out + 1] = msg
    end
  end
end
for i = 1, #out, 1000 do
  redis.call('RPUSH', KEYS[2], unpack(out, i, math.min(i + 999, #out)))
end
return out
