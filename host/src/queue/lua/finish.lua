-- Acknowledge a batch of messages for good: remove each from the worker's
-- in-flight list, store its result record, count it, optionally
-- dead-letter it, and record its reply (when it names a reply_to) in the
-- worker's outbox hash — the transactional outbox: the reply is recorded in
-- the same atomic step as the acknowledgement, and pushed to reply_to (which
-- may live in another Cluster slot, so never from here) by the worker
-- afterwards, or by any worker once this one's lease expired.
-- Fenced: nothing happens unless the worker holds its lease, and a message
-- no longer in its list is skipped.
-- KEYS[1] workers, KEYS[2] inflight, KEYS[3] stats, KEYS[4] dead,
-- KEYS[5] dead index, KEYS[6] crashes, KEYS[7] outbox hash of this worker,
-- KEYS[7+i] result key of message i, then the pending list (for follow-ups,
-- and for an ordering_key's next task) and the order prefix ('{Q}:order:'):
-- a message that holds its ordering_key releases it (see common_order.lua),
-- in the same step as its acknowledgement.
-- ARGV[1] worker id, ARGV[2] result TTL s, ARGV[3] dead-letter cap,
-- ARGV[4] token prefix unique to this call, then per message i six values
-- from ARGV[5+6(i-1)]: message, result record, status counter
-- ('succeeded'/'failed'), dead-letter id ('' for none), dead letter,
-- reply_to ('' for none); then pairs (i, follow-up message) pushed onto
-- the pending list when message i is acknowledged (common_follow_ups.lua).
-- A reply is the hash field '<token prefix><i>:<reply_to>' with the record
-- as its value: the record string is stored as it came (no concatenation,
-- which would make Lua hash a copy of it byte by byte).
-- Returns one 1 (acknowledged) or 0 (fenced off) per message.
local n = #KEYS - 9
local pending, order = KEYS[#KEYS - 1], KEYS[#KEYS]
local follow = follow_ups_from(5 + 6 * n)
local out = {}
if not holds_lease(KEYS[1], ARGV[1]) then
  for i = 1, n do out[i] = 0 end
  return out
end
-- The TTL stays a string: a Lua number would be formatted back per SET.
local ttl, cap, token = ARGV[2], tonumber(ARGV[3]), ARGV[4]
local track_crashes = redis.call('HLEN', KEYS[6]) > 0
local counts = { processed = 0 }
local dead = 0
local replies = {}
for i = 1, n do
  local a = 5 + 6 * (i - 1)
  local msg = ARGV[a]
  if redis.call('LREM', KEYS[2], 1, msg) == 0 then
    out[i] = 0
  else
    out[i] = 1
    if track_crashes then redis.call('HDEL', KEYS[6], redis.sha1hex(msg)) end
    order_release(order, pending, msg)
    redis.call('SET', KEYS[7 + i], ARGV[a + 1], 'EX', ttl)
    counts.processed = counts.processed + 1
    counts[ARGV[a + 2]] = (counts[ARGV[a + 2]] or 0) + 1
    if ARGV[a + 3] ~= '' then
      redis.call('HSET', KEYS[4], ARGV[a + 3], ARGV[a + 4])
      redis.call('ZADD', KEYS[5], now_ms(), ARGV[a + 3])
      dead = dead + 1
    end
    push_follow_ups(pending, follow[i])
    if ARGV[a + 5] ~= '' then
      replies[#replies + 1] = token .. i .. ':' .. ARGV[a + 5]
      replies[#replies + 1] = ARGV[a + 1]
    end
  end
end
for j = 1, #replies, 1000 do
  redis.call('HSET', KEYS[7], unpack(replies, j, math.min(j + 999, #replies)))
end
for field, count in pairs(counts) do
  if count > 0 then redis.call('HINCRBY', KEYS[3], field, count) end
end
if dead > 0 then
  redis.call('HINCRBY', KEYS[3], 'dead', dead)
  local excess = redis.call('ZCARD', KEYS[5]) - cap
  if excess > 0 then
    local popped = redis.call('ZPOPMIN', KEYS[5], excess)
    for j = 1, #popped, 2 do redis.call('HDEL', KEYS[4], popped[j]) end
  end
end
return out
