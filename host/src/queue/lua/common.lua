-- Shared prelude of every Sluice script (prepended by the host).
-- now_ms(): the Redis server's clock in Unix ms, so leases do not depend on
-- the clocks of worker hosts.
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
-- holds_lease(workers, wid): whether worker `wid` still holds an unexpired lease.
local function holds_lease(workers, wid)
  local expiry = tonumber(redis.call('HGET', workers, wid) or '0')
  return expiry >= now_ms()
end
