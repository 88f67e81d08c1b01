-- Per-key order (`ordering_key`; see host/src/queue/ordering.rs). ORDER is
-- the key prefix '{Q}:order:' of the queue:
--   ORDER..'owner'          hash: ordering key -> the task holding it, as the
--                           SHA-1 of its message ('<sha1>' while it waits in the
--                           pending list or the delayed set, '<sha1>:<worker>'
--                           while that worker runs it);
--   ORDER..'held:'..key     list: the key's later tasks, parked in push order;
--   ORDER..'retrying'       set: keys whose holder waits for a retry;
--   ORDER..'parked'         string: tasks parked in all held lists.
-- Only messages that name a valid key ever decode in Lua: a plain substring
-- search screens out the rest, so unkeyed tasks pay no JSON parsing.
local ORDER_MAX_KEY_BYTES = 256
-- order_key_of(msg): the message's ordering_key, or nil when it has none or
-- none valid (not a string of 1 to 256 bytes: the worker dead-letters such a
-- message as malformed without running it).
local function order_key_of(msg)
  if not string.find(msg, '"ordering_key"', 1, true) then return nil end
  local ok, decoded = pcall(cjson.decode, msg)
  if not ok or type(decoded) ~= 'table' then return nil end
  local key = decoded.ordering_key
  if type(key) ~= 'string' or key == '' or #key > ORDER_MAX_KEY_BYTES then return nil end
  return key
end
-- order_admit(order, workers, wid, key, msg): called by the fetch as `msg`
-- leaves the pending list for worker `wid`. True when it may run now: the
-- key was free, or it is the key's holder coming back (a retry, a delay, a
-- task handed the key, or one recovered from a worker whose lease expired).
-- Else (another task holds the key, or an identical copy of this message
-- runs on a live worker) it is parked at the tail of the key's held list and
-- false is returned.
local function order_admit(order, workers, wid, key, msg)
  local owners = order .. 'owner'
  local sha = redis.sha1hex(msg)
  local holder = redis.call('HGET', owners, key)
  if holder then
    local runner = string.sub(holder, 42)
    if string.sub(holder, 1, 40) ~= sha or (runner ~= '' and holds_lease(workers, runner)) then
      redis.call('RPUSH', order .. 'held:' .. key, msg)
      redis.call('INCR', order .. 'parked')
      return false
    end
    redis.call('SREM', order .. 'retrying', key)
  end
  redis.call('HSET', owners, key, sha .. ':' .. wid)
  return true
end
-- order_release(order, pending, msg): `msg` ended for good (acknowledged,
-- dead-lettered, poisoned). If it holds its key, the key passes to the
-- oldest parked task, moved to the head of the pending list (it was pushed
-- before anything still pending there), or is freed when none waits.
local function order_release(order, pending, msg)
  local key = order_key_of(msg)
  if not key then return end
  local owners = order .. 'owner'
  local holder = redis.call('HGET', owners, key)
  if not holder or string.sub(holder, 1, 40) ~= redis.sha1hex(msg) then return end
  redis.call('SREM', order .. 'retrying', key)
  local nxt = redis.call('LPOP', order .. 'held:' .. key)
  if nxt then
    redis.call('DECR', order .. 'parked')
    redis.call('HSET', owners, key, redis.sha1hex(nxt))
    redis.call('LPUSH', pending, nxt)
  else
    redis.call('HDEL', owners, key)
  end
end
-- order_keep(order, msg, stored, retry): `msg` goes to the delayed set as
-- `stored` (a retry, a delay, a wait for a plugin): if it holds its key, it
-- keeps it, and the key counts as blocked behind a retry when `retry`.
local function order_keep(order, msg, stored, retry)
  local key = order_key_of(msg)
  if not key then return end
  local owners = order .. 'owner'
  local holder = redis.call('HGET', owners, key)
  if not holder or string.sub(holder, 1, 40) ~= redis.sha1hex(msg) then return end
  redis.call('HSET', owners, key, redis.sha1hex(stored))
  if retry then
    redis.call('SADD', order .. 'retrying', key)
  else
    redis.call('SREM', order .. 'retrying', key)
  end
end
