-- Admission of a tenant's task starts under its quotas, across all workers.
-- KEYS[1] rate bucket (hash: tokens, ts), KEYS[2] CPU ledger (hash: unix
-- second -> CPU us charged in it), KEYS[3] throttle marker (string: until ms).
-- ARGV[1] starts wanted, ARGV[2] rate per second ('' for none), ARGV[3]
-- bucket capacity, ARGV[4] CPU budget in us per rolling minute ('' for none),
-- ARGV[5] starts to give back (fetched fewer than admitted).
-- Returns {starts admitted, ms until another may be}.
local now = now_ms()
local want = tonumber(ARGV[1])
local refund = tonumber(ARGV[5])
if ARGV[4] ~= '' and want > 0 then
  local budget = tonumber(ARGV[4])
  local window_start = math.floor(now / 1000) - 59
  local flat = redis.call('HGETALL', KEYS[2])
  local used, seconds = 0, {}
  for i = 1, #flat, 2 do
    local second = tonumber(flat[i])
    if second < window_start then
      redis.call('HDEL', KEYS[2], flat[i])
    else
      local us = tonumber(flat[i + 1])
      used = used + us
      table.insert(seconds, {second, us})
    end
  end
  if used >= budget then
    -- Wait until enough of the oldest seconds leave the window.
    table.sort(seconds, function(a, b) return a[1] < b[1] end)
    local wait = 1000
    for _, s in ipairs(seconds) do
      used = used - s[2]
      wait = (s[1] + 60) * 1000 - now
      if used < budget then break end
    end
    if wait < 1 then wait = 1 end
    redis.call('SET', KEYS[3], now + wait, 'PX', wait)
    return {0, wait}
  end
end
if ARGV[2] == '' then return {want, 0} end
local rate = tonumber(ARGV[2])
local cap = tonumber(ARGV[3])
local h = redis.call('HMGET', KEYS[1], 'tokens', 'ts')
local tokens = tonumber(h[1]) or cap
local ts = tonumber(h[2]) or now
tokens = math.min(cap, tokens + math.max(0, now - ts) * rate / 1000 + refund)
local granted = math.min(want, math.floor(tokens))
tokens = tokens - granted
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'ts', now)
redis.call('PEXPIRE', KEYS[1], 60000 + math.ceil(cap * 1000 / rate))
if granted == 0 and want > 0 then
  local wait = math.max(1, math.ceil((1 - tokens) * 1000 / rate))
  redis.call('SET', KEYS[3], now + wait, 'PX', wait)
  return {0, wait}
end
return {granted, 0}
