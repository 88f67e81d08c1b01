-- Swap an oversized message in the worker's in-flight list for a small
-- stand-in, so the worker never has to send the big body back to Redis
-- (acknowledgement removes a message by value). Fenced by the lease. The
-- message was just fetched, so the search starts at the list's tail.
-- KEYS[1] workers, KEYS[2] inflight; ARGV[1] worker id, ARGV[2] message
-- length, ARGV[3] message SHA-1 (hex), ARGV[4] stand-in.
-- Returns 1 when swapped, 0 when fenced off or no longer in the list.
if not holds_lease(KEYS[1], ARGV[1]) then return 0 end
local len = tonumber(ARGV[2])
local n = redis.call('LLEN', KEYS[2])
for i = -1, -n, -1 do
  local m = redis.call('LINDEX', KEYS[2], i)
  if m and #m == len and redis.sha1hex(m) == ARGV[3] then
    redis.call('LSET', KEYS[2], i, ARGV[4])
    return 1
  end
end
return 0
