-- Recover the work of dead workers: for every worker whose lease expired,
-- put its in-flight messages back at the head of the pending list (in their
-- original order), or dead-letter a message that has now been in flight on
-- ARGV[1] crashed workers (poison). An expired lease stays as a tombstone for
-- ARGV[2] ms so that a message a stalled worker moves in late is recovered too.
-- A poisoned task gets a failed result record (kind 'poison') like any
-- other task that failed for good, appended to the outbox when its message
-- names a reply_to.
-- The replies such a worker acknowledged but had not yet pushed to their
-- reply_to go back to the tail of the outbox, for any worker to deliver.
-- Also trims dead letters older than ARGV[3] ms.
-- KEYS[1] workers, KEYS[2] pending, KEYS[3] crashes, KEYS[4] dead,
-- KEYS[5] dead index, KEYS[6] stats, KEYS[7] in-flight key prefix ('{Q}:inflight:'),
-- KEYS[8] outbox, KEYS[9] worker outbox hash key prefix ('{Q}:outbox:inflight:'),
-- KEYS[10] result key prefix ('{Q}:result:'), KEYS[11] order prefix
-- ('{Q}:order:'): a poisoned message releases its ordering_key, a recovered
-- one keeps it (the next fetch gives it back; see common_order.lua)
-- ARGV[1] max crashes, ARGV[2] tombstone ms, ARGV[3] dead-letter retention ms, ARGV[4] reaper id,
-- ARGV[5] result TTL s
-- Returns {recovered, poisoned, replies returned to the outbox}.
local now = now_ms()
local recovered, poisoned, replies = 0, 0, 0
local leases = redis.call('HGETALL', KEYS[1])
for i = 1, #leases, 2 do
  local wid, expiry = leases[i], tonumber(leases[i + 1])
  if expiry < now then
    local inflight = KEYS[7] .. wid
    while true do
      local msg = redis.call('RPOP', inflight)
      if not msg then break end
      local sha = redis.sha1hex(msg)
      local crashes = redis.call('HINCRBY', KEYS[3], sha, 1)
      if crashes >= tonumber(ARGV[1]) then
        redis.call('HDEL', KEYS[3], sha)
        local ok, decoded = pcall(cjson.decode, msg)
        local id, task_type, reply_to = nil, nil, nil
        if ok and type(decoded) == 'table' then
          if type(decoded.id) == 'string' or type(decoded.id) == 'number' then id = tostring(decoded.id) end
          if type(decoded.task_type) == 'string' then task_type = decoded.task_type end
          if type(decoded.reply_to) == 'string' and decoded.reply_to ~= '' then reply_to = decoded.reply_to end
        end
        if id == nil then id = 'poison-' .. sha end
        local err = { kind = 'poison', message = 'in flight on ' .. crashes .. ' workers that died' }
        local letter = cjson.encode({
          id = id, task_type = task_type, message = msg,
          error = err, attempts = crashes, dead_at = now, worker = ARGV[4] })
        local record = cjson.encode({
          id = id, task_type = task_type or cjson.null, status = 'failed', result = cjson.null,
          error = err, attempts = crashes, started_at = now, finished_at = now, duration_ms = 0,
          plugin = cjson.null, plugin_version = cjson.null, plugin_sha256 = cjson.null, worker = ARGV[4],
          usage = { cpu_us = 0, peak_memory_bytes = 0, fuel = cjson.null, instantiate_us = 0 } })
        redis.call('SET', KEYS[10] .. id, record, 'EX', ARGV[5])
        if reply_to then redis.call('RPUSH', KEYS[8], #reply_to .. ':' .. reply_to .. record) end
        redis.call('HSET', KEYS[4], id, letter)
        redis.call('ZADD', KEYS[5], now, id)
        redis.call('HINCRBY', KEYS[6], 'dead', 1)
        redis.call('HINCRBY', KEYS[6], 'poisoned', 1)
        order_release(KEYS[11], KEYS[2], msg)
        poisoned = poisoned + 1
      else
        redis.call('LPUSH', KEYS[2], msg)
        redis.call('HINCRBY', KEYS[6], 'recovered', 1)
        recovered = recovered + 1
      end
    end
    replies = replies + hand_back(KEYS[9] .. wid, KEYS[8])
    if expiry + tonumber(ARGV[2]) < now then redis.call('HDEL', KEYS[1], wid) end
  end
end
if recovered + poisoned > 0 then redis.call('PEXPIRE', KEYS[3], 7 * 24 * 3600 * 1000) end
if replies > 0 then redis.call('HINCRBY', KEYS[6], 'replies_recovered', replies) end
local old = redis.call('ZRANGE', KEYS[5], '-inf', now - tonumber(ARGV[3]), 'BYSCORE', 'LIMIT', 0, 1000)
for _, id in ipairs(old) do
  redis.call('ZREM', KEYS[5], id)
  redis.call('HDEL', KEYS[4], id)
end
return {recovered, poisoned, replies}
