-- CPU us a tenant used in the rolling minute, and its throttle marker.
-- KEYS[1] CPU ledger, KEYS[2] throttle marker. Returns {us, until ms or 0}.
local window_start = math.floor(now_ms() / 1000) - 59
local flat = redis.call('HGETALL', KEYS[1])
local used = 0
for i = 1, #flat, 2 do
  if tonumber(flat[i]) >= window_start then used = used + tonumber(flat[i + 1]) end
end
return {used, tonumber(redis.call('GET', KEYS[2]) or '0')}
