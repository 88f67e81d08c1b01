-- Follow-up tasks (sluice:plugin@0.2.0 `enqueue`), pushed by the
-- acknowledgement that records their parent as succeeded, in its atomic
-- step: a parent that is not acknowledged (failed, retried, fenced off,
-- killed) pushes none, and an acknowledged one never loses them.
-- follow_ups_from(first): the trailing ARGV section from ARGV[first], pairs
-- (index i of the acknowledged message, follow-up message), as a table
-- i -> list of messages.
local function follow_ups_from(first)
  local by = {}
  for j = first, #ARGV - 1, 2 do
    local i = tonumber(ARGV[j])
    local list = by[i]
    if not list then
      list = {}
      by[i] = list
    end
    list[#list + 1] = ARGV[j + 1]
  end
  return by
end

-- push_follow_ups(queue, list): RPUSH the messages of list onto queue (the
-- pending list of the parent's own queue), 1000 per call.
local function push_follow_ups(queue, list)
  if not list then return 0 end
  for j = 1, #list, 1000 do
    redis.call('RPUSH', queue, unpack(list, j, math.min(j + 999, #list)))
  end
  return #list
end
