-- Graceful shutdown: put the worker's remaining in-flight messages back at
-- the head of the pending list in their original order, hand the replies it
-- has not delivered to the outbox (any worker's mover pushes them), and drop
-- its lease.
-- KEYS[1] workers, KEYS[2] inflight, KEYS[3] pending, KEYS[4] outbox hash
-- of this worker, KEYS[5] outbox; ARGV[1] worker id.
-- Returns the number of messages put back.
local n = 0
while redis.call('LMOVE', KEYS[2], KEYS[3], 'RIGHT', 'LEFT') do n = n + 1 end
hand_back(KEYS[4], KEYS[5])
redis.call('HDEL', KEYS[1], ARGV[1])
return n
